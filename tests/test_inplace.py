"""In-place operations and views, as torch: version counters, recorded history, and the errors.

The sweep at the top runs every in-place method chainrule has (``chainrule.autograd.inplace.
METHODS``; a new one without a case here fails ``test_every_inplace_method_has_a_case``) on a
plain tensor, a non-leaf in a graph, a leaf that requires grad and a view of a non-leaf, and
compares values, versions, gradients and errors with torch; gradgradcheck covers double backward.
The tests after it are the scenarios the issue names (saved tensors modified in place, views,
``inplace=True`` modules, the "Zero to Hero" notebook idioms).
"""

from __future__ import annotations

import numpy as np
import pytest

import chainrule as cr
from chainrule.autograd import inplace

torch = pytest.importorskip("torch")

_RNG = np.random.default_rng(0)
_IDX = np.array([2, 0])         # an index along dim 0 of a (3,) tensor (no repeats)
_IDX_REP = np.array([1, 1, 0])  # with a repeat
_MASK = np.array([True, False, True])


def _dom(name: str, shape: tuple) -> np.ndarray:
    rng = np.random.default_rng(abs(hash((name, shape))) % 2**32)
    if name == "positive":
        return rng.uniform(0.5, 2.0, shape)
    if name == "unit":
        return rng.uniform(-0.8, 0.8, shape)
    if name == "prob":
        return rng.uniform(0.2, 0.8, shape)
    if name == "above1":
        return rng.uniform(1.2, 3.0, shape)
    if name == "intlike":
        return rng.integers(-2, 3, shape).astype(np.float64)
    return rng.choice([-1.0, 1.0], shape) * rng.uniform(0.3, 2.0, shape)  # real, off the kinks


class Case:
    """``self`` (domain, shape, dtype), then the arguments: float arrays become tensors that
    require grad in the gradient scenarios, integer and bool arrays stay index/mask tensors."""

    def __init__(self, dom="real", shape=(3,), *args, dtype="float64", grad=True, torch_grad=True,
                 gradgrad=True, tracked=True, leaf_error=None, **kwargs) -> None:
        self.dom, self.shape, self.args, self.kwargs = dom, shape, args, kwargs
        # the error on a leaf that requires grad, where it is not the in-place one (resize_)
        self.leaf_error = leaf_error or ("leaf Variable that requires grad is being used in an "
                                         "in-place operation.")
        self.dtype, self.grad, self.torch_grad, self.gradgrad = dtype, grad, torch_grad, gradgrad
        # tracked=False: torch does not record the op at all (logical_*_: the gradient flows as
        # if nothing had changed, a silent wrong result); chainrule records it (zero gradient)
        self.tracked = tracked

    def self_array(self) -> np.ndarray:
        if self.dtype == "int64":
            return np.array([5, 3, 6]).reshape(self.shape)
        if self.dtype == "bool":
            return np.array([True, False, True]).reshape(self.shape)
        return _dom(self.dom, self.shape)


def T(dom: str, shape=(3,)):
    return ("float", dom, shape)


def _arg(m, a, requires_grad: bool):
    if isinstance(a, tuple) and a and isinstance(a[0], str):
        t = m.tensor(_dom(a[1], a[2]))
        return t.requires_grad_() if requires_grad else t
    if isinstance(a, tuple):  # a tuple of index arrays
        return tuple(m.tensor(x) for x in a)
    if isinstance(a, np.ndarray):
        return m.tensor(a)
    return a


_TRIG = {"acos": "unit", "arccos": "unit", "asin": "unit", "arcsin": "unit", "log": "positive",
         "log10": "positive", "log1p": "positive", "log2": "positive", "sqrt": "positive",
         "rsqrt": "positive", "logit": "prob", "tan": "unit"}
_UNARY = """abs absolute acos arccos asin arcsin atan arctan ceil cos cosh erf exp exp2 expm1
floor frac log log10 log1p log2 logit neg negative reciprocal relu round rsqrt sigmoid sign sin
sinh sqrt square tan tanh trunc""".split()
CASES: dict[str, Case] = {n + "_": Case(_TRIG.get(n, "real")) for n in _UNARY}
CASES.update({
    "add_": Case("real", (3,), T("real"), alpha=2.0),
    "sub_": Case("real", (3,), T("real", (1,))),
    "subtract_": Case("real", (3,), T("real"), alpha=0.5),
    "mul_": Case("real", (3,), T("real")),
    "multiply_": Case("real", (3,), 2.5),
    "div_": Case("real", (3,), T("real")),
    "divide_": Case("real", (3,), T("real"), rounding_mode=None),
    "true_divide_": Case("real", (3,), 4.0),
    "pow_": Case("positive", (3,), T("real")),
    "float_power_": Case("positive", (3,), 2.5),
    "atan2_": Case("real", (3,), T("real")),
    "arctan2_": Case("real", (3,), T("real")),
    "xlogy_": Case("real", (3,), T("positive")),
    "fmod_": Case("real", (3,), 0.7, torch_grad=True),
    "remainder_": Case("real", (3,), 0.7),
    "floor_divide_": Case("real", (3,), 0.7, grad=False),
    "clamp_": Case("real", (3,), -0.5, 0.5),
    "clip_": Case("real", (3,), min=-0.5),
    "clamp_min_": Case("real", (3,), 0.1),
    "clamp_max_": Case("real", (3,), 0.1),
    "cumsum_": Case("real", (3,), 0),
    "cumprod_": Case("real", (3,), 0),
    "tril_": Case("real", (3, 3)),
    "triu_": Case("real", (3, 3), 1),
    "masked_fill_": Case("real", (3,), _MASK, -1.5),
    "scatter_": Case("real", (3,), 0, _IDX, T("real", (2,))),
    "scatter_add_": Case("real", (3,), 0, _IDX_REP, T("real")),
    "copy_": Case("real", (3,), T("real", (1,))),
    "zero_": Case("real", (3,)),
    "fill_": Case("real", (3,), 2.5),
    "addcmul_": Case("real", (3,), T("real"), T("real"), value=0.5),
    "addcdiv_": Case("real", (3,), T("real"), T("positive"), value=2.0),
    "lerp_": Case("real", (3,), T("real"), T("prob")),
    "index_add_": Case("real", (3,), 0, _IDX_REP, T("real"), alpha=2.0),
    "index_reduce_": Case("positive", (3,), 0, _IDX_REP, T("positive"), "prod"),
    "index_copy_": Case("real", (3,), 0, _IDX, T("real", (2,))),
    "index_fill_": Case("real", (3,), 0, _IDX, -2.0),
    "index_put_": Case("real", (3,), (_IDX_REP,), T("real"), True),
    "put_": Case("real", (3,), np.array([2, 0]), T("real", (2,))),
    "masked_scatter_": Case("real", (3,), _MASK, T("real")),
    "fill_diagonal_": Case("real", (3, 3), 4.0),
    "t_": Case("real", (2, 3)),
    "transpose_": Case("real", (2, 3), 0, 1),
    "swapaxes_": Case("real", (2, 3), 1, 0),
    "swapdims_": Case("real", (2, 3), 0, 1),
    "squeeze_": Case("real", (3, 1), 1),
    "unsqueeze_": Case("real", (3,), 0),
    # layout and memory (more in test_inplace_layout.py); the size lists stay lists
    "as_strided_": Case("real", (3,), [2, 2], [1, 1], storage_offset=0),
    "resize_": Case("real", (3,), [2], gradgrad=False,
                    leaf_error="cannot resize variables that require grad"),
    "resize_as_": Case("real", (3,), T("real", (1, 2)), gradgrad=False,
                       leaf_error="cannot resize variables that require grad"),
    # torch has no derivative for set_: backward through it raises (compared)
    "set_": Case("real", (3,), T("real", (2,)), gradgrad=False),
})
for _n in ("eq", "ne", "lt", "le", "gt", "ge", "greater", "greater_equal", "less", "less_equal",
           "not_equal"):
    CASES[_n + "_"] = Case("intlike", (3,), T("intlike"), gradgrad=False)
for _n in ("logical_and", "logical_or", "logical_xor"):
    CASES[_n + "_"] = Case("intlike", (3,), T("intlike"), gradgrad=False, tracked=False)
CASES["logical_not_"] = Case("intlike", (3,), gradgrad=False, tracked=False)
for _n in ("bitwise_and", "bitwise_or", "bitwise_xor"):
    CASES[_n + "_"] = Case(dtype="int64", grad=False)
    CASES[_n + "_"].args = (np.array([6, 1, 3]),)
CASES["bitwise_not_"] = Case(dtype="int64", grad=False)
# in-place forms of ops chainrule may have (each is tested where the op exists)
CASES.update({
    # torch has no derivative for its in-place acosh_/asinh_/atanh_ (NotImplementedError), nor
    # a usable one for sgn_: chainrule's gradients are checked by gradcheck below
    "acosh_": Case("above1", torch_grad=False), "arccosh_": Case("above1", torch_grad=False),
    "asinh_": Case(torch_grad=False), "arcsinh_": Case(torch_grad=False),
    "atanh_": Case("unit", torch_grad=False), "arctanh_": Case("unit", torch_grad=False),
    "erfc_": Case(), "erfinv_": Case("unit"),
    "lgamma_": Case("positive"), "digamma_": Case("positive"), "i0_": Case(), "sinc_": Case(),
    "deg2rad_": Case(), "rad2deg_": Case(), "nan_to_num_": Case(),
    "sgn_": Case(torch_grad=False),
    "fix_": Case(gradgrad=False), "hypot_": Case("real", (3,), T("real")),
    "copysign_": Case("real", (3,), T("real")),
    "heaviside_": Case("real", (3,), T("real"), grad=False),
    "nextafter_": Case("real", (3,), T("real"), grad=False),
    "ldexp_": Case("real", (3,), T("intlike")),
    "igamma_": Case("positive", (3,), T("positive"), grad=False),
    "igammac_": Case("positive", (3,), T("positive"), grad=False),
    "mvlgamma_": Case("above1", (3,), 2),
    "renorm_": Case("real", (3, 3), 2, 0, 1.0),
    "scatter_reduce_": Case("real", (3,), 0, _IDX_REP, T("real"), "sum"),
    "addmm_": Case("real", (2, 3), T("real", (2, 4)), T("real", (4, 3)), beta=0.5),
    "addmv_": Case("real", (3,), T("real", (3, 4)), T("real", (4,)), alpha=2.0),
    "addr_": Case("real", (3, 2), T("real", (3,)), T("real", (2,))),
    "baddbmm_": Case("real", (2, 2, 3), T("real", (2, 2, 4)), T("real", (2, 4, 3))),
    "addbmm_": Case("real", (2, 3), T("real", (5, 2, 4)), T("real", (5, 4, 3))),
})
for _n in ("gcd", "lcm", "bitwise_left_shift", "bitwise_right_shift"):
    CASES[_n + "_"] = Case(dtype="int64", grad=False)
    CASES[_n + "_"].args = (np.array([2, 1, 3]),)
for _n in ("ceil_", "floor_", "round_", "trunc_", "frac_", "sign_"):
    CASES[_n].gradgrad = CASES[_n].dom == "real" and _n == "frac_"
RANDOM = ["uniform_", "normal_", "random_", "exponential_", "bernoulli_", "cauchy_",
          "log_normal_", "geometric_"]
_RANDOM_ARGS = {"geometric_": (0.5,)}


def _run(m, name: str, case: Case, mode: str):
    """Run ``name`` in ``mode``; returns a dict of what to compare (values, versions, grads or
    the error)."""
    out: dict = {}
    grad = mode in ("nonleaf", "leaf", "view")
    args = [_arg(m, a, grad) for a in case.args]
    kwargs = {k: _arg(m, v, grad) for k, v in case.kwargs.items()}
    dtype = getattr(m, case.dtype)
    try:
        if mode == "plain":
            x = m.tensor(case.self_array(), dtype=dtype)
            r = getattr(x, name)(*args, **kwargs)
            out.update(same=r is x, version=x._version, value=x.tolist(), shape=list(x.shape))
            return out
        x = m.tensor(case.self_array(), dtype=dtype, requires_grad=True)
        if mode == "leaf":
            getattr(x, name)(*args, **kwargs)
            return out
        if mode == "nonleaf":
            y = target = x * 1.0
        else:  # a view of a non-leaf: row 1 of a (2, ...) base
            base = (x * 1.0).unsqueeze(0).repeat(2, *([1] * x.dim())) * 1.0
            y, target = base, base[1]
        r = getattr(target, name)(*args, **kwargs)
        out.update(same=r is target, version=y._version, value=y.tolist(),
                   grad_fn=y.grad_fn is not None)
        w = m.tensor(np.linspace(0.5, 1.5, y.numel()).reshape(tuple(y.shape)), dtype=y.dtype)
        (y * w).sum().backward()
        out["grads"] = [None if a.grad is None else a.grad.tolist()
                        for a in [x, *args, *kwargs.values()] if hasattr(a, "grad")]
    except Exception as e:  # noqa: BLE001  (the error is what is compared)
        out["error"] = (type(e).__name__, str(e).replace("torch.", "chainrule."))
    return out


def _close(a, b, rtol: float = 1e-6, atol: float = 1e-9) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k], rtol, atol) for k in a)
    if isinstance(a, (list, tuple)) and a and not isinstance(a[0], str):
        return len(a) == len(b) and all(_close(p, q, rtol, atol) for p, q in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and np.allclose(a, b, rtol=rtol, atol=atol,
                                                                equal_nan=True)
    return a == b


def test_every_inplace_method_has_a_case() -> None:
    have = set(CASES) | set(RANDOM)
    assert [n for n in inplace.METHODS if n not in have] == []
    for name in inplace.METHODS:
        assert callable(getattr(cr.Tensor, name)), name
        assert hasattr(torch.Tensor, name), name  # every one is a torch method


@pytest.mark.parametrize("mode", ["plain", "nonleaf", "leaf", "view"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_inplace_method_matches_torch(name: str, mode: str) -> None:
    case = CASES[name]
    if not hasattr(cr.Tensor, name):
        pytest.skip(f"chainrule has no {name[:-1]} yet")
    if mode != "plain" and (case.dtype != "float64" or not case.grad):
        pytest.skip("no gradient")
    if mode == "view" and name.endswith(("t_", "transpose_", "swapaxes_", "swapdims_",
                                         "squeeze_", "unsqueeze_")):
        pytest.skip("covered by test_shape_methods_on_views")
    ours, theirs = _run(cr, name, case, mode), _run(torch, name, case, mode)
    if not case.tracked and mode != "plain":
        if mode == "leaf":
            assert "error" not in theirs and "leaf Variable" in ours["error"][1]
            return
        if mode == "nonleaf":  # recorded: a zero gradient
            assert all(g is None or not any(g) for g in ours["grads"])
        theirs["grad_fn"] = ours["grad_fn"]
    if not case.torch_grad or not case.tracked:
        ours.pop("grads", None)
        theirs.pop("grads", None)
        if not case.torch_grad and "error" in theirs and "error" not in ours:
            theirs.pop("error")  # torch's backward refused
    assert _close(ours, theirs), f"\nchainrule: {ours}\ntorch:     {theirs}"
    if mode == "plain":
        assert ours["version"] == 1 and ours["same"]
    if mode == "leaf":
        assert ours["error"][1].endswith(case.leaf_error)


@pytest.mark.parametrize("name", sorted(n for n, c in CASES.items()
                                        if c.grad and c.gradgrad and c.dtype == "float64"))
def test_inplace_method_double_backward(name: str) -> None:
    """gradcheck and gradgradcheck (float64 finite differences) through the in-place op on a
    non-leaf, every float argument differentiable."""
    case = CASES[name]
    if not hasattr(cr.Tensor, name):
        pytest.skip(f"chainrule has no {name[:-1]} yet")
    x = cr.tensor(case.self_array(), requires_grad=True)
    args = [_arg(cr, a, True) for a in case.args]
    kwargs = {k: _arg(cr, v, True) for k, v in case.kwargs.items()}
    slots = [i for i, a in enumerate(args) if isinstance(a, cr.Tensor) and a.requires_grad]
    kslots = [k for k, v in kwargs.items() if isinstance(v, cr.Tensor) and v.requires_grad]

    def f(x, *diff):
        a, kw = list(args), dict(kwargs)
        for i, v in zip(slots, diff):
            a[i] = v
        for k, v in zip(kslots, diff[len(slots):]):
            kw[k] = v
        y = x * 1.0
        getattr(y, name)(*a, **kw)
        return y

    inputs = (x, *[args[i] for i in slots], *[kwargs[k] for k in kslots])
    assert cr.autograd.gradcheck(f, inputs)
    assert cr.autograd.gradgradcheck(f, inputs)


@pytest.mark.parametrize("name", RANDOM)
def test_random_fills_bump_the_version_and_cut_the_gradient(name: str) -> None:
    extra = _RANDOM_ARGS.get(name, ())
    for m in (torch, cr):
        x = m.ones(4, requires_grad=True)
        y = x * 2
        assert getattr(y, name)(*extra) is y
        assert y._version == 1
        y.sum().backward()
        assert x.grad.tolist() == [0.0] * 4  # the old value does not reach the result
        with pytest.raises(RuntimeError, match="a leaf Variable that requires grad"):
            getattr(x, name)(*extra)


@pytest.mark.parametrize("name,args", [("t_", ()), ("transpose_", (0, 1)),
                                       ("unsqueeze_", (0,)), ("squeeze_", ())])
def test_shape_methods_on_views(name: str, args: tuple) -> None:
    """A view changed in shape in place stays a view of its base; writing through it after
    reaches the base's history."""
    results = []
    for m in (torch, cr):
        x = m.tensor(np.arange(12.0).reshape(2, 1, 6), requires_grad=True)
        y = x * 1
        v = y[1].reshape(2, 3) if name != "squeeze_" else y[1]
        getattr(v, name)(*args)
        v.mul_(m.arange(v.numel(), dtype=m.float64).reshape(tuple(v.shape)) + 1)
        y.sum().backward()
        results.append((list(v.shape), v._version, y._version, y.tolist(), x.grad.tolist()))
    assert results[0] == results[1]


# ---- saved tensors modified in place ----------------------------------------------------------
def _error(m, fn) -> str | None:
    try:
        fn(m)
    except RuntimeError as e:
        return str(e).replace("torch.", "chainrule.")
    return None


SAVED = {
    "input, constant (the issue's x * a)": lambda m: (
        (lambda x, a: ((x * a).sum(), a.mul_(5)))(m.tensor([1., 2., 3.], requires_grad=True),
                                                 m.ones(3))[0].backward()),
    "input, non-leaf": lambda m: (
        lambda x: (lambda y: (lambda z: (y.add_(1), z.sum().backward()))(y.sin()))(x * 2))(
        m.tensor([1., 2., 3.], requires_grad=True)),
    "input, a view": lambda m: (
        lambda y: (lambda z: (y.add_(1), z.sum().backward()))(y[:2].sin()))(
        m.tensor([1., 2., 3.], requires_grad=True) * 2),
    "output (exp)": lambda m: (
        lambda y: (y.add_(1), y.sum().backward()))(m.tensor([1., 2.], requires_grad=True).exp()),
    "output (sigmoid), relu_ after": lambda m: (
        lambda y: (m.nn.functional.relu(y, inplace=True), y.sum().backward()))(
        m.tensor([1., -2.], dtype=m.float64, requires_grad=True).sigmoid()),
    "output of an in-place op (exp_ then add_)": lambda m: (
        lambda y: (y.exp_(), y.add_(1), y.sum().backward()))(
        m.tensor([1., 2.], requires_grad=True) * 2),
    "0-d": lambda m: (lambda y: (lambda z: (y.add_(1), z.backward()))(y.sin()))(
        (m.tensor([1., 2.], requires_grad=True) * 2).sum()),
    "no_grad setitem (the issue's x * x)": lambda m: (
        lambda x: (lambda y: (_no_grad(m, lambda: x.__setitem__(1, 10.)), y.backward()))(
            (x * x).sum()))(m.tensor([1., 2., 3.], requires_grad=True)),
    "not an error: pow's output is not needed": lambda m: (
        lambda y: (y.add_(1), y.sum().backward()))(
        m.tensor([1., 2.], requires_grad=True).pow(2)),
    "not an error: a detached copy changed, mul's input kept": lambda m: (
        lambda y: (lambda z: (y.detach().clone().zero_(), z.sum().backward()))(y.exp()))(
        m.tensor([1., 2.], requires_grad=True) * 1),
}


@pytest.mark.parametrize("case", list(SAVED))
def test_saved_tensor_modified_in_place_raises_torchs_error(case: str) -> None:
    theirs, ours = _error(torch, SAVED[case]), _error(cr, SAVED[case])
    assert ours == theirs
    assert (ours is None) == case.startswith("not an error")


def test_the_issues_silent_wrong_gradients_now_raise() -> None:
    x = cr.tensor([1.0, 2.0, 3.0], requires_grad=True)
    a = cr.ones(3)
    y = (x * a).sum()
    a.mul_(5)
    assert a._version == 1
    with pytest.raises(RuntimeError) as e:
        y.backward()
    assert str(e.value) == (
        "one of the variables needed for gradient computation has been modified by an inplace "
        "operation: [chainrule.FloatTensor [3]] is at version 1; expected version 0 instead. "
        "Hint: enable anomaly detection to find the operation that failed to compute its "
        "gradient, with chainrule.autograd.set_detect_anomaly(True, check_nan=False).")
    assert x.grad is None


def _saved_then_changed(lib, case: str) -> str | None:
    """The error ``lib`` raises when a saved tensor is changed after it was saved (``case``)."""
    x = lib.tensor([1.0, 2.0, 3.0], requires_grad=True)
    y = x.exp()
    z = y.sin()  # saves y
    if case == "in place on it":  # y is now output 0 of the in-place mul
        y.mul_(2)
    elif case == "through a view":  # y is now output 0 of CopySlices
        y[1:].mul_(2)
    elif case == "after detach_":  # no gate at all
        y.detach_()
        y.mul_(2)
    elif case == "through a detached alias, the tensor gone":
        alias = y.detach()
        del y
        alias.mul_(2)
    elif case == "in place twice":
        y.mul_(2)
        y.add_(1)
    try:
        z.sum().backward()
    except RuntimeError as e:
        # torch's C++ gate names carry their namespace (chainrule's have none)
        return str(e).replace("torch.", "chainrule.").replace("torch::autograd::", "")
    return None


@pytest.mark.parametrize("case", ["in place on it", "through a view", "after detach_",
                                  "through a detached alias, the tensor gone", "in place twice"])
def test_a_changed_saved_tensor_is_named_as_torch_names_it(case: str) -> None:
    """The graph holds a saved input's version counter, not the tensor: the error still names
    the gate the tensor is output of now, as torch's does."""
    theirs = _saved_then_changed(torch, case)
    assert theirs is not None and ("is at version" in theirs or "detach_()" in theirs)
    assert _saved_then_changed(cr, case) == theirs


def test_a_user_function_checks_saved_tensors_when_it_unpacks_them() -> None:
    """As torch: a Function whose backward never reads its saved tensors does not raise."""
    for m in (torch, cr):
        class Double(m.autograd.Function):
            @staticmethod
            def forward(ctx, a):
                y = a * 2
                ctx.save_for_backward(y)
                return y

            @staticmethod
            def backward(ctx, g):
                return g * 2

        class Uses(Double):
            @staticmethod
            def backward(ctx, g):
                (y,) = ctx.saved_tensors
                return g * y

        z = m.ones(3, requires_grad=True)
        y = Double.apply(z)
        y.add_(1)
        y.sum().backward()
        assert z.grad.tolist() == [2.0, 2.0, 2.0]
        y = Uses.apply(z)
        y.add_(1)
        with pytest.raises(RuntimeError, match="which is output 0 of Uses, is at version 1"):
            y.sum().backward()


def test_saved_output_watch_does_not_keep_the_output_alive() -> None:
    import gc
    import weakref

    x = cr.ones(1000, requires_grad=True)
    y = x.exp()
    fn = y.grad_fn
    ref = weakref.ref(y)
    del y
    gc.disable()
    try:
        assert ref() is None  # freed by reference counting: no cycle through the gate
    finally:
        gc.enable()
    assert fn._versions is not None


# ---- in-place ops recorded in the graph ---------------------------------------------------------
GRAPH = {
    "y += z on a non-leaf": lambda m, x, w: (lambda y: (y.__iadd__(w * w), y))(x * 2)[1],
    "mul_ then sin_ then div_": lambda m, x, w: (x * 1).mul_(w).sin_().div_(x),
    "setitem of a value that requires grad": lambda m, x, w: (
        lambda y: (y.__setitem__(slice(1, 3), w[:2] * x[1:3]), y)[1])(m.zeros(4, **_f64(m))),
    "setitem with an index tensor": lambda m, x, w: (
        lambda y: (y.__setitem__(m.tensor([3, 0]), w[:2]), y)[1])(x * 1),
    "setitem with a mask": lambda m, x, w: (
        lambda y: (y.__setitem__(y > 2.5, 0.0), y)[1])(x * w),
    "basic index view, mul_": lambda m, x, w: (lambda y: (y[1:3].mul_(w[:2]), y)[1])(x * 1),
    "transpose view, add_": lambda m, x, w: (
        lambda y: (y.t()[1].add_(w[:2]), y)[1])((x * 1).reshape(2, 2)),
    "view() view, pow_": lambda m, x, w: (lambda y: (y.view(2, 2)[0].pow_(2), y)[1])(x * 1),
    "reshape view, sigmoid_": lambda m, x, w: (
        lambda y: (y.reshape(2, 2).sigmoid_(), y)[1])(x * w),
    "narrow, select": lambda m, x, w: (
        lambda y: (y.narrow(1, 0, 2).select(0, 1).exp_(), y)[1])((x * 1).reshape(2, 2)),
    "diagonal view": lambda m, x, w: (
        lambda y: (y.diagonal().mul_(w[:2]), y)[1])((x * 1).reshape(2, 2)),
    "view of a view": lambda m, x, w: (
        lambda y: (y[1:][:, 1:].mul_(3), y)[1])((x * w).reshape(2, 2)),
    "view used after its base changed": lambda m, x, w: (
        lambda y: (lambda v: (y.mul_(w), v * v)[1])(y[:2]))(x * 1),
    "copy_ into a transposed view": lambda m, x, w: (
        lambda y: (y.t().copy_((x * w).reshape(2, 2)), y)[1])(m.zeros(2, 2, **_f64(m))),
    "in-place on a 0-d tensor": lambda m, x, w: (lambda s: (s.mul_(w[0]), s.__iadd__(1), s)[2])(
        (x * x).sum()),
    "zero_ and fill_ on views": lambda m, x, w: (
        lambda y: (y[:1].zero_(), y[2:].fill_(5), y * x)[2])(x * w),
    "y[::2] = y[1::2] * 2 (y * 2 keeps nothing of y)": lambda m, x, w: (
        lambda y: (y.__setitem__(slice(None, None, 2), y[1::2] * 2), y)[1])(x * w),
    "y[:2] = y[2:] / w (div keeps the divisor only)": lambda m, x, w: (
        lambda y: (y.__setitem__(slice(None, 2), y[2:] / 2.0), y)[1])(x * w),
    "0-d setitem": lambda m, x, w: (lambda s: (s.__setitem__((), x[0] * w[1]), s * x)[1])(
        m.zeros((), dtype=m.float64)),
    "0-d setitem with ...": lambda m, x, w: (lambda s: (s.__setitem__(Ellipsis, x[1]), s)[1])(
        w.sum()),
    "index_put_ with repeats": lambda m, x, w: (
        lambda y: (y.index_put_((m.tensor([0, 0, 3]),), w[:3], accumulate=True), y)[1])(x * 1),
}


def _f64(m) -> dict:
    return {"dtype": m.float64}


@pytest.mark.parametrize("case", list(GRAPH))
def test_inplace_in_a_graph_gives_torchs_values_and_gradients(case: str) -> None:
    results = []
    for m in (torch, cr):
        x = m.tensor([1.0, 2.0, 3.0, 4.0], dtype=m.float64, requires_grad=True)
        w = m.tensor([0.5, -1.5, 2.0, 1.0], dtype=m.float64, requires_grad=True)
        y = GRAPH[case](m, x, w)
        (y * y).sum().backward()
        results.append((y.tolist(), x.grad.tolist(), None if w.grad is None else w.grad.tolist()))
    assert _close(results[1], results[0]), f"\nchainrule: {results[1]}\ntorch:     {results[0]}"


@pytest.mark.parametrize("case", list(GRAPH))
def test_inplace_in_a_graph_double_backward(case: str) -> None:
    x = cr.tensor([1.0, 2.0, 3.0, 4.0], dtype=cr.float64, requires_grad=True)
    w = cr.tensor([0.5, -1.5, 2.0, 1.0], dtype=cr.float64, requires_grad=True)
    assert cr.autograd.gradgradcheck(lambda x, w: GRAPH[case](cr, x, w), (x, w))


# ---- the refusals -------------------------------------------------------------------------------
REFUSED = {
    "leaf": lambda m, x: x.add_(1),
    "leaf, +=": lambda m, x: x.__iadd__(1),
    "leaf, setitem": lambda m, x: x.__setitem__(0, 5.0),
    "view of a leaf": lambda m, x: x[0].add_(1),
    "leaf, t_": lambda m, x: x.t_(),
    "leaf, relu(inplace=True)": lambda m, x: m.nn.functional.relu(x, inplace=True),
    "output of split": lambda m, x: (x * 1).split(2)[0].mul_(2),
    "output of chunk": lambda m, x: (x * 1).chunk(2)[1].add_(1),
    "output of unbind": lambda m, x: (x * 1).reshape(2, 2).unbind()[1].add_(1),
    "split of a leaf": lambda m, x: x.split(2)[0].mul_(2),
    "split of a constant, grad argument": lambda m, x: m.ones(4).split(2)[0].mul_(x[:2]),
    "unbind output used after its base changed": lambda m, x: (
        lambda y: (lambda a: (y.mul_(2), a * 1))(y.unbind()[0]))(x * 1),
    "split output saved, base changed": lambda m, x: (
        lambda y: (lambda z: (y.add_(1), z.sum().backward()))(y.split(2)[0].sin()))(x * 2),
    "view made in no_grad, changed with grad": lambda m, x: (
        lambda y: (lambda v: v.mul_(2))(_no_grad(m, lambda: y[:2])))(x * 1),
    "view of a leaf made in no_grad": lambda m, x: _no_grad(m, lambda: x[:2]).mul_(2),
    "no_grad view of a constant, grad argument": lambda m, x: (
        _no_grad(m, lambda: m.ones(4)[:2]).mul_(x[:2])),
    "split in no_grad": lambda m, x: (
        lambda y: _no_grad(m, lambda: y.split(2))[0].mul_(2))(x * 1),
    "expanded": lambda m, x: (x * 1).expand(3, 4).add_(1),
    "expanded, no graph": lambda m, x: m.zeros(2).expand(3, 2).add_(1),
    "int result into float": lambda m, x: m.zeros(3, dtype=m.int64).mul_(1.5),
    "float into bool": lambda m, x: m.zeros(3, dtype=m.bool).add_(1),
    "broadcast to a larger shape": lambda m, x: m.zeros(3).add_(m.ones(2, 3)),
    "partial overlap (add_)": lambda m, x: (lambda y: y[1:].add_(y[:-1]))(m.arange(6.0)),
    "partial overlap (setitem)": lambda m, x: (
        lambda y: y.__setitem__(slice(1, None), y[:-1]))(x * 1),
    "index_add_ of another dtype": lambda m, x: m.zeros(3).index_add_(
        0, m.tensor([0]), m.ones(1, dtype=m.float64)),
    "index_copy_ of another dtype": lambda m, x: m.zeros(3).index_copy_(
        0, m.tensor([0]), m.ones(1, dtype=m.float64)),
    "masked_scatter_ of another dtype": lambda m, x: m.zeros(3).masked_scatter_(
        m.tensor([True, False, True]), m.ones(3, dtype=m.float64)),
}


def _no_grad(m, fn):
    with m.no_grad():
        return fn()


@pytest.mark.parametrize("case", list(REFUSED))
def test_refused_as_torch(case: str) -> None:
    errors = []
    for m in (torch, cr):
        x = m.tensor([1.0, 2.0, 3.0, 4.0], requires_grad=True)
        with pytest.raises(RuntimeError) as e:
            REFUSED[case](m, x)
        errors.append(str(e.value).replace("torch.", "chainrule."))
    if case == "expanded":  # torch names its internal view op; chainrule says the same thing
        assert errors[1].startswith("unsupported operation: more than one element")
        return
    assert errors[1] == errors[0]


def test_allowed_as_torch() -> None:
    """What torch allows: in-place in no_grad on leaves and on views made in no_grad, on
    split outputs of tensors outside any graph, through .data and .detach()."""
    results = []
    for m in (torch, cr):
        x = m.tensor([1.0, 2.0, 3.0, 4.0], requires_grad=True)
        with m.no_grad():
            x.mul_(2)
            x[0] = 7.0
            x[1:3] += 1
            v = x[2:]
            v.add_(1)
        y = x * 1
        with m.no_grad():
            a, b = y.split(2)
            a.mul_(2)
        with m.no_grad():
            c = (x * 1)[:2]  # made in no_grad from a tensor outside the graph
        c.mul_(2)
        d = m.ones(4)
        d.split(2)[1].mul_(3)
        x.data.add_(1)
        x.detach()[0] = 0.0
        results.append((x.tolist(), x._version, x.is_leaf, x.requires_grad, y.tolist(),
                        d.tolist(), v._version))
    assert results[1] == results[0]


# ---- versions ---------------------------------------------------------------------------------
def test_versions_are_shared_by_views_and_detach_as_torch() -> None:
    results = []
    for m in (torch, cr):
        x = m.zeros(2, 3)
        v, w, d = x[1], x.t(), x.detach()
        v.add_(1)
        w[0] = 2.0
        d.mul_(2)
        x += 1
        data = x.data
        data.add_(1)  # .data is a new version counter in torch
        results.append([t._version for t in (x, v, w, d, data)] + [x.tolist()])
        assert m.randn(3)._version == 0 and m.rand(2)._version == 0
        assert m.bernoulli(m.full((3,), 0.5))._version == 0
    assert results[1] == results[0]


def test_retain_grad_follows_the_tensor_through_in_place_ops() -> None:
    results = []
    for m in (torch, cr):
        x = m.ones(3, requires_grad=True)
        y = x * 2
        y.retain_grad()
        y.mul_(3)
        z = x * 1
        z.retain_grad()
        z[1:].mul_(5)  # through a view: the base is rebased
        (y.sum() + (z * z).sum()).backward()
        results.append((x.grad.tolist(), y.grad.tolist(), z.grad.tolist(), y.retains_grad))
    assert results[1] == results[0]


def test_custom_function_mark_dirty_counts_as_torch() -> None:
    results = []
    for m in (torch, cr):
        class Twice(m.autograd.Function):
            @staticmethod
            def forward(ctx, a):
                a.mul_(2)
                ctx.mark_dirty(a)
                return a

            @staticmethod
            def backward(ctx, g):
                return g * 2

        x = m.ones(3, requires_grad=True)
        y = x * 1
        out = Twice.apply(y)
        out.sum().backward()
        results.append((out is y, y._version, x.grad.tolist()))
    assert results[1] == results[0]


# ---- inplace=True modules and functionals -----------------------------------------------------
MODULES = {
    "ReLU": lambda m: m.nn.ReLU(True), "ReLU6": lambda m: m.nn.ReLU6(True),
    "LeakyReLU": lambda m: m.nn.LeakyReLU(0.2, True), "ELU": lambda m: m.nn.ELU(inplace=True),
    "CELU": lambda m: m.nn.CELU(inplace=True), "SELU": lambda m: m.nn.SELU(True),
    "Hardtanh": lambda m: m.nn.Hardtanh(inplace=True), "SiLU": lambda m: m.nn.SiLU(True),
    "Mish": lambda m: m.nn.Mish(True), "Threshold": lambda m: m.nn.Threshold(0.1, 20, True),
    "RReLU(eval)": lambda m: m.nn.RReLU(inplace=True).eval(),
    "Hardsigmoid": lambda m: m.nn.Hardsigmoid(True), "Hardswish": lambda m: m.nn.Hardswish(True),
    "Dropout": lambda m: m.nn.Dropout(0.5, True), "Dropout(eval)": lambda m: m.nn.Dropout(
        0.5, True).eval(),
    "Dropout1d": lambda m: m.nn.Dropout1d(0.5, True),
    "Dropout2d": lambda m: m.nn.Dropout2d(0.5, True),
    "AlphaDropout (torch's ignores inplace)": lambda m: m.nn.AlphaDropout(0.5, True),
}


@pytest.mark.filterwarnings("ignore:dropout2d")
@pytest.mark.parametrize("name", list(MODULES))
def test_inplace_modules_as_torch(name: str) -> None:
    results = []
    for m in (torch, cr):
        m.manual_seed(0)
        x = m.tensor(np.linspace(-2.5, 2.5, 24).reshape(2, 3, 4), requires_grad=True)
        y = x * 1
        z = MODULES[name](m)(y)
        z.sum().backward()
        results.append((z is y, y._version, x.grad.tolist() if "Alpha" not in name else None))
        with pytest.raises(RuntimeError, match="a leaf Variable"):
            if "eval" not in name and "Alpha" not in name:
                MODULES[name](m)(x)
            else:
                raise RuntimeError("a leaf Variable (nothing happens in eval mode)")
    assert _close(results[1], results[0]), f"\nchainrule: {results[1]}\ntorch:     {results[0]}"


@pytest.mark.parametrize("name,args", [("relu_", ()), ("elu_", (1.0,)), ("leaky_relu_", (0.1,)),
                                       ("hardtanh_", (-1.0, 1.0)), ("threshold_", (0.0, 5.0)),
                                       ("celu_", (1.0,)), ("selu_", ()),
                                       ("rrelu_", (0.1, 0.3, False))])
def test_functional_underscore_forms(name: str, args: tuple) -> None:
    results = []
    for m in (torch, cr):
        x = m.tensor([-2.0, -0.5, 0.5, 3.0], requires_grad=True)
        y = x * 1
        z = getattr(m.nn.functional, name)(y, *args)
        z.sum().backward()
        results.append((z is y, y._version, y.tolist(), x.grad.tolist()))
    assert _close(results[1], results[0])


# ---- real programs ---------------------------------------------------------------------------
def _zero_to_hero(m):
    """Idioms of Karpathy's "Zero to Hero" notebooks (makemore parts 3-4)."""
    m.manual_seed(42)
    g = m.Generator().manual_seed(2147483647)
    C = m.randn((27, 4), generator=g, requires_grad=True)
    W = m.randn((8, 27), generator=g, requires_grad=True)
    Xb = m.tensor([[1, 5], [3, 3], [26, 0], [7, 1]])
    Yb = m.tensor([5, 0, 26, 3])
    n = Xb.shape[0]
    emb = C[Xb]
    embcat = emb.view(n, -1)
    logits = m.zeros(n, 27)
    for i in range(n):
        logits[i] = embcat[i] @ W  # one row at a time: setitem of a value that requires grad
    loss = m.nn.functional.cross_entropy(logits, Yb)
    for p in (C, W):
        p.grad = None
    loss.backward()
    # the manual backward pass of part 4
    dlogits = m.nn.functional.softmax(logits, 1).detach()
    dlogits[range(n), Yb] -= 1
    dlogits /= n
    dembcat = dlogits @ W.detach().T
    demb = dembcat.view(emb.shape)
    dC = m.zeros_like(C)
    for k in range(Xb.shape[0]):
        for j in range(Xb.shape[1]):
            ix = Xb[k, j]
            dC[ix] += demb[k, j]
    # the update, under no_grad and through .data
    lr = 0.1
    with m.no_grad():
        W -= lr * W.grad
    C.data += -lr * C.grad
    W.grad.zero_()
    C.grad.zero_()
    return [loss.item(), dlogits.tolist(), dC.tolist(), C.tolist(), W.tolist(), W._version,
            C._version, C.is_leaf]


def test_zero_to_hero_idioms() -> None:
    ours, theirs = _zero_to_hero(cr), _zero_to_hero(torch)
    assert _close(ours[:5], theirs[:5], rtol=1e-5, atol=1e-6)
    assert ours[5:] == theirs[5:]
    # the manual gradient of C equals autograd's
    assert np.allclose(ours[2], (np.asarray(_c_grad(cr))), atol=1e-6)


def _c_grad(m):
    m.manual_seed(42)
    g = m.Generator().manual_seed(2147483647)
    C = m.randn((27, 4), generator=g, requires_grad=True)
    W = m.randn((8, 27), generator=g, requires_grad=True)
    Xb = m.tensor([[1, 5], [3, 3], [26, 0], [7, 1]])
    logits = C[Xb].view(4, -1) @ W
    m.nn.functional.cross_entropy(logits, m.tensor([5, 0, 26, 3])).backward()
    return C.grad.tolist()


def test_optimizer_updates_in_place() -> None:
    """An SGD-with-momentum step written as optimizers write it: in place, under no_grad."""
    results = []
    for m in (torch, cr):
        m.manual_seed(0)
        p = m.randn(3, requires_grad=True)
        buf = m.zeros(3)
        for _ in range(3):
            p.grad = None
            (p * p).sum().backward()
            with m.no_grad():
                buf.mul_(0.9).add_(p.grad)
                p.add_(buf, alpha=-0.1)
        results.append((p.tolist(), p._version, buf.tolist(), buf._version, p.is_leaf))
    assert _close(results[1], results[0], rtol=1e-5, atol=1e-6)


def test_view_of_a_non_contiguous_tensor_raises_as_torch() -> None:
    for m in (torch, cr):
        x = m.tensor(np.arange(6.0).reshape(2, 3)).t()
        with pytest.raises(RuntimeError, match="view size is not compatible"):
            x.view(6)
        assert x.reshape(6).tolist() == [0.0, 3.0, 1.0, 4.0, 2.0, 5.0]
        assert x.contiguous().view(6).tolist() == [0.0, 3.0, 1.0, 4.0, 2.0, 5.0]


def test_diagonal_and_select_are_views_as_torch() -> None:
    results = []
    for m in (torch, cr):
        x = m.tensor(np.arange(24.0).reshape(2, 3, 4))
        d = x.diagonal(1, 0, 2)
        s = x.select(1, -1)
        d.mul_(-1)
        s.add_(100)
        results.append((d.shape, s.shape, d._base is x, s._base is x, x.tolist(),
                        x.diagonal(-1, 2, 1).tolist()))
        with pytest.raises(RuntimeError, match="diagonal dimensions cannot be identical"):
            x.diagonal(0, 1, 1)
        with pytest.raises(IndexError, match="out of range"):
            x.select(1, 3)
    assert results[1] == results[0]


def test_a_view_of_a_base_that_changed_shape_in_place_is_refused_not_wrong() -> None:
    """torch rebuilds such a view from the storage's strides; chainrule's views are steps from
    their base, which no longer hold after ``t_()``: refused, never a wrong gradient."""
    x = cr.tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)
    y = x * 1
    v = y[0]
    y.t_()
    with pytest.raises(RuntimeError, match="after its base changed shape in place"):
        v.mul_(2)
    with pytest.raises(RuntimeError, match="after its base changed shape in place"):
        v * 1  # its history would have to be rebuilt (the base has a new one)
    with cr.no_grad():
        v.mul_(2)  # outside the graph, nothing to rebuild
    assert y.tolist() == [[0.0, 3.0], [2.0, 4.0], [4.0, 5.0]]
    w = y[0]  # a view taken after the change is fine
    w.mul_(10)
    y.sum().backward()
    assert x.grad.tolist() == [[10.0, 1.0, 1.0], [10.0, 1.0, 1.0]]


def test_data_ptr_and_storage_offset_as_torch() -> None:
    for m in (torch, cr):
        x = m.zeros(3, 4)
        v = x[1:, 2:]
        assert v.storage_offset() == 6 and x.storage_offset() == 0
        assert v.data_ptr() - x.data_ptr() == 6 * 4
        assert x.t().data_ptr() == x.data_ptr()


@pytest.mark.parametrize("name", sorted(inplace.FUNCTIONS))
def test_torch_level_inplace_functions(name: str) -> None:
    """``cr.exp_(x)`` is ``x.exp_()``, as ``torch.exp_``."""
    case = CASES.get(name, Case())
    results = []
    for m in (torch, cr):
        x = m.tensor(case.self_array())
        r = getattr(m, name)(x, *[_arg(m, a, False) for a in case.args],
                             **{k: _arg(m, v, False) for k, v in case.kwargs.items()})
        results.append((r is x, x._version, x.tolist()))
    assert _close(results[1], results[0])


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "Adadelta",
                                  "NAdam", "RAdam", "Adamax", "ASGD", "Rprop"])
def test_backward_after_an_optimizer_step_raises_as_torch(name: str) -> None:
    """The classic silent bug: a graph that saved a parameter, backpropagated after step()
    changed that parameter in place. torch refuses; so does chainrule (the step bumps the
    version of every parameter it updates)."""
    errors = []
    for m in (torch, cr):
        m.manual_seed(0)
        lin = m.nn.Linear(3, 2)
        opt = getattr(m.optim, name)(lin.parameters(), lr=0.1)
        x = m.ones(4, 3, requires_grad=True)
        lin(x).sum().backward()
        before = lin.weight._version
        y = (lin(x) ** 2).sum()
        opt.step()
        assert lin.weight._version > before
        with pytest.raises(RuntimeError) as e:
            y.backward()
        errors.append(str(e.value).split(" is at version")[0].replace("torch.", "chainrule."))
    assert errors[1].startswith("one of the variables needed for gradient computation has been "
                                "modified by an inplace operation: [chainrule.FloatTensor")


def test_linear_and_matmul_keep_only_the_operand_a_needed_gradient_uses():
    """As torch: with a constant input, the weight is not saved, so updating it in place
    (optimizer.step()) before a second backward is fine; with an input that needs a gradient,
    the weight is saved and the change is caught."""
    for use_matmul in (False, True):
        m = cr.nn.Linear(3, 2)
        x = cr.randn(4, 3)
        y = (x @ m.weight.t() if use_matmul else m(x)).sum()
        y.backward(retain_graph=True)
        with cr.no_grad():
            m.weight.add_(1.0)
        y.backward()  # dW needs only x, which did not change
        xg = cr.randn(4, 3, requires_grad=True)
        y = (xg @ m.weight.t() if use_matmul else m(xg)).sum()
        with cr.no_grad():
            m.weight.add_(1.0)
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            y.backward()
