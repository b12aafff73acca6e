"""Special functions (``torch.special`` and their ``torch.*`` names): gamma-family functions,
error functions, Bessel functions of order 0 and 1, and friends, each a gate with its gradient.

The array functions compute in float64 on the CPU (SciPy's ufuncs when installed, else the
series written here) and return the input's dtype and device.
"""

from __future__ import annotations

import math

from chainrule import devices
from chainrule import dtypes as _dt
from chainrule.autograd.function import Op
from chainrule.batching import elementwise_host
from chainrule.devices import np
from chainrule.ops import either
from chainrule.tensor import Tensor, TensorBase, wrap

__all__ = ["lgamma", "digamma", "polygamma", "erfinv", "erfc", "mvlgamma", "i0", "sinc",
           "igamma", "igammac"]

_SCIPY: dict = {}


def _scipy(name: str):
    """``scipy.special.<name>`` when SciPy is installed (faster), else None."""
    if name not in _SCIPY:
        try:
            import scipy.special as sp

            _SCIPY[name] = getattr(sp, name)
        except ImportError:  # pragma: no cover
            _SCIPY[name] = None
    return _SCIPY[name]


def _cpu(x):
    return np.asarray(devices.to_device(x, "cpu"))


def _like(values, x):
    """``values`` (NumPy) back on ``x``'s device with ``x``'s dtype."""
    return devices.to_device(np.asarray(values, dtype=x.dtype), devices.device_of(x))


# ---- array functions ----------------------------------------------------------------------------
@elementwise_host
def lgamma_array(x):
    """ln|Γ(x)| elementwise."""
    fn = _scipy("gammaln")
    a = _cpu(x).astype(np.float64)
    y = fn(a) if fn is not None else np.vectorize(math.lgamma, otypes=[np.float64])(a)
    if fn is not None:  # scipy gives +inf at the poles like C's lgamma
        y = np.where(np.isinf(a), np.inf, y)
    return _like(y, x)


@elementwise_host
def digamma_array(x):
    """ψ(x) = d/dx ln Γ(x): reflection below 0, recurrence up to 10, then the asymptotic series
    ln x - 1/(2x) - Σ B₂ₖ/(2k x²ᵏ); +∞·sign at 0 and NaN at negative integers, as torch."""
    a = _cpu(x).astype(np.float64).reshape(-1)
    z = a.copy()
    extra = np.zeros_like(a)
    neg = z < 0
    with np.errstate(all="ignore"):
        extra[neg] = -np.pi / np.tan(np.pi * z[neg])  # ψ(x) = ψ(1-x) - π/tan(πx)
        z[neg] = 1 - z[neg]
        acc = np.zeros_like(a)
        small = z < 10
        while small.any():
            acc[small] -= 1 / z[small]
            z[small] += 1
            small = z < 10
        zz = 1 / (z * z)
        series = zz * (1 / 12 - zz * (1 / 120 - zz * (1 / 252 - zz * (1 / 240 - zz * (
            1 / 132 - zz * (691 / 32760 - zz / 12))))))
        out = acc + np.log(z) - 0.5 / z - series + extra
    out[a == 0] = np.copysign(np.inf, -a[a == 0])
    out[(a < 0) & (a == np.floor(a))] = np.nan
    return _like(out.reshape(np.shape(x)), x)


@elementwise_host
def polygamma_array(n: int, x):
    """ψ⁽ⁿ⁾(x) for n = 1, 2 (x > 0; reflection for n = 1): recurrence up to 8, then the
    asymptotic series of the derivatives of ψ."""
    a = _cpu(x).astype(np.float64).reshape(-1)
    z = a.copy()
    extra = np.zeros_like(a)
    sign = np.ones_like(a)
    if n == 1:
        low = z < 0.5
        with np.errstate(all="ignore"):  # ψ₁(x) = π²/sin²(πx) - ψ₁(1-x)
            extra[low] = (np.pi / np.sin(np.pi * z[low])) ** 2
        sign[low] = -1
        z[low] = 1 - z[low]
    acc = np.zeros_like(a)
    fact = math.factorial(n)
    with np.errstate(all="ignore"):
        small = z < 8
        while small.any():
            acc[small] += fact / z[small] ** (n + 1)
            z[small] += 1
            small = z < 8
        zz = 1 / (z * z)
        if n == 1:  # 1/z + 1/(2z²) + Σ B₂ₖ/z²ᵏ⁺¹
            tail = 1 / z + zz / 2 + zz / z * (1 / 6 - zz * (1 / 30 - zz * (1 / 42 - zz * (
                1 / 30 - zz * (5 / 66)))))
        else:  # 1/z² + 1/z³ + Σ (2k+1)B₂ₖ/z²ᵏ⁺²
            tail = zz + zz / z + zz * zz * (1 / 2 - zz * (1 / 6 - zz * (1 / 6 - zz * (
                3 / 10 - zz * (5 / 6)))))
        out = (acc + tail) * (1 if n == 1 else -1)
        out = extra + sign * out
    return _like(out.reshape(np.shape(x)), x)


@elementwise_host
def erfinv_array(x):
    """erf⁻¹(x): a rational first guess, refined by Newton steps on erf (float64 accurate);
    ±∞ at ±1, NaN outside [-1, 1]."""
    from chainrule.kernels.reference import erf_array

    a = _cpu(x).astype(np.float64)
    with np.errstate(all="ignore"):
        w = -np.log((1 - a) * (1 + a))  # Giles' single-precision guess, two branches
        s = np.sqrt(w)
        central = a * np.polyval([2.81022636e-08, 3.43273939e-07, -3.5233877e-06,
                                  -4.39150654e-06, 0.00021858087, -0.00125372503,
                                  -0.00417768164, 0.246640727, 1.50140941], w - 2.5)
        tail = a * np.polyval([-0.000200214257, 0.000100950558, 0.00134934322, -0.00367342844,
                               0.00573950773, -0.0076224613, 0.00943887047, 1.00167406,
                               2.83297682], s - 3)
        y = np.where(w < 5, central, tail)
        for _ in range(3):  # Newton: y ← y - (erf y - x) / (2/√π e^{-y²})
            err = erf_array(y) - a
            y = y - err / (2 / math.sqrt(math.pi) * np.exp(-y * y))
    y = np.where(np.abs(a) == 1, np.copysign(np.inf, a), y)
    y = np.where(np.abs(a) > 1, np.nan, y)
    return _like(y, x)


# ---- gates --------------------------------------------------------------------------------------
class Polygamma(Op):
    """y = ψ⁽ⁿ⁾(x), where ψ⁽⁻¹⁾ = ln|Γ| and ψ⁽⁰⁾ = ψ;  dy/dx = ψ⁽ⁿ⁺¹⁾(x)"""

    @staticmethod
    def forward(ctx, x, n):
        ctx.save_for_backward(x)
        ctx.n = n
        return psi_array(n, x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * _psi(ctx.n + 1, x), None


class Lgamma(Polygamma):
    """Polygamma with n = -1, under torch's name for its node."""


class Digamma(Polygamma):
    """Polygamma with n = 0, under torch's name for its node."""


def psi_array(n: int, x):
    """ψ⁽ⁿ⁾(x) on a raw array: ln|Γ| for n = -1, ψ for 0, the series for 1 and 2, ζ beyond."""
    if n == -1:
        return lgamma_array(x)
    if n == 0:
        return digamma_array(x)
    return polygamma_array(n, x) if n <= 2 else polygamma_n_array(n, x)


def _psi(n: int, x):
    """ψ⁽ⁿ⁾ on a Tensor (through its gate, differentiable) or on a raw array."""
    if isinstance(x, TensorBase):
        return {-1: Lgamma, 0: Digamma}.get(n, Polygamma).apply(x, n)
    return psi_array(n, x)


class Erfinv(Op):
    """y = erf⁻¹(x);  dy/dx = √π/2 · e^(y²)"""

    @staticmethod
    def forward(ctx, x):
        y = erfinv_array(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return g * either.exp(y * y) * (math.sqrt(math.pi) / 2)



def _float(x, name: str = "input") -> Tensor:
    """Int/bool tensors become the default float dtype (as torch); numbers become tensors."""
    if not isinstance(x, TensorBase):
        if not isinstance(x, (int, float)):
            raise TypeError(f"{name}(): argument 'input' must be Tensor, not {type(x).__name__}")
        x = wrap(np.asarray(x, _dt.get_default_dtype().np))
    if x._data.dtype.kind not in _dt.FLOAT_KINDS:
        x = wrap(x._data.astype(_dt.get_default_dtype().np))
    return x


def lgamma(input: Tensor) -> Tensor:
    """ln|Γ(x)|, elementwise."""
    return _psi(-1, _float(input))


def digamma(input: Tensor) -> Tensor:
    """ψ(x) = d/dx ln Γ(x), elementwise."""
    return _psi(0, _float(input))


def polygamma(n: int, input: Tensor) -> Tensor:
    """ψ⁽ⁿ⁾(x), the n-th derivative of ψ = (ln Γ)'; n = 0 is ψ itself."""
    if not isinstance(n, int) or n < 0:
        raise RuntimeError("polygamma(n, x) does not support negative n.")
    x = _float(input, "polygamma")
    return _psi(n, x)


@elementwise_host
def polygamma_n_array(n: int, x):
    """ψ⁽ⁿ⁾(x) = (-1)ⁿ⁺¹ n! ζ(n+1, x) for any n ≥ 1."""
    return _like((-1) ** (n + 1) * math.factorial(n) * hurwitz_zeta_array(n + 1, _cpu(x)), x)


@elementwise_host
def hurwitz_zeta_array(s, q):
    """ζ(s, q) = Σₖ (q+k)⁻ˢ (s > 1, q > 0): ten terms summed, then Euler-Maclaurin's tail."""
    s, q = np.broadcast_arrays(np.asarray(s, np.float64), np.asarray(q, np.float64))
    fn = _scipy("zeta")
    if fn is not None:
        return fn(s, q)
    n = 10
    with np.errstate(all="ignore"):
        acc = np.zeros(np.broadcast_shapes(s.shape, q.shape))
        for k in range(n):
            acc += (q + k) ** -s
        a = q + n
        tail = a ** (1 - s) / (s - 1) + 0.5 * a ** -s
        # Bernoulli terms B₂ⱼ/(2j)! · s(s+1)…(s+2j-2) · a^(-s-2j+1)
        fact = s * a ** (-s - 1)
        for b2j, two_j in ((1 / 6, 2), (-1 / 30, 4), (1 / 42, 6), (-1 / 30, 8), (5 / 66, 10),
                           (-691 / 2730, 12), (7 / 6, 14)):
            tail += b2j / math.factorial(two_j) * fact
            fact = fact * (s + two_j - 1) * (s + two_j) / (a * a)
        out = acc + tail
    return np.where(s == 1, np.inf, out)


def trigamma(input: Tensor) -> Tensor:
    """ψ₁(x) = d²/dx² ln Γ(x), elementwise."""
    return _psi(1, _float(input))


def erfinv(input: Tensor) -> Tensor:
    """The inverse error function, elementwise."""
    return Erfinv.apply(_float(input))


@elementwise_host
def gammainc_array(a, x):
    """P(a, x), the regularized lower incomplete gamma: its series below x = a + 1, 1 - Q from
    Lentz's continued fraction above."""
    av = _cpu(a).astype(np.float64)
    xv = _cpu(x).astype(np.float64)
    av, xv = (v.reshape(-1) for v in np.broadcast_arrays(av, xv))
    shape = np.broadcast_shapes(np.shape(a), np.shape(x))
    out = np.zeros(av.shape)
    with np.errstate(all="ignore"):
        log_pre = av * np.log(xv) - xv - lgamma_array(av)
        lo = xv < av + 1
        if lo.any():  # P = xᵃe⁻ˣ/Γ(a+1) Σ xⁿ/((a+1)…(a+n))
            a_, x_ = av[lo], xv[lo]
            term = 1 / a_
            s = term.copy()
            for n in range(1, 10000):
                term = term * x_ / (a_ + n)
                s += term
                if np.all(term <= 1e-17 * s):
                    break
            out[lo] = s * np.exp(log_pre[lo])
        hi = ~lo
        if hi.any():  # Q = xᵃe⁻ˣ/Γ(a) · 1/(x+1-a- 1·(1-a)/(x+3-a- …))
            a_, x_ = av[hi], xv[hi]
            tiny = 1e-300
            b = x_ + 1 - a_
            c = np.full_like(b, 1 / tiny)
            d = 1 / b
            h = d.copy()
            for i in range(1, 10000):
                an = -i * (i - a_)
                b = b + 2
                d = an * d + b
                d = np.where(np.abs(d) < tiny, tiny, d)
                c = b + an / c
                c = np.where(np.abs(c) < tiny, tiny, c)
                d = 1 / d
                delta = d * c
                h = h * delta
                if np.all(np.abs(delta - 1) < 1e-16):
                    break
            out[hi] = 1 - np.exp(log_pre[hi]) * h
    out = np.where(xv == 0, 0.0, out)
    out = np.where(np.isinf(xv) & (xv > 0), 1.0, out)
    return _like(out.reshape(shape), _cpu(x))


class Gammainc(Op):
    """y = P(a, x);  ∂y/∂x = x^(a-1)e⁻ˣ/Γ(a)  (torch has no gradient in a either)"""

    @staticmethod
    def forward(ctx, a, x):
        ctx.save_for_backward(a, x)
        return gammainc_array(a, x)

    @staticmethod
    def backward(ctx, g):
        if ctx.needs_input_grad[0]:
            raise NotImplementedError("derivative for gammainc with respect to self (the "
                                      "concentration) is not implemented")
        a, x = ctx.saved_tensors
        return None, g * either.exp((a - 1) * either.log(x) - x - _psi(-1, a))


def gammainc(input: Tensor, other: Tensor) -> Tensor:
    """The regularized lower incomplete gamma function P(input, other)."""
    return Gammainc.apply(_float(input), _float(other))


def mvlgamma(input: Tensor, p: int) -> Tensor:
    """The multivariate log-gamma: p(p-1)/4·log π + Σⱼ₌₀ᵖ⁻¹ ln Γ(x - j/2)."""
    if p < 1:
        raise RuntimeError("mvlgamma: p has to be greater than or equal to 1")
    input = _float(input, "mvlgamma")
    offsets = wrap(devices.to_device(np.arange(p, dtype=input._data.dtype) / 2, input.device))
    return p * (p - 1) / 4 * math.log(math.pi) + lgamma(input.unsqueeze(-1) - offsets).sum(-1)


def gammaincc(input: Tensor, other: Tensor) -> Tensor:
    """The regularized upper incomplete gamma function Q(input, other) = 1 - P."""
    return 1 - gammainc(input, other)


igamma = gammainc
igammac = gammaincc


# ---- error functions ----------------------------------------------------------------------------
class Erfc(Op):
    """y = erfc x = 1 - erf x;  dy/dx = -2/√π e^(-x²)"""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return erfc_array(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * either.exp(-(x * x)) * (-2 / math.sqrt(math.pi))


@elementwise_host
def erfc_array(x):
    """erfc x = 1 - erf x (SciPy's, accurate in the tail, when installed)."""
    fn = _scipy("erfc")
    if fn is not None:
        return _like(fn(_cpu(x).astype(np.float64)), x)
    from chainrule.kernels.reference import erf_array

    return 1 - erf_array(x)


def erfc(input: Tensor) -> Tensor:
    """The complementary error function 1 - erf(x)."""
    return Erfc.apply(_float(input, "erfc"))


# ---- Bessel functions of order 0 and 1 ----------------------------------------------------------
@elementwise_host
def _bessel_i_array(n: int, x, scaled: bool = False):
    """Iₙ(x) = 1/π ∫₀^π e^(x cos t) cos(nt) dt (n = 0, 1): the trapezoid rule on a periodic
    integrand converges geometrically, 64 + 2|x| points reach float64 accuracy. ``scaled``:
    e^(-|x|) Iₙ(x), computed without overflow."""
    a = _cpu(x).astype(np.float64)
    big = np.abs(a) > 500.0  # (the asymptotic series there, where the rule needs more points)
    if big.any():
        out = _bessel_i_array(n, np.where(big, 0.0, a), scaled).astype(np.float64)
        far = _scaled_bessel_i_asymptotic(n, a)
        if not scaled:
            with np.errstate(over="ignore"):
                far = far * np.exp(np.abs(a))
        return _like(np.where(big, far, out), x)
    m = int(64 + 2 * min(float(np.max(np.abs(a), initial=0.0, where=~np.isnan(a))),
                         2000.0))  # (NaN stays NaN below)
    t = (np.arange(m) + 0.5) * (np.pi / m)  # the midpoint rule, same spectral accuracy
    with np.errstate(all="ignore"):
        e = np.exp(np.multiply.outer(a, np.cos(t)) - np.abs(a)[..., None])
        out = (e * np.cos(n * t)).mean(-1)
        if not scaled:
            out = out * np.exp(np.abs(a))
    small = np.abs(a) < 1.0  # the power series there (the rule's I₁ loses digits near 0)
    if small.any():
        near = _bessel_i_series(n, np.where(small, a, 0.0))
        out = np.where(small, near * np.exp(-np.abs(a)) if scaled else near, out)
    return _like(out, x)


def _bessel_i_series(n: int, a):
    """Iₙ(x) = Σₖ (x/2)^(2k+n) / (k! (k+n)!) for |x| < 1 (twelve terms: float64 accuracy)."""
    h = a / 2
    term = h if n % 2 else np.ones_like(a)
    total = term
    for k in range(1, 12):
        term = term * h * h / (k * (k + n))
        total = total + term
    return total


def _scaled_bessel_i_asymptotic(n: int, a):
    """e^(-|x|) Iₙ(x) for large |x|: (2π|x|)^(-1/2) Σₖ (-1)ᵏ Πⱼ≤ₖ (4n² - (2j-1)²) / (k! (8|x|)ᵏ)
    (eight terms: float64 accuracy from |x| = 500; 0 at ±inf, odd orders signed as x)."""
    ax = np.abs(a)
    with np.errstate(all="ignore"):
        term, total = np.ones_like(ax), np.ones_like(ax)
        for k in range(1, 9):
            term = -term * (4.0 * n * n - (2 * k - 1) ** 2) / (k * 8.0 * ax)
            total = total + term
        out = total / np.sqrt(2 * np.pi * ax)
    out = np.where(np.isinf(ax), 0.0, out)
    return np.sign(a) * out if n % 2 else out


class BesselI0(Op):
    """y = I₀(x);  dy/dx = I₁(x)"""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return _bessel_i_array(0, x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * (BesselI1.apply(x) if isinstance(x, TensorBase) else _bessel_i_array(1, x))


def _tiny(a):
    """|a| <= eps of its dtype, or NaN: where I₁'s gradient is taken as ½ (torch's test)."""
    return ~(np.abs(a) > np.finfo(a.dtype).eps)


class BesselI1(Op):
    """y = I₁(x);  dy/dx = I₀(x) - I₁(x)/x  (½ where |x| <= eps and at NaN, as torch's)"""

    @staticmethod
    def forward(ctx, x):
        y = _bessel_i_array(1, x)
        ctx.save_for_backward(x, y)
        return y

    @staticmethod
    def backward(ctx, g):
        x, y = ctx.saved_tensors
        at0 = _tiny(either.data(x))
        safe = either.where(at0, 1.0, x)  # (the unused branch finite: 0·NaN nowhere)
        i0 = BesselI0.apply(safe) if isinstance(x, TensorBase) else _bessel_i_array(0, safe)
        return g * either.where(at0, 0.5, i0 - y / safe)


def i0(input: Tensor) -> Tensor:
    """The modified Bessel function of the first kind, order 0."""
    return BesselI0.apply(_float(input, "i0"))


class ScaledBesselI0(Op):
    """y = e^(-|x|) I₀(x);  dy/dx = e^(-|x|) I₁(x) - sign(x)·y (no overflow for large |x|)"""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return _bessel_i_array(0, x, True)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        tensor = isinstance(x, TensorBase)
        y = ScaledBesselI0.apply(x) if tensor else _bessel_i_array(0, x, True)
        i1e = ScaledBesselI1.apply(x) if tensor else _bessel_i_array(1, x, True)
        return g * (i1e - either.sign(x) * y)


class ScaledBesselI1(Op):
    """y = e^(-|x|) I₁(x);  dy/dx = e^(-|x|) I₀(x) - y/x - sign(x)·y  (½ where |x| <= eps and
    at NaN, as torch's)"""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return _bessel_i_array(1, x, True)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        tensor = isinstance(x, TensorBase)
        at0 = _tiny(either.data(x))
        safe = either.where(at0, 1.0, x)  # (the unused branch finite: 0·NaN nowhere)
        y = ScaledBesselI1.apply(safe) if tensor else _bessel_i_array(1, safe, True)
        i0e = ScaledBesselI0.apply(safe) if tensor else _bessel_i_array(0, safe, True)
        return g * either.where(at0, 0.5, i0e - y / safe - either.sign(safe) * y)


def _i_fn(n: int, scaled: bool, name: str):
    def fn(input: Tensor) -> Tensor:
        x = _float(input, name)
        if n == 0:
            return ScaledBesselI0.apply(x) if scaled else BesselI0.apply(x)
        return ScaledBesselI1.apply(x) if scaled else BesselI1.apply(x)

    fn.__name__ = name
    fn.__doc__ = f"{'e^(-|x|) · ' if scaled else ''}I{n}(x), the modified Bessel function."
    return fn


i1 = _i_fn(1, False, "i1")
i0e = _i_fn(0, True, "i0e")
i1e = _i_fn(1, True, "i1e")


# ---- sinc ---------------------------------------------------------------------------------------
class Sinc(Op):
    """y = sin(πx)/(πx), 1 at 0;  dy/dx = (cos(πx) - y)/x, at 0 its series -π²x/3 (0, with the
    right second derivative -π²/3 under create_graph)"""

    @staticmethod
    def forward(ctx, x):
        y = np.sinc(x).astype(x.dtype, copy=False)
        ctx.save_for_backward(x, y)
        return y

    @staticmethod
    def backward(ctx, g):
        x, y = ctx.saved_tensors
        at0 = either.data(x) == 0
        safe = either.where(at0, 1.0, x)
        series = x * (-math.pi ** 2 / 3)
        return g * either.where(at0, series, (either.cos(safe * math.pi) - y) / safe)


def sinc(input: Tensor) -> Tensor:
    """The normalized sinc function sin(πx)/(πx)."""
    return Sinc.apply(_float(input, "sinc"))


# ---- Bessel functions of the first and second kind, orders 0 and 1 (torch.special) -------------
@elementwise_host
def bessel_j_array(n: int, x):
    """Jₙ(x) = 1/π ∫₀^π cos(nt - x sin t) dt (n = 0, 1): the midpoint rule on a periodic
    integrand converges geometrically; 64 + 1.5|x| points reach float64 accuracy."""
    a = _cpu(x).astype(np.float64)
    m = int(64 + 1.5 * min(float(np.max(np.abs(a), initial=0.0)), 1e5))
    t = (np.arange(m) + 0.5) * (np.pi / m)
    out = np.cos(n * t - np.multiply.outer(a, np.sin(t))).mean(-1)
    if n % 2:
        out = np.where(a == 0, 0.0, out)
    return _like(out, x)


@elementwise_host
def bessel_k_array(n: int, x, scaled: bool = False):
    """Kₙ(x) = ∫₀^∞ e^(-x cosh t) cosh(nt) dt (x > 0; n = 0, 1): the trapezoid rule with step
    1/32 is exact to rounding for this doubly exponentially decaying integrand. ``scaled``:
    eˣ Kₙ(x). ∞ at 0, NaN below."""
    a = _cpu(x).astype(np.float64)
    flat = a.reshape(-1)
    out = np.full(flat.shape, np.nan)
    pos = flat > 0
    if pos.any():
        xs = flat[pos]
        top = float(np.arccosh(1 + 745 / np.min(xs)))
        h = 1 / 32
        t = np.arange(0, top + h, h)
        w = np.full(t.shape, h)
        w[0] = h / 2
        with np.errstate(under="ignore"):
            e = np.exp(-np.multiply.outer(xs, np.cosh(t) - 1))
        vals = (e * (np.cosh(n * t) * w)).sum(-1)
        out[pos] = vals if scaled else vals * np.exp(-xs)
    out[flat == 0] = np.inf
    return _like(out.reshape(a.shape), x)


def _no_grad_fn(array_fn, name: str, doc: str):
    """A special function torch gives no derivative: computed, outside the graph."""
    def fn(input: Tensor) -> Tensor:
        x = _float(input, name)
        return wrap(array_fn(x._data))

    fn.__name__ = name
    fn.__doc__ = doc
    return fn


bessel_j0 = _no_grad_fn(lambda a: bessel_j_array(0, a), "bessel_j0",
                        "The Bessel function of the first kind of order 0.")
bessel_j1 = _no_grad_fn(lambda a: bessel_j_array(1, a), "bessel_j1",
                        "The Bessel function of the first kind of order 1.")
modified_bessel_k0 = _no_grad_fn(lambda a: bessel_k_array(0, a), "modified_bessel_k0",
                                 "The modified Bessel function of the second kind, order 0.")
modified_bessel_k1 = _no_grad_fn(lambda a: bessel_k_array(1, a), "modified_bessel_k1",
                                 "The modified Bessel function of the second kind, order 1.")
scaled_modified_bessel_k0 = _no_grad_fn(lambda a: bessel_k_array(0, a, True),
                                        "scaled_modified_bessel_k0", "eˣ K₀(x).")
scaled_modified_bessel_k1 = _no_grad_fn(lambda a: bessel_k_array(1, a, True),
                                        "scaled_modified_bessel_k1", "eˣ K₁(x).")
modified_bessel_i0 = _no_grad_fn(lambda a: _bessel_i_array(0, a), "modified_bessel_i0",
                                 "The modified Bessel function of the first kind, order 0.")
modified_bessel_i1 = _no_grad_fn(lambda a: _bessel_i_array(1, a), "modified_bessel_i1",
                                 "The modified Bessel function of the first kind, order 1.")


# ---- orthogonal polynomials by their three-term recurrences (no gradient, as torch) ------------
def _polynomial(name: str, p0, p1, step, shift=None):
    """``name(input, n)``: the degree-n polynomial at ``input`` (n ≥ 0 integer-valued, a number
    or a tensor broadcasting with input; 0 for negative n, as torch)."""

    def fn(input, n) -> Tensor:
        x = input._data if isinstance(input, TensorBase) else np.asarray(input)
        nn_ = n._data if isinstance(n, TensorBase) else np.asarray(n)
        dt = np.dtype(_dt.result_type(x, nn_))  # torch's promotion (float32 x, int n: float32)
        if dt.kind not in "f":
            dt = _dt.get_default_dtype().np
        device = input.device if isinstance(input, TensorBase) else "cpu"
        return wrap(values(x, nn_, dt, device))

    @elementwise_host
    def values(x, nn_, dt, device):
        xv = _cpu(x).astype(np.float64)
        if shift is not None:
            xv = shift(xv)
        nv = np.asarray(_cpu(nn_)).astype(np.int64)
        xv, nv = np.broadcast_arrays(xv, nv)
        prev, cur = p0(xv), p1(xv)
        out = np.where(nv == 0, prev, 0.0)
        out = np.where(nv == 1, cur, out)
        top = int(nv.max(initial=0))
        for k in range(1, top):
            prev, cur = cur, step(k, xv, cur, prev)
            out = np.where(nv == k + 1, cur, out)
        return devices.to_device(out.astype(dt), device)

    fn.__name__ = name
    fn.__doc__ = f"The {name.replace('_', ' ')} of degree n at input."
    return fn


def _one(x):
    return np.ones_like(x)


chebyshev_polynomial_t = _polynomial("chebyshev_polynomial_t", _one, lambda x: x,
                                     lambda k, x, c, p: 2 * x * c - p)
chebyshev_polynomial_u = _polynomial("chebyshev_polynomial_u", _one, lambda x: 2 * x,
                                     lambda k, x, c, p: 2 * x * c - p)
chebyshev_polynomial_v = _polynomial("chebyshev_polynomial_v", _one, lambda x: 2 * x - 1,
                                     lambda k, x, c, p: 2 * x * c - p)
chebyshev_polynomial_w = _polynomial("chebyshev_polynomial_w", _one, lambda x: 2 * x + 1,
                                     lambda k, x, c, p: 2 * x * c - p)
shifted_chebyshev_polynomial_t = _polynomial(
    "shifted_chebyshev_polynomial_t", _one, lambda x: x, lambda k, x, c, p: 2 * x * c - p,
    shift=lambda x: 2 * x - 1)
shifted_chebyshev_polynomial_u = _polynomial(
    "shifted_chebyshev_polynomial_u", _one, lambda x: 2 * x, lambda k, x, c, p: 2 * x * c - p,
    shift=lambda x: 2 * x - 1)
shifted_chebyshev_polynomial_v = _polynomial(
    "shifted_chebyshev_polynomial_v", _one, lambda x: 2 * x - 1,
    lambda k, x, c, p: 2 * x * c - p, shift=lambda x: 2 * x - 1)
shifted_chebyshev_polynomial_w = _polynomial(
    "shifted_chebyshev_polynomial_w", _one, lambda x: 2 * x + 1,
    lambda k, x, c, p: 2 * x * c - p, shift=lambda x: 2 * x - 1)
hermite_polynomial_h = _polynomial("hermite_polynomial_h", _one, lambda x: 2 * x,
                                   lambda k, x, c, p: 2 * x * c - 2 * k * p)
hermite_polynomial_he = _polynomial("hermite_polynomial_he", _one, lambda x: x,
                                    lambda k, x, c, p: x * c - k * p)
laguerre_polynomial_l = _polynomial("laguerre_polynomial_l", _one, lambda x: 1 - x,
                                    lambda k, x, c, p: ((2 * k + 1 - x) * c - k * p) / (k + 1))
legendre_polynomial_p = _polynomial("legendre_polynomial_p", _one, lambda x: x,
                                    lambda k, x, c, p: ((2 * k + 1) * x * c - k * p) / (k + 1))
