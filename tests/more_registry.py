"""Registry entries for the elementwise math, activations, normalizations and losses that the
core registry lacked (issue 14: the layout sweep and the differential fuzzer run every entry,
so gelu, erf and friends get transposed, sliced and expanded inputs too). Appended to
``op_registry.REGISTRY`` like nn_registry's, so every generated test runs on them."""

from __future__ import annotations

import numpy as np
from op_registry import DOMAINS, OpSpec, add

DOMAINS.setdefault("unit", lambda rng, s: rng.uniform(-0.9, 0.9, s))   # inside (-1, 1)
DOMAINS.setdefault("prob", lambda rng, s: rng.uniform(0.1, 0.9, s))    # inside (0, 1)

_SHAPES = (((2, 3),), ((),), ((4,),))


def _top(name: str, **fixed):
    def call(m, *a, **kw):
        return getattr(m, name)(*a, **fixed, **kw)

    call.by_name = name
    return call


def _F(name: str, **fixed):
    def call(m, *a, **kw):
        return getattr(m.nn.functional, name)(*a, **fixed, **kw)

    call.by_name = name
    return call


def _entry(name, call, shapes=_SHAPES, domain="real", tags=("unary",), **kw) -> None:
    add(OpSpec(name, call, None, shapes, domain, tags=tags, **kw))


# ---- elementwise math ---------------------------------------------------------------------------
for _name, _dom in (("erf", "real"), ("acos", "unit"), ("asin", "unit"), ("atan", "real"),
                    ("cosh", "real"), ("sinh", "real"), ("square", "real"), ("log10", "positive"),
                    ("logit", "prob"), ("trunc", "nonint"), ("frac", "nonint")):
    _entry(_name, _top(_name), domain=_dom)
_entry("atan2", _top("atan2"), shapes=(((2, 3), (2, 3)), ((3, 1), (1, 4)), ((), (2, 3))),
       tags=("binary",))
_entry("xlogy", _top("xlogy"), shapes=(((2, 3), (2, 3)), ((3, 1), (1, 4))),
       domain=("real", "positive"), tags=("binary",))
_entry("cumprod", _top("cumprod"), shapes=(((2, 3, 4),),),
       kwargs=({"dim": 0}, {"dim": 1}, {"dim": -1}), tags=("reduce",))
_entry("cumprod(0-d)", _top("cumprod"), shapes=(((),), ((1,),)), kwargs=({"dim": 0}, {"dim": -1}),
       tags=("reduce",))
# exact zeros: torch's zero rule and the O(n²) double backward (gradgradcheck, torch's too)
DOMAINS.setdefault("zeros", lambda rng, s: np.where(rng.random(s) < 0.25, 0.0,
                                                    rng.uniform(0.5, 1.5, s)))
_entry("cumprod(zeros)", _top("cumprod"), shapes=(((3, 5),),), domain="zeros",
       kwargs=({"dim": 1}, {"dim": 0}), tags=("reduce",))

# ---- activations (nn.functional) ----------------------------------------------------------------
_ACT = (((2, 3, 4),), ((5,),), ((),))
for _name, _kws in (("gelu", ({}, {"approximate": "tanh"})), ("silu", ({},)),
                    ("elu", ({}, {"alpha": 0.5})), ("celu", ({}, {"alpha": 2.0})),
                    ("selu", ({},)), ("leaky_relu", ({}, {"negative_slope": 0.2})),
                    ("hardtanh", ({}, {"min_val": -0.5, "max_val": 1.5})), ("relu6", ({},)),
                    ("hardswish", ({},)), ("mish", ({},)),
                    ("logsigmoid", ({},)), ("softsign", ({},)), ("tanhshrink", ({},))):
    _entry(f"F.{_name}", _F(_name), shapes=_ACT, kwargs=_kws, tags=("nn", "activation"))
# torch's hardsigmoid gradient is float32's 1/6 even in float64: gradcheck, not torch, checks it
_entry("F.hardsigmoid", _F("hardsigmoid"), shapes=_ACT, tags=("nn", "activation"),
       torch_grad=False, torch_gradgrad=False)
_entry("F.softmin", _F("softmin"), shapes=(((2, 3, 4),),), kwargs=({"dim": 1}, {"dim": -1}),
       tags=("nn", "reduce"))

# ---- normalization, linear, distances -----------------------------------------------------------
_entry("F.layer_norm", lambda m, x, w, b: m.nn.functional.layer_norm(x, (4,), w, b),
       shapes=(((2, 3, 4), (4,), (4,)),), tags=("nn", "norm"))
_entry("F.layer_norm(2 dims, no affine)", lambda m, x: m.nn.functional.layer_norm(x, (3, 4)),
       shapes=(((2, 3, 4),),), tags=("nn", "norm"))
_entry("F.group_norm", lambda m, x, w, b: m.nn.functional.group_norm(x, 2, w, b),
       shapes=(((2, 4, 3), (4,), (4,)),), tags=("nn", "norm"))
_entry("F.linear", _F("linear"), shapes=(((2, 3), (4, 3), (4,)), ((5, 2, 3), (4, 3), (4,))),
       tags=("nn", "linalg"))
_entry("F.cosine_similarity", _F("cosine_similarity"), shapes=(((3, 4), (3, 4)),),
       tags=("nn", "distance"))
_entry("F.normalize", _F("normalize"), shapes=(((3, 4),),), kwargs=({}, {"dim": 0}),
       tags=("nn", "norm"))

# ---- losses -------------------------------------------------------------------------------------
_PAIR = (((3, 4), (3, 4)),)
for _name in ("mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss"):
    _entry(f"F.{_name}", _F(_name), shapes=_PAIR, kwargs=({}, {"reduction": "sum"}),
           tags=("nn", "loss"))
_entry("F.binary_cross_entropy", _F("binary_cross_entropy"), shapes=_PAIR, domain="prob",
       tags=("nn", "loss"))
_entry("F.binary_cross_entropy_with_logits", _F("binary_cross_entropy_with_logits"),
       shapes=_PAIR, domain=("real", "prob"), tags=("nn", "loss"))
_entry("F.kl_div", _F("kl_div"), shapes=_PAIR, domain=("real", "positive"),
       kwargs=({"reduction": "batchmean"},), tags=("nn", "loss"))
_entry("F.cross_entropy",
       lambda m, x: m.nn.functional.cross_entropy(x, m.tensor([0, 3, 1])),
       shapes=(((3, 4),),), tags=("nn", "loss"))
_entry("F.nll_loss", lambda m, x: m.nn.functional.nll_loss(x, m.tensor([2, 0, 1])),
       shapes=(((3, 4),),), tags=("nn", "loss"))
