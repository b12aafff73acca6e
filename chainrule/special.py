"""``cr.special``: PyTorch's ``torch.special`` (the gates live in ``chainrule.ops.special``)."""

from __future__ import annotations

import math

from chainrule.batching import elementwise_host
from chainrule.ops import special as _s
from chainrule.ops.binary import where, xlogy
from chainrule.ops.binary import xlog1py as _xlog1py
from chainrule.ops.elementwise import erf, exp2, expm1, log, log1p, logit, round, sigmoid
from chainrule.ops.reduce import log_softmax, logsumexp, softmax
from chainrule.ops.special import (
    digamma, erfc, erfinv, gammainc, gammaincc, i0, i0e, i1, i1e, lgamma, polygamma, sinc,
)
from chainrule.ops.special import (  # noqa: F401  (torch.special's names, no gradients)
    bessel_j0, bessel_j1, chebyshev_polynomial_t, chebyshev_polynomial_u,
    chebyshev_polynomial_v, chebyshev_polynomial_w, hermite_polynomial_h, hermite_polynomial_he,
    laguerre_polynomial_l, legendre_polynomial_p, modified_bessel_i0, modified_bessel_i1,
    modified_bessel_k0, modified_bessel_k1, scaled_modified_bessel_k0, scaled_modified_bessel_k1,
    shifted_chebyshev_polynomial_t, shifted_chebyshev_polynomial_u,
    shifted_chebyshev_polynomial_v, shifted_chebyshev_polynomial_w,
)
from chainrule.tensor import Tensor

__all__ = [
    "digamma", "psi", "polygamma", "lgamma", "gammaln", "multigammaln", "gammainc", "gammaincc",
    "erf", "erfc", "erfcx", "erfinv", "expit", "logit", "exp2", "expm1", "log1p", "xlogy",
    "xlog1py", "entr", "ndtr", "ndtri", "log_ndtr", "i0", "i0e", "i1", "i1e", "sinc", "round",
    "softmax", "log_softmax", "logsumexp", "zeta", "spherical_bessel_j0", "bessel_j0",
    "bessel_j1", "modified_bessel_i0", "modified_bessel_i1", "modified_bessel_k0",
    "modified_bessel_k1", "scaled_modified_bessel_k0", "scaled_modified_bessel_k1",
    "chebyshev_polynomial_t", "chebyshev_polynomial_u", "chebyshev_polynomial_v",
    "chebyshev_polynomial_w", "shifted_chebyshev_polynomial_t", "shifted_chebyshev_polynomial_u",
    "shifted_chebyshev_polynomial_v", "shifted_chebyshev_polynomial_w", "hermite_polynomial_h",
    "hermite_polynomial_he", "laguerre_polynomial_l", "legendre_polynomial_p",
]

psi = digamma
gammaln = lgamma
expit = sigmoid


def multigammaln(input: Tensor, p: int) -> Tensor:
    """The multivariate log-gamma function of dimension ``p``."""
    return _s.mvlgamma(input, p)


def erfcx(input: Tensor) -> Tensor:
    """The scaled complementary error function e^(x²) erfc(x)."""
    x = _s._float(input, "erfcx")
    return erfc(x) * (x * x).exp()


def xlog1py(input, other) -> Tensor:
    """x · log1p(y), 0 where x = 0 (also where y = -1)."""
    if not isinstance(input, Tensor):
        input = _s._float(input, "xlog1py")
    if not isinstance(other, Tensor):
        other = _s._float(other, "xlog1py")
    return _xlog1py(input, other)


def entr(input: Tensor) -> Tensor:
    """-x ln x for x > 0, 0 at 0 and -∞ for x < 0."""
    x = _s._float(input, "entr")
    pos = x > 0
    return where(pos, -x * log(where(pos, x, 1.0)), where(x == 0, 0.0, -math.inf))


def ndtr(input: Tensor) -> Tensor:
    """The standard normal CDF Φ(x) = ½(1 + erf(x/√2))."""
    x = _s._float(input, "ndtr")
    return 0.5 * erfc(x * (-1 / math.sqrt(2)))


def log_ndtr(input: Tensor) -> Tensor:
    """ln Φ(x)."""
    return log(ndtr(input))


def ndtri(input: Tensor) -> Tensor:
    """The inverse of the standard normal CDF: √2 erf⁻¹(2p - 1)."""
    p = _s._float(input, "ndtri")
    return erfinv(2 * p - 1) * math.sqrt(2)


def zeta(input, other) -> Tensor:
    """The Hurwitz zeta function ζ(x, q) = Σₖ (q + k)⁻ˣ (no gradient, as torch)."""
    from chainrule.tensor import wrap

    x = _s._float(input, "zeta")
    q = _s._float(other, "zeta")
    dt = x._data.dtype if x._data.dtype.itemsize >= q._data.dtype.itemsize else q._data.dtype
    return wrap(_zeta_array(x._data, q._data, dt, x.device))


@elementwise_host
def _zeta_array(x, q, dt, device):
    """ζ(x, q) on the host, back on ``device`` as ``dt`` (once on the whole batch in vmap)."""
    from chainrule import devices

    out = _s.hurwitz_zeta_array(_s._cpu(x), _s._cpu(q))
    return devices.to_device(out.astype(dt), device)


def spherical_bessel_j0(input: Tensor) -> Tensor:
    """j₀(x) = sin(x)/x, 1 at 0."""
    x = _s._float(input, "spherical_bessel_j0")
    return sinc(x / math.pi)
