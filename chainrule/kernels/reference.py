"""The reference kernels: each one the plain statement of what it computes.

They are written with operators and :mod:`chainrule.ops.either` (plus NumPy's namespace, which
CuPy arrays take part in), so they run on NumPy and CuPy arrays and, for every kernel a backward
rule calls, on Tensors too — recorded, so a ``create_graph`` backward can be differentiated
again. :class:`~chainrule.kernels.cpu.CpuKernels` and ``CudaKernels`` override them with faster
forms of the same results.
"""

from __future__ import annotations

import math

from chainrule.batching import is_batched, map_batched
from chainrule import devices, dtypes
from chainrule.devices import np
from chainrule.kernels.matmul import matmul as _matmul
from chainrule.ops import either
from chainrule.tensor import TensorBase, late as _late, wrap

__all__ = ["Kernels", "window_view", "pad_image", "disjoint_windows", "im2col_array",
           "col2im_array", "erf_array", "conv2d_of_columns", "conv2d_weight_of_columns",
           "conv2d_input_columns"]

_SQRT1_2 = 1 / math.sqrt(2.0)
_INV_SQRT_2PI = 1 / math.sqrt(2 * math.pi)
_SQRT_2_PI = math.sqrt(2 / math.pi)


class Kernels:
    """The reference table (see :mod:`chainrule.kernels`)."""

    name = "reference"

    # ---- elementwise -----------------------------------------------------------------------------
    @staticmethod
    def copy(x):
        """A C-contiguous copy of x (``x.copy()``)."""
        return x.copy()

    exp = staticmethod(np.exp)
    tanh = staticmethod(np.tanh)

    @staticmethod
    def sigmoid(x):
        if isinstance(x, (float, np.generic)):  # a NumPy scalar: no array temporaries
            return 1 / (1 + np.exp(-x)) if x >= 0 else np.exp(x) / (1 + np.exp(x))
        return either.sigmoid(x)

    @staticmethod
    def relu(x):
        return np.maximum(x, 0)  # NaN stays NaN, as torch

    @staticmethod
    def erf(x):
        return erf_array(x)

    @staticmethod
    def tanh_backward(g, y):
        """g·(1 - y²) from tanh's output y."""
        return g * (1 - y * y)

    @staticmethod
    def sigmoid_backward(g, y):
        """g·y(1 - y) from the sigmoid's output y."""
        return g * y * (1 - y)

    @staticmethod
    def relu_backward(g, y):
        """g where x > 0, else 0, from relu's output y (y ≥ 0 or NaN, so y != 0 is [x > 0], 1 at
        NaN); selected, not multiplied by a mask (an infinite g gives 0 where x ≤ 0, as torch)."""
        return either.where(either.data(y) != 0, g, 0.0)

    # ---- powers ----------------------------------------------------------------------------------
    @staticmethod
    def pow(a, b):
        """a ** b."""
        return a**b

    # ---- GELU ------------------------------------------------------------------------------------
    @staticmethod
    def gelu(x, with_grad: bool) -> tuple:
        """(y = x·Φ(x), dy/dx = Φ(x) + x·φ(x) or None) for an array."""
        cdf = erf_array(x * _SQRT1_2).astype(x.dtype, copy=False)
        cdf += 1
        cdf *= 0.5
        y = x * cdf
        dydx = cdf + x * np.exp(x * x * -0.5) * _INV_SQRT_2PI if with_grad else None
        return y, dydx

    @staticmethod
    def gelu_backward(g, x, dydx):
        """g·dy/dx, with dy/dx recomputed from x (differentiable in x)."""
        cdf = (_late.ops.erf(x * _SQRT1_2) + 1) * 0.5 if isinstance(x, TensorBase) else (
            erf_array(x * _SQRT1_2) + 1) * 0.5
        return g * (cdf + x * either.exp(x * x * -0.5) * _INV_SQRT_2PI)

    @staticmethod
    def gelu_tanh(x, with_grad: bool) -> tuple:
        """(y = ½x(1 + tanh u), dy/dx or None), u = √(2/π)(x + 0.044715x³), for an array
        (half-precision floats computed in float32 and rounded once)."""
        dtype = x.dtype
        if dtype.kind in dtypes.FLOAT_KINDS and dtype.itemsize < 4:
            x = x.astype(np.float32)
        t = np.tanh((x + x * x * x * 0.044715) * _SQRT_2_PI)
        y = x * 0.5 * (t + 1)
        dydx = ((t + 1) * 0.5 + x * 0.5 * (1 - t * t) * _SQRT_2_PI * (1 + x * x * 0.134145)
                if with_grad else None)
        return (y.astype(dtype, copy=False),
                None if dydx is None else dydx.astype(dtype, copy=False))

    @staticmethod
    def gelu_tanh_backward(g, x, dydx):
        """g·dy/dx, with dy/dx recomputed from x (differentiable in x)."""
        if not isinstance(x, TensorBase):
            return g * dydx
        t = either.tanh((x + x * x * x * 0.044715) * _SQRT_2_PI)
        return g * ((t + 1) * 0.5 + x * 0.5 * (1 - t * t) * _SQRT_2_PI * (1 + x * x * 0.134145))

    # ---- linear layers ---------------------------------------------------------------------------
    @staticmethod
    def add_bias(y, b):
        """y += b along the last dim, in place; returns y."""
        y += b
        return y

    @staticmethod
    def sum_rows(g):
        """Σ g over dim 0 of a 2-d g."""
        return either.sum(g, 0)

    @staticmethod
    def sum(x, axes, keepdim: bool):
        """Σ x over ``axes`` (a tuple; all when None) of an array."""
        return x.sum(axis=axes, keepdims=keepdim)

    @staticmethod
    def mean(x, axes, keepdim: bool):
        """Σ x / n over ``axes`` (a tuple; all when None) of an array."""
        return x.mean(axis=axes, keepdims=keepdim)

    @staticmethod
    def sum_squares(x, axes, keepdim: bool):
        """Σ x² over ``axes`` (all when None): the square of a 2-norm."""
        return np.sum(x * x, axis=axes, keepdims=keepdim)

    @staticmethod
    def matmul(a, b):
        return a @ b if isinstance(a, TensorBase) or isinstance(b, TensorBase) else _matmul(a, b)

    @staticmethod
    def embedding_backward(g, idx, shape: tuple, padding_idx):
        """dW: the rows of g added at idx (repeats accumulate), none for the padding row."""
        if isinstance(g, TensorBase):
            gw = either.index_put(shape, (idx,), g)
            if padding_idx is not None:
                keep = devices.xp_of(g._data).ones((shape[0], 1), g._data.dtype)
                keep[padding_idx] = 0
                gw = gw * keep
            return gw
        xp = devices.xp_of(g)
        gw = xp.zeros(shape, g.dtype)
        xp.add.at(gw, idx.reshape(-1), g.reshape(-1, shape[1]))
        if padding_idx is not None:
            gw[padding_idx] = 0
        return gw

    @staticmethod
    def gather(x, dim: int, index):
        """y[i][j] = x[i][index[i][j]] along ``dim`` (torch.gather), by fancy indexing."""
        return x[along(index, dim)]

    @staticmethod
    def index_in_range(index, n: int) -> bool:
        """True when every element of the int array ``index`` is in [0, n) (a negative one is a
        huge one as unsigned: no wrap-around, as torch)."""
        unsigned = index.view(f"u{index.itemsize}") if index.dtype.kind == "i" else index
        return not index.size or bool(unsigned.max() < n)

    @staticmethod
    def scatter_add(out, dim: int, index, values) -> None:
        """out[i][index[i][j]] += values[i][j] along ``dim`` in place, repeats accumulating."""
        Kernels.add_at(out, along(index, dim), values)

    @staticmethod
    def add_at(out, index, values) -> None:
        """out[index] += values in place, repeated indices accumulating (``np.add.at``; CuPy's
        add.at on the GPU: NumPy's protocol does not pass ufunc methods on to CuPy)."""
        devices.xp_of(out).add.at(out, index, values)

    # ---- joining ---------------------------------------------------------------------------------
    @staticmethod
    def cat(xs, axis: int):
        """The arrays xs (of one dtype and device) joined along an existing axis."""
        return np.concatenate(xs, axis)

    # ---- softmax and attention -------------------------------------------------------------------
    @staticmethod
    def softmax(x, axis: int):
        """e^(x - max) / Σ e^(x - max) along ``axis`` of an array."""
        e = np.exp(x - (np.amax(x, axis=axis, keepdims=True) if x.size else x))
        return e / e.sum(axis=axis, keepdims=True)

    @staticmethod
    def log_softmax(x, axis: int):
        """(x - max) - ln Σ e^(x - max) along ``axis`` of an array."""
        shifted = x - (np.amax(x, axis=axis, keepdims=True) if x.size else x)
        return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))

    @staticmethod
    def log_softmax_backward(g, y, axis: int):
        """g - e^y ⊙ Σ_axis g: the gradient through y = log_softmax(x) along ``axis``."""
        return g - either.exp(y) * either.sum(g, axis, True)

    @staticmethod
    def softmax_backward(g, y, axis: int):
        """y ⊙ (g - Σ_axis g ⊙ y): the gradient through y = softmax(x) along ``axis``."""
        return y * (g - either.sum(g * y, axis, True))

    @staticmethod
    def attention_weights_t(q, k, mask, scale: float, wt):
        """Attention's weights W = softmax(scale·Q Kᵀ + M) over the keys, as Wᵀ: recomputed
        from q, k and the mask so they are differentiable (the fast tables take the saved
        ``wt``). Queries that may attend nowhere get zero weights."""
        scores = either.matmul(q, either.swapaxes(k, -1, -2)) * scale
        if mask is not None:
            scores = scores + mask
        arrays = not isinstance(scores, TensorBase)  # other arrays (vmap's batched ones)
        if arrays:
            scores = wrap(scores)
        dead = np.all(np.isneginf(either.data(scores)), axis=-1, keepdims=True)
        if dead.any():
            w = _late.ops.softmax(_late.ops.masked_fill(scores, dead, 0.0), -1)
            w = _late.ops.masked_fill(w, dead, 0.0)
        else:
            w = _late.ops.softmax(scores, -1)
        wt = either.swapaxes(w, -1, -2)
        return wt._data if arrays else wt

    # ---- normalization ---------------------------------------------------------------------------
    @staticmethod
    def layer_norm(x, w, b, k: int, eps: float) -> tuple:
        """(y, x̂, 1/σ) for layer norm over the last ``k`` dims of array x."""
        n = 1
        for s in x.shape[x.ndim - k:]:
            n *= s
        # One row per normalized group; row means as matrix-vector products and row sums of
        # squares by einsum: NumPy's reductions over a short last axis go row by row.
        x2 = x.reshape(-1, n)
        xhat = x2 - (x2 @ devices.xp_of(x).full(n, 1.0 / max(n, 1), x.dtype))[:, None]
        var = np.einsum("ij,ij->i", xhat, xhat) * x.dtype.type(1.0 / max(n, 1))
        rstd = 1 / np.sqrt(var + x.dtype.type(eps))
        xhat *= rstd[:, None]
        xhat = xhat.reshape(x.shape)
        rstd = rstd.reshape(x.shape[: x.ndim - k] + (1,) * k)
        y = xhat * w if w is not None else xhat.copy()
        if b is not None:
            y += b
        return y, xhat, rstd

    @staticmethod
    def norm_stats(x, xhat, rstd, axes: tuple, eps: float) -> tuple:
        """(x̂, 1/σ) of x over ``axes``: recomputed from x, so that they are differentiable in it
        (the fast tables take the saved ``xhat`` and ``rstd``)."""
        return layer_norm_stats(x, axes, eps)

    @staticmethod
    def batch_norm_stats(x, axes: tuple, eps: float) -> tuple:
        """(x̂, 1/σ, mean, biased variance) of array x per channel (dim 1) over ``axes``, the
        last three with kept dims."""
        mean = x.mean(axis=axes, keepdims=True)
        xc = x - mean
        var = (xc * xc).mean(axis=axes, keepdims=True)
        rstd = 1 / np.sqrt(var + x.dtype.type(eps))
        return xc * rstd, rstd, mean, var

    @staticmethod
    def channel_affine(xhat, w, b):
        """y = x̂·w + b per channel (dim 1) of array x̂ (w, b: (C,) or None), a new array."""
        cshape = (1, xhat.shape[1]) + (1,) * (xhat.ndim - 2)
        y = xhat * w.reshape(cshape) if w is not None else xhat.copy()
        if b is not None:
            y += b.reshape(cshape)
        return y

    @staticmethod
    def batch_norm_backward(g, w, xhat, rstd, axes: tuple, needs) -> tuple:
        """(dx, dw, db) of batch norm: with ĝ = g·w, dx = (ĝ - mean ĝ - x̂·mean(ĝ·x̂))/σ,
        dw = Σ g·x̂, db = Σ g (the means and sums over ``axes``)."""
        need_x, need_w, need_b = needs
        gx = gw = gb = None
        if need_w:
            gw = either.sum(g * xhat, axes)
        if need_b:
            gb = either.sum(g, axes)
        if need_x:
            n = 1
            for a in axes:
                n *= g.shape[a]
            cshape = (1, g.shape[1]) + (1,) * (len(g.shape) - 2)
            gh = g * either.reshape(w, cshape) if w is not None else g
            m1 = either.sum(gh, axes, True) * (1.0 / n)
            m2 = either.sum(gh * xhat, axes, True) * (1.0 / n)
            gx = (gh - m1 - xhat * m2) * rstd
        return gx, gw, gb

    @staticmethod
    def leaky_relu(x, slope: float):
        """y = x if x > 0 else slope·x, for an array."""
        return np.where(x > 0, x, x * slope)

    @classmethod
    def leaky_relu_into(cls, x, slope: float):
        """leaky_relu, which a table may write over x's memory (its result then a view of x):
        for leaky_relu_ on an array nothing else reads (here: a new array)."""
        return cls.leaky_relu(x, slope)

    @staticmethod
    def leaky_relu_backward(g, x, slope: float):
        """dx = g if x > 0 else slope·g."""
        return either.where(x > 0, g, g * slope)

    @staticmethod
    def layer_norm_backward(g, x, w, xhat, rstd, axes: tuple, eps: float, needs) -> tuple:
        """(dx, dw, db) of layer norm; x̂ and 1/σ recomputed from x (differentiable in x)."""
        xhat, rstd = layer_norm_stats(x, axes, eps)
        lead = tuple(range(len(x.shape) - len(axes)))
        n = 1
        for a in axes:
            n *= x.shape[a]
        gx = gw = gb = None
        if needs[1]:
            gw = either.sum(g * xhat, lead) if lead else g * xhat
        if needs[2]:
            gb = either.sum(g, lead) if lead else g
        if needs[0]:
            gh = g * w if w is not None else g
            m1 = either.sum(gh, axes, True) * (1.0 / n)
            m2 = either.sum(gh * xhat, axes, True) * (1.0 / n)
            gx = (gh - m1 - xhat * m2) * rstd
        return gx, gw, gb

    # ---- losses ----------------------------------------------------------------------------------
    @staticmethod
    def cross_entropy(x, t, valid) -> tuple:
        """(per-row losses -ln softmax(x)[t] (0 where not ``valid``), softmax(x)) for the rows
        of 2-d array x and targets t."""
        rows = devices.xp_of(x).arange(x.shape[0])
        p = x - x.max(axis=1, keepdims=True)  # shifted, then e^shifted in place
        picked = p[rows, t]
        np.exp(p, out=p)
        s = p.sum(axis=1, keepdims=True)
        nll = np.log(s[:, 0]) - picked
        p /= s
        if valid is not None:
            nll = nll * valid
        return nll, p

    @staticmethod
    def cross_entropy_backward(g, x, p, t, scale):
        """(softmax(x) - onehot(t))·scale, scale per row (or one number); p is softmax(x)."""
        xp = devices.xp_of(t)
        rows = xp.arange(x.shape[0])
        if isinstance(g, TensorBase):  # differentiable in x: softmax recomputed from it
            onehot = xp.zeros(x._data.shape, x._data.dtype)
            onehot[rows, t] = 1
            if len(scale.shape):
                scale = scale.reshape(-1, 1)
            return (x.softmax(1) - onehot) * scale
        if getattr(scale, "ndim", 0):
            gx = p * scale[:, None]
        else:
            gx = p * scale
        gx[rows, t] -= scale
        return gx

    @staticmethod
    def cross_entropy_rows(x, t, ignore_index: int, reduction: str):
        """(row log-sum-exps, row losses, [loss, count]) in one pass where a table has a
        kernel for it (the GPU's); None: use :meth:`cross_entropy`."""
        return None

    @staticmethod
    def cross_entropy_rows_backward(g, x, lse, t, count, ignore_index: int, reduction: str):
        """dx = (softmax(x) - onehot(t))·g (/count for 'mean'), 0 on ignored rows."""
        xp = devices.xp_of(t)
        dtype = either.dtype_of(x)
        valid = (t != ignore_index).astype(dtype)
        onehot = xp.zeros(tuple(x.shape), dtype)
        onehot[xp.arange(x.shape[0]), xp.where(t == ignore_index, 0, t)] = 1
        p = x.softmax(1) if isinstance(x, TensorBase) else np.exp(x - lse[:, None])
        scale = (g / count[0] if reduction == "mean" else g if reduction == "sum"
                 else either.reshape(g, (-1, 1)))
        return (p - onehot) * scale * valid[:, None]

    # ---- convolution and pooling on (N, C, H, W) -------------------------------------------------
    @staticmethod
    def im2col(x, geom):
        """(N, C, H, W) -> (N, C, kh, kw, OH, OW): every window's pixels."""
        if isinstance(x, TensorBase):
            return _late.ops.Im2Col.apply(x, geom)
        return im2col_array(x, geom)

    @staticmethod
    def col2im(cols, x_shape: tuple, geom):
        """The adjoint of im2col: each window's column added back onto its pixels."""
        if isinstance(cols, TensorBase):
            return _late.ops.Col2Im.apply(cols, tuple(x_shape), geom)
        return col2im_array(cols, tuple(x_shape), geom)

    @staticmethod
    def conv2d(x, w, geom, groups: int) -> tuple:
        """(y, cols): y = W · im2col(x) per group (no bias), and the columns for
        :meth:`conv2d_weight_grad` (whatever layout the table's own weight gradient reads)."""
        cols = Kernels.im2col(x, geom)
        return conv2d_of_columns(cols, w, geom, groups), cols

    @staticmethod
    def conv2d_columns(x, cols, geom):
        """The columns of conv2d's input for its weight gradient: im2col(x), recomputed so
        that dW is differentiable in x (the fast tables take the saved ``cols``)."""
        return Kernels.im2col(x, geom)

    @staticmethod
    def conv2d_weight_grad(g, x, cols, w_shape: tuple, geom, groups: int):
        """dW of conv2d: Σ_n dy · im2col(x)ᵀ per group (``cols``: what :meth:`conv2d` gave)."""
        return conv2d_weight_of_columns(g, Kernels.conv2d_columns(x, cols, geom), w_shape, geom,
                                        groups)

    @staticmethod
    def conv2d_input_grad(g, w, x_shape: tuple, geom, groups: int):
        """dx of conv2d: col2im(Wᵀ·dy)."""
        return Kernels.col2im(conv2d_input_columns(g, w, x_shape, geom, groups), tuple(x_shape),
                              geom)

    @classmethod
    def conv2d_grads(cls, g, x, w, cols, geom, groups: int) -> tuple:
        """(dx, dW) of conv2d, both wanted: this table's conv2d_input_grad and
        conv2d_weight_grad (a table may share work between the two)."""
        return (cls.conv2d_input_grad(g, w, tuple(x.shape), geom, groups),
                cls.conv2d_weight_grad(g, x, cols, tuple(w.shape), geom, groups))

    @classmethod
    def conv_transpose2d(cls, x, w, out_shape: tuple, geom, groups: int) -> tuple:
        """(y, saved): the transposed convolution of x, conv2d's input gradient with x as dy,
        and what :meth:`conv_transpose2d_grads` may reuse (a table's own; None here)."""
        return cls.conv2d_input_grad(x, w, out_shape, geom, groups), None

    @classmethod
    def conv_transpose2d_grads(cls, g, x, w, saved, geom, groups: int, need_w: bool) -> tuple:
        """(dx, dW) of conv_transpose2d: dx = conv2d(dy), dW = conv2d's weight gradient with x
        as dy and dy's columns (None unless ``need_w``)."""
        gx, gcols = cls.conv2d(g, w, geom, groups)
        if not need_w:
            return gx, None
        return gx, cls.conv2d_weight_grad(x, g, gcols, tuple(w.shape), geom, groups)

    @staticmethod
    def add_channel_bias(y, b):
        """y += b along dim 1 of (N, C, ...) y, in place; returns y."""
        y += b.reshape((-1,) + (1,) * (y.ndim - 2))
        return y

    @staticmethod
    def channel_sums(g):
        """Σ g over every dim but 1."""
        return either.sum(g, (0,) + tuple(range(2, len(g.shape))))

    @staticmethod
    def max_pool2d(x, geom) -> tuple:
        """(y, the window offset of each maximum) for array x."""
        xp = pad_image(x, geom, -math.inf)
        k = geom.kh * geom.kw
        y = window_view(xp, geom, 0, 0).copy()  # the running maximum
        itype = np.uint8 if k < 256 else np.int32
        idx = np.zeros_like(y, dtype=itype)
        step = np.empty_like(y, dtype=itype)
        for t in range(1, k):
            v = window_view(xp, geom, t // geom.kw, t % geom.kw)
            better = np.greater(v, y)
            np.maximum(y, v, out=y)  # propagates NaN, as PyTorch does
            # offsets only grow, so "idx = t where better" is a running maximum of better·t
            np.multiply(better, itype(t), out=step)
            np.maximum(idx, step, out=idx)
        return y, idx

    @staticmethod
    def max_pool2d_backward(g, idx, x_shape: tuple, geom):
        """Each window's gradient to its maximum (offset idx), added up per pixel."""
        k = geom.kh * geom.kw
        if isinstance(g, TensorBase):  # linear in g: one-hot mask times g, added back by col2im
            onehot = idx[:, :, None] == devices.xp_of(idx).arange(k, dtype=idx.dtype).reshape(
                k, 1, 1)
            mask = onehot.reshape(idx.shape[:2] + (geom.kh, geom.kw) + idx.shape[2:])
            cols = either.where(mask, either.expand_dims(g, (2, 3)), 0.0)
            return Kernels.col2im(cols, x_shape, geom)
        n, c, h, w = x_shape
        out = np.zeros_like(g, shape=(n, c, h + geom.pt + geom.pb, w + geom.pl + geom.pr))
        disjoint = disjoint_windows(geom)
        for t in range(k):
            view = window_view(out, geom, t // geom.kw, t % geom.kw)
            # selected, not multiplied by the one-hot mask: a NaN or inf gradient reaches only
            # its window's maximum, as torch's
            if disjoint:
                view[...] = np.where(idx == t, g, 0)
            else:
                view += np.where(idx == t, g, 0)
        return _crop(out, geom, h, w)

    @staticmethod
    def avg_pool2d_backward(gs, x_shape: tuple, geom):
        """Every pixel of a window gets that window's (already divided) gradient gs."""
        if isinstance(gs, TensorBase):
            n, c = x_shape[:2]
            cols = either.broadcast_to(either.expand_dims(gs, (2, 3)),
                                       (n, c, geom.kh, geom.kw, geom.oh, geom.ow))
            return Kernels.col2im(cols, x_shape, geom)
        n, c, h, w = x_shape
        out = np.zeros_like(gs, shape=(n, c, h + geom.pt + geom.pb, w + geom.pl + geom.pr))
        disjoint = disjoint_windows(geom)
        for t in range(geom.kh * geom.kw):
            view = window_view(out, geom, t // geom.kw, t % geom.kw)
            if disjoint:
                view[...] = gs
            else:
                view += gs
        return _crop(out, geom, h, w)

    # ---- recurrent layers: one LSTM step's elementwise work --------------------------------------
    @staticmethod
    def lstm_step(act, cs, t: int, prev: int, cur: int, tmp) -> None:
        """Gates (i, f, o, g) of step t from their tanh'd pre-activations (σ(z) = ½ tanh(z/2)
        + ½ for the first three), then c_t = f·c_prev + i·g, in place in act and cs."""
        a = act[:, t]
        s = a[:3]
        s *= 0.5
        s += 0.5
        np.multiply(a[1], cs[prev], out=cs[cur])
        np.multiply(a[0], a[3], out=tmp)
        cs[cur] += tmp

    @staticmethod
    def lstm_step_backward(dh, dc, g_out_t, a_c, p, act, dz, t: int, tmp) -> None:
        """One BPTT step: dh += the output's gradient; dc += dh·a_c; the gate gradients
        dz = [dc·pi, dc·pf, dc·pg, dh·po] (PyTorch's gate order); then dc ← dc·f."""
        n, k = dh.shape
        if g_out_t is not None:
            dh += g_out_t
        np.multiply(dh, a_c[t], out=tmp)
        dc += tmp
        dz_gates = dz[t].reshape(n, 4, k).transpose(1, 0, 2)
        np.multiply(p[:3, t], dc, out=dz_gates[:3])
        np.multiply(p[3, t], dh, out=dz_gates[3])
        dc *= act[1, t]

    # ---- optimizer steps (fused where a table can; False: the optimizer does it itself) ----------
    @staticmethod
    def sgd_step(p, g, buf, first, lr, momentum, dampening, weight_decay, nesterov,
                 maximize) -> bool:
        return False

    @staticmethod
    def adam_step(p, g, m, v, vmax, lr, beta1, beta2, eps, weight_decay, maximize, decoupled,
                  step_size, bias_correction2_sqrt) -> bool:
        return False

    @staticmethod
    def axpy(alpha: float, x, y) -> bool:
        """y += alpha·x in one pass where a table can (False: not done)."""
        return False

    @staticmethod
    def adadelta_step(grad, d, v, u, lr: float, rho: float, eps: float) -> bool:
        """One plain Adadelta step (no weight decay, not maximized) in one pass where a table
        can (False: not done; optim/adadelta.py then runs NumPy's passes)."""
        return False


def layer_norm_stats(x, axes: tuple, eps: float) -> tuple:
    """(x̂, 1/σ) over ``axes``, for an array or a Tensor."""
    n = 1
    for a in axes:
        n *= x.shape[a]
    xc = x - either.sum(x, axes, True) * (1.0 / n)
    var = either.sum(xc * xc, axes, True) * (1.0 / n)
    rstd = 1 / either.sqrt(var + eps)
    return xc * rstd, rstd


# ---- image windows -------------------------------------------------------------------------------
def _as_strided(x, shape, strides):
    if isinstance(x, np.ndarray):
        return np.lib.stride_tricks.as_strided(x, shape, strides, writeable=False)
    return devices.xp_of(x).lib.stride_tricks.as_strided(x, shape, strides)


def window_view(xp, geom, i: int, j: int):
    """The (N, C, OH, OW) strided view of the padded image under kernel offset (i, j)."""
    hi = i * geom.dh
    wj = j * geom.dw
    return xp[:, :, hi:hi + geom.sh * (geom.oh - 1) + 1:geom.sh,
              wj:wj + geom.sw * (geom.ow - 1) + 1:geom.sw]


def pad_image(x, geom, value: float = 0.0):
    if geom.pt or geom.pb or geom.pl or geom.pr:
        return np.pad(x, ((0, 0), (0, 0), (geom.pt, geom.pb), (geom.pl, geom.pr)),
                      constant_values=value)
    return x


def disjoint_windows(geom) -> bool:
    """True when no pixel belongs to two windows (then col2im can assign instead of add)."""
    return (geom.kh - 1) * geom.dh < geom.sh and (geom.kw - 1) * geom.dw < geom.sw


def _crop(out, geom, h: int, w: int):
    if geom.pt or geom.pb or geom.pl or geom.pr:
        return out[:, :, geom.pt:geom.pt + h, geom.pl:geom.pl + w]
    return out


def im2col_array(x, geom):
    """(N, C, H, W) -> (N, C, kh, kw, OH, OW), contiguous: every window's pixels."""
    xp = pad_image(x, geom)
    n, c = xp.shape[:2]
    s0, s1, s2, s3 = xp.strides
    win = _as_strided(xp, (n, c, geom.kh, geom.kw, geom.oh, geom.ow),
                      (s0, s1, geom.dh * s2, geom.dw * s3, geom.sh * s2, geom.sw * s3))
    return devices.xp_of(win).ascontiguousarray(win)


def col2im_array(cols, x_shape: tuple, geom):
    """The adjoint of im2col: add each window's column back onto its pixels, then crop."""
    n, c, h, w = x_shape
    out = np.zeros_like(cols, shape=(n, c, h + geom.pt + geom.pb, w + geom.pl + geom.pr))
    disjoint = disjoint_windows(geom)
    for i in range(geom.kh):
        for j in range(geom.kw):
            view = window_view(out, geom, i, j)
            if disjoint:
                view[...] = cols[:, :, i, j]
            else:
                view += cols[:, :, i, j]
    return _crop(out, geom, h, w)


def conv2d_of_columns(cols, w, geom, groups: int):
    """W · cols per group: cols (N, C, kh, kw, OH, OW) -> y (N, O, OH, OW)."""
    n, o = cols.shape[0], w.shape[0]
    wg = either.reshape(w, (groups, o // groups, -1))
    cols4 = either.reshape(cols, (n, groups, wg.shape[2], geom.oh * geom.ow))
    return either.reshape(either.matmul(wg, cols4), (n, o, geom.oh, geom.ow))


def conv2d_weight_of_columns(g, cols, w_shape: tuple, geom, groups: int):
    """Σ_n dy · colsᵀ per group, cols (N, C, kh, kw, OH, OW)."""
    n, o = g.shape[0], g.shape[1]
    ck = w_shape[1] * geom.kh * geom.kw
    g4 = either.reshape(g, (n, groups, o // groups, geom.oh * geom.ow))
    cols4 = either.reshape(cols, (n, groups, ck, geom.oh * geom.ow))
    return either.reshape(either.sum(either.matmul(g4, either.swapaxes(cols4, -1, -2)), 0),
                          tuple(w_shape))


def conv2d_input_columns(g, w, x_shape: tuple, geom, groups: int):
    """Wᵀ · dy per group: the columns (N, C, kh, kw, OH, OW) that col2im adds into dx."""
    n, o = g.shape[0], g.shape[1]
    ck = w.shape[1] * geom.kh * geom.kw
    g4 = either.reshape(g, (n, groups, o // groups, geom.oh * geom.ow))
    wg = either.reshape(w, (groups, o // groups, ck))
    gcols = either.matmul(either.swapaxes(wg, -1, -2), g4)
    return either.reshape(gcols, (n, x_shape[1], geom.kh, geom.kw, geom.oh, geom.ow))


# ---- erf -----------------------------------------------------------------------------------------
_SCIPY_ERF: list = []


def erf_array(x):
    """erf of an array. float64: SciPy's ufunc when installed (else math.erf, vectorized);
    float32/16: Abramowitz & Stegun 7.1.26 in cache-sized blocks (|error| < 1e-6, 4× faster
    than SciPy, whose float32 erf goes through double precision)."""
    if is_batched(x):  # inside cr.func.vmap: on the whole batch at once
        return map_batched(erf_array, x)
    if not devices.is_cpu_array(x):
        import cupyx.scipy.special

        return cupyx.scipy.special.erf(x)
    x = np.asarray(x)
    if x.dtype == np.float64 or x.size < 4096:
        if not _SCIPY_ERF:
            try:
                from scipy.special import erf  # imported on first use: it is slow to import
            except ImportError:  # pragma: no cover
                erf = np.vectorize(math.erf, otypes=[np.float64])
            _SCIPY_ERF.append(erf)
        return _SCIPY_ERF[0](x).astype(x.dtype, copy=False)
    out = np.empty(x.shape, x.dtype)  # C order, whatever x's layout: flat_out views it
    flat_x, flat_out = x.reshape(-1), out.reshape(-1)
    for i in range(0, flat_x.size, 65536):
        xb = flat_x[i:i + 65536]
        a = np.abs(xb)
        t = a * 0.3275911
        t += 1.0
        np.reciprocal(t, out=t)
        p = t * 1.061405429
        for c in (-1.453152027, 1.421413741, -0.284496736, 0.254829592):
            p += c
            p *= t
        np.multiply(a, a, out=a)
        np.negative(a, out=a)
        np.exp(a, out=a)
        p *= a
        np.subtract(1.0, p, out=p)
        np.copysign(p, xb, out=flat_out[i:i + 65536])
    return out


def along(index, dim: int) -> tuple:
    """The full NumPy index addressing ``index`` along ``dim`` and the position elsewhere."""
    nd, xp = index.ndim, devices.xp_of(index)
    parts = [xp.arange(s).reshape((-1,) + (1,) * (nd - a - 1)) for a, s in enumerate(index.shape)]
    parts[dim] = index
    return tuple(parts)
