"""Samplers the distributions need, and the special functions they use (from ``cr.special``).

``standard_gamma``, ``poisson`` and ``binomial`` draw with NumPy's samplers from a generator
seeded by chainrule's stream (so ``cr.manual_seed`` makes them reproducible), not with torch's
own algorithms.
"""

from __future__ import annotations


from chainrule import batching as _batching
from chainrule.batching import elementwise_host
from chainrule import random as _rnd
from chainrule.devices import np
from chainrule.autograd.function import Op
from chainrule.tensor import Tensor, wrap
from chainrule.ops.special import (  # noqa: F401  (the distributions import them from here)
    _cpu, _like, digamma, digamma_array, erfinv, gammainc, lgamma, mvlgamma, trigamma,
)

__all__ = ["lgamma", "digamma", "trigamma", "erfinv", "gammainc", "mvlgamma", "standard_gamma",
           "poisson", "binomial", "gamma_grad"]


# ---- sampling -----------------------------------------------------------------------------------
def _numpy_rng() -> np.random.Generator:
    """A NumPy generator seeded from chainrule's stream (reproducible under cr.manual_seed): one
    draw, as ``randint(0, 2**62, (1,))`` makes it."""
    gen = _rnd.generator_of(None)
    return np.random.default_rng(int(_rnd.random_from_to(gen, 1, np.int64, 0, 2**62)[0]))


def _sample(draw, *params):
    """``draw(*NumPy arrays)`` (NumPy values) on the device and in the dtype of the last of
    ``params``, which may be batched inside vmap: a draw parametrised by tensors (torch.func's
    rule: randomness="same" refuses a batched parameter, "different" draws every example's
    values), on the physical arrays at once."""
    levels = _rnd.vmap_levels(params)
    if levels or any(_batching.levels_of(p) for p in params):
        nd = max(p.ndim for p in params)
        phys = []
        for p in params:  # laid out for the levels, the logical dims aligned to the right
            q = _batching.physical(p, levels)
            phys.append(q.reshape(q.shape[:len(levels)] + (1,) * (nd - p.ndim) +
                                  q.shape[len(levels):]))
        values = draw(*[_cpu(q) for q in phys])
        return _batching.from_physical(_like(values, phys[-1]), levels)
    return _like(draw(*[_cpu(p) for p in params]), params[-1])


@elementwise_host
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
    return _like(grad, x)


def draw_standard_gamma(alpha):
    """Gamma(α, 1) draws (float64 NumPy) for a float64 NumPy array of α."""
    return _numpy_rng().standard_gamma(alpha)


class StandardGamma(Op):
    """x ~ Gamma(α, 1);  dx/dα = -∂P(α, x)/∂α / p(x; α) (implicit reparameterization)"""

    @staticmethod
    def forward(ctx, alpha):
        x = _sample(lambda a: draw_standard_gamma(a.astype(np.float64)), alpha)
        ctx.alpha, ctx.x = alpha, x  # constants for the backward (no graph through them)
        return x

    @staticmethod
    def backward(ctx, g):
        return g * gamma_grad(ctx.alpha, ctx.x)


def standard_gamma(concentration: Tensor) -> Tensor:
    """Gamma(concentration, 1) samples, differentiable in ``concentration``."""
    return StandardGamma.apply(concentration)


def poisson(rate: Tensor) -> Tensor:
    """Poisson(rate) counts, as floats of ``rate``'s dtype (no gradient)."""
    r = rate._data
    return wrap(_sample(lambda a: _numpy_rng().poisson(a.astype(np.float64)), r))


def binomial(count: Tensor, prob: Tensor) -> Tensor:
    """Binomial(count, prob) counts, as floats of ``prob``'s dtype (no gradient)."""
    def draw(n, p):
        n, p = np.broadcast_arrays(n, p)
        return _numpy_rng().binomial(n.astype(np.int64), np.clip(p.astype(np.float64), 0, 1))

    return wrap(_sample(draw, count._data, prob._data))


