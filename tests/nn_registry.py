"""Registry entries for ``nn.functional`` ops (activations, losses, distances, sampling,
pooling, normalization): appended to ``op_registry.REGISTRY`` so that every generated test
(float32/float64 forward and gradients against torch, gradcheck, gradgradcheck, strided views,
inputs left unchanged) runs on them too.

Each entry calls ``m.nn.functional.<name>`` for both libraries; integer targets and other
non-differentiable arguments are built inside the call, the same for both.
"""

from __future__ import annotations

from op_registry import OpSpec, add


def _F(m):
    return m.nn.functional


def _fn(name: str, **fixed):
    """``F.name(*inputs, **fixed, **kwargs)`` on chainrule or torch."""

    def call(m, *a, **kw):
        return getattr(_F(m), name)(*a, **fixed, **kw)

    call.by_name = name
    return call


def _nn(name: str, *tags: str, **kw) -> OpSpec:
    spec_kw = {"tags": ("nn",) + tags}
    spec_kw.update(kw)
    return add(OpSpec(name, ref=None, **spec_kw))


# ---- activations --------------------------------------------------------------------------------
_ACT = ((2, 3, 4),), ((5,),)
_nn("hardshrink", call=_fn("hardshrink"), shapes=_ACT,
    kwargs=({}, {"lambd": 1.0}), tags=("nn", "activation"))
_nn("softshrink", call=_fn("softshrink"), shapes=_ACT,
    kwargs=({}, {"lambd": 1.0}), tags=("nn", "activation"))
_nn("threshold", call=lambda m, x, **kw: _F(m).threshold(x, 0.5, -3.0, **kw), shapes=_ACT,
    tags=("nn", "activation"))
_nn("glu", call=_fn("glu"), shapes=(((2, 6, 4),),), kwargs=({}, {"dim": 1}, {"dim": -2}),
    tags=("nn", "activation"))
_nn("prelu", call=_fn("prelu"), shapes=(((2, 3, 4), (3,)), ((2, 3), (1,)), ((4,), (1,))),
    tags=("nn", "activation"))
_nn("rrelu(eval)", call=_fn("rrelu"), shapes=_ACT, kwargs=({}, {"lower": 0.1, "upper": 0.5}),
    tags=("nn", "activation"))

# ---- distances ----------------------------------------------------------------------------------
_nn("pairwise_distance", call=_fn("pairwise_distance"), shapes=(((4, 5), (4, 5)), ((5,), (3, 5))),
    kwargs=({}, {"p": 1.0}, {"p": 3.0, "keepdim": True}), tags=("nn", "distance"))
_nn("pdist", call=_fn("pdist"), shapes=(((4, 3),),), kwargs=({}, {"p": 1.0}, {"p": 3.0}),
    torch_gradgrad=False, tags=("nn", "distance"))  # torch: no derivative of _pdist_backward


# ---- losses -------------------------------------------------------------------------------------
def _sign(m, shape, seed=0):
    import numpy as np

    v = np.where(np.random.default_rng(seed).random(shape) < 0.5, -1.0, 1.0)
    return m.tensor(v, dtype=m.float64)


_RED = ({}, {"reduction": "sum"}, {"reduction": "none"})
_nn("margin_ranking_loss",
    call=lambda m, a, b, **kw: _F(m).margin_ranking_loss(a, b, _sign(m, (5,)).to(a.dtype), **kw),
    shapes=(((5,), (5,)),), kwargs=_RED + ({"margin": 0.5},), tags=("nn", "loss"))
_nn("hinge_embedding_loss",
    call=lambda m, x, **kw: _F(m).hinge_embedding_loss(x, _sign(m, (3, 4)).to(x.dtype), **kw),
    shapes=(((3, 4),),), kwargs=_RED + ({"margin": 0.3},), tags=("nn", "loss"))
_nn("soft_margin_loss",
    call=lambda m, x, **kw: _F(m).soft_margin_loss(x, _sign(m, (3, 4)).to(x.dtype), **kw),
    shapes=(((3, 4),),), kwargs=_RED, tags=("nn", "loss"))
_nn("multilabel_soft_margin_loss",
    call=lambda m, x, y, **kw: _F(m).multilabel_soft_margin_loss(x, (y > 0).to(x.dtype), **kw),
    shapes=(((3, 4), (3, 4)),), diff=(True, False), kwargs=_RED, tags=("nn", "loss"))
_nn("multilabel_soft_margin_loss(weight)",
    call=lambda m, x, y, w, **kw: _F(m).multilabel_soft_margin_loss(x, (y > 0).to(x.dtype),
                                                                     weight=w, **kw),
    shapes=(((3, 4), (3, 4), (4,)),), domain=("real", "real", "positive"),
    diff=(True, False, True), tags=("nn", "loss"))
_nn("multilabel_margin_loss",
    call=lambda m, x, **kw: _F(m).multilabel_margin_loss(
        x, m.tensor([[3, 0, -1, 1], [1, 2, 3, 0], [-1, 1, 1, 1]]), **kw),
    shapes=(((3, 4),),), kwargs=_RED, torch_gradgrad=False, tags=("nn", "loss"))
_nn("multilabel_margin_loss(1-d)",
    call=lambda m, x, **kw: _F(m).multilabel_margin_loss(x, m.tensor([2, 0, -1, 3]), **kw),
    shapes=(((4,),),), kwargs=_RED, torch_gradgrad=False, tags=("nn", "loss"))
_nn("multi_margin_loss",
    call=lambda m, x, **kw: _F(m).multi_margin_loss(x, m.tensor([3, 0, 2]), **kw),
    shapes=(((3, 4),),), domain="small",
    kwargs=_RED + ({"p": 2}, {"margin": 0.5, "p": 2, "reduction": "sum"}),
    torch_gradgrad=False, tags=("nn", "loss"))
_nn("multi_margin_loss(weight)",
    call=lambda m, x, w, **kw: _F(m).multi_margin_loss(x, m.tensor([3, 0, 2]), weight=w, **kw),
    shapes=(((3, 4), (4,)),), domain=("small", "positive"), kwargs=({}, {"p": 2}),
    diff=(True, False), torch_gradgrad=False, tags=("nn", "loss"))
_nn("cosine_embedding_loss",
    call=lambda m, a, b, **kw: _F(m).cosine_embedding_loss(a, b, _sign(m, (4,)).to(a.dtype),
                                                           **kw),
    shapes=(((4, 5), (4, 5)),), kwargs=_RED + ({"margin": -0.5},), tags=("nn", "loss"))
_nn("cosine_embedding_loss(1-d)",
    call=lambda m, a, b, **kw: _F(m).cosine_embedding_loss(a, b, m.tensor(-1.0).to(a.dtype),
                                                           **kw),
    shapes=(((5,), (5,)),), kwargs=({"margin": -0.9},), tags=("nn", "loss"))
_nn("triplet_margin_loss", call=_fn("triplet_margin_loss"), shapes=(((4, 5),) * 3,),
    kwargs=_RED + ({"margin": 2.0, "p": 1.0}, {"swap": True, "margin": 3.0}),
    tags=("nn", "loss"))
_nn("triplet_margin_with_distance_loss", call=_fn("triplet_margin_with_distance_loss"),
    shapes=(((4, 5),) * 3,), kwargs=_RED + ({"swap": True, "margin": 3.0},), tags=("nn", "loss"))
_nn("triplet_margin_with_distance_loss(cosine)",
    call=lambda m, a, p, n, **kw: _F(m).triplet_margin_with_distance_loss(
        a, p, n, distance_function=lambda x, y: 1.0 - _F(m).cosine_similarity(x, y), margin=1.5,
        **kw),
    shapes=(((4, 5),) * 3,), kwargs=({}, {"swap": True}), tags=("nn", "loss"))
_nn("poisson_nll_loss", call=_fn("poisson_nll_loss"), shapes=(((3, 4), (3, 4)),),
    domain=("real", "positive"), kwargs=_RED, tags=("nn", "loss"))
_nn("poisson_nll_loss(rate)",
    call=lambda m, x, y, **kw: _F(m).poisson_nll_loss(x, y * 2, log_input=False, **kw),
    shapes=(((3, 4), (3, 4)),), domain="positive",
    kwargs=({}, {"full": True}, {"full": True, "reduction": "none"}), tags=("nn", "loss"))
_nn("gaussian_nll_loss", call=_fn("gaussian_nll_loss"),
    shapes=(((3, 4), (3, 4), (3, 4)), ((3, 4), (3, 4), (3,)), ((3, 4), (3, 4), (3, 1))),
    domain=("real", "real", "positive"), kwargs=_RED + ({"full": True},), tags=("nn", "loss"))
