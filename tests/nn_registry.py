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


# ---- resampling and rearranging -----------------------------------------------------------------
_X3, _X4, _X5 = (2, 3, 5), (2, 2, 4, 5), (1, 2, 3, 4, 3)
for _mode, _shape in (("nearest", _X4), ("nearest-exact", _X4), ("area", _X4), ("linear", _X3),
                      ("bilinear", _X4), ("bicubic", _X4), ("trilinear", _X5), ("nearest", _X5),
                      ("area", _X5), ("nearest", _X3)):
    _sweep = ({"size": (7,) * (len(_shape) - 2)}, {"scale_factor": 1.6},
              {"scale_factor": 0.7, "recompute_scale_factor": True})
    if _mode in ("linear", "bilinear", "bicubic", "trilinear"):
        _sweep += ({"size": (3,) * (len(_shape) - 2), "align_corners": True},
                   {"scale_factor": 2.0, "align_corners": False})
    _nn(f"interpolate({_mode},{len(_shape) - 2}d)",
        call=lambda m, x, _m=_mode, **kw: _F(m).interpolate(x, mode=_m, **kw),
        shapes=((_shape,),), kwargs=_sweep, tags=("nn", "sampling"))
_nn("pixel_shuffle", call=_fn("pixel_shuffle", upscale_factor=2), shapes=(((2, 8, 2, 3),),
                                                                            ((8, 3, 2),)),
    tags=("nn", "sampling"))
_nn("pixel_unshuffle", call=_fn("pixel_unshuffle", downscale_factor=2),
    shapes=(((2, 2, 4, 6),), ((1, 4, 2),)), tags=("nn", "sampling"))
_nn("channel_shuffle", call=_fn("channel_shuffle", groups=3), shapes=(((2, 6, 2, 2),),),
    tags=("nn", "sampling"))
_nn("affine_grid", call=lambda m, t, **kw: _F(m).affine_grid(t, **kw),
    shapes=(((2, 2, 3),),), kwargs=({"size": [2, 1, 3, 4], "align_corners": False},
                                    {"size": [2, 1, 3, 4], "align_corners": True}),
    tags=("nn", "sampling"))
_nn("affine_grid(3d)", call=lambda m, t, **kw: _F(m).affine_grid(t, **kw),
    shapes=(((1, 3, 4),),), kwargs=({"size": [1, 1, 2, 3, 2], "align_corners": False},),
    tags=("nn", "sampling"))
for _mode in ("bilinear", "nearest", "bicubic"):
    for _pad in ("zeros", "border", "reflection"):
        _nn(f"grid_sample({_mode},{_pad})",
            call=lambda m, x, g, _m=_mode, _p=_pad, **kw: _F(m).grid_sample(
                x, g * 0.6, mode=_m, padding_mode=_p, **kw),
            shapes=(((1, 2, 4, 5), (1, 3, 2, 2)),), domain=("real", "small"),
            kwargs=({"align_corners": False}, {"align_corners": True}),
            # the kernel's second derivative in the grid is not implemented by torch
            torch_gradgrad=False, tags=("nn", "sampling"))
_nn("grid_sample(3d)", call=lambda m, x, g, **kw: _F(m).grid_sample(x, g * 0.6, **kw),
    shapes=(((1, 2, 3, 4, 3), (1, 2, 2, 2, 3)),), domain=("real", "small"),
    kwargs=({"align_corners": False}, {"align_corners": True, "padding_mode": "border"}),
    torch_gradgrad=False, tags=("nn", "sampling"))

# ---- convolution and pooling --------------------------------------------------------------------
_nn("conv3d", call=_fn("conv3d"), shapes=(((2, 2, 4, 4, 3), (4, 1, 2, 3, 2), (4,)),),
    kwargs=({"groups": 2}, {"groups": 2, "stride": (2, 1, 1), "padding": 1,
                            "dilation": (1, 1, 2)}), tags=("nn", "conv"))
_nn("conv3d(same)", call=_fn("conv3d", padding="same"), shapes=(((1, 2, 3, 4, 3),
                                                                 (2, 2, 2, 3, 2)),),
    tags=("nn", "conv"))
_nn("conv_transpose3d", call=_fn("conv_transpose3d"),
    shapes=(((1, 2, 3, 2, 3), (2, 2, 2, 2, 3), (4,)),),
    kwargs=({"groups": 2}, {"groups": 2, "stride": (2, 1, 2), "padding": (1, 0, 1),
                            "output_padding": (1, 0, 1)}), tags=("nn", "conv"))
_nn("conv_tbc", call=_fn("conv_tbc"), shapes=(((5, 2, 3), (3, 3, 4), (4,)),),
    kwargs=({}, {"pad": 1}), tags=("nn", "conv"))
_nn("max_pool3d", call=_fn("max_pool3d"), shapes=(((1, 2, 5, 4, 5),), ((2, 4, 3, 4),)),
    kwargs=({"kernel_size": 2}, {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True},
            {"kernel_size": (2, 1, 2), "dilation": (2, 1, 1)}), tags=("nn", "pool"))
_nn("avg_pool3d", call=_fn("avg_pool3d"), shapes=(((1, 2, 5, 4, 5),),),
    kwargs=({"kernel_size": 2}, {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True,
                                 "count_include_pad": False},
            {"kernel_size": (2, 3, 2), "divisor_override": 5}), tags=("nn", "pool"))
_nn("adaptive_avg_pool3d", call=_fn("adaptive_avg_pool3d"), shapes=(((1, 2, 5, 4, 6),),),
    kwargs=({"output_size": 2}, {"output_size": (3, None, 4)}), tags=("nn", "pool"))
for _nd, _shape in ((1, (2, 3, 7)), (2, (2, 2, 5, 7)), (3, (1, 2, 5, 4, 6))):
    _nn(f"adaptive_max_pool{_nd}d", call=_fn(f"adaptive_max_pool{_nd}d"), shapes=((_shape,),),
        kwargs=({"output_size": 3}, {"output_size": 2, "return_indices": True}),
        tags=("nn", "pool"))
    _nn(f"lp_pool{_nd}d", call=_fn(f"lp_pool{_nd}d"), shapes=((_shape,),), domain="positive",
        kwargs=({"norm_type": 2, "kernel_size": 2}, {"norm_type": 3.0, "kernel_size": 3,
                                                      "stride": 2, "ceil_mode": True}),
        tags=("nn", "pool"))
_nn("fractional_max_pool2d",
    call=lambda m, x, **kw: _F(m).fractional_max_pool2d(
        x, 2, output_size=(3, 4), _random_samples=m.tensor([[[0.3, 0.8], [0.1, 0.5]]],
                                                           dtype=x.dtype), **kw),
    shapes=(((1, 2, 6, 7),),), kwargs=({}, {"return_indices": True}), tags=("nn", "pool"))
_nn("fractional_max_pool3d",
    call=lambda m, x, **kw: _F(m).fractional_max_pool3d(
        x, (2, 2, 1), output_ratio=(0.5, 0.5, 0.5),
        _random_samples=m.tensor([[[0.3, 0.8, 0.4]]], dtype=x.dtype), **kw),
    shapes=(((1, 1, 6, 5, 4),),), tags=("nn", "pool"))


def _unpool(nd: int):
    def call(m, x, **kw):
        pooled, idx = getattr(_F(m), f"max_pool{nd}d")(x.detach() * 1.0, 2, return_indices=True)
        return getattr(_F(m), f"max_unpool{nd}d")(pooled * 0.0 + x.flatten()[:pooled.numel()]
                                                  .reshape(pooled.shape), idx, 2, **kw)
    return call


for _nd, _shape in ((1, (2, 2, 6)), (2, (1, 2, 4, 6)), (3, (1, 1, 4, 4, 2))):
    _nn(f"max_unpool{_nd}d", call=_unpool(_nd), shapes=((_shape,),), tags=("nn", "pool"))

# ---- normalization ------------------------------------------------------------------------------
_nn("instance_norm", call=_fn("instance_norm"), shapes=(((2, 3, 5),), ((2, 2, 3, 3),)),
    tags=("nn", "norm"))
_nn("instance_norm(affine)",
    call=lambda m, x, w, b: _F(m).instance_norm(x, weight=w, bias=b),
    shapes=(((2, 3, 4), (3,), (3,)),), tags=("nn", "norm"))
_nn("rms_norm", call=lambda m, x, w, **kw: _F(m).rms_norm(x, (4,), w, **kw),
    shapes=(((3, 4), (4,)), ((2, 3, 4), (4,))), kwargs=({}, {"eps": 1e-3}), tags=("nn", "norm"))
_nn("rms_norm(2 dims)", call=lambda m, x: _F(m).rms_norm(x, (3, 4)), shapes=(((2, 3, 4),),),
    tags=("nn", "norm"))
_nn("local_response_norm", call=_fn("local_response_norm"),
    shapes=(((2, 5, 4),), ((1, 6, 3, 2),), ((1, 4, 2, 2, 3),)),
    kwargs=({"size": 3}, {"size": 2, "alpha": 0.5, "beta": 0.6, "k": 2.0}), tags=("nn", "norm"))
_nn("embedding_bag",
    call=lambda m, w, **kw: _F(m).embedding_bag(m.tensor([1, 2, 4, 5, 4, 3, 2, 9]), w,
                                                m.tensor([0, 2, 2, 5]), **kw),
    shapes=(((10, 3),),), kwargs=({}, {"mode": "sum"}, {"mode": "max"}, {"padding_idx": 4}),
    torch_gradgrad=False,  # torch: "the derivative for '_embedding_bag_backward' is not
    tags=("nn", "sparse"))  # implemented" (gradgradcheck checks chainrule's)
_nn("embedding_bag(per_sample_weights)",
    call=lambda m, w, p: _F(m).embedding_bag(m.tensor([[1, 2, 4], [4, 3, 2]]), w, mode="sum",
                                             per_sample_weights=p),
    shapes=(((6, 3), (2, 3)),), torch_gradgrad=False,  # torch: not twice differentiable
    tags=("nn", "sparse"))
_nn("linear_cross_entropy",
    call=lambda m, x, w, b, **kw: _F(m).linear_cross_entropy(
        x, w, m.tensor([2, 0, 1, 2]), linear_bias=b, **kw),
    shapes=(((4, 5), (3, 5), (3,)),), kwargs=({}, {"label_smoothing": 0.2},
                                             {"reduction": "none"}), tags=("nn", "loss"))
