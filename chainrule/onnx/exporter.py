"""The ONNX exporter: run the model once recording its gates, then translate gate by gate.

Each gate class maps to a small function in ``GATES`` (the one table of this module) that emits
the ONNX nodes for it; gates stay unaware of ONNX. A gate whose inputs are all parameters or
constants is not emitted: its output (known from the trace) becomes a constant.
"""

from __future__ import annotations

import numpy as np

from chainrule import devices
from chainrule.autograd.function import Op
from chainrule.autograd.graph import nodes_in_order, parents
from chainrule.onnx.errors import UnsupportedOperatorError
from chainrule.tensor import Tensor

__all__ = ["export_model", "GATES"]

DEFAULT_OPSET = 17
_MISSING = ("cr.onnx.export needs the onnx package (an optional extra): "
            "pip install 'chainrule[onnx]' (or pip install onnx)")


def _onnx():
    try:
        import onnx
    except ImportError:
        raise ImportError(_MISSING) from None
    return onnx


class _Builder:
    """Names, nodes and initializers of the graph being built."""

    def __init__(self, onnx, opset: int) -> None:
        self.onnx, self.h, self.opset = onnx, onnx.helper, opset
        self.nodes: list = []
        self.inits: list = []
        self.count = 0

    def fresh(self, hint: str) -> str:
        self.count += 1
        return f"{hint}_{self.count}"

    def const(self, value, name: str | None = None, dtype=None) -> str:
        a = np.asarray(devices.to_device(value, "cpu") if devices.is_array(value) else value,
                       dtype=dtype)
        name = name or self.fresh("const")
        self.inits.append(self.onnx.numpy_helper.from_array(np.ascontiguousarray(a), name))
        return name

    def ints(self, values) -> str:
        return self.const(np.asarray(list(values), dtype=np.int64))

    def node(self, op: str, inputs: list, n_out: int = 1, **attrs) -> list:
        outs = [self.fresh(op.lower()) for _ in range(n_out)]
        self.nodes.append(self.h.make_node(op, [i or "" for i in inputs], outs, **attrs))
        return outs

    def one(self, op: str, inputs: list, **attrs) -> str:
        return self.node(op, inputs, **attrs)[0]

    def val(self, arg) -> str | None:
        """The name of a gate input: a graph value's, or a new constant's (None for None)."""
        name, value = arg
        if name is not None or value is None:
            return name
        return self.const(value)

    def operand(self, arg, like) -> str:
        """``val``, with a Python scalar made a constant of ``like``'s dtype."""
        name, value = arg
        if name is not None or _const_array(value):
            return self.val(arg)
        return self.const(np.asarray(value, dtype=np.asarray(like[1]).dtype))


# ---- gate -> ONNX ------------------------------------------------------------------------------
# Each entry: fn(b, node, ins) -> list of output names; ins[i] = (name or None, traced value).
def _unary(op: str, **attrs):
    return lambda b, node, ins: [b.one(op, [ins[0][0]], **attrs)]


def _binary(op: str):
    def emit(b, node, ins):
        x, y = ins[0], ins[1]
        return [b.one(op, [b.operand(x, y), b.operand(y, x)])]

    return emit


def _reduce(op: str, axes_input_from: int):
    def emit(b, node, ins):
        (x, v), axes, keep = ins[0], ins[1][1], ins[2][1]
        axes = list(range(np.ndim(v))) if axes is None else list(
            (axes,) if isinstance(axes, int) else axes)
        return [_reduced(b, op, x, axes, bool(keep), axes_input_from)]

    return emit


def _reduced(b, op: str, x: str, axes: list, keep: bool, axes_input_from: int) -> str:
    if b.opset >= axes_input_from:
        return b.one(op, [x, b.ints(axes)], keepdims=int(keep))
    return b.one(op, [x], axes=axes, keepdims=int(keep))


def _variance(sqrt: bool):
    """Σ(x - mean)² / (n - correction) over the axes (and its square root for std)."""
    def emit(b, node, ins):
        (x, v), axes, correction, keep = ins[0], ins[1][1], ins[2][1], ins[3][1]
        axes = list(range(np.ndim(v))) if axes is None else list(
            (axes,) if isinstance(axes, int) else axes)
        n = int(np.prod([np.shape(v)[a] for a in axes]))
        dev = b.one("Sub", [x, _reduced(b, "ReduceMean", x, axes, True, 18)])
        total = _reduced(b, "ReduceSum", b.one("Mul", [dev, dev]), axes, bool(keep), 13)
        y = b.one("Div", [total, b.const(np.asarray(n - correction, np.asarray(v).dtype))])
        return [b.one("Sqrt", [y]) if sqrt else y]

    return emit


def _softmax(op: str):
    return lambda b, node, ins: [b.one(op, [ins[0][0]], axis=int(ins[1][1]))]


def _gelu(b, node, ins):
    """x·Φ(x) = 0.5·x·(1 + erf(x/√2))"""
    (x, v) = ins[0]
    c = lambda s: b.const(np.asarray(s, dtype=np.asarray(v).dtype))  # noqa: E731
    e = b.one("Erf", [b.one("Mul", [x, c(0.5 ** 0.5)])])
    return [b.one("Mul", [b.one("Mul", [x, c(0.5)]), b.one("Add", [e, c(1.0)])])]


def _silu(b, node, ins):
    x = ins[0][0]
    return [b.one("Mul", [x, b.one("Sigmoid", [x])])]


def _clamp(b, node, ins):
    (x, v), lo, hi = ins[0], ins[1][1], ins[2][1]
    dt = np.asarray(v).dtype
    bound = lambda s: "" if s is None else b.const(np.asarray(s, dtype=dt))  # noqa: E731
    return [b.one("Clip", [x, bound(lo), bound(hi)])]


def _softplus(b, node, ins):
    (x, v), beta, threshold = ins[0], ins[1][1], ins[2][1]
    dt = np.asarray(v).dtype
    c = lambda s: b.const(np.asarray(s, dtype=dt))  # noqa: E731
    bx = b.one("Mul", [x, c(beta)])
    soft = b.one("Div", [b.one("Softplus", [bx]), c(beta)])
    return [b.one("Where", [b.one("Greater", [bx, c(threshold)]), x, soft])]


def _composed(*steps):
    """A chain of ONNX ops with constants of x's dtype: steps are (op, constant or None,
    constant first?), e.g. log1p = Log(Add(x, 1))."""
    def emit(b, node, ins):
        (y, v) = ins[0]
        dt = np.asarray(v).dtype
        for op, c, first in steps:
            if c is None:
                y = b.one(op, [y])
            else:
                k = b.const(np.asarray(c, dtype=dt))
                y = b.one(op, [k, y] if first else [y, k])
        return [y]

    return emit


def _cumsum(b, node, ins):
    return [b.one("CumSum", [ins[0][0], b.const(np.asarray(int(ins[1][1]), np.int64))])]


def _max_dim(op: str, arg: str):
    def emit(b, node, ins):
        (x, _), dim, keep = ins[0], int(ins[1][1]), bool(ins[2][1])
        return [_reduced(b, op, x, [dim], keep, 18), b.one(arg, [x], axis=dim, keepdims=int(keep))]

    return emit


def _pad(b, node, ins):
    (x, v), widths, value = ins[0], ins[1][1], ins[2][1]
    if any(lo < 0 or hi < 0 for lo, hi in widths):
        raise UnsupportedOperatorError(_unsupported(node, "ConstantPad with negative padding"))
    pads = [lo for lo, _ in widths] + [hi for _, hi in widths]
    fill = b.const(np.asarray(value, dtype=np.asarray(v).dtype))
    return [b.one("Pad", [x, b.ints(pads), fill], mode="constant")]


def _flip(b, node, ins):
    axes = [int(a) for a in (ins[1][1] if isinstance(ins[1][1], (tuple, list)) else [ins[1][1]])]
    n = len(axes)
    return [b.one("Slice", [ins[0][0], b.ints([-1] * n), b.ints([-_END] * n), b.ints(axes),
                            b.ints([-1] * n)])]


def _trilu(upper: int):
    def emit(b, node, ins):
        k = b.const(np.asarray(int(ins[1][1]), np.int64))
        return [b.one("Trilu", [ins[0][0], k], upper=upper)]

    return emit


def _linear(b, node, ins):
    (x, xv), w, bias = ins[0], b.val(ins[1]), b.val(ins[2])
    if np.ndim(xv) == 2:
        return [b.one("Gemm", [x, w, bias], transB=1)]
    y = b.one("MatMul", [x, b.one("Transpose", [w], perm=[1, 0])])
    return [y if bias is None else b.one("Add", [y, bias])]


def _reshape(b, node, ins):
    (x, v), shape = ins[0], tuple(ins[1][1])
    old = tuple(np.shape(v))
    if tuple(s for s in shape if s != 1) == tuple(s for s in old if s != 1):
        if len(shape) > len(old) and _inserted_ones(old, shape) is not None:
            return [b.one("Unsqueeze", [x, b.ints(_inserted_ones(old, shape))])]
        if len(old) > len(shape) and _inserted_ones(shape, old) is not None:
            return [b.one("Squeeze", [x, b.ints(_inserted_ones(shape, old))])]
    target = list(shape)
    for i in range(min(len(old), len(shape))):  # 0: "this dim of the input", so a batch can vary
        if old[i] != shape[i]:
            break
        target[i] = 0
    return [b.one("Reshape", [x, b.ints(target)])]


def _inserted_ones(short: tuple, long: tuple) -> list | None:
    """The positions of ``long`` that are 1s inserted into ``short`` (None if it is not so)."""
    axes, j = [], 0
    for i, s in enumerate(long):
        if j < len(short) and short[j] == s:
            j += 1
        elif s == 1:
            axes.append(i)
        else:
            return None
    return axes if j == len(short) else None


def _permute(b, node, ins):
    return [b.one("Transpose", [ins[0][0]], perm=[int(p) for p in ins[1][1]])]


def _expand(b, node, ins):
    return [b.one("Expand", [ins[0][0], b.ints(ins[1][1])])]


def _cat(b, node, ins):
    return [b.one("Concat", [b.val(a) for a in ins[1:]], axis=int(ins[0][1]))]


def _stack(b, node, ins):
    axis = int(ins[0][1])
    parts = [b.one("Unsqueeze", [b.val(a), b.ints([axis])]) for a in ins[1:]]
    return [b.one("Concat", parts, axis=axis)]


def _split(b, node, ins):
    (x, _), axis, bounds = ins[0], int(ins[1][1]), list(ins[2][1])
    sizes = [hi - lo for lo, hi in zip(bounds[:-1], bounds[1:])]
    return b.node("Split", [x, b.ints(sizes)], n_out=len(sizes), axis=axis)


def _unbind(b, node, ins):
    (x, v), axis = ins[0], int(ins[1][1])
    n = np.shape(v)[axis]
    parts = b.node("Split", [x, b.ints([1] * n)], n_out=n, axis=axis)
    return [b.one("Squeeze", [p, b.ints([axis])]) for p in parts]


_END = 2**62  # "to the end" for ONNX's Slice (clamped to the dimension)


def _index(b, node, ins):
    """Basic indexing: ints, slices, None and ``...`` (advanced indexing is not mapped)."""
    (x, v), key = ins[0], ins[1][1]
    key = key if isinstance(key, tuple) else (key,)
    if any(not (k is None or k is Ellipsis or isinstance(k, (int, slice))) for k in key):
        raise UnsupportedOperatorError(_unsupported(node, "Index with index arrays or masks"))
    n_real = sum(1 for k in key if k is not None and k is not Ellipsis)
    if Ellipsis in key:
        i = key.index(Ellipsis)
        key = key[:i] + (slice(None),) * (np.ndim(v) - n_real) + key[i + 1:]
    starts, ends, axes, steps, drop, new = [], [], [], [], [], []
    dim = 0
    for k in key:
        if k is None:
            new.append(dim + len(new) - len(drop))
            continue
        if isinstance(k, int):  # negative indices stay negative: they count from the end
            starts.append(k), ends.append(k + 1 if k != -1 else _END), axes.append(dim)
            steps.append(1), drop.append(dim)
        elif k != slice(None):
            step = k.step or 1
            lo = k.start if k.start is not None else (0 if step > 0 else _END)
            hi = k.stop if k.stop is not None else (_END if step > 0 else -_END)
            starts.append(lo), ends.append(hi), axes.append(dim), steps.append(step)
        dim += 1
    y = x
    if axes:
        y = b.one("Slice", [y, b.ints(starts), b.ints(ends), b.ints(axes), b.ints(steps)])
    if drop:
        y = b.one("Squeeze", [y, b.ints(drop)])
    if new:
        y = b.one("Unsqueeze", [y, b.ints(new)])
    return [y if y != x else b.one("Identity", [x])]


def _identity(b, node, ins):
    return [b.one("Identity", [ins[0][0]])]


def _cast(b, node, ins):
    to = b.h.np_dtype_to_tensor_dtype(np.dtype(ins[1][1]))
    return [b.one("Cast", [ins[0][0]], to=to)]


def _pow(b, node, ins):
    x, y = ins[0], ins[1]
    return [b.one("Pow", [b.operand(x, y), b.operand(y, x)])]


def _where(b, node, ins):
    c, x, y = ins
    return [b.one("Where", [b.val(c), b.operand(x, y), b.operand(y, x)])]


def _conv_attrs(g, groups=None) -> dict:
    attrs = dict(kernel_shape=[g.kh, g.kw], strides=[g.sh, g.sw], pads=[g.pt, g.pl, g.pb, g.pr],
                 dilations=[g.dh, g.dw])
    if groups is not None:
        attrs["group"] = int(groups)
    return attrs


def _conv2d(b, node, ins):
    x, w, bias, g, groups = ins[0][0], b.val(ins[1]), b.val(ins[2]), ins[3][1], ins[4][1]
    return [b.one("Conv", [x, w] + ([bias] if bias else []), **_conv_attrs(g, groups))]


def _max_pool2d(b, node, ins):
    return [b.one("MaxPool", [ins[0][0]], **_conv_attrs(ins[1][1]))]


def _avg_pool2d(b, node, ins):
    (x, _), g, recip = ins[0], ins[1][1], np.asarray(ins[2][1])
    attrs = _conv_attrs(g)
    del attrs["dilations"]
    if np.allclose(recip, 1.0 / (g.kh * g.kw)):
        return [b.one("AveragePool", [x], count_include_pad=1, **attrs)]
    if not any((g.pt, g.pb, g.pl, g.pr)):
        raise UnsupportedOperatorError(_unsupported(node, "AvgPool2d with divisor_override"))
    return [b.one("AveragePool", [x], count_include_pad=0, **attrs)]


def _layer_norm(b, node, ins):
    if b.opset < 17:
        raise UnsupportedOperatorError(_unsupported(node, "LayerNorm below opset 17"))
    (x, v), w, bias, nd, eps = ins[0], b.val(ins[1]), b.val(ins[2]), ins[3][1], ins[4][1]
    dt = np.asarray(v).dtype
    shape = np.shape(v)[np.ndim(v) - int(nd):]
    w = w or b.const(np.ones(shape, dt))
    bias = bias or b.const(np.zeros(shape, dt))
    return [b.node("LayerNormalization", [x, w, bias], n_out=1, axis=-int(nd),
                   epsilon=float(eps))[0]]


def _embedding(b, node, ins):
    return [b.one("Gather", [b.val(ins[0]), b.val(ins[1])], axis=0)]


def _attention(b, node, ins):
    """softmax(scale·Q Kᵀ + M) V"""
    (q, qv), k, v, m, scale = ins[0], b.val(ins[1]), b.val(ins[2]), b.val(ins[3]), ins[4][1]
    kv = ins[1][1]
    r = np.ndim(kv)
    kt = b.one("Transpose", [k], perm=list(range(r - 2)) + [r - 1, r - 2])
    s = b.one("Mul", [b.one("MatMul", [q, kt]),
                      b.const(np.asarray(scale, dtype=np.asarray(qv).dtype))])
    if m is not None:
        s = b.one("Add", [s, m])
    return [b.one("MatMul", [b.one("Softmax", [s], axis=-1), v])]


def _einsum(b, node, ins):
    return [b.one("Einsum", [b.val(a) for a in ins[1:]], equation=ins[0][1])]


def _rnn(kind: str):
    """One whole-sequence layer (one direction) as ONNX's LSTM/GRU/RNN op: torch's gate order
    (LSTM i,f,g,o; GRU r,z,n) becomes ONNX's (i,o,f,c; z,r,h)."""
    order = {"LSTM": [0, 3, 1, 2], "GRU": [1, 0, 2], "RNN": [0]}[kind]
    n_states = 2 if kind == "LSTM" else 1

    def emit(b, node, ins):
        x = ins[0][0]
        states = ins[1:1 + n_states]
        w_ih, w_hh, b_ih, b_hh = (np.asarray(devices.to_device(v, "cpu"))
                                  for _, v in ins[1 + n_states:5 + n_states])
        reverse = bool(ins[5 + n_states][1])
        hidden = w_hh.shape[1]

        def reorder(a):
            return np.concatenate([np.split(a, len(order))[i] for i in order])[None]

        bias = np.concatenate([reorder(b_ih)[0], reorder(b_hh)[0]])[None]
        args = [x, b.const(reorder(w_ih)), b.const(reorder(w_hh)), b.const(bias), ""]
        for name, value in states:  # zeros (the default) are left out, so the batch can vary
            if name is None and not np.any(value):
                args.append("")
            else:
                args.append(b.one("Unsqueeze", [b.val((name, value)), b.ints([0])]))
        attrs = dict(hidden_size=int(hidden), direction="reverse" if reverse else "forward")
        if kind == "GRU":
            attrs["linear_before_reset"] = 1
        if kind == "RNN":
            attrs["activations"] = ["Relu" if ins[-1][1] else "Tanh"]
        outs = b.node(kind, args, n_out=1 + n_states, **attrs)
        y = b.one("Squeeze", [outs[0], b.ints([1])])
        return [y] + [b.one("Squeeze", [o, b.ints([0])]) for o in outs[1:]]

    return emit


def _table() -> dict:
    from chainrule.nn import attention as att
    from chainrule.nn import activations as act, embedding, linear, normalization
    from chainrule.nn.modules import rnn
    from chainrule.ops import binary, conv, elementwise as ew, index, linalg, reduce, shape

    t = {
        binary.Add: _binary("Add"), binary.Sub: _binary("Sub"), binary.Mul: _binary("Mul"),
        binary.Div: _binary("Div"), binary.Pow: _pow, binary.Maximum: _binary("Max"),
        binary.Minimum: _binary("Min"), binary.Where: _where,
        ew.Relu: _unary("Relu"), ew.Sigmoid: _unary("Sigmoid"), ew.Tanh: _unary("Tanh"),
        ew.Exp: _unary("Exp"), ew.Log: _unary("Log"), ew.Sqrt: _unary("Sqrt"),
        ew.Neg: _unary("Neg"), ew.Abs: _unary("Abs"), ew.Erf: _unary("Erf"),
        ew.Sin: _unary("Sin"), ew.Cos: _unary("Cos"), ew.Reciprocal: _unary("Reciprocal"),
        ew.Sign: _unary("Sign"), ew.Clamp: _clamp, ew.Softplus: _softplus, ew.Cast: _cast,
        ew.Clone: _identity, ew.Tan: _unary("Tan"), ew.Sinh: _unary("Sinh"),
        ew.Cosh: _unary("Cosh"), ew.Asin: _unary("Asin"), ew.Acos: _unary("Acos"),
        ew.Atan: _unary("Atan"),
        ew.Rsqrt: _composed(("Sqrt", None, 0), ("Reciprocal", None, 0)),
        ew.Log1p: _composed(("Add", 1.0, 0), ("Log", None, 0)),
        ew.Expm1: _composed(("Exp", None, 0), ("Sub", 1.0, 0)),
        ew.Log2: _composed(("Log", None, 0), ("Div", float(np.log(2.0)), 0)),
        ew.Log10: _composed(("Log", None, 0), ("Div", float(np.log(10.0)), 0)),
        ew.Exp2: _composed(("Pow", 2.0, 1)),
        act.Gelu: _gelu, act.Silu: _silu, linear.Linear: _linear,
        normalization.LayerNorm: _layer_norm, embedding.Embedding: _embedding,
        act.LeakyRelu: lambda b, n, ins: [b.one("LeakyRelu", [ins[0][0]], alpha=ins[1][1])],
        act.Elu: lambda b, n, ins: [b.one("Elu", [ins[0][0]], alpha=ins[1][1])],
        reduce.Sum: _reduce("ReduceSum", 13), reduce.Mean: _reduce("ReduceMean", 18),
        reduce.Amax: _reduce("ReduceMax", 18), reduce.Softmax: _softmax("Softmax"),
        reduce.LogSoftmax: _softmax("LogSoftmax"),
        reduce.Logsumexp: _reduce("ReduceLogSumExp", 18), reduce.Prod: _reduce("ReduceProd", 18),
        reduce.Cumsum: _cumsum, reduce.MaxDim: _max_dim("ReduceMax", "ArgMax"),
        reduce.MinDim: _max_dim("ReduceMin", "ArgMin"), reduce.Amin: _reduce("ReduceMin", 18),
        reduce.Var: _variance(False), reduce.Std: _variance(True),
        shape.ConstantPad: _pad, shape.Flip: _flip, shape.Tril: _trilu(0),
        shape.Triu: _trilu(1),
        shape.Reshape: _reshape, shape.Permute: _permute, shape.Expand: _expand,
        shape.Cat: _cat, shape.Stack: _stack, shape.Split: _split, shape.Unbind: _unbind,
        shape.Alias: _identity,
        index.Index: _index, linalg.MatMul: _binary("MatMul"), linalg.Einsum: _einsum,
        conv.Conv2d: _conv2d, conv.MaxPool2d: _max_pool2d, conv.AvgPool2d: _avg_pool2d,
        att.Attention: _attention,
        rnn.LSTMLayerGate: _rnn("LSTM"), rnn.GRULayerGate: _rnn("GRU"),
        rnn.RNNLayerGate: _rnn("RNN"),
    }
    return t


GATES: dict = {}  # gate class -> emitter, filled on first export (the gate modules load lazily)


def _unsupported(node, what: str | None = None) -> str:
    where = f", created at {node.site}" if getattr(node, "site", None) else ""
    return (f"cr.onnx.export: the op {what or type(node).__name__} (gate "
            f"{type(node).__module__}.{type(node).__name__}{where}) has no ONNX mapping")


# ---- tracing and assembling ---------------------------------------------------------------------
def _flat(out) -> list:
    if isinstance(out, Tensor):
        return [out]
    if isinstance(out, (list, tuple)):
        return [t for o in out for t in _flat(o)]
    if isinstance(out, dict):
        return [t for o in out.values() for t in _flat(o)]
    return []


def _trace(model, args: tuple, kwargs: dict):
    """Run the model once with every gate keeping its inputs; the float inputs are made leaves
    that require grad, so every op that depends on them is recorded."""
    from chainrule._state import state
    from chainrule.autograd.grad_mode import enable_grad

    inputs = [a.detach().requires_grad_() if isinstance(a, Tensor) and a.is_floating_point()
              else a for a in args]
    training = getattr(model, "training", None)
    if training:
        model.eval()
    prev = (state.record_inputs, state.record_sites)
    state.record_inputs = state.record_sites = True
    try:
        with enable_grad():
            out = model(*inputs, **kwargs)
    finally:
        state.record_inputs, state.record_sites = prev
        if training:
            model.train()
    return inputs, out


def export_model(model, args, f, *, kwargs, export_params, verbose, input_names, output_names,
                 opset_version, dynamic_axes):
    onnx = _onnx()
    if not GATES:
        GATES.update(_table())
    opset = DEFAULT_OPSET if opset_version is None else int(opset_version)
    args = args if isinstance(args, tuple) else (args,)
    if args and isinstance(args[-1], dict) and not kwargs:  # torch's (x, {"kw": v}) form
        args, kwargs = args[:-1], args[-1]
    inputs, out = _trace(model, args, kwargs)
    outputs = _flat(out)
    tensor_inputs = [t for t in inputs if isinstance(t, Tensor)]
    in_names = list(input_names or [])
    in_names += [f"input_{i}" for i in range(len(in_names), len(tensor_inputs))]
    out_names = list(output_names or [])
    out_names += [f"output_{i}" for i in range(len(out_names), len(outputs))]
    in_names, out_names = in_names[:len(tensor_inputs)], out_names[:len(outputs)]

    b = _Builder(onnx, opset)
    leaf_names = {id(t): n for t, n in zip(tensor_inputs, in_names)}
    array_names = {id(t._data): n for t, n in zip(tensor_inputs, in_names)}
    params = {}
    if hasattr(model, "named_parameters"):
        for name, p in model.named_parameters():
            params.setdefault(id(p), (name, p))
    used_params: dict = {}
    names: dict = {}  # (node, nr) -> value name, for gates that depend on an input

    def resolve(edge, value) -> tuple:
        """(name or None, depends on an input, parameter or None) for one gate input."""
        if edge is not None and edge[0] == "node":
            name = names.get((edge[1], edge[2]))
            return name, name is not None, None
        if edge is not None and edge[0] == "leaf":
            t = edge[1]
            if id(t) in leaf_names:
                return leaf_names[id(t)], True, None
            if id(t) in params:
                return params[id(t)][0], False, params[id(t)]
            return None, False, None
        if devices.is_array(value) and id(value) in array_names:
            return array_names[id(value)], True, None
        return None, False, None

    roots = [t._grad_fn for t in outputs if t._grad_fn is not None]
    for node in nodes_in_order(roots):
        if not isinstance(node, Op):
            raise UnsupportedOperatorError(_unsupported(node))
        resolved = [resolve(e, v) for e, v in zip(parents(node), node.inputs)]
        if not any(dyn for _, dyn, _ in resolved):
            continue  # parameters and constants only: its traced outputs become constants
        emit = GATES.get(type(node))
        if emit is None:
            raise UnsupportedOperatorError(_unsupported(node))
        ins = []
        for (name, _, param), value in zip(resolved, node.inputs):
            if param is not None:
                used_params[id(param[1])] = param
            ins.append((name, value))
        for nr, name in enumerate(emit(b, node, ins)):
            names[(node, nr)] = name

    graph_outputs = []
    for t, name in zip(outputs, out_names):
        fn = t._grad_fn
        src = names.get((fn, t._nr)) if fn is not None else leaf_names.get(id(t))
        if src is None:
            src = b.const(t._data)
        b.nodes.append(b.h.make_node("Identity", [src], [name]))
        # with dynamic inputs, outputs not named in dynamic_axes get dims of unknown size
        graph_outputs.append(_value_info(b, name, t._data, dynamic_axes.get(name),
                                         unknown=bool(dynamic_axes)))
    graph_inputs = [_value_info(b, n, t._data, dynamic_axes.get(n))
                    for t, n in zip(tensor_inputs, in_names)]
    for name, p in used_params.values():
        if export_params:
            b.const(p._data, name=name)
        else:
            graph_inputs.append(_value_info(b, name, p._data, None))
    used = {i for n in b.nodes for i in n.input}
    b.inits = [i for i in b.inits if i.name in used]  # e.g. parameters an RNN op re-laid out
    graph_inputs = [g for g in graph_inputs if g.name in used or g.name in in_names]
    graph = b.h.make_graph(b.nodes, type(model).__name__, graph_inputs, graph_outputs, b.inits)
    proto = b.h.make_model(graph, opset_imports=[b.h.make_opsetid("", opset)],
                           producer_name="chainrule")
    proto.ir_version = min(proto.ir_version, 8 if opset <= 18 else 10)
    onnx.checker.check_model(proto)
    if verbose:
        print(onnx.helper.printable_graph(proto.graph))
    if f is not None:
        data = proto.SerializeToString()
        if hasattr(f, "write"):
            f.write(data)
        else:
            with open(f, "wb") as fh:
                fh.write(data)
    return proto


def _const_array(v) -> bool:
    return devices.is_array(v) or isinstance(v, np.generic)


def _value_info(b, name: str, data, axes, unknown: bool = False):
    shape = list(np.shape(data))
    if unknown and not axes:
        shape = [None] * len(shape)
    if axes:
        items = axes.items() if isinstance(axes, dict) else ((a, None) for a in axes)
        for dim, label in items:
            shape[dim] = label or f"{name}_dynamic_axes_{dim + 1}"
    elem = b.h.np_dtype_to_tensor_dtype(np.dtype(data.dtype))
    return b.h.make_tensor_value_info(name, elem, shape)
