"""The layers added for PyTorch parity, each against the same torch layer: state_dict layout,
repr, outputs and gradients in float64 (weights copied from torch), and float32 outputs."""

from __future__ import annotations

import math

import numpy as np
import pytest
from nn_module_check import compare, load_from_torch, same_repr

import chainrule as cr
import chainrule.nn as nn

torch = pytest.importorskip("torch")

RNG = np.random.default_rng(0)


def _x(*shape, lo=-2.0, hi=2.0):
    return RNG.uniform(lo, hi, shape)


def _labels(high, *shape):
    return RNG.integers(0, high, shape)


def _signs(*shape):
    return np.where(RNG.random(shape) < 0.5, -1.0, 1.0)


# name, constructor (called with the nn module: cr.nn or torch.nn), inputs
LAYERS = [
    ("Threshold", lambda m: m.Threshold(0.3, -2.0), lambda: [_x(3, 4)]),
    ("Hardshrink", lambda m: m.Hardshrink(0.7), lambda: [_x(3, 4)]),
    ("Softshrink", lambda m: m.Softshrink(), lambda: [_x(3, 4)]),
    ("GLU", lambda m: m.GLU(1), lambda: [_x(2, 6, 3)]),
    ("PReLU", lambda m: m.PReLU(), lambda: [_x(3, 4)]),
    ("PReLU(channels)", lambda m: m.PReLU(3, init=0.1), lambda: [_x(2, 3, 4)]),
    ("RReLU(eval)", lambda m: m.RReLU(0.1, 0.4).eval(), lambda: [_x(3, 4)]),
    ("Softmax2d", lambda m: m.Softmax2d(), lambda: [_x(2, 3, 4, 2)]),
    ("Hardtanh", lambda m: m.Hardtanh(-0.5, 1.5), lambda: [_x(3, 4)]),
    ("ReLU6", lambda m: m.ReLU6(), lambda: [_x(3, 4, lo=-3, hi=9)]),
    ("CELU", lambda m: m.CELU(2.0), lambda: [_x(3, 4)]),
    ("LogSigmoid", lambda m: m.LogSigmoid(), lambda: [_x(3, 4)]),
    ("Softmin", lambda m: m.Softmin(1), lambda: [_x(3, 4)]),
    ("Identity", lambda m: m.Identity(3, unused=True), lambda: [_x(3, 4)]),
    ("Unflatten", lambda m: m.Unflatten(1, (2, 3)), lambda: [_x(4, 6)]),
    ("Bilinear", lambda m: m.Bilinear(3, 4, 5), lambda: [_x(2, 3), _x(2, 4)]),
    ("Conv3d", lambda m: m.Conv3d(2, 4, (2, 3, 2), stride=(1, 2, 1), padding=1, groups=2),
     lambda: [_x(2, 2, 4, 5, 4)]),
    ("Conv3d(reflect)", lambda m: m.Conv3d(2, 3, 3, padding=1, padding_mode="reflect",
                                           bias=False), lambda: [_x(1, 2, 4, 4, 4)]),
    ("ConvTranspose1d", lambda m: m.ConvTranspose1d(2, 4, 3, stride=2, output_padding=1),
     lambda: [_x(2, 2, 5)]),
    ("ConvTranspose3d", lambda m: m.ConvTranspose3d(4, 2, (2, 3, 2), stride=2, padding=1,
                                                    groups=2), lambda: [_x(1, 4, 3, 3, 2)]),
    ("MaxPool1d", lambda m: m.MaxPool1d(3, 2, padding=1), lambda: [_x(2, 3, 9)]),
    ("MaxPool3d", lambda m: m.MaxPool3d(2, ceil_mode=True), lambda: [_x(2, 2, 5, 4, 5)]),
    ("AvgPool1d", lambda m: m.AvgPool1d(3, 2, 1, count_include_pad=False),
     lambda: [_x(2, 3, 9)]),
    ("AvgPool3d", lambda m: m.AvgPool3d(3, 2, 1), lambda: [_x(2, 2, 5, 4, 5)]),
    ("AdaptiveAvgPool3d", lambda m: m.AdaptiveAvgPool3d((2, 3, None)),
     lambda: [_x(1, 2, 5, 4, 3)]),
    ("AdaptiveMaxPool1d", lambda m: m.AdaptiveMaxPool1d(4), lambda: [_x(2, 3, 9)]),
    ("AdaptiveMaxPool2d", lambda m: m.AdaptiveMaxPool2d((3, 2), return_indices=True),
     lambda: [_x(2, 3, 7, 5)]),
    ("AdaptiveMaxPool3d", lambda m: m.AdaptiveMaxPool3d(2), lambda: [_x(1, 2, 5, 4, 3)]),
    ("LPPool1d", lambda m: m.LPPool1d(2, 3, 2), lambda: [_x(2, 3, 9, lo=0.2)]),
    ("LPPool2d", lambda m: m.LPPool2d(3.0, 2), lambda: [_x(2, 3, 4, 6, lo=0.2)]),
    ("LPPool3d", lambda m: m.LPPool3d(1.5, 2, ceil_mode=True), lambda: [_x(1, 2, 5, 4, 3,
                                                                           lo=0.2)]),
    ("InstanceNorm1d", lambda m: m.InstanceNorm1d(3), lambda: [_x(2, 3, 6)]),
    ("InstanceNorm2d(affine)", lambda m: m.InstanceNorm2d(3, affine=True),
     lambda: [_x(2, 3, 4, 5)]),
    ("InstanceNorm3d(stats)", lambda m: m.InstanceNorm3d(2, track_running_stats=True),
     lambda: [_x(2, 2, 3, 2, 3)]),
    ("InstanceNorm1d(unbatched)", lambda m: m.InstanceNorm1d(3, affine=True),
     lambda: [_x(3, 6)]),
    ("RMSNorm", lambda m: m.RMSNorm(4), lambda: [_x(2, 3, 4)]),
    ("RMSNorm(2d, eps)", lambda m: m.RMSNorm((3, 4), eps=1e-3, elementwise_affine=False),
     lambda: [_x(2, 3, 4)]),
    ("LocalResponseNorm", lambda m: m.LocalResponseNorm(3, 0.2, 0.6, 2.0),
     lambda: [_x(2, 5, 3, 3)]),
    ("GroupNorm", lambda m: m.GroupNorm(2, 4), lambda: [_x(2, 4, 3)]),
    ("SyncBatchNorm", lambda m: m.SyncBatchNorm(3), lambda: [_x(4, 3, 2)]),
    ("ZeroPad1d", lambda m: m.ZeroPad1d((1, 2)), lambda: [_x(2, 3, 4)]),
    ("ZeroPad2d", lambda m: m.ZeroPad2d(2), lambda: [_x(2, 3, 4)]),
    ("ZeroPad3d", lambda m: m.ZeroPad3d((1, 0, 2, 1, 0, 1)), lambda: [_x(1, 2, 3, 4)]),
    ("ConstantPad1d", lambda m: m.ConstantPad1d(2, 3.5), lambda: [_x(2, 3, 4)]),
    ("ConstantPad2d", lambda m: m.ConstantPad2d((1, 0, -1, 2), -1.0), lambda: [_x(2, 3, 4)]),
    ("ConstantPad3d", lambda m: m.ConstantPad3d(1, 0.5), lambda: [_x(1, 2, 3, 4)]),
    ("ReflectionPad1d", lambda m: m.ReflectionPad1d((2, 1)), lambda: [_x(2, 3, 4)]),
    ("ReflectionPad2d", lambda m: m.ReflectionPad2d(2), lambda: [_x(1, 2, 3, 4)]),
    ("ReflectionPad3d", lambda m: m.ReflectionPad3d(1), lambda: [_x(1, 2, 3, 3, 4)]),
    ("ReplicationPad1d", lambda m: m.ReplicationPad1d(3), lambda: [_x(2, 3, 4)]),
    ("ReplicationPad2d", lambda m: m.ReplicationPad2d((1, 2, 0, 3)), lambda: [_x(1, 2, 3, 4)]),
    ("ReplicationPad3d", lambda m: m.ReplicationPad3d(2), lambda: [_x(1, 2, 3, 3, 4)]),
    ("CircularPad1d", lambda m: m.CircularPad1d((2, 1)), lambda: [_x(2, 3, 4)]),
    ("CircularPad2d", lambda m: m.CircularPad2d(1), lambda: [_x(1, 2, 3, 4)]),
    ("CircularPad3d", lambda m: m.CircularPad3d((1, 1, 0, 2, 1, 0)), lambda: [_x(1, 2, 3, 3, 4)]),
    ("Upsample(nearest)", lambda m: m.Upsample(scale_factor=2), lambda: [_x(1, 2, 3, 4)]),
    ("Upsample(bicubic)", lambda m: m.Upsample(size=(5, 7), mode="bicubic",
                                               align_corners=True), lambda: [_x(1, 2, 3, 4)]),
    ("Upsample(trilinear)", lambda m: m.Upsample(scale_factor=(1.5, 2.0, 1.0),
                                                 mode="trilinear"), lambda: [_x(1, 2, 2, 3, 4)]),
    ("UpsamplingNearest2d", lambda m: m.UpsamplingNearest2d(size=5), lambda: [_x(1, 2, 3, 4)]),
    ("UpsamplingBilinear2d", lambda m: m.UpsamplingBilinear2d(scale_factor=2),
     lambda: [_x(1, 2, 3, 4)]),
    ("PixelShuffle", lambda m: m.PixelShuffle(2), lambda: [_x(2, 8, 3, 2)]),
    ("PixelUnshuffle", lambda m: m.PixelUnshuffle(3), lambda: [_x(1, 2, 6, 3)]),
    ("ChannelShuffle", lambda m: m.ChannelShuffle(2), lambda: [_x(2, 4, 3, 2)]),
    ("Fold", lambda m: m.Fold((4, 5), 2, stride=(2, 1)), lambda: [_x(2, 12, 8)]),
    ("Unfold", lambda m: m.Unfold(2, dilation=(1, 2), padding=1), lambda: [_x(2, 3, 4, 5)]),
    ("CosineSimilarity", lambda m: m.CosineSimilarity(0), lambda: [_x(4, 3), _x(4, 3)]),
    ("PairwiseDistance", lambda m: m.PairwiseDistance(1.5, keepdim=True),
     lambda: [_x(4, 3), _x(4, 3)]),
    ("EmbeddingBag", lambda m: m.EmbeddingBag(10, 3, mode="sum", padding_idx=2),
     lambda: [np.array([[1, 2, 4], [4, 9, 2]])]),
    ("EmbeddingBag(max)", lambda m: m.EmbeddingBag(10, 3, mode="max"),
     lambda: [np.array([1, 2, 4, 5, 4, 3, 9]), np.array([0, 3, 3])]),
    ("EmbeddingBag(mean)", lambda m: m.EmbeddingBag(10, 3, include_last_offset=True),
     lambda: [np.array([1, 2, 4, 5, 4, 3, 9]), np.array([0, 3, 3, 7])]),
    ("MarginRankingLoss", lambda m: m.MarginRankingLoss(0.3),
     lambda: [_x(5), _x(5), _signs(5)]),
    ("HingeEmbeddingLoss", lambda m: m.HingeEmbeddingLoss(reduction="sum"),
     lambda: [_x(3, 4), _signs(3, 4)]),
    ("MultiLabelMarginLoss", lambda m: m.MultiLabelMarginLoss(),
     lambda: [_x(2, 4), np.array([[3, 0, -1, 1], [1, 2, 3, 0]])]),
    ("SoftMarginLoss", lambda m: m.SoftMarginLoss(reduction="none"),
     lambda: [_x(3, 4), _signs(3, 4)]),
    ("MultiLabelSoftMarginLoss", lambda m: m.MultiLabelSoftMarginLoss(),
     lambda: [_x(3, 4), (RNG.random((3, 4)) < 0.5).astype(np.float64)]),
    ("CosineEmbeddingLoss", lambda m: m.CosineEmbeddingLoss(0.1),
     lambda: [_x(4, 5), _x(4, 5), _signs(4)]),
    ("MultiMarginLoss", lambda m: m.MultiMarginLoss(p=2, margin=0.5),
     lambda: [_x(3, 4), _labels(4, 3)]),
    ("TripletMarginLoss", lambda m: m.TripletMarginLoss(2.0, p=1.5, swap=True),
     lambda: [_x(4, 5), _x(4, 5), _x(4, 5)]),
    ("TripletMarginWithDistanceLoss", lambda m: m.TripletMarginWithDistanceLoss(margin=2.0),
     lambda: [_x(4, 5), _x(4, 5), _x(4, 5)]),
    ("KLDivLoss", lambda m: m.KLDivLoss(reduction="batchmean", log_target=True),
     lambda: [_x(3, 4), _x(3, 4)]),
    ("PoissonNLLLoss", lambda m: m.PoissonNLLLoss(log_input=False, full=True),
     lambda: [_x(3, 4, lo=0.1), _x(3, 4, lo=0.0, hi=4.0)]),
    ("GaussianNLLLoss", lambda m: m.GaussianNLLLoss(full=True),
     lambda: [_x(3, 4), _x(3, 4), _x(3, 1, lo=0.1)]),
    ("HuberLoss", lambda m: m.HuberLoss(delta=0.5), lambda: [_x(3, 4), _x(3, 4)]),
    ("NLLLoss2d", lambda m: m.NLLLoss2d(), lambda: [_x(2, 3, 2, 2), _labels(3, 2, 2, 2)]),
    ("CTCLoss", lambda m: m.CTCLoss(blank=1),
     lambda: [np.log(RNG.dirichlet(np.ones(4), (6, 2))), np.array([[0, 2, 2], [3, 0, 0]]),
              np.array([6, 5]), np.array([3, 2])]),
    ("AdaptiveLogSoftmaxWithLoss", lambda m: m.AdaptiveLogSoftmaxWithLoss(6, 12, [3, 7]),
     lambda: [_x(5, 6), np.array([0, 4, 11, 2, 8])]),
    ("LinearCrossEntropyLoss", lambda m: m.LinearCrossEntropyLoss(5, 3, bias=True,
                                                                  label_smoothing=0.1),
     lambda: [_x(4, 5), _labels(3, 4)]),
    ("DataParallel", lambda m: m.DataParallel(m.Linear(3, 2)), lambda: [_x(4, 3)]),
]


def _pair(ctor):
    torch.manual_seed(0)
    t_mod = ctor(torch.nn).double()
    c_mod = ctor(nn).double()
    load_from_torch(c_mod, t_mod)
    return c_mod, t_mod


@pytest.mark.parametrize("name,ctor,inputs", LAYERS, ids=[n for n, _, _ in LAYERS])
def test_layer_matches_torch(name, ctor, inputs):
    c_mod, t_mod = _pair(ctor)
    same_repr(c_mod, t_mod)
    args = inputs()
    diff = [a.dtype.kind == "f" and name not in ("CTCLoss",) or (name == "CTCLoss" and i == 0)
            for i, a in enumerate(args)]
    if "Loss" in name:  # targets carry no gradient in torch's losses
        diff = [i == 0 or (name in ("MarginRankingLoss", "CosineEmbeddingLoss",
                                    "TripletMarginLoss", "TripletMarginWithDistanceLoss",
                                    "GaussianNLLLoss") and i < len(args) - 1)
                or (name.startswith("Triplet") and i < 3) for i in range(len(args))]
        diff = [d and args[i].dtype.kind == "f" for i, d in enumerate(diff)]
    compare(c_mod, t_mod, args, diff=diff)


@pytest.mark.parametrize("name,ctor,inputs", [p for p in LAYERS if "Loss" not in p[0]
                                              and not p[0].startswith("EmbeddingBag")],
                         ids=[n for n, _, _ in LAYERS if "Loss" not in n
                              and not n.startswith("EmbeddingBag")])
def test_layer_float32_matches_torch(name, ctor, inputs):
    torch.manual_seed(0)
    t_mod = ctor(torch.nn)
    c_mod = ctor(nn)
    load_from_torch(c_mod, t_mod)
    args = [a.astype(np.float32) if a.dtype.kind == "f" else a for a in inputs()]
    c_out = c_mod(*[cr.tensor(a) for a in args])
    t_out = t_mod(*[torch.tensor(a) for a in args])
    c_out = c_out if isinstance(c_out, tuple) else (c_out,)
    t_out = t_out if isinstance(t_out, tuple) else (t_out,)
    for c, t in zip(c_out, t_out):
        assert c.dtype == getattr(cr, str(t.dtype).split(".")[-1])
        np.testing.assert_allclose(c.detach().numpy(), t.detach().numpy(), rtol=2e-5, atol=2e-6)


def test_instance_norm_running_stats_follow_torch():
    c_mod, t_mod = _pair(lambda m: m.InstanceNorm2d(3, affine=True, track_running_stats=True,
                                                    momentum=0.3))
    for _ in range(3):
        x = _x(2, 3, 4, 4)
        c_mod(cr.tensor(x))
        t_mod(torch.tensor(x))
    for k, v in t_mod.state_dict().items():
        np.testing.assert_allclose(c_mod.state_dict()[k].numpy(), v.numpy(), rtol=1e-12,
                                   err_msg=k)
    c_mod.eval()
    t_mod.eval()
    compare(c_mod, t_mod, [_x(2, 3, 4, 4)])


def test_fractional_max_pool_modules_with_fixed_samples():
    for nd in (2, 3):
        samples = RNG.random((2, 3, nd))
        cls = f"FractionalMaxPool{nd}d"
        t_mod = getattr(torch.nn, cls)(2, output_ratio=0.5,
                                      _random_samples=torch.tensor(samples))
        c_mod = getattr(nn, cls)(2, output_ratio=0.5, _random_samples=cr.tensor(samples))
        compare(c_mod, t_mod, [_x(2, 3, *([6] * nd))])


def test_max_unpool_modules_invert_max_pool():
    for nd in (1, 2, 3):
        x = _x(2, 2, *([4] * nd))
        t_pool = getattr(torch.nn, f"MaxPool{nd}d")(2, return_indices=True)
        c_pool = getattr(nn, f"MaxPool{nd}d")(2, return_indices=True)
        t_y, t_i = t_pool(torch.tensor(x))
        c_y, c_i = c_pool(cr.tensor(x))
        np.testing.assert_array_equal(c_i.numpy(), t_i.numpy())
        t_un = getattr(torch.nn, f"MaxUnpool{nd}d")(2)
        c_un = getattr(nn, f"MaxUnpool{nd}d")(2)
        same_repr(c_un, t_un)
        compare(c_un, t_un, [t_y.numpy(), t_i.numpy()], diff=[True, False])


def test_rrelu_training_draws_one_slope_per_nonpositive_element():
    x = cr.tensor([[-1.0, 2.0, -3.0, 0.0, 4.0]], requires_grad=True)
    y = nn.RReLU(0.1, 0.3)(x)
    slopes = (y / cr.where(x == 0, cr.ones_like(x), x)).detach().numpy()[0]
    assert slopes[1] == 1.0 and slopes[4] == 1.0
    assert 0.1 <= slopes[0] <= 0.3 and 0.1 <= slopes[2] <= 0.3
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy()[0, [0, 2]], slopes[[0, 2]], rtol=1e-6)


def test_alpha_dropout_keeps_zero_mean_unit_variance():
    cr.manual_seed(0)
    x = cr.randn(200000, dtype=cr.float64)
    for fn in (nn.AlphaDropout(0.3), nn.FeatureAlphaDropout(0.3)):
        y = fn(x.reshape(2000, 100, 1)).reshape(-1)
        assert abs(float(y.mean())) < 0.02 and abs(float(y.std()) - 1) < 0.03
        fn.eval()
        assert fn(x) is x


def test_gumbel_softmax_is_a_distribution_and_hard_is_one_hot():
    cr.manual_seed(0)
    logits = cr.tensor(np.log([[0.7, 0.2, 0.1]] * 4000), requires_grad=True)
    soft = nn.functional.gumbel_softmax(logits, tau=0.5)
    np.testing.assert_allclose(soft.sum(-1).detach().numpy(), 1.0, rtol=1e-6)
    hard = nn.functional.gumbel_softmax(logits, tau=0.5, hard=True)
    h = hard.detach().numpy()
    assert set(np.unique(h)) == {0.0, 1.0} and (h.sum(-1) == 1).all()
    np.testing.assert_allclose(h.mean(0), [0.7, 0.2, 0.1], atol=0.03)
    (hard * cr.tensor([1.0, 2.0, 3.0])).sum().backward()
    assert logits.grad is not None and np.abs(logits.grad.numpy()).sum() > 0


def test_ctc_loss_concatenated_targets_zero_infinity_and_reductions():
    lp = np.log(RNG.dirichlet(np.ones(5), (7, 3)))
    targets = [np.array([1, 2, 2]), np.array([3]), np.array([4, 1, 4, 1, 4, 1])]
    flat = np.concatenate(targets)
    lengths = [len(t) for t in targets]
    for reduction in ("none", "sum", "mean"):
        for zero_inf in (False, True):
            tl = torch.tensor(lp, requires_grad=True)
            cl = cr.tensor(lp, requires_grad=True)
            t = torch.nn.functional.ctc_loss(tl, torch.tensor(flat), [7, 6, 5], lengths,
                                             reduction=reduction, zero_infinity=zero_inf)
            c = nn.functional.ctc_loss(cl, cr.tensor(flat), [7, 6, 5], lengths,
                                       reduction=reduction, zero_infinity=zero_inf)
            np.testing.assert_allclose(c.detach().numpy(), t.detach().numpy(), rtol=1e-10)
            if not zero_inf:  # the third sample is infeasible: inf loss, nan gradient
                continue
            t.sum().backward()
            c.sum().backward()
            np.testing.assert_allclose(cl.grad.numpy(), tl.grad.numpy(), rtol=1e-8,
                                       atol=1e-12)


def test_ctc_loss_gradcheck_and_no_double_backward():
    lp = cr.tensor(np.log(RNG.dirichlet(np.ones(4), (5, 2))), requires_grad=True)

    def f(x):
        return nn.functional.ctc_loss(x.log_softmax(-1), cr.tensor([[1, 2], [3, 3]]), [5, 4],
                                      [2, 2])

    assert cr.autograd.gradcheck(f, (lp,))
    (g,) = cr.autograd.grad(f(lp), (lp,), create_graph=True)
    with pytest.raises(RuntimeError, match="differentiate twice"):
        g.sum().backward()


@pytest.mark.parametrize("bad,err", [
    (lambda m, F: F.glu(m.ones(3, 5)), RuntimeError),
    (lambda m, F: F.softshrink(m.ones(3), -1.0), RuntimeError),
    (lambda m, F: F.prelu(m.ones(2, 3), m.ones(2)), RuntimeError),
    (lambda m, F: F.interpolate(m.ones(1, 1, 4), scale_factor=2, mode="bilinear"),
     NotImplementedError),
    (lambda m, F: F.interpolate(m.ones(1, 1, 4), size=3, scale_factor=2), ValueError),
    (lambda m, F: F.interpolate(m.ones(1, 1, 4), scale_factor=2, align_corners=True),
     ValueError),
    (lambda m, F: F.pixel_shuffle(m.ones(1, 3, 2, 2), 2), RuntimeError),
    (lambda m, F: F.channel_shuffle(m.ones(1, 5, 2), 2), RuntimeError),
    (lambda m, F: F.max_pool3d(m.ones(1, 1, 4, 4, 4), 2, padding=2), RuntimeError),
    (lambda m, F: F.multi_margin_loss(m.ones(2, 3), m.tensor([0, 1]), p=3), ValueError),
    (lambda m, F: F.triplet_margin_loss(m.ones(2, 3), m.ones(2, 3), m.ones(2, 3), margin=0),
     ValueError),
    (lambda m, F: F.embedding_bag(m.tensor([1, 2]), m.ones(4, 2), m.tensor([0]), mode="max",
                                  per_sample_weights=m.ones(2)), NotImplementedError),
    (lambda m, F: F.grid_sample(m.ones(1, 1, 3, 3), m.ones(1, 2, 2, 2), mode="box"),
     ValueError),
    (lambda m, F: F.gaussian_nll_loss(m.ones(2, 3), m.ones(2, 3), m.ones(4)), ValueError),
    (lambda m, F: F.rms_norm(m.ones(2, 3), (4,)), RuntimeError),
    (lambda m, F: F.ctc_loss(m.ones(3, 1, 4), m.tensor([[1]]), [4], [1]), RuntimeError),
    (lambda m, F: F.fractional_max_pool2d(m.ones(1, 1, 4, 4), 2), ValueError),
    (lambda m, F: F.max_unpool2d(m.ones(1, 1, 2, 2), m.zeros(1, 1, 2, 2, dtype=m.int64), 2,
                                 output_size=(9, 9)), ValueError),
    (lambda m, F: F.affine_grid(m.ones(1, 2, 3), [1, 1, 4], False), NotImplementedError),
])
def test_bad_calls_raise_torch_error_types(bad, err):
    import torch.nn.functional as TF

    with pytest.raises(err):
        bad(torch, TF)
    with pytest.raises(err):
        bad(cr, nn.functional)


@pytest.mark.parametrize("x_dtype, w_dtype", [("float32", "float64"), ("float64", "float32"),
                                              ("float32", None)])
def test_rms_norm_returns_the_inputs_dtype_and_each_gradient_its_tensors(x_dtype, w_dtype):
    torch = pytest.importorskip("torch")
    import warnings

    rng = np.random.default_rng(0)
    x_np = rng.standard_normal((2, 4)).astype(x_dtype)
    w_np = rng.standard_normal(4).astype(w_dtype) if w_dtype else None
    results = []
    for m in (cr, torch):
        x = m.tensor(x_np, requires_grad=True)
        w = m.tensor(w_np, requires_grad=True) if w_dtype else None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch: "Mismatch dtype between input and weight"
            y = m.nn.functional.rms_norm(x, (4,), w)
        (y * y).sum().backward()
        results.append((y, x.grad, w.grad if w_dtype else None))
    (y, gx, gw), (ty, tgx, tgw) = results
    assert str(y.dtype)[-7:] == str(ty.dtype)[-7:] == x_dtype
    np.testing.assert_allclose(y.detach().numpy(), ty.detach().numpy(), rtol=1e-5, atol=1e-6)
    assert str(gx.dtype)[-7:] == x_dtype
    np.testing.assert_allclose(gx.numpy(), tgx.numpy(), rtol=1e-4, atol=1e-5)
    if w_dtype:
        assert str(gw.dtype)[-7:] == str(tgw.dtype)[-7:] == w_dtype
        np.testing.assert_allclose(gw.numpy(), tgw.numpy(), rtol=1e-4, atol=1e-5)


def test_rms_norm_refuses_integer_input_as_torch():
    torch = pytest.importorskip("torch")
    with pytest.raises(RuntimeError) as theirs:
        torch.nn.functional.rms_norm(torch.ones(2, 4, dtype=torch.int64), (4,))
    with pytest.raises(RuntimeError) as ours:
        cr.nn.functional.rms_norm(cr.ones(2, 4, dtype=cr.int64), (4,))
    assert str(ours.value) == str(theirs.value)


@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
def test_embedding_bag_empty_bag_passes_no_gradient_even_a_nan_one(mode):
    """An empty bag's output is 0 and independent of the weight: an inf/NaN gradient arriving
    at it (here 1/0 then cosh) must not reach any weight row (fuzzer seed 150055247)."""
    torch = pytest.importorskip("torch")
    import warnings

    w_np = np.random.default_rng(0).standard_normal((10, 3)).astype(np.float32)
    grads = []
    for m in (cr, torch):
        w = m.tensor(w_np, requires_grad=True)
        y = m.nn.functional.embedding_bag(m.tensor([1, 2, 4, 5, 4, 3, 2, 9]), w,
                                          m.tensor([0, 3, 3, 6]), mode=mode)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # 1/0
            y.reciprocal().cosh().sum().backward()
        grads.append(w.grad.numpy())
    assert not np.isnan(grads[0]).any()
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("loss", ["nll_loss", "cross_entropy_smoothed"])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("weighted", [False, True])
def test_ignored_rows_pass_no_nan_either_way(loss, reduction, weighted):
    """An ignored row's -inf input and a NaN gradient arriving at it stay out of the loss and
    of every gradient, as torch's (its rows are selected out, not multiplied by 0)."""
    torch = pytest.importorskip("torch")
    import warnings

    x_np = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    x_np[1, 0] = x_np[1, 2] = -np.inf
    w_np = np.array([1.0, 0.5, 2.0, 0.25], np.float32)
    got = []
    for m in (cr, torch):
        x = m.tensor(x_np, requires_grad=True)
        w = m.tensor(w_np) if weighted else None
        target = m.tensor([1, -100, 2])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if loss == "nll_loss":
                out = m.nn.functional.nll_loss(x, target, weight=w, reduction=reduction)
            else:
                out = m.nn.functional.cross_entropy(x, target, weight=w, reduction=reduction,
                                                    label_smoothing=0.1)
            g = m.tensor([1.0, float("nan"), 1.0]) if reduction == "none" else m.ones_like(out)
            out.backward(g)
        got.append((out.detach().numpy(), x.grad.numpy()))
    (ours, ours_g), (theirs, theirs_g) = got
    assert not np.isnan(ours).any() and not np.isnan(ours_g).any()
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ours_g, theirs_g, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["mish", "hardswish"])
def test_activation_gradients_with_infinite_upstream_match_torch(name):
    """One gate each, with torch's backward formula: inf/NaN upstream gradients give torch's
    values (a composite of products made 0·inf = NaN where torch gives inf or 0)."""
    torch = pytest.importorskip("torch")
    x_np = np.array([-1.0, 0.0, 2.0, -3.0, 3.0, 25.0, -30.0, np.nan, 1e-3], np.float32)
    g_np = np.array([np.nan, np.inf, 1.0, -np.inf, np.inf, 1.0, 1.0, 1.0, 1.0], np.float32)
    got = []
    for m in (cr, torch):
        x = m.tensor(x_np, requires_grad=True)
        y = getattr(m.nn.functional, name)(x)
        y.backward(m.tensor(g_np))
        got.append((y.detach().numpy(), x.grad.numpy()))
    np.testing.assert_allclose(got[0][0], got[1][0], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(got[0][1], got[1][1], rtol=1e-6, atol=1e-7)
    x = cr.tensor(np.linspace(-5, 5, 12) + 0.1, dtype=cr.float64, requires_grad=True)
    fn = getattr(cr.nn.functional, name)
    assert cr.autograd.gradcheck(fn, (x,)) and cr.autograd.gradgradcheck(fn, (x,))


@pytest.mark.parametrize("with_loops", [True, False])
@pytest.mark.parametrize("kw", [{"kernel_size": 2}, {"kernel_size": 3, "stride": 1}])
def test_max_pool_sends_a_nan_or_inf_gradient_to_the_maximum_only(kw, with_loops, monkeypatch):
    """As torch: each window's gradient reaches its maximum alone (the NumPy kernel multiplied
    it by a one-hot mask, which spread NaN over the window)."""
    torch = pytest.importorskip("torch")
    from chainrule.kernels import cpu as cpu_kernels

    if not with_loops:
        monkeypatch.setattr(cpu_kernels, "loops", None)
    x_np = np.random.default_rng(0).standard_normal((1, 2, 5, 5)).astype(np.float32)
    got = []
    for m in (cr, torch):
        x = m.tensor(x_np, requires_grad=True)
        y = m.nn.functional.max_pool2d(x, **kw)
        g = np.ones(tuple(y.shape), np.float32)
        g[0, 0, 0, 0], g[0, 1, 1, 1] = np.nan, np.inf
        y.backward(m.tensor(g))
        got.append(x.grad.numpy())
    np.testing.assert_array_equal(np.isnan(got[0]), np.isnan(got[1]))
    np.testing.assert_allclose(got[0], got[1])


@pytest.mark.parametrize("name, shape, kw", [
    ("adaptive_avg_pool2d", (1, 2, 5, 5), {"output_size": 2}),
    ("adaptive_avg_pool2d", (1, 1, 7, 5), {"output_size": (3, 2)}),
    ("adaptive_avg_pool3d", (1, 1, 5, 5, 5), {"output_size": 2}),
    ("avg_pool3d", (1, 1, 5, 5, 5), {"kernel_size": 3, "stride": 2, "padding": 1}),
])
def test_average_pooling_keeps_an_inf_in_its_own_windows(name, shape, kw):
    """Windows are taken, not multiplied by 0-weights: an inf input makes only its windows inf,
    and a NaN gradient reaches only the pixels of its window (as torch's)."""
    torch = pytest.importorskip("torch")
    import warnings

    x_np = np.arange(math.prod(shape), dtype=np.float32).reshape(shape)
    x_np.flat[0] = np.inf
    got = []
    for m in (cr, torch):
        x = m.tensor(x_np, requires_grad=True)
        y = getattr(m.nn.functional, name)(x, **kw)
        g = np.ones(tuple(y.shape), np.float32)
        g.flat[-1] = np.nan
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            y.backward(m.tensor(g))
        got.append((y.detach().numpy(), x.grad.numpy()))
    np.testing.assert_allclose(got[0][0], got[1][0], rtol=1e-6)
    np.testing.assert_array_equal(np.isnan(got[0][1]), np.isnan(got[1][1]))
    np.testing.assert_allclose(got[0][1], got[1][1], rtol=1e-6)
