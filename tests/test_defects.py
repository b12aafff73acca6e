"""Regression tests for the defects that fuzzing found (issue 14, "Defects found"), one or more
per numbered item, each checked against torch where torch has the behaviour. Item 1 (layouts) is
tests/test_layouts.py, item 5 (native code) tests/test_native.py, item 7 (``chainrule explain``)
tests/test_explain.py."""

from __future__ import annotations

import io
import json
import math
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import chainrule as cr
import chainrule.nn.functional as F
from chainrule.serialization import SerializationError

torch = pytest.importorskip("torch")


def _grads(m, fn, *values):
    """Gradients of fn(*inputs).sum() for float64 inputs built by module ``m`` (cr or torch)."""
    xs = [m.tensor(v, dtype=m.float64, requires_grad=True) for v in values]
    fn(m, *xs).sum().backward()
    return [x.grad.detach().numpy() if x.grad is not None else None for x in xs]


def _same_grads(fn, *values):
    got, want = _grads(cr, fn, *values), _grads(torch, fn, *values)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-7)  # (torch's hardsigmoid: a float 1/6)
        assert (np.signbit(g) == np.signbit(w)).all(), (g, w)


# ---- 2: a hook's tensor never becomes .grad's memory ------------------------------------------
@pytest.mark.parametrize("nonleaf", [False, True])
def test_leaf_hook_return_value_is_not_aliased_by_grad(nonleaf):
    for m in (cr, torch):
        x = m.tensor([1.0, 2.0, 3.0], requires_grad=True)
        keep = m.ones(3) * 5
        if nonleaf:
            y = x * 1
            y.register_hook(lambda g, k=keep: k)
            y.sum().backward()
        else:
            x.register_hook(lambda g, k=keep: k)
            (x * 1).sum().backward()
            (x * 1).sum().backward()
        assert keep.tolist() == [5.0, 5.0, 5.0], m.__name__
        assert x.grad.tolist() == ([5.0] * 3 if nonleaf else [10.0] * 3), m.__name__
        keep.add_(1)
        assert x.grad.tolist() == ([5.0] * 3 if nonleaf else [10.0] * 3), m.__name__


def test_user_function_returning_a_kept_gradient_is_not_aliased():
    kept = {}

    class Keep(cr.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2

        @staticmethod
        def backward(ctx, g):
            kept["g"] = g * 2
            return kept["g"]

    x = cr.tensor([1.0, 2.0], requires_grad=True)
    Keep.apply(x).sum().backward()
    Keep.apply(x).sum().backward()
    assert kept["g"].tolist() == [2.0, 2.0] and x.grad.tolist() == [4.0, 4.0]


# ---- 3: backward from several threads into one leaf --------------------------------------------
def test_backward_from_threads_into_one_leaf_loses_no_update():
    for _ in range(20):
        x = cr.ones(1000, requires_grad=True)

        def work(x=x):
            for _ in range(5):
                (x * 2).sum().backward()

        threads = [threading.Thread(target=work) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert (x.grad.numpy() == 60).all()


# ---- 4: hook return values are checked as torch does --------------------------------------------
@pytest.mark.parametrize("make,error,match", [
    (lambda m: m.ones(5, 7), RuntimeError, "hook '<lambda>' has changed the size of value"),
    (lambda m: m.tensor(2.0), RuntimeError, "hook '<lambda>' has changed the size of value"),
    (lambda m: m.ones(3, dtype=m.int64), RuntimeError,
     r"hook '<lambda>' has changed the type of value \(was \w+\.FloatTensor got \w+\.LongTensor"),
    (lambda m: m.ones(3, dtype=m.float64), RuntimeError, "has changed the type of value"),
    (lambda m: m.ones(3, dtype=m.bool), RuntimeError, "has changed the type of value"),
    (lambda m: 3.0, TypeError, "expected Variable, but hook returned 'float'"),
])
@pytest.mark.parametrize("where", ["leaf", "nonleaf"])
def test_hook_return_values_are_checked(make, error, match, where):
    for m in (torch, cr):
        x = m.tensor([1.0, 2.0, 3.0], requires_grad=True)
        y = x * 2 if where == "nonleaf" else x
        y.register_hook(lambda g, m=m: make(m))
        with pytest.raises(error, match=match):
            (y * 1).sum().backward()


# ---- 6: cr.load costs O(file size), however often an entry is referred to ---------------------
def _safetensors(header: dict, data: bytes = b"") -> bytes:
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + data


def test_load_shares_an_entry_referred_to_many_times():
    import tracemalloc

    n = 1 << 20  # 4 MiB of float32
    structure = [{"__ndarray__": "t"}] * 1000 + [{"__tensor__": "t"}] * 1000
    raw = _safetensors({"t": {"dtype": "F32", "shape": [n], "data_offsets": [0, 4 * n]},
                        "__metadata__": {"chainrule.structure": json.dumps(structure)}},
                       bytes(4 * n))
    tracemalloc.start()
    try:
        out = cr.load(io.BytesIO(raw))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 6 * len(raw), f"{peak / 2**20:.0f} MiB to load a {len(raw) / 2**20:.0f} MiB file"
    assert all(a is out[0] for a in out[:1000]) and all(t is out[1000] for t in out[1000:])


def test_save_keeps_a_shared_ndarray_shared():
    a = np.arange(4.0)
    buf = io.BytesIO()
    cr.save({"x": a, "y": [a, a]}, buf)
    back = cr.load(io.BytesIO(buf.getvalue()))
    assert back["x"] is back["y"][0] is back["y"][1]
    np.testing.assert_array_equal(back["x"], a)


# ---- 8: double backward through split/chunk/unbind with an unused output --------------------
@pytest.mark.parametrize("how", ["split", "chunk", "unbind"])
def test_double_backward_through_split_with_an_unused_output(how):
    results = []
    for m in (cr, torch):
        x = m.tensor([1.0, 2.0, 3.0, 4.0], requires_grad=True)
        parts = x.unbind() if how == "unbind" else getattr(x, how)(2)
        (g,) = m.autograd.grad((parts[0] ** 3).sum(), x, create_graph=True)
        (g2,) = m.autograd.grad(g.sum(), x)
        results.append((g.tolist(), g2.tolist()))
    assert results[0] == results[1]


# ---- 9: empty tensors ----------------------------------------------------------------------------
@pytest.mark.parametrize("shape,fn", [
    ((0, 3), lambda m, x: x.repeat(2, 1)),
    ((2, 3), lambda m, x: x.repeat(0, 1)),
    ((2, 0), lambda m, x: x.repeat(1, 3, 2)),
    ((0,), lambda m, x: m.cumprod(x, 0)),
    ((2, 0), lambda m, x: m.cumprod(x, 1)),
    ((0, 3), lambda m, x: m.cumprod(x, 1)),
    ((3, 0), lambda m, x: m.nn.functional.layer_norm(x, (0,))),
    ((0, 4), lambda m, x: m.nn.functional.layer_norm(x, (4,))),
])
def test_empty_tensors_forward_and_backward_as_torch(shape, fn):
    got = []
    for m in (cr, torch):
        x = m.zeros(shape, dtype=m.float64, requires_grad=True)
        y = fn(m, x)
        y.sum().backward()
        got.append((tuple(y.shape), tuple(x.grad.shape)))
    assert got[0] == got[1]


def test_layer_norm_of_size_zero_keeps_weight_and_bias_in_the_graph():
    x = cr.zeros(3, 0, requires_grad=True)
    w, b = cr.ones(0, requires_grad=True), cr.zeros(0, requires_grad=True)
    F.layer_norm(x, (0,), w, b).sum().backward()
    assert w.grad.shape == (0,) and b.grad.shape == (0,) and x.grad.shape == (3, 0)


def test_cumprod_still_multiplies():
    x = np.array([[1.5, -2.0, 0.5], [3.0, 0.0, 2.0]])
    _same_grads(lambda m, t: m.cumprod(t, 1), x)
    np.testing.assert_allclose(cr.cumprod(cr.tensor(x), 1).numpy(), np.cumprod(x, 1))


# ---- 10: gradient conventions as torch's --------------------------------------------------------
@pytest.mark.parametrize("name,fn,values", [
    ("atan2(0, 0)", lambda m, a, b: m.atan2(a, b), ([0.0, 0.0, 1.0], [0.0, -0.0, 0.0])),
    ("hardtanh bounds", lambda m, x: m.nn.functional.hardtanh(x),
     ([-1.0, 1.0, 0.5, -2.0, 2.0, 0.0],)),
    ("hardtanh(0, 6)", lambda m, x: m.nn.functional.hardtanh(x, 0.0, 6.0), ([0.0, 6.0, 3.0],)),
    ("relu6 bounds", lambda m, x: m.nn.functional.relu6(x), ([0.0, 6.0, 3.0, 7.0, -1.0],)),
    ("ReLU6 module", lambda m, x: m.nn.ReLU6()(x), ([0.0, 6.0, 3.0],)),
    ("Hardtanh module", lambda m, x: m.nn.Hardtanh(-2.0, 2.0)(x), ([-2.0, 2.0, 1.0],)),
    ("hardsigmoid at ±3", lambda m, x: m.nn.functional.hardsigmoid(x), ([-3.0, 3.0, 0.0],)),
    ("hardswish at ±3", lambda m, x: m.nn.functional.hardswish(x), ([-3.0, 3.0, 0.5],)),
    ("clamp bounds", lambda m, x: m.clamp(x, -1.0, 1.0), ([-1.0, 1.0, 0.0, 2.0],)),
    ("max() with NaN", lambda m, x: m.max(x), ([1.0, math.nan, 3.0],)),
    ("min() with NaN", lambda m, x: m.min(x), ([1.0, math.nan, -3.0],)),
    ("max() with two NaNs", lambda m, x: m.max(x), ([math.nan, 1.0, math.nan],)),
    ("max() ties", lambda m, x: m.max(x), ([3.0, 1.0, 3.0],)),
    ("max(dim) with NaN", lambda m, x: m.max(x, 0)[0], ([1.0, math.nan, 3.0],)),
    ("amax with NaN", lambda m, x: m.amax(x), ([1.0, math.nan, 3.0],)),
    ("abs at NaN", lambda m, x: m.abs(x), ([math.nan, 0.0, -1.0, 2.0],)),
])
def test_gradient_conventions_match_torch(name, fn, values):
    _same_grads(fn, *[np.array(v) for v in values])


def test_atan2_second_derivative_away_from_the_origin_matches_torch():
    out = []  # (at the origin itself torch's is NaN: undefined there)
    for m in (cr, torch):
        a = m.tensor([0.0, 1.0, -0.5], dtype=m.float64, requires_grad=True)
        b = m.tensor([3.0, 2.0, 0.0], dtype=m.float64, requires_grad=True)
        ga, gb = m.autograd.grad(m.atan2(a, b).sum(), (a, b), create_graph=True)
        out.append([g.tolist() for g in m.autograd.grad((ga + gb).sum(), (a, b))])
    np.testing.assert_allclose(out[0], out[1], rtol=1e-12)


# ---- 11: chainrule train: one line and exit 2 for bad arguments; quiet on a closed pipe -------
def _cli(capsys, *args):
    from chainrule.cli import main

    rc = main(["train", "--no-progress", "--epochs", "1", *args])
    err = capsys.readouterr().err
    return rc, err


@pytest.mark.parametrize("args,message", [
    (("--out", ""), "--out needs a directory name"),
    (("--seed", "x"), "--seed"),
    (("--epochs", "-3"), "--epochs must be positive"),
    (("--lr", "nan"), "--lr must be finite"),
])
def test_train_bad_arguments_are_one_line_and_exit_2(capsys, tmp_path, args, message):
    rc, err = _cli(capsys, *args)
    assert rc == 2 and message in err and "Traceback" not in err and len(err.splitlines()) == 1


def test_train_output_path_that_cannot_be_created(capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    rc, err = _cli(capsys, "--data", "moons", "--out", str(blocker / "sub"))
    assert rc == 2 and "--out" in err and "Traceback" not in err and len(err.splitlines()) == 1


def test_train_malformed_mnist_files(capsys, tmp_path):
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        (tmp_path / name).write_bytes(b"garbage!")
    rc, err = _cli(capsys, "--data", "mnist", "--data-root", str(tmp_path), "--out",
                   str(tmp_path / "o"))
    assert rc == 2 and "not an IDX file" in err and len(err.splitlines()) == 1


def test_train_negative_seed_is_accepted_as_torch_seeds(capsys, tmp_path):
    rc, err = _cli(capsys, "--data", "moons", "--seed", "-1", "--out", str(tmp_path / "o"))
    assert rc == 0, err


def test_train_piped_into_head_exits_quietly(tmp_path):
    cmd = (f"{sys.executable} -m chainrule train --data moons --epochs 3 --no-progress "
           f"--out {tmp_path / 'o'} | head -1")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    r = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True, text=True,
                       env=env, timeout=300)
    assert r.stdout.startswith("training ") and len(r.stdout.splitlines()) == 1
    assert "Traceback" not in r.stderr and "BrokenPipe" not in r.stderr, r.stderr


# ---- 12: a crafted file raises SerializationError naming the file and the problem --------------
_T = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}


def _with_structure(structure: str, spec=_T, data=bytes(8)) -> bytes:
    return _safetensors({"t": spec, "__metadata__": {"chainrule.structure": structure}}, data)


@pytest.mark.parametrize("raw,problem", [
    (_safetensors({"t": {"dtype": "F32", "shape": [2**62, 0], "data_offsets": [0, 0]}}),
     "shape"),
    (_safetensors({"t": {"dtype": "F32", "shape": [2**70], "data_offsets": [0, 8]}}, bytes(8)),
     "shape"),
    (_safetensors({"t": {"dtype": "F32", "shape": [1] * 70, "data_offsets": [0, 4]}}, bytes(4)),
     "dims"),
    (_safetensors({"t": {"dtype": "F32", "shape": [2.0], "data_offsets": [0, 8]}}, bytes(8)),
     "bad entry"),
    (_safetensors({"t": {"dtype": "F32", "shape": ["2"], "data_offsets": [0, 8]}}, bytes(8)),
     "bad entry"),
    (_safetensors({"t": {"dtype": "F32", "shape": [True, 2], "data_offsets": [0, 8]}}, bytes(8)),
     "bad entry"),
    (_safetensors({"t": {"dtype": "F32", "shape": [2], "data_offsets": [0]}}, bytes(8)),
     "bad entry"),
    (_safetensors({"t": {"dtype": "X9", "shape": [2], "data_offsets": [0, 8]}}, bytes(8)),
     "unsupported dtype"),
    (_safetensors({"t": 5}), "bad entry"),
    (_safetensors({"t": _T}, bytes(4)), "truncated"),
    (_with_structure('{"__tensor__": ["t"]}'), "missing tensor entry"),
    (_with_structure('{"__tensor__": "t", "device": 5}'), "device"),
    (_with_structure('{"__tensor__": "t", "device": "tpu"}'), "device"),
    (_with_structure('{"__dtype__": "Tensor"}'), "unknown dtype"),
    (_with_structure('{"__dtype__": "__class__"}'), "unknown dtype"),
    (_with_structure('{"__device__": "nope"}'), "not a device"),
    (_with_structure('{"__size__": ["a"]}'), "Size"),
    (_with_structure('{"__size__": [-1]}'), "Size"),
    (_with_structure('{"__npscalar__": "t"}'), "NumPy scalar"),
    (_with_structure('{"__tensor__": "t", "requires_grad": true}',
                     {"dtype": "I64", "shape": [1], "data_offsets": [0, 8]}), "requires_grad"),
    (_with_structure("[" * 100000), "structure"),
    (_with_structure('{"a": 1, "b": 2}'), "unexpected structure element"),
])
def test_crafted_files_raise_serialization_error(tmp_path, raw, problem):
    path = tmp_path / "crafted.safetensors"
    path.write_bytes(raw)
    with pytest.raises(SerializationError, match=problem) as info:
        cr.load(path)
    assert str(path) in str(info.value)


def test_random_crafted_headers_raise_only_serialization_error():
    rng = np.random.default_rng(0)
    choices = [None, True, 0, -1, 1.5, "x", "F32", [], {}, [1], [2**70], [-1], ["a"], [0, 2**64],
               [2**62, 2**62], [[1]], "BF16", "I64", [0, 8], [2], [8, 0]]
    for _ in range(300):
        spec = {k: choices[rng.integers(len(choices))] for k in ("dtype", "shape", "data_offsets")
                if rng.random() < 0.9}
        raw = _safetensors({"t": spec}, bytes(int(rng.choice([0, 8, 16]))))
        try:
            cr.load(io.BytesIO(raw))
        except SerializationError:
            pass


# ---- 13: narrow, binary_cross_entropy, where, linspace as torch ----------------------------------
@pytest.mark.parametrize("call", [
    lambda m: m.arange(5).narrow(0, 3, 4),
    lambda m: m.arange(5).narrow(0, -6, 1),
    lambda m: m.nn.functional.binary_cross_entropy(m.tensor([0.5]), m.tensor([2.0])),
    lambda m: m.nn.functional.binary_cross_entropy(m.tensor([0.5]), m.tensor([-0.5])),
    lambda m: m.nn.functional.binary_cross_entropy(m.tensor([1.5]), m.tensor([1.0])),
    lambda m: m.where(m.tensor([1.0, 0.0]), m.tensor([1.0, 2.0]), m.tensor([3.0, 4.0])),
    lambda m: m.where(m.tensor([1, 0]), m.tensor([1.0, 2.0]), m.tensor([3.0, 4.0])),
    lambda m: m.linspace(0, 1, -1),
    lambda m: m.logspace(0, 1, -2),
], ids=["narrow past end", "narrow before start", "bce target > 1", "bce target < 0",
        "bce input > 1", "where float condition", "where int condition", "linspace -1",
        "logspace -2"])
def test_bad_calls_raise_as_torch(call):
    with pytest.raises(Exception) as want:
        call(torch)
    with pytest.raises(type(want.value)) as got:
        call(cr)
    first = str(want.value).split("(")[0].strip()
    assert first.split(":")[-1].strip()[:30] in str(got.value), (str(got.value), first)


def test_where_uint8_condition_warns_and_works_as_torch():
    with pytest.warns(UserWarning, match="uint8 condition"):
        out = cr.where(cr.tensor([1, 0], dtype=cr.uint8), cr.tensor([1.0, 2.0]),
                       cr.tensor([3.0, 4.0]))
    assert out.tolist() == [1.0, 4.0]


def test_linspace_edge_cases_match_torch():
    for steps in (0, 1, 2, 5):
        np.testing.assert_allclose(cr.linspace(-1, 2, steps).numpy(),
                                   torch.linspace(-1, 2, steps).numpy(), rtol=1e-6)


# ---- found by the differential fuzzer (tests/fuzz_programs.py) ---------------------------------
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("n", [3, 100])  # (the C loop and the NumPy path)
def test_relu_gradient_is_zero_where_x_is_not_positive_even_for_an_infinite_gradient(dtype, n):
    a = np.linspace(-1, 1, n).astype(dtype)
    a[0] = 0.0
    got = []
    for m in (cr, torch):
        x = m.tensor(a, requires_grad=True)
        y = m.relu(x)
        (1 / y).sum().backward()  # 1/0 = inf: its gradient -1/y² is -inf where y = 0
        got.append(x.grad.detach().numpy())
    np.testing.assert_allclose(got[0], got[1], rtol=1e-6)  # (-inf included, no NaN)
    assert not np.isnan(got[0]).any()


@pytest.mark.parametrize("dim", [None, 0])
def test_prod_of_one_factor_passes_the_gradient_through(dim):
    """prod over a single element: dy/dx = 1 with no graph back to x (torch's), so a hook on
    the result does not change second derivatives through y/x."""
    out = []
    for m in (cr, torch):
        x = m.tensor(1.7, dtype=m.float64, requires_grad=True)
        y = m.prod(x) if dim is None else m.prod(x, dim)
        y.register_hook(lambda g: g * 2)
        (g,) = m.autograd.grad(y * 0.7, x, create_graph=True)
        out.append((g.item(), g.requires_grad))
    assert out[0] == out[1]


def test_as_strided_of_a_non_contiguous_input_is_refused_not_silently_different():
    """torch's as_strided reads the storage a view shares with its base; chainrule reads the
    elements in logical order: the same for contiguous input, refused for the rest."""
    x = cr.arange(12.0).reshape(3, 4)
    assert cr.equal(cr.as_strided(x, (2, 2), (1, 2)),
                    cr.tensor(torch.as_strided(torch.arange(12.0).reshape(3, 4), (2, 2),
                                               (1, 2)).numpy()))
    for view in (x.t(), x[:, ::2]):
        with pytest.raises(RuntimeError, match=r"as_strided\(\).*not contiguous"):
            cr.as_strided(view, (2, 2), (1, 2))
    with pytest.raises(RuntimeError, match=r"as_strided_scatter\(\).*not contiguous"):
        cr.as_strided_scatter(x.t(), cr.zeros(2, 2), (2, 2), (1, 2))


@pytest.mark.parametrize("name,fn,x", [
    ("floor", lambda m, t: t.floor(), [0.5, -1.2]),
    ("round", lambda m, t: t.round(), [0.2, 1.7]),
    ("sign", lambda m, t: t.sign(), [0.5, 0.0]),
    ("hardtanh", lambda m, t: m.nn.functional.hardtanh(t), [2.0, 0.3, -3.0]),
    ("pow 0", lambda m, t: t ** 0, [0.0, 2.0]),
    ("threshold", lambda m, t: m.nn.functional.threshold(t, 0.5, -3.0), [math.nan, 0.2, 1.0]),
])
def test_zero_gradients_stay_zero_under_an_infinite_upstream_gradient(name, fn, x):
    got = []
    for m in (cr, torch):
        t = m.tensor(x, dtype=m.float64, requires_grad=True)
        out = fn(m, t)
        out.backward(m.tensor(np.full(tuple(out.shape), np.inf)))
        got.append((out.detach().numpy(), t.grad.numpy()))
    np.testing.assert_array_equal(got[0][0], got[1][0])
    np.testing.assert_array_equal(got[0][1], got[1][1])


@pytest.mark.parametrize("name", ["elu", "selu", "celu"])
def test_elu_family_gradient_at_nan_and_infinities_matches_torch(name):
    _same_grads(lambda m, t: getattr(m.nn.functional, name)(t),
                np.array([-math.inf, math.inf, -1.0, math.nan, 0.0]))


@pytest.mark.parametrize("interpolation", ["linear", "lower", "higher", "nearest", "midpoint"])
def test_quantile_with_infinities_and_overflow_matches_torch(interpolation):
    """lower/higher/nearest pick a value (an infinity stays one, was NaN); linear and midpoint
    interpolate from the nearer end as torch's lerp (so overflow goes the same way)."""
    inf = math.inf
    rows = [[-inf, -inf, 1.0, inf, inf], [-1.7e308, 1.7e308, 0.0, 0.0, 0.0],
            [-inf, 2.0, 3.0, 4.0, 5.0]]
    for q in (0.0, 0.1, 0.3, 0.5, 0.9, 1.0):
        for name in ("quantile", "nanquantile"):
            got = getattr(cr, name)(cr.tensor(rows, dtype=cr.float64), q, dim=1,
                                    interpolation=interpolation).numpy()
            want = getattr(torch, name)(torch.tensor(rows, dtype=torch.float64), q, dim=1,
                                        interpolation=interpolation).numpy()
            np.testing.assert_allclose(got, want, rtol=1e-12)  # (NaN where torch's is NaN)
    x = cr.tensor([[0.3, -1.2, 2.5, 0.7], [1.1, 0.4, -0.6, 2.2]], dtype=cr.float64,
                  requires_grad=True)
    assert cr.autograd.gradcheck(lambda t: cr.quantile(t, 0.3, dim=1,
                                                       interpolation=interpolation), (x,))


@pytest.mark.parametrize("red", ["amax", "amin"])
@pytest.mark.parametrize("how", ["index_reduce", "scatter_reduce"])
def test_reduce_excluding_self_gives_the_sources_their_whole_gradient(red, how):
    """include_self=False: an input value equal to the result was not reduced, so the source
    that won takes the whole gradient (torch 2.13 counts the input among the winners and gives
    the source half: checked here against finite differences and against torch computing the
    same function as include_self=True over an input filled with ∓inf where written)."""
    sign = 1.0 if red == "amax" else -1.0
    x0 = np.array([[1.0, 0.3], [2.0, -0.4], [5.0, 0.9]]) * sign
    s0 = np.array([[0.0, 0.1], [0.0, 0.2], [5.0, 0.9]]) * sign  # s[2] ties x[2], not s[0]
    fill = -math.inf if red == "amax" else math.inf

    def run(m, x, s, include_self):
        if how == "index_reduce":
            return m.index_reduce(x, 0, m.tensor([2, 0, 2]), s, red, include_self=include_self)
        return m.scatter_reduce(x, 0, m.tensor([[2, 2], [0, 0], [2, 2]]), s, red,
                                include_self=include_self)

    x = cr.tensor(x0, requires_grad=True)
    s = cr.tensor(s0, requires_grad=True)
    run(cr, x, s, False).sum().backward()
    np.testing.assert_array_equal(s.grad.numpy(), [[0, 0], [1, 1], [1, 1]])
    np.testing.assert_array_equal(x.grad.numpy(), [[0, 0], [1, 1], [0, 0]])
    tx = torch.tensor(x0, requires_grad=True)
    ts = torch.tensor(s0, requires_grad=True)
    filled = (tx.index_fill(0, torch.tensor([2, 0]), fill) if how == "index_reduce" else
              tx.scatter(0, torch.tensor([[2, 2], [0, 0], [2, 2]]), fill))
    run(torch, filled, ts, True).sum().backward()
    np.testing.assert_array_equal(s.grad.numpy(), ts.grad.numpy())
    np.testing.assert_array_equal(x.grad.numpy(), tx.grad.numpy())
    assert cr.autograd.gradcheck(lambda a, b: run(cr, a, b, False),
                                 (cr.tensor(x0, requires_grad=True),
                                  cr.tensor(s0, requires_grad=True)))


def test_batch_norm_with_a_strided_weight_as_torch_with_a_contiguous_one():
    """torch 2.13's CPU batch_norm backward reads a strided weight's memory as contiguous
    (wrong input gradient); chainrule's equals torch's with the weight made contiguous."""
    rng = np.random.default_rng(0)
    x0, w0, b0 = rng.standard_normal((4, 3)), rng.standard_normal(6), rng.standard_normal(3)
    out = []
    for m, contiguous in ((cr, False), (torch, True)):
        x = m.tensor(x0, requires_grad=True)
        wb = m.tensor(w0, requires_grad=True)
        w = wb[::2].contiguous() if contiguous else wb[::2]
        y = m.batch_norm(x, w, m.tensor(b0), None, None, True, 0.1, 1e-5, False)
        (y * m.tensor(x0[::-1].copy())).sum().backward()
        out.append((y.detach().numpy(), x.grad.numpy(), wb.grad.numpy()))
    for got, want in zip(*out):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", ["median", "nanmedian"])
def test_median_of_an_expanded_input_as_torch_of_a_contiguous_one(name):
    """torch 2.13's CPU median/nanmedian over a dim of an expanded (stride 0) input reads out of
    bounds; chainrule's equals torch's on a contiguous copy."""
    base = np.array([[1.5, -2.0, 0.25, 4.0]])
    for dim in (0, 1):
        got = getattr(cr, name)(cr.tensor(base).expand(3, 4), dim)
        want = getattr(torch, name)(torch.tensor(base).expand(3, 4).contiguous(), dim)
        np.testing.assert_array_equal(got.values.numpy(), want.values.numpy())


@pytest.mark.parametrize("name", ["hardshrink", "softshrink"])
def test_shrink_keeps_nan_as_torch(name):
    """hardshrink/softshrink of NaN is NaN (was 0); the gradient is 0 at NaN (torch's vectorized
    loop; its scalar tail passes the gradient) and as torch's elsewhere."""
    fn = getattr(F, name)
    a = np.array([math.nan, -math.inf, math.inf, -0.7, -0.5, -0.2, 0.0, 0.3, 0.5, 2.0])
    got = fn(cr.tensor(a), 0.5).numpy()
    want = getattr(torch.nn.functional, name)(torch.tensor(a), 0.5).numpy()
    np.testing.assert_array_equal(got, want)
    _same_grads(lambda m, t: getattr(m.nn.functional, name)(t, 0.5), a[1:])
    x = cr.tensor(a, requires_grad=True)
    fn(x, 0.5).sum().backward()
    assert x.grad[0].item() == 0.0
    away = cr.tensor([-0.7, -0.2, 0.3, 2.0], dtype=cr.float64, requires_grad=True)  # (kinks)
    assert cr.autograd.gradgradcheck(lambda t: fn(t, 0.5) * t, (away,))


@pytest.mark.parametrize("name", ["i0", "special.i0e", "special.i1", "special.i1e"])
def test_modified_bessel_at_nan_infinities_and_large_arguments_as_torch(name):
    """i0(NaN) raised ValueError; i0e/i1e overflowed to NaN from |x| ≈ 710 (computed as
    I(x)·e^(-|x|)) and were NaN at ±inf: now scaled gates, with the asymptotic series for
    |x| > 500; i1 lost digits near 0 (13% off at 3e-16): the power series below 1; I₁'s
    gradient is ½ at NaN and |x| <= eps with a finite second derivative, as torch's."""
    def fn(m):
        return getattr(m.special, name.split(".")[1]) if "." in name else getattr(m, name)

    a = np.array([math.nan, math.inf, -math.inf, 0.0, -2.5, 499.0, 501.0, 712.0, -800.0, 1e4,
                  -1e7, 3e300, 3e-16, -1e-8, 1e-3, 0.999, 1.001])
    for dt in ("float64", "float32"):
        got = fn(cr)(cr.tensor(a, dtype=getattr(cr, dt))).numpy()
        want = fn(torch)(torch.tensor(a, dtype=getattr(torch, dt))).numpy()
        np.testing.assert_allclose(got, want, rtol=1e-13 if dt == "float64" else 1e-6)
    _same_grads(lambda m, t: fn(m)(t), a[4:10])
    x = cr.tensor([0.4, -1.3, 3.0, 12.0, -600.0], dtype=cr.float64, requires_grad=True)
    assert cr.autograd.gradcheck(fn(cr), (x,)) and cr.autograd.gradgradcheck(fn(cr), (x,))
    out = []
    for m in (cr, torch):  # at NaN and 0: the first and second derivatives as torch's
        t = m.tensor([math.nan, 0.0, 1.5], dtype=m.float64, requires_grad=True)
        (g,) = m.autograd.grad(fn(m)(t).sum(), t, create_graph=True)
        (gg,) = m.autograd.grad(g.sum(), t)
        out.append((g.detach().numpy(), gg.numpy()))
    for got, want in zip(*out):
        np.testing.assert_allclose(got, want, rtol=1e-12)


def test_xlog1py_gradients_at_x_zero_as_torch():
    """d/dx x·log1p(y) is log1p(y) at x = 0 too (was 0: the op was a where() around a product);
    0 where y <= -1, as torch's."""
    ys = [-1.0, -2.0, 0.5, math.nan, math.inf, -0.5, 0.0] * 3
    xs = [0.0] * 7 + [1.5] * 7 + [math.nan] * 7
    out = []
    for m in (cr, torch):
        x = m.tensor(xs, dtype=m.float64, requires_grad=True)
        y = m.tensor(ys, dtype=m.float64, requires_grad=True)
        z = m.special.xlog1py(x, y)
        z.sum().backward()
        out.append((z.detach().numpy(), x.grad.numpy(), y.grad.numpy()))
    for got, want in zip(*out):
        np.testing.assert_array_equal(got, want)
    x = cr.tensor([0.3, -1.2, 2.0], dtype=cr.float64, requires_grad=True)
    y = cr.tensor([0.5, 2.0, -0.5], dtype=cr.float64, requires_grad=True)
    assert cr.autograd.gradgradcheck(cr.special.xlog1py, (x, y))


def test_prelu_with_an_infinite_or_nan_slope_keeps_positive_inputs_gradient():
    """prelu's x-gradient is 1 where x > 0 whatever the slope (was NaN for an inf/NaN slope:
    the unused branch x·w of a where()); the slope's gradient as torch's."""
    x0 = np.array([[0.5, -1.0, 2.0], [-0.3, 0.7, -2.0]])
    w0 = np.array([math.inf, math.nan, -0.25])
    out = []
    for m in (cr, torch):
        x = m.tensor(x0, requires_grad=True)
        w = m.tensor(w0, requires_grad=True)
        y = m.nn.functional.prelu(x, w)
        (y * m.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])).sum().backward()
        out.append((y.detach().numpy(), x.grad.numpy(), w.grad.numpy()))
    for got, want in zip(*out):
        np.testing.assert_array_equal(got, want)
    xs = cr.tensor(x0, requires_grad=True)
    assert cr.autograd.gradgradcheck(lambda a, b: cr.nn.functional.prelu(a, b),
                                     (xs, cr.tensor([0.2, -0.4, 1.5], dtype=cr.float64,
                                                    requires_grad=True)))


def test_overwritten_slice_gets_zero_gradient_under_an_infinite_or_nan_gradient():
    """select_scatter / x[i] = v: the overwritten part of x gets 0, not 0·inf = NaN (the
    gradient was masked by a product)."""
    g = [[math.nan, math.inf, 1.0], [2.0, 3.0, 4.0]]
    out = []
    for m in (cr, torch):
        x = m.zeros(2, 3, requires_grad=True)
        m.select_scatter(x, m.ones(3), 0, 0).backward(m.tensor(g))
        x2 = m.zeros(2, 3, requires_grad=True)
        y = x2.clone()
        y[:, 1] = m.ones(2)
        y.backward(m.tensor(g))
        out.append((x.grad.numpy(), x2.grad.numpy()))
    for got, want in zip(*out):
        np.testing.assert_array_equal(got, want)


def test_sinc_second_derivative_at_zero_is_the_series_value():
    """sinc'(0) = 0 and sinc''(0) = -π²/3: the gradient at 0 is the series -π²x/3, so a double
    backward at 0 is right (torch's is NaN there); away from 0 gradgradcheck and torch agree."""
    torch = pytest.importorskip("torch")
    x = cr.tensor([0.0, -0.0, 0.5, 1.0, -3.0], dtype=cr.float64, requires_grad=True)
    (g,) = cr.autograd.grad(cr.sinc(x).sum(), x, create_graph=True)
    (gg,) = cr.autograd.grad(g.sum(), x)
    assert g[0].item() == 0.0
    np.testing.assert_allclose(gg[:2].numpy(), -math.pi ** 2 / 3, rtol=1e-15)
    t = torch.tensor([0.5, 1.0, -3.0], dtype=torch.float64, requires_grad=True)
    (tg,) = torch.autograd.grad(torch.sinc(t).sum(), t, create_graph=True)
    (tgg,) = torch.autograd.grad(tg.sum(), t)
    np.testing.assert_allclose(gg[2:].numpy(), tgg.numpy(), rtol=1e-12)
    away = cr.tensor([0.3, -1.7, 2.2], dtype=cr.float64, requires_grad=True)
    assert cr.autograd.gradgradcheck(cr.sinc, (away,))
