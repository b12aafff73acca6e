"""Special functions and samplers the distributions need (private gates).

lgamma, digamma, trigamma and erfinv are written here as gates following the op contract until
``chainrule.ops`` has them (another change adds them there; these then go). ``standard_gamma``,
``poisson`` and ``binomial`` draw with NumPy's samplers from a generator seeded by chainrule's
stream (so ``cr.manual_seed`` makes them reproducible), not with torch's own algorithms.
"""

from __future__ import annotations

import math

from chainrule.devices import np
from chainrule import devices
from chainrule.autograd.function import Op
from chainrule.creation import randint
from chainrule.ops import either
from chainrule.tensor import Tensor, TensorBase, wrap

__all__ = ["lgamma", "digamma", "trigamma", "erfinv", "gammainc", "mvlgamma", "standard_gamma",
           "poisson", "binomial", "gamma_grad"]

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
def lgamma_array(x):
    """ln|Γ(x)| elementwise."""
    fn = _scipy("gammaln")
    a = _cpu(x).astype(np.float64)
    y = fn(a) if fn is not None else np.vectorize(math.lgamma, otypes=[np.float64])(a)
    if fn is not None:  # scipy gives +inf at the poles like C's lgamma
        y = np.where(np.isinf(a), np.inf, y)
    return _like(y, x)


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
def _either(gate: type, array_fn):
    """``fn(x)``: the gate on Tensors (a backward under create_graph), the array function on
    raw arrays (a plain backward), like the functions of ``chainrule.ops.either``."""

    def fn(x):
        return gate.apply(x) if isinstance(x, TensorBase) else array_fn(x)

    return fn


class Lgamma(Op):
    """y = ln|Γ(x)|;  dy/dx = ψ(x)"""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return lgamma_array(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * _digamma(x)


class Digamma(Op):
    """y = ψ(x);  dy/dx = ψ₁(x)"""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return digamma_array(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * _trigamma(x)


class Trigamma(Op):
    """y = ψ₁(x);  dy/dx = ψ₂(x)"""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return polygamma_array(1, x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * _tetragamma(x)


class _Tetragamma(Op):
    """y = ψ₂(x) (its own gradient is not implemented: third derivatives of ln Γ)"""

    @staticmethod
    def forward(ctx, x):
        return polygamma_array(2, x)

    @staticmethod
    def backward(ctx, g):
        raise NotImplementedError("the gradient of polygamma(2, x) is not implemented")


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


_lgamma = _either(Lgamma, lgamma_array)
_digamma = _either(Digamma, digamma_array)
_trigamma = _either(Trigamma, lambda x: polygamma_array(1, x))
_tetragamma = _either(_Tetragamma, lambda x: polygamma_array(2, x))


def _float(x) -> Tensor:
    if not isinstance(x, Tensor):
        from chainrule.creation import tensor

        x = tensor(x)
    if x._data.dtype.kind != "f":
        x = x.float()
    return x


def lgamma(input: Tensor) -> Tensor:
    """ln|Γ(x)|, elementwise."""
    return Lgamma.apply(_float(input))


def digamma(input: Tensor) -> Tensor:
    """ψ(x) = d/dx ln Γ(x), elementwise."""
    return Digamma.apply(_float(input))


def trigamma(input: Tensor) -> Tensor:
    """ψ₁(x) = d²/dx² ln Γ(x), elementwise."""
    return Trigamma.apply(_float(input))


def erfinv(input: Tensor) -> Tensor:
    """The inverse error function, elementwise."""
    return Erfinv.apply(_float(input))


# ---- sampling -----------------------------------------------------------------------------------
def _numpy_rng() -> np.random.Generator:
    """A NumPy generator seeded from chainrule's stream (reproducible under cr.manual_seed)."""
    return np.random.default_rng(int(randint(0, 2**62, (1,)).item()))


def gamma_grad(alpha, x):
    """dx/dα of a Gamma(α, 1) sample x held at its quantile: -∂P(α, x)/∂α / p(x; α), with the
    regularized incomplete gamma P(α, x) = xᵅe⁻ˣ/Γ(α) Σₙ xⁿ/(α(α+1)…(α+n)) differentiated
    term by term (exact, where torch uses approximations)."""
    a = _cpu(alpha).astype(np.float64)
    z = _cpu(x).astype(np.float64)
    a, z = np.broadcast_arrays(a, z)
    term = 1 / a  # xⁿ / (α…(α+n))
    harmonic = 1 / a  # Σₖ 1/(α+k)
    s, ds = term.copy(), -(term * harmonic)
    n = 0
    while True:
        n += 1
        term = term * z / (a + n)
        harmonic = harmonic + 1 / (a + n)
        s += term
        ds -= term * harmonic
        if np.all(term <= 1e-17 * s) or n > 100000:
            break
    with np.errstate(all="ignore"):
        log_x = np.log(z)
        # ∂P/∂α = xᵅe⁻ˣ/Γ(α)·(S(ln x - ψ(α)) + ∂S/∂α);  p(x) = x^(α-1)e⁻ˣ/Γ(α)
        grad = -z * (s * (log_x - digamma_array(a)) + ds)
    grad = np.where(np.isfinite(grad), grad, 0.0)
    return _like(grad, _cpu(x))


def draw_standard_gamma(alpha):
    """Gamma(α, 1) draws (float64 NumPy) for a float64 NumPy array of α."""
    return _numpy_rng().standard_gamma(alpha)


class StandardGamma(Op):
    """x ~ Gamma(α, 1);  dx/dα = -∂P(α, x)/∂α / p(x; α) (implicit reparameterization)"""

    @staticmethod
    def forward(ctx, alpha):
        x = _like(draw_standard_gamma(_cpu(alpha).astype(np.float64)), alpha)
        ctx.alpha, ctx.x = alpha, x  # constants for the backward (no graph through them)
        return x

    @staticmethod
    def backward(ctx, g):
        return g * _like(gamma_grad(ctx.alpha, ctx.x), ctx.x)


def standard_gamma(concentration: Tensor) -> Tensor:
    """Gamma(concentration, 1) samples, differentiable in ``concentration``."""
    return StandardGamma.apply(concentration)


def poisson(rate: Tensor) -> Tensor:
    """Poisson(rate) counts, as floats of ``rate``'s dtype (no gradient)."""
    r = rate._data
    return wrap(_like(_numpy_rng().poisson(_cpu(r).astype(np.float64)), r))


def binomial(count: Tensor, prob: Tensor) -> Tensor:
    """Binomial(count, prob) counts, as floats of ``prob``'s dtype (no gradient)."""
    n, p = np.broadcast_arrays(_cpu(count._data), _cpu(prob._data))
    draw = _numpy_rng().binomial(n.astype(np.int64), np.clip(p.astype(np.float64), 0, 1))
    return wrap(_like(draw, prob._data))


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
        return None, g * either.exp((a - 1) * either.log(x) - x - _lgamma(a))


def gammainc(input: Tensor, other: Tensor) -> Tensor:
    """The regularized lower incomplete gamma function P(input, other)."""
    return Gammainc.apply(_float(input), _float(other))


def mvlgamma(input: Tensor, p: int) -> Tensor:
    """The multivariate log-gamma: p(p-1)/4·log π + Σⱼ₌₀ᵖ⁻¹ ln Γ(x - j/2)."""
    from chainrule import arange

    offsets = arange(p, dtype=input.dtype, device=input.device) / 2
    return p * (p - 1) / 4 * math.log(math.pi) + lgamma(input.unsqueeze(-1) - offsets).sum(-1)
