"""Recurrent layers: RNN (tanh/relu), LSTM, GRU, with PyTorch's weight names, layouts and gate
order, plus the single-step cells RNNCell, LSTMCell, GRUCell.

Each layer·direction runs as one graph node (LSTMLayerGate, GRULayerGate, RNNLayerGate): the
input projection of all time steps in one matrix multiply, then one ``h @ W_hhᵀ`` and the gate
nonlinearities per step, in NumPy. Its backward is backpropagation through time in NumPy: per
step only the gate gradients and dh (and dc); each weight gradient, the biases and dx are one
matrix multiply over all steps. Under ``create_graph=True`` the layer is rebuilt as the unrolled
per-step graph (one ``h @ W_hhᵀ`` and one fused cell gate, LSTMCellGate / GRUCellGate, per step,
whose backward rules are themselves differentiable) and differentiated, so higher orders work.
That per-step graph is also the path for mixed dtypes and device (CuPy) arrays.
"""

from __future__ import annotations

import math
from typing import Any

from chainrule.dtypes import FLOAT_KINDS
from chainrule.devices import np
from chainrule.autograd.function import Op
from chainrule.autograd.entry import grad as autograd_grad
from chainrule.devices import xp_of
from chainrule.kernels import kernels_for
from chainrule.kernels.matmul import matmul as _mm
from chainrule.creation import empty, zeros
from chainrule.nn import functional as F
from chainrule.nn import init
from chainrule.nn.module import Module
from chainrule.nn.parameter import Parameter
from chainrule.ops import either
from chainrule.ops.elementwise import relu, sigmoid, tanh
from chainrule.ops.shape import Alias, cat, stack
from chainrule.tensor import Tensor

__all__ = ["RNNBase", "RNN", "LSTM", "GRU", "RNNCellBase", "RNNCell", "LSTMCell", "GRUCell",
           "LSTMCellGate", "GRUCellGate", "LSTMLayerGate", "GRULayerGate", "RNNLayerGate"]

_GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "LSTM": 4, "GRU": 3}


# ---- fused cell gates (one graph node per time step instead of a dozen) -----------------------
def _sig(x):
    """σ(x) on a raw array, as 0.5·tanh(x/2) + 0.5 (one transcendental, no overflow)."""
    y = np.tanh(x * 0.5)
    y *= 0.5
    y += 0.5
    return y


class LSTMCellGate(Op):
    """(h, c) = LSTM step from pre-activations z = x W_ihᵀ + h W_hhᵀ + b (gates i, f, g, o):
    c = σ(f)·c₀ + σ(i)·tanh(g), h = σ(o)·tanh(c)"""

    @staticmethod
    def forward(ctx, z, c0):
        n = c0.shape[-1]
        act = np.empty_like(z)
        act[:, :2 * n] = _sig(z[:, :2 * n])
        act[:, 2 * n:3 * n] = np.tanh(z[:, 2 * n:3 * n])
        act[:, 3 * n:] = _sig(z[:, 3 * n:])
        i, f, g, o = act[:, :n], act[:, n:2 * n], act[:, 2 * n:3 * n], act[:, 3 * n:]
        c = f * c0
        c += i * g
        tc = np.tanh(c)
        h = o * tc
        ctx.act, ctx.tc = act, tc
        ctx.save_for_backward(z, c0, c)
        return h, c

    @staticmethod
    def backward(ctx, gh, gc):
        z, c0, c = ctx.saved_tensors
        n = c0.shape[-1]
        if isinstance(z, Tensor):  # differentiable rebuild of the activations
            i, f = z[:, :n].sigmoid(), z[:, n:2 * n].sigmoid()
            g, o = z[:, 2 * n:3 * n].tanh(), z[:, 3 * n:].sigmoid()
            tc = c.tanh()
        else:
            act = ctx.act
            i, f, g, o = act[:, :n], act[:, n:2 * n], act[:, 2 * n:3 * n], act[:, 3 * n:]
            tc = ctx.tc
        dc = gc
        if gh is not None:
            dc_h = gh * o * (1.0 - tc * tc)
            dc = dc_h if dc is None else dc + dc_h
        if dc is None:
            return None, None
        do = gh * tc * o * (1.0 - o) if gh is not None else either.zeros_like(dc)
        parts = [dc * g * i * (1.0 - i), dc * c0 * f * (1.0 - f), dc * i * (1.0 - g * g), do]
        return either.concat(parts, -1), (dc * f if ctx.needs_input_grad[1] else None)


class GRUCellGate(Op):
    """h' = GRU step from the input part a = x W_ihᵀ + b_ih and hidden part b = h W_hhᵀ + b_hh
    (gates r, z, n): r = σ(a_r + b_r), z = σ(a_z + b_z), n = tanh(a_n + r·b_n),
    h' = n + z·(h - n)"""

    @staticmethod
    def forward(ctx, a, b, h):
        n_ = h.shape[-1]
        rz = _sig(a[:, :2 * n_] + b[:, :2 * n_])
        r, z = rz[:, :n_], rz[:, n_:]
        n = np.tanh(a[:, 2 * n_:] + r * b[:, 2 * n_:])
        out = h - n
        out *= z
        out += n
        ctx.rz, ctx.n = rz, n
        ctx.save_for_backward(a, b, h)
        return out

    @staticmethod
    def backward(ctx, g):
        a, b, h = ctx.saved_tensors
        k = h.shape[-1]
        bn = b[:, 2 * k:]
        if isinstance(a, Tensor):
            r = (a[:, :k] + b[:, :k]).sigmoid()
            z = (a[:, k:2 * k] + b[:, k:2 * k]).sigmoid()
            n = (a[:, 2 * k:] + r * bn).tanh()
        else:
            r, z, n = ctx.rz[:, :k], ctx.rz[:, k:], ctx.n
        dn = g * (1.0 - z) * (1.0 - n * n)
        dr = dn * bn * r * (1.0 - r)
        dz = g * (h - n) * z * (1.0 - z)
        need_a, need_b, need_h = ctx.needs_input_grad
        return (either.concat([dr, dz, dn], -1) if need_a else None,
                either.concat([dr, dz, dn * r], -1) if need_b else None,
                g * z if need_h else None)


# ---- one time step of each kind (gate order as PyTorch: LSTM i,f,g,o; GRU r,z,n) ---------------
def _rnn_step(act, xw: Tensor, h: Tensor, w_hh_t: Tensor, b_hh) -> Tensor:
    pre = xw + h @ w_hh_t
    if b_hh is not None:
        pre = pre + b_hh
    return act(pre)


def _lstm_step(xw: Tensor, h: Tensor, c: Tensor, w_hh_t: Tensor, b_hh) -> tuple:
    gates = xw + h @ w_hh_t
    if b_hh is not None:
        gates = gates + b_hh
    if gates._data.dtype == c._data.dtype and gates.ndim == 2:
        return LSTMCellGate.apply(gates, c)
    i, f, g, o = gates.chunk(4, -1)
    c = sigmoid(f) * c + sigmoid(i) * tanh(g)
    return sigmoid(o) * tanh(c), c


def _gru_step(xw: Tensor, h: Tensor, w_hh_t: Tensor, b_hh) -> Tensor:
    hw = h @ w_hh_t
    if b_hh is not None:
        hw = hw + b_hh
    if xw._data.dtype == hw._data.dtype == h._data.dtype and h.ndim == 2:
        return GRUCellGate.apply(xw, hw, h)
    x_r, x_z, x_n = xw.chunk(3, -1)
    h_r, h_z, h_n = hw.chunk(3, -1)
    r = sigmoid(x_r + h_r)
    z = sigmoid(x_z + h_z)
    n = tanh(x_n + r * h_n)
    return n + z * (h - n)  # (1 - z)·n + z·h


def _scan(mode: str, steps: tuple, state: list, w_hh_t: Tensor, b_hh,
          w_hr: Tensor | None = None) -> tuple:
    """Walk the time steps (already in processing order); return the outputs and last states
    (an LSTM with ``w_hr`` projects each h: h = W_hr·(o·tanh(c)))."""
    outs = []
    if mode == "LSTM":
        h, c = state
        for xw in steps:
            h, c = _lstm_step(xw, h, c, w_hh_t, b_hh)
            if w_hr is not None:
                h = h @ w_hr.t()
            outs.append(h)
        return outs, [h, c]
    (h,) = state
    if mode == "GRU":
        for xw in steps:
            h = _gru_step(xw, h, w_hh_t, b_hh)
            outs.append(h)
    else:
        act = tanh if mode == "RNN_TANH" else relu
        for xw in steps:
            h = _rnn_step(act, xw, h, w_hh_t, b_hh)
            outs.append(h)
    return outs, [h]


def _steps_layer(mode: str, x: Tensor, state: list, w_ih: Tensor, w_hh: Tensor, b_ih, b_hh,
                 reverse: bool, w_hr: Tensor | None = None) -> tuple:
    """One layer·direction on (T, N, I) as the per-step graph; returns (output, final states)."""
    seq, batch = x.shape[0], x.shape[1]
    # one 2-D matrix multiply for every time step's input projection
    xw = x.reshape(seq * batch, -1) @ w_ih.t()
    if b_ih is not None and mode != "GRU":
        xw = xw + (b_ih + b_hh)  # both biases enter the same sum: add them once
        b_hh = None
    elif b_ih is not None:
        xw = xw + b_ih  # GRU: b_hn sits inside r·(W_hn h + b_hn), so keep b_hh
    steps = xw.reshape(seq, batch, -1).unbind(0)
    if reverse:
        steps = steps[::-1]
    out, last = _scan(mode, steps, state, w_hh.t(), b_hh, w_hr)
    if reverse:
        out = out[::-1]
    return stack(out, 0), last


# ---- whole layers as one gate (backpropagation through time in NumPy) --------------------------
FUSED = True  # run each layer·direction as one *LayerGate (False: the per-step graph)


_IFOG = [0, 1, 3, 2]  # PyTorch's gates (i, f, g, o) in the order the layer gate stores them


def _fusable(*tensors: Tensor) -> bool:
    """Whole-layer gates need NumPy arrays of one floating dtype (else: the per-step graph)."""
    dtype = tensors[0]._data.dtype
    return all(isinstance(t._data, np.ndarray) and t._data.dtype == dtype for t in tensors)


def _xp(a: Any) -> Any:
    """The array module of ``a`` (NumPy, or CuPy for device arrays)."""
    return np if isinstance(a, np.ndarray) else xp_of(a)


class LSTMLayerGate(Op):
    """(out, h_T, c_T) = one LSTM layer (one direction) over a whole (T, N, I) sequence: the input
    projection of every step in one GEMM, then per step z = xw_t + h W_hhᵀ, c = σ(f)·c + σ(i)·
    tanh(g), h = σ(o)·tanh(c). Backward is BPTT in NumPy: per step only dz, dh, dc; dW_ih, dW_hh,
    the biases and dx each take one GEMM over all steps. Under create_graph it differentiates
    the per-step graph instead (recomputed on the saved inputs)."""

    @staticmethod
    def forward(ctx, x, h0, c0, w_ih, w_hh, b_ih, b_hh, reverse):
        xp = _xp(x)
        t_len, n, _ = x.shape
        k = h0.shape[-1]
        dt = x.dtype
        # σ(z) = ½·tanh(z/2) + ½: halving the σ gates' weights (exact: a power of two) gives
        # z/2 straight from the GEMMs, so one tanh covers all four gates, stored as (i, f, o, g)
        # so that the σ gates are one block.
        scale = xp.full((4, 1, 1), 0.5, dtype=dt)
        scale[3] = 1.0
        # gate-major storage (gate, time, batch, hidden): every gate's slice is contiguous, and
        # the GEMMs write it directly (one batched matmul over the four gates)
        w_x = xp.empty((4, w_ih.shape[1], k), dtype=dt)
        np.multiply(w_ih.reshape(4, k, -1)[_IFOG].transpose(0, 2, 1), scale, out=w_x)
        w_h = xp.empty((4, k, k), dtype=dt)
        np.multiply(w_hh.reshape(4, k, k)[_IFOG].transpose(0, 2, 1), scale, out=w_h)
        xw = _mm(x.reshape(t_len * n, -1), w_x)
        if b_ih is not None:
            xw += (b_ih + b_hh).reshape(4, 1, k)[_IFOG] * scale
        xw = xw.reshape(4, t_len, n, k)
        act = xp.empty_like(xw)
        # states of all steps with the initial one at the start (end, in reverse), so each
        # step's previous state is a view
        hs = xp.empty((t_len + 1, n, k), dtype=dt)
        cs = xp.empty_like(hs)
        tc = xp.empty((t_len, n, k), dtype=dt)
        first = t_len if reverse else 0
        hs[first] = h0
        cs[first] = c0
        tmp = xp.empty((n, k), dtype=dt)
        K = kernels_for(act)
        for t in (range(t_len - 1, -1, -1) if reverse else range(t_len)):
            prev, cur = (t + 1, t) if reverse else (t, t + 1)
            a = act[:, t]
            _mm(hs[prev], w_h, out=a)
            a += xw[:, t]
            np.tanh(a, out=a)
            K.lstm_step(act, cs, t, prev, cur, tmp)  # the gates, then c_t = f·c_prev + i·g
            np.tanh(cs[cur], out=tc[t])
            np.multiply(a[2], tc[t], out=hs[cur])
        # the activations go with the saved inputs, so a backward without retain_graph frees them
        ctx.save_for_backward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, act, hs, cs, tc)
        ctx.n_inputs, ctx.reverse = 7, reverse
        last = 0 if reverse else t_len
        out = hs[:t_len] if reverse else hs[1:]
        return out, hs[last].copy(), cs[last].copy()

    @staticmethod
    def differentiable_backward(ctx, g_out, g_h, g_c):
        return _layer_double_backward(ctx, "LSTM", (g_out, g_h, g_c))

    @staticmethod
    def backward(ctx, g_out, g_h, g_c):
        x, h0, c0, w_ih, w_hh, b_ih, b_hh, act, hs, cs, tc = ctx.saved_tensors
        xp = _xp(x)
        reverse = ctx.reverse
        t_len, n, k = tc.shape
        dt = tc.dtype
        i, f, o, g = act
        c_prev = cs[1:] if reverse else cs[:-1]
        # the local derivatives of every step at once (PyTorch's gate order again):
        # dz = [dc·pi, dc·pf, dc·pg, dh·po]
        p = xp.empty_like(act)
        for src, dst in ((act[:2], p[:2]), (o, p[3])):
            np.subtract(1.0, src, out=dst)
            dst *= src
        p[0] *= g
        p[1] *= c_prev
        np.multiply(g, g, out=p[2])
        np.subtract(1.0, p[2], out=p[2])
        p[2] *= i
        p[3] *= tc
        a_c = tc * tc  # dc += dh·σ(o)·(1 - tanh²c)
        np.subtract(1.0, a_c, out=a_c)
        a_c *= o
        dz = xp.empty((t_len, n, 4 * k), dtype=dt)
        dh = xp.zeros((n, k), dtype=dt) if g_h is None else g_h.astype(dt, copy=True)
        dc = xp.zeros((n, k), dtype=dt) if g_c is None else g_c.astype(dt, copy=True)
        order = list(range(t_len) if reverse else range(t_len - 1, -1, -1))
        tmp = xp.empty((n, k), dtype=dt)
        if type(g_out) is np.ndarray and not g_out.flags.c_contiguous:
            g_out = np.ascontiguousarray(g_out)  # e.g. one direction's half of the output
        K = kernels_for(dz)
        for step, t in enumerate(order):
            if step:  # dh = dz W_hh (dz in PyTorch's gate order, as W_hh's rows)
                _mm(dz[order[step - 1]], w_hh, out=dh)
            K.lstm_step_backward(dh, dc, None if g_out is None else g_out[t], a_c, p, act, dz, t,
                                 tmp)
        need = ctx.needs_input_grad
        grads: list = [None] * 8
        if need[1]:
            grads[1] = _mm(dz[order[-1]], w_hh)
        if need[2]:
            grads[2] = dc
        dz2 = dz.reshape(t_len * n, 4 * k)
        if need[0]:
            grads[0] = _mm(dz2, w_ih).reshape(x.shape)
        if need[3]:
            grads[3] = _mm(dz2.T, x.reshape(t_len * n, -1))
        if need[4]:
            h_prev = (hs[1:] if reverse else hs[:-1]).reshape(t_len * n, k)
            grads[4] = _mm(dz2.T, h_prev)
        if b_ih is not None and (need[5] or need[6]):
            db = dz2.sum(0)
            grads[5] = db if need[5] else None
            grads[6] = (db.copy() if need[5] else db) if need[6] else None
        return tuple(grads)


class GRULayerGate(Op):
    """(out, h_T) = one GRU layer (one direction) over a whole (T, N, I) sequence, gates r, z, n:
    r, z = σ(xw + h W_hhᵀ + b_hh), n = tanh(xw_n + r·(h W_hnᵀ + b_hn)), h' = n + z·(h - n);
    BPTT in NumPy like LSTMLayerGate (one GEMM per weight gradient over all steps)."""

    @staticmethod
    def forward(ctx, x, h0, w_ih, w_hh, b_ih, b_hh, reverse):
        xp = _xp(x)
        t_len, n, _ = x.shape
        k = h0.shape[-1]
        dt = x.dtype
        scale = xp.full((3, 1, 1), 0.5, dtype=dt)  # σ via ½·tanh(z/2) + ½, as in LSTMLayerGate
        scale[2] = 1.0
        w_x = xp.empty((3, w_ih.shape[1], k), dtype=dt)
        np.multiply(w_ih.reshape(3, k, -1).transpose(0, 2, 1), scale, out=w_x)
        w_h = xp.empty((3, k, k), dtype=dt)
        np.multiply(w_hh.reshape(3, k, k).transpose(0, 2, 1), scale, out=w_h)
        xw = _mm(x.reshape(t_len * n, -1), w_x)
        b_hn = None
        if b_ih is not None:
            b = b_ih.reshape(3, 1, k).copy()
            b[:2] += b_hh.reshape(3, 1, k)[:2]  # r and z: both biases enter the same sum
            b *= scale
            xw += b
            b_hn = b_hh[2 * k:]
        xw = xw.reshape(3, t_len, n, k)
        act = xp.empty_like(xw)  # r, z, n
        hw = xp.empty((t_len, 3, n, k), dtype=dt)  # h W_hhᵀ per step (gate n: + b_hn)
        hs = xp.empty((t_len + 1, n, k), dtype=dt)
        first = t_len if reverse else 0
        hs[first] = h0
        tmp = xp.empty((n, k), dtype=dt)
        for t in (range(t_len - 1, -1, -1) if reverse else range(t_len)):
            prev, cur = (t + 1, t) if reverse else (t, t + 1)
            a, h = act[:, t], hw[t]
            _mm(hs[prev], w_h, out=h)
            rz = a[:2]
            np.add(h[:2], xw[:2, t], out=rz)
            np.tanh(rz, out=rz)
            rz *= 0.5
            rz += 0.5
            if b_hn is not None:
                h[2] += b_hn
            np.multiply(a[0], h[2], out=a[2])
            a[2] += xw[2, t]
            np.tanh(a[2], out=a[2])
            np.subtract(hs[prev], a[2], out=tmp)
            tmp *= a[1]
            np.add(a[2], tmp, out=hs[cur])
        ctx.save_for_backward(x, h0, w_ih, w_hh, b_ih, b_hh, act, hw, hs)
        ctx.n_inputs, ctx.reverse = 6, reverse
        last = 0 if reverse else t_len
        return (hs[:t_len] if reverse else hs[1:]), hs[last].copy()

    @staticmethod
    def differentiable_backward(ctx, g_out, g_h):
        return _layer_double_backward(ctx, "GRU", (g_out, g_h))

    @staticmethod
    def backward(ctx, g_out, g_h):
        x, h0, w_ih, w_hh, b_ih, b_hh, act, hw, hs = ctx.saved_tensors
        xp = _xp(x)
        reverse = ctx.reverse
        _, t_len, n, k = act.shape
        dt = act.dtype
        r, z, nn_ = act
        h_prev = hs[1:] if reverse else hs[:-1]
        # local derivatives of every step at once: dn = dh·qn, dz = dh·qz, dr = dn·qr
        qn = nn_ * nn_
        np.subtract(1.0, qn, out=qn)
        one_z = 1.0 - z
        qn *= one_z
        qz = h_prev - nn_
        qz *= z
        qz *= one_z
        qr = 1.0 - r
        qr *= r
        qr *= hw[:, 2]
        dg = xp.empty_like(act)  # per step [dr, dz, dn·r]: the gradient of h W_hhᵀ (+ b_hh)
        dn = xp.empty((t_len, n, k), dtype=dt)
        w_h3 = w_hh.reshape(3, k, k)
        dh = xp.zeros((n, k), dtype=dt) if g_h is None else g_h.astype(dt, copy=True)
        part = xp.empty((3, n, k), dtype=dt)
        order = list(range(t_len) if reverse else range(t_len - 1, -1, -1))
        for t in order:
            if g_out is not None:
                dh += g_out[t]
            np.multiply(dh, qn[t], out=dn[t])
            np.multiply(dh, qz[t], out=dg[1, t])
            np.multiply(dn[t], qr[t], out=dg[0, t])
            np.multiply(dn[t], r[t], out=dg[2, t])
            dh *= z[t]
            _mm(dg[:, t], w_h3, out=part)
            dh += part[0]
            dh += part[1]
            dh += part[2]
        need = ctx.needs_input_grad
        grads: list = [None] * 7
        if need[1]:
            grads[1] = dh
        tn = t_len * n
        dgx = (dg[0].reshape(tn, k), dg[1].reshape(tn, k), dn.reshape(tn, k))  # d(xw): r, z, n
        if need[0]:
            w_i3 = w_ih.reshape(3, k, -1)
            dx = _mm(dgx[0], w_i3[0])
            dx += _mm(dgx[1], w_i3[1])
            dx += _mm(dgx[2], w_i3[2])
            grads[0] = dx.reshape(x.shape)
        if need[2]:
            x2 = x.reshape(tn, -1)
            grads[2] = xp.concatenate([_mm(d.T, x2) for d in dgx])
        if need[3]:
            grads[3] = _mm(dg.reshape(3, tn, k).transpose(0, 2, 1),
                           h_prev.reshape(tn, k)).reshape(3 * k, k)
        if b_ih is not None:
            if need[4]:
                grads[4] = xp.concatenate([d.sum(0) for d in dgx])
            if need[5]:
                grads[5] = dg.reshape(3, tn, k).sum(1).reshape(3 * k)
        return tuple(grads)


class RNNLayerGate(Op):
    """(out, h_T) = one Elman layer (one direction) over a whole (T, N, I) sequence:
    h' = tanh(x W_ihᵀ + b_ih + h W_hhᵀ + b_hh) (or relu); BPTT in NumPy like LSTMLayerGate."""

    @staticmethod
    def forward(ctx, x, h0, w_ih, w_hh, b_ih, b_hh, reverse, relu):
        xp = _xp(x)
        t_len, n, _ = x.shape
        k = h0.shape[-1]
        dt = x.dtype
        xw = _mm(x.reshape(t_len * n, -1), w_ih.T)
        if b_ih is not None:
            xw += b_ih + b_hh
        xw = xw.reshape(t_len, n, k)
        w_h = xp.ascontiguousarray(w_hh.T)
        hs = xp.empty((t_len + 1, n, k), dtype=dt)
        first = t_len if reverse else 0
        hs[first] = h0
        for t in (range(t_len - 1, -1, -1) if reverse else range(t_len)):
            prev, cur = (t + 1, t) if reverse else (t, t + 1)
            h = hs[cur]
            _mm(hs[prev], w_h, out=h)
            h += xw[t]
            if relu:
                np.maximum(h, 0.0, out=h)
            else:
                np.tanh(h, out=h)
        ctx.save_for_backward(x, h0, w_ih, w_hh, b_ih, b_hh, hs)
        ctx.n_inputs, ctx.reverse, ctx.relu = 6, reverse, relu
        last = 0 if reverse else t_len
        return (hs[:t_len] if reverse else hs[1:]), hs[last].copy()

    @staticmethod
    def differentiable_backward(ctx, g_out, g_h):
        return _layer_double_backward(ctx, "RNN_RELU" if ctx.relu else "RNN_TANH", (g_out, g_h))

    @staticmethod
    def backward(ctx, g_out, g_h):
        x, h0, w_ih, w_hh, b_ih, b_hh, hs = ctx.saved_tensors
        xp = _xp(x)
        reverse = ctx.reverse
        out = hs[:-1] if reverse else hs[1:]
        t_len, n, k = out.shape
        dt = out.dtype
        if ctx.relu:
            q = (out > 0).astype(dt)
        else:
            q = out * out
            np.subtract(1.0, q, out=q)
        dpre = xp.empty((t_len, n, k), dtype=dt)
        dh = xp.zeros((n, k), dtype=dt) if g_h is None else g_h.astype(dt, copy=True)
        order = list(range(t_len) if reverse else range(t_len - 1, -1, -1))
        for step, t in enumerate(order):
            if step:
                _mm(dpre[order[step - 1]], w_hh, out=dh)
            if g_out is not None:
                dh += g_out[t]
            np.multiply(dh, q[t], out=dpre[t])
        need = ctx.needs_input_grad
        grads: list = [None] * 8
        if need[1]:
            grads[1] = _mm(dpre[order[-1]], w_hh)
        d2 = dpre.reshape(t_len * n, k)
        if need[0]:
            grads[0] = _mm(d2, w_ih).reshape(x.shape)
        if need[2]:
            grads[2] = _mm(d2.T, x.reshape(t_len * n, -1))
        if need[3]:
            h_prev = hs[1:] if reverse else hs[:-1]
            grads[3] = _mm(d2.T, h_prev.reshape(t_len * n, k))
        if b_ih is not None and (need[4] or need[5]):
            db = d2.sum(0)
            grads[4] = db if need[4] else None
            grads[5] = (db.copy() if need[4] else db) if need[5] else None
        return tuple(grads)


def _layer_double_backward(ctx: Op, mode: str, grads: tuple) -> tuple:
    """Backward under create_graph: rebuild the layer as the differentiable per-step graph on
    the saved (graph-connected) inputs and differentiate that, so higher orders keep working."""
    saved = ctx.saved_tensors[: ctx.n_inputs]  # the layer's inputs (activations follow them)
    ins = [s if s is None or not s.requires_grad else Alias.apply(s) for s in saved]
    x, states, (w_ih, w_hh, b_ih, b_hh) = ins[0], ins[1:-4], ins[-4:]
    out, finals = _steps_layer(mode, x, list(states), w_ih, w_hh, b_ih, b_hh, ctx.reverse)
    pairs = [(o, g) for o, g in zip([out, *finals], grads) if g is not None]
    wanted = [i for i, t in enumerate(ins) if t is not None and t.requires_grad]
    result: list = [None] * len(ctx.needs_input_grad)
    if not pairs or not wanted:
        return tuple(result)
    got = autograd_grad([o for o, _ in pairs], [ins[i] for i in wanted],
                        [g for _, g in pairs], retain_graph=True, create_graph=True,
                        allow_unused=True)
    for i, g in zip(wanted, got):
        result[i] = g
    return tuple(result)


_LAYER_GATES = {"LSTM": (LSTMLayerGate, ()), "GRU": (GRULayerGate, ()),
                "RNN_TANH": (RNNLayerGate, (False,)), "RNN_RELU": (RNNLayerGate, (True,))}


class RNNBase(Module):
    """Shared machinery of RNN, LSTM and GRU: parameters, init, input checks, layer loop."""

    def __init__(self, mode: str, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, proj_size: int = 0, device: Any = None,
                 dtype: Any = None) -> None:
        super().__init__()
        name = type(self).__name__
        if not isinstance(dropout, (int, float)) or not 0 <= dropout <= 1 or isinstance(
                dropout, bool):
            raise ValueError(f"{name}: dropout should be a number in range [0, 1] representing "
                             f"the probability of an element being zeroed, got {dropout!r}")
        if not isinstance(hidden_size, int) or hidden_size <= 0:
            raise ValueError(f"{name}: hidden_size must be a positive integer, got "
                             f"{hidden_size!r}")
        if not isinstance(num_layers, int) or num_layers <= 0:
            raise ValueError(f"{name}: num_layers must be a positive integer, got {num_layers!r}")
        if not isinstance(proj_size, int) or proj_size < 0:
            raise ValueError("proj_size should be a positive integer or zero to disable "
                             "projections")
        if proj_size >= hidden_size:
            raise ValueError("proj_size has to be smaller than hidden_size")
        if proj_size and mode != "LSTM":
            raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")
        if mode not in _GATES:
            raise ValueError(f"Unrecognized RNN mode: {mode}")
        self.mode = mode
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bias = bias
        self.batch_first = batch_first
        self.dropout = float(dropout)
        self.bidirectional = bidirectional
        self.proj_size = proj_size
        real_hidden = proj_size if proj_size > 0 else hidden_size  # h's size (LSTM: projected)
        gate_size = _GATES[mode] * hidden_size
        dirs = 2 if bidirectional else 1
        self._flat_weights_names: list[str] = []
        self._all_weights: list[list[str]] = []
        for layer in range(num_layers):
            layer_input = input_size if layer == 0 else real_hidden * dirs
            for d in range(dirs):
                sfx = f"_l{layer}" + ("_reverse" if d == 1 else "")
                shapes = [("weight_ih", (gate_size, layer_input)),
                          ("weight_hh", (gate_size, real_hidden))]
                if bias:
                    shapes += [("bias_ih", (gate_size,)), ("bias_hh", (gate_size,))]
                if proj_size > 0:
                    shapes += [("weight_hr", (proj_size, hidden_size))]
                names = []
                for base, shape in shapes:
                    setattr(self, base + sfx,
                            Parameter(empty(*shape, dtype=dtype, device=device)))
                    names.append(base + sfx)
                self._flat_weights_names.extend(names)
                self._all_weights.append(names)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyTorch's default: every weight and bias ~ U(-1/√hidden_size, 1/√hidden_size)."""
        stdv = 1.0 / math.sqrt(self.hidden_size) if self.hidden_size > 0 else 0
        for weight in self.parameters():
            init.uniform_(weight, -stdv, stdv)

    @property
    def all_weights(self) -> list:
        """The parameters per layer and direction: [[w_ih, w_hh, b_ih, b_hh], ...]."""
        return [[getattr(self, n) for n in names] for names in self._all_weights]

    @property
    def _flat_weights(self) -> list:
        return [getattr(self, n) for n in self._flat_weights_names]

    def flatten_parameters(self) -> None:
        """No-op (cuDNN weight packing does not apply)."""

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if self.bias is not True:
            s += f", bias={self.bias}"
        if self.batch_first is not False:
            s += f", batch_first={self.batch_first}"
        if self.dropout != 0:
            s += f", dropout={self.dropout}"
        if self.bidirectional is not False:
            s += f", bidirectional={self.bidirectional}"
        if self.proj_size != 0:
            s += f", proj_size={self.proj_size}"
        return s

    # ---- forward ---------------------------------------------------------------------------
    def _check_input(self, input: Tensor) -> bool:
        """Validate the input; return True when it is batched."""
        name = type(self).__name__
        if not isinstance(input, Tensor):
            raise TypeError(f"{name}: input must be a Tensor, got {type(input).__name__}")
        if input.ndim not in (2, 3):
            raise ValueError(f"{name}: Expected input to be 2D or 3D, got {input.ndim}D instead "
                             f"(input of size {list(input.shape)})")
        if input.shape[-1] != self.input_size:
            raise RuntimeError(f"{name}: input.size(-1) must be equal to input_size. Expected "
                               f"{self.input_size}, got {input.shape[-1]} (input of size "
                               f"{list(input.shape)})")
        if input._data.dtype.kind not in FLOAT_KINDS:
            raise RuntimeError(f"{name}: expected a floating point input, got {input.dtype}")
        seq_dim = 1 if input.ndim == 3 and self.batch_first else 0
        if input.shape[seq_dim] == 0:
            raise RuntimeError(f"{name}: Expected sequence length to be larger than 0 in RNN "
                               f"(input of size {list(input.shape)})")
        return input.ndim == 3

    def _check_hidden(self, hx: Tensor, expected: tuple, what: str) -> None:
        if not isinstance(hx, Tensor):
            raise TypeError(f"{type(self).__name__}: {what} must be a Tensor, got "
                            f"{type(hx).__name__}")
        if tuple(hx.shape) != expected:
            raise RuntimeError(f"{type(self).__name__}: Expected {what} size {expected}, got "
                               f"{list(hx.shape)}")

    def _run(self, input: Tensor, states: list) -> tuple:
        """Run all layers on (L, N, H_in); ``states`` is a list (per state kind) of lists of
        (N, H) tensors per layer·direction. Returns the output and the final states."""
        dirs = 2 if self.bidirectional else 1
        finals: list = [[] for _ in states]
        layer_in = input
        for layer in range(self.num_layers):
            outs = []
            for d in range(dirs):
                k = layer * dirs + d
                weights = self.all_weights[k]
                w_ih, w_hh = weights[0], weights[1]
                b_ih, b_hh = (weights[2], weights[3]) if self.bias else (None, None)
                w_hr = weights[-1] if self.proj_size else None
                state = [s[k] for s in states]
                if w_hr is not None:  # projected LSTM: the per-step graph
                    out, last = _steps_layer(self.mode, layer_in, state, w_ih, w_hh, b_ih, b_hh,
                                             d == 1, w_hr)
                elif FUSED and _fusable(layer_in, *state, *weights):
                    gate, extra = _LAYER_GATES[self.mode]
                    out, *last = gate.apply(layer_in, *state, w_ih, w_hh, b_ih, b_hh, d == 1,
                                            *extra)
                else:
                    out, last = _steps_layer(self.mode, layer_in, state, w_ih, w_hh, b_ih, b_hh,
                                             d == 1)
                outs.append(out)
                for f, v in zip(finals, last):
                    f.append(v)
            layer_in = outs[0] if dirs == 1 else cat(outs, -1)
            if self.dropout and self.training and layer < self.num_layers - 1:
                layer_in = F.dropout(layer_in, self.dropout, True)
        return layer_in, [stack(f, 0) for f in finals]

    def _forward_any(self, input: Any, hx: list | None) -> tuple:
        """``_forward``, or the packed-sequence path for a PackedSequence input."""
        from chainrule.nn.utils.rnn import PackedSequence, rnn_packed_forward

        if isinstance(input, PackedSequence):
            return rnn_packed_forward(self, input, hx)
        return self._forward(input, hx)

    def _forward(self, input: Tensor, hx: list | None) -> tuple:
        """Shared forward: layout handling, default zero states. ``hx``: list of state tensors."""
        batched = self._check_input(input)
        if not batched:
            input = input.unsqueeze(1)
        elif self.batch_first:
            input = input.transpose(0, 1)
        n = input.shape[1]
        dirs = 2 if self.bidirectional else 1
        n_states = 2 if self.mode == "LSTM" else 1
        whats = ["hx", "cx"] if n_states == 2 else ["hx"]
        sizes = [self.proj_size or self.hidden_size, self.hidden_size][:n_states]  # h, c
        if hx is None:
            hx = [zeros(self.num_layers * dirs, n, size, dtype=input.dtype, device=input.device)
                  for size in sizes]
        else:
            if not batched:
                for h, what in zip(hx, whats):
                    if isinstance(h, Tensor) and h.ndim != 2:
                        raise RuntimeError(f"{type(self).__name__}: For unbatched 2-D input, "
                                           f"{what} should also be 2-D but got {h.ndim}-D tensor")
                hx = [h.unsqueeze(1) for h in hx]
            elif any(isinstance(h, Tensor) and h.ndim != 3 for h in hx):
                raise RuntimeError(f"{type(self).__name__}: For batched 3-D input, hx should also "
                                   f"be 3-D")
            for h, what, size in zip(hx, whats, sizes):
                self._check_hidden(h, (self.num_layers * dirs, n, size), what)
        states = [list(h.unbind(0)) for h in hx]
        output, finals = self._run(input, states)
        if not batched:
            output = output.squeeze(1)
            finals = [f.squeeze(1) for f in finals]
        elif self.batch_first:
            output = output.transpose(0, 1)
        return output, finals


class RNN(RNNBase):
    """Elman RNN: h_t = tanh(x_t W_ihᵀ + b_ih + h_{t-1} W_hhᵀ + b_hh) (or relu)."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 nonlinearity: str = "tanh", bias: bool = True, batch_first: bool = False,
                 dropout: float = 0.0, bidirectional: bool = False, device: Any = None,
                 dtype: Any = None) -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"Unknown nonlinearity '{nonlinearity}'. Select from 'tanh' or "
                             "'relu'.")
        self.nonlinearity = nonlinearity
        super().__init__("RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU", input_size,
                         hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         0, device, dtype)

    def forward(self, input: Tensor, hx: Tensor | None = None) -> tuple:
        """Return (output, h_n); a PackedSequence input gives a PackedSequence output."""
        output, (h_n,) = self._forward_any(input, None if hx is None else [hx])
        return output, h_n


class LSTM(RNNBase):
    """Long short-term memory: gates i, f, g, o; c_t = f·c + i·g, h_t = o·tanh(c_t)."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, proj_size: int = 0, device: Any = None,
                 dtype: Any = None) -> None:
        super().__init__("LSTM", input_size, hidden_size, num_layers, bias, batch_first,
                         dropout, bidirectional, proj_size, device, dtype)

    def forward(self, input: Tensor, hx: tuple | None = None) -> tuple:
        """Return (output, (h_n, c_n))."""
        if hx is not None:
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                raise TypeError("LSTM: hx must be a tuple (h_0, c_0)")
            hx = list(hx)
        output, (h_n, c_n) = self._forward_any(input, hx)
        return output, (h_n, c_n)


class GRU(RNNBase):
    """Gated recurrent unit: gates r, z, n; h_t = (1 - z)·n + z·h_{t-1}."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, device: Any = None, dtype: Any = None) -> None:
        super().__init__("GRU", input_size, hidden_size, num_layers, bias, batch_first,
                         dropout, bidirectional, 0, device, dtype)

    def forward(self, input: Tensor, hx: Tensor | None = None) -> tuple:
        """Return (output, h_n); a PackedSequence input gives a PackedSequence output."""
        output, (h_n,) = self._forward_any(input, None if hx is None else [hx])
        return output, h_n


# ---- cells ------------------------------------------------------------------------------------
class RNNCellBase(Module):
    """Shared parameters of the single-step cells (weight_ih, weight_hh, bias_ih, bias_hh)."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool, num_chunks: int,
                 device: Any = None, dtype: Any = None) -> None:
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.bias = bias
        g = num_chunks * hidden_size
        self.weight_ih = Parameter(empty(g, input_size, dtype=dtype, device=device))
        self.weight_hh = Parameter(empty(g, hidden_size, dtype=dtype, device=device))
        if bias:
            self.bias_ih = Parameter(empty(g, dtype=dtype, device=device))
            self.bias_hh = Parameter(empty(g, dtype=dtype, device=device))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Every weight and bias ~ U(-1/√hidden_size, 1/√hidden_size)."""
        stdv = 1.0 / math.sqrt(self.hidden_size) if self.hidden_size > 0 else 0
        for weight in self.parameters():
            init.uniform_(weight, -stdv, stdv)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.bias is not True:
            s += f", bias={self.bias}"
        return s

    def _prepare(self, input: Tensor, hx: Any, n_states: int) -> tuple:
        name = type(self).__name__
        if not isinstance(input, Tensor) or input.ndim not in (1, 2):
            raise ValueError(f"{name}: Expected input to be 1D or 2D, got "
                             f"{getattr(input, 'ndim', type(input).__name__)}D instead")
        if input.shape[-1] != self.input_size:
            raise RuntimeError(f"{name}: input has inconsistent input_size: got "
                               f"{input.shape[-1]} expected {self.input_size}")
        batched = input.ndim == 2
        x = input if batched else input.unsqueeze(0)
        if hx is None:
            z = zeros(x.shape[0], self.hidden_size, dtype=x.dtype, device=x.device)
            states = [z] * n_states
        else:
            states = list(hx) if n_states == 2 else [hx]
            states = [s if batched else s.unsqueeze(0) for s in states]
            for s in states:
                if tuple(s.shape) != (x.shape[0], self.hidden_size):
                    raise RuntimeError(f"{name}: Expected hidden size "
                                       f"{(x.shape[0], self.hidden_size)}, got "
                                       f"{list(s.shape)}")
        xw = x @ self.weight_ih.t()
        if self.bias_ih is not None:
            xw = xw + self.bias_ih
        return batched, xw, states


class RNNCell(RNNCellBase):
    """One Elman step: h' = tanh(x W_ihᵀ + b_ih + h W_hhᵀ + b_hh) (or relu)."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 nonlinearity: str = "tanh", device: Any = None, dtype: Any = None) -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"Unknown nonlinearity: {nonlinearity}")
        self.nonlinearity = nonlinearity
        super().__init__(input_size, hidden_size, bias, 1, device, dtype)

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        """Return h'."""
        batched, xw, (h,) = self._prepare(input, hx, 1)
        act = tanh if self.nonlinearity == "tanh" else relu
        h = _rnn_step(act, xw, h, self.weight_hh.t(), self.bias_hh)
        return h if batched else h.squeeze(0)


class LSTMCell(RNNCellBase):
    """One LSTM step: returns (h', c')."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device: Any = None,
                 dtype: Any = None) -> None:
        super().__init__(input_size, hidden_size, bias, 4, device, dtype)

    def forward(self, input: Tensor, hx: tuple | None = None) -> tuple:
        """Return (h', c')."""
        batched, xw, (h, c) = self._prepare(input, hx, 2)
        h, c = _lstm_step(xw, h, c, self.weight_hh.t(), self.bias_hh)
        return (h, c) if batched else (h.squeeze(0), c.squeeze(0))


class GRUCell(RNNCellBase):
    """One GRU step: returns h'."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device: Any = None,
                 dtype: Any = None) -> None:
        super().__init__(input_size, hidden_size, bias, 3, device, dtype)

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        """Return h'."""
        batched, xw, (h,) = self._prepare(input, hx, 1)
        h = _gru_step(xw, h, self.weight_hh.t(), self.bias_hh)
        return h if batched else h.squeeze(0)
