"""The benchmark workloads, each written once per library on identical seeded inputs.

Every builder takes the library name and returns ``(step, check)``: ``step()`` runs one timed unit
of work and returns a float (a loss or output) that must agree across libraries; ``check`` is
that float from the first call (so a fast wrong answer cannot win). Libraries: chainrule, torch,
numpy (a hand-written floor: the same math, no graph), autograd (HIPS), micrograd.
"""

from __future__ import annotations

import math
import operator

import numpy as np

SEED = 0


# ---- shared inputs -----------------------------------------------------------------------------
def moons(n: int = 100):
    rng = np.random.default_rng(SEED)
    t = rng.uniform(0, math.pi, n)
    upper = rng.random(n) < 0.5
    x = np.where(upper, np.cos(t), 1 - np.cos(t))
    y = np.where(upper, np.sin(t), 0.5 - np.sin(t))
    pts = np.stack([x, y], 1) + 0.1 * rng.standard_normal((n, 2))
    return pts, np.where(upper, 1.0, -1.0)


def mlp_scalar_weights(sizes=(2, 16, 16, 1)):
    rng = np.random.default_rng(SEED)
    return [(rng.uniform(-1, 1, (o, i)) / math.sqrt(i), rng.uniform(-1, 1, o) / math.sqrt(i))
            for i, o in zip(sizes[:-1], sizes[1:])]


def mlp_weights(sizes, dtype=np.float32):
    rng = np.random.default_rng(SEED)
    out = []
    for i, o in zip(sizes[:-1], sizes[1:]):
        bound = 1 / math.sqrt(i)
        out.append((rng.uniform(-bound, bound, (o, i)).astype(dtype),
                    rng.uniform(-bound, bound, o).astype(dtype)))
    return out


def batch(n, features, classes, shape=None):
    rng = np.random.default_rng(SEED + 1)
    x = rng.standard_normal((n, features) if shape is None else (n,) + shape).astype(np.float32)
    y = rng.integers(0, classes, n).astype(np.int64)
    return x, y


# ---- W1: the scalar circuit ---------------------------------------------------------------------
def _circuit_loss(layers, points, labels, tanh):
    """MSE of the 2-16-16-1 tanh MLP over ``points``, one scalar gate at a time. ``layers``:
    per layer (rows of weights, biases), each a scalar of the library; ``tanh`` its tanh."""
    loss = 0.0
    for x, target in zip(points, labels):
        h = x
        for li, (W, b) in enumerate(layers):
            out = []
            for row, bias in zip(W, b):
                s = bias
                for w, v in zip(row, h):
                    s = s + w * v
                out.append(tanh(s) if li < len(layers) - 1 else s)
            h = out
        d = h[0] - float(target)
        loss = loss + d * d
    return loss / len(points)


def w1_scalar_mlp(lib: str):
    """100 moons points through a 2-16-16-1 tanh MLP as 0-d ops, MSE, forward + backward."""
    pts, labels = moons()
    weights = mlp_scalar_weights()
    if lib in ("chainrule", "torch", "mygrad"):
        if lib == "mygrad":
            import mygrad as mg

            scalar, tanh = mg.tensor, mg.tanh
            xs = [[float(v) for v in p] for p in pts]
        else:
            T = _lib(lib)

            def scalar(v):
                return T.tensor(v, dtype=T.float64, requires_grad=True)

            tanh = operator.methodcaller("tanh")
            xs = [[T.tensor(float(v), dtype=T.float64) for v in p] for p in pts]
        params = [([[scalar(float(w)) for w in row] for row in W], [scalar(float(v)) for v in b])
                  for W, b in weights]

        def step():
            loss = _circuit_loss(params, xs, labels, tanh)
            loss.backward()
            return loss.item()
        return step
    if lib == "autograd":
        import autograd
        import autograd.numpy as anp

        flat = [float(w) for W, b in weights for w in list(W.ravel()) + list(b)]

        def loss_fn(ws):
            it = iter(ws)
            layers = [([[next(it) for _ in range(W.shape[1])] for _ in range(W.shape[0])],
                       [next(it) for _ in range(len(b))]) for W, b in weights]
            return _circuit_loss(layers, [[float(v) for v in p] for p in pts], labels, anp.tanh)

        grad_fn = autograd.value_and_grad(loss_fn)

        def step():
            value, _ = grad_fn(flat)
            return float(value)
        return step
    raise KeyError(lib)


# ---- W2: many small elementwise ops --------------------------------------------------------------
W2_OPS = 1000


def w2_elementwise(lib: str):
    """250 × [exp, +c, ×c, tanh] on an (8, 8) float64 tensor, sum, backward. (float64: the
    gradient through 250 blocks is ~1e-58, which float32 flushes to 0 in every library, and the
    answer check must see it.)"""
    x0 = np.random.default_rng(SEED).standard_normal((8, 8)) * 0.1
    if lib in ("chainrule", "torch"):
        T = _lib(lib)

        def step():
            x = T.tensor(x0, requires_grad=True)
            h = x
            for _ in range(W2_OPS // 4):
                h = (h.exp() + 0.5) * 0.5
                h = h.tanh()
            h.sum().backward()
            return float(x.grad.sum())
        return step
    if lib == "numpy":
        def step():
            h = x0
            cache = []
            for _ in range(W2_OPS // 4):
                e = np.exp(h)
                t = np.tanh((e + 0.5) * 0.5)
                cache.append((e, t))
                h = t
            g = np.ones_like(h)
            for e, t in reversed(cache):
                g = g * (1 - t * t)
                g = g * 0.5
                g = g * e
            return float(g.sum())
        return step
    if lib == "autograd":
        import autograd
        import autograd.numpy as anp

        def f(x):
            h = x
            for _ in range(W2_OPS // 4):
                h = anp.tanh((anp.exp(h) + 0.5) * 0.5)
            return anp.sum(h)

        g = autograd.grad(f)
        return lambda: float(g(x0).sum())
    if lib == "mygrad":
        import mygrad as mg

        def step():
            x = mg.tensor(x0)
            h = x
            for _ in range(W2_OPS // 4):
                h = (mg.exp(h) + 0.5) * 0.5
                h = mg.tanh(h)
            mg.sum(h).backward()
            return float(x.grad.sum())
        return step
    raise KeyError(lib)


# ---- W3 / W6: MLP training step -----------------------------------------------------------------
MLP_SIZES = (784, 512, 256, 10)


def w3_mlp(lib: str, batch_size: int = 256):
    """One SGD step of a 784-512-256-10 ReLU MLP with cross-entropy, float32."""
    x, y = batch(batch_size, 784, 10)
    weights = mlp_weights(MLP_SIZES)
    if lib in ("chainrule", "torch"):
        T = _lib(lib)
        nn = T.nn
        layers = []
        for i, (W, b) in enumerate(weights):
            lin = nn.Linear(W.shape[1], W.shape[0])
            with T.no_grad():
                lin.weight.copy_(T.tensor(W))
                lin.bias.copy_(T.tensor(b))
            layers.append(lin)
            if i < len(weights) - 1:
                layers.append(nn.ReLU())
        model = nn.Sequential(*layers)
        xt, yt = T.tensor(x), T.tensor(y)
        loss_fn = nn.CrossEntropyLoss()
        return _sgd_step(T, model, lambda: loss_fn(model(xt), yt))
    if lib == "numpy":
        params = [[W.copy(), b.copy()] for W, b in weights]
        onehot = np.eye(10, dtype=np.float32)[y]

        def step():
            acts = [x]
            h = x
            for i, (W, b) in enumerate(params):
                h = h @ W.T + b
                if i < len(params) - 1:
                    h = np.maximum(h, 0)
                acts.append(h)
            m = h.max(1, keepdims=True)
            logp = h - m - np.log(np.exp(h - m).sum(1, keepdims=True))
            loss = -(logp * onehot).sum() / len(x)
            g = (np.exp(logp) - onehot) / len(x)
            for i in range(len(params) - 1, -1, -1):
                W, b = params[i]
                gW, gb = g.T @ acts[i], g.sum(0)
                if i > 0:
                    g = (g @ W) * (acts[i] > 0)
                W -= 0.01 * gW
                b -= 0.01 * gb
            return loss.item()
        return step
    raise KeyError(lib)


def w3_raw(lib: str, batch_size: int = 256):
    """W3 as the lecture writes it: raw tensors, ``relu(X @ W + b)``, F.cross_entropy, and a
    hand-written SGD update under no_grad (the numpy floor is W3's)."""
    if lib == "numpy":
        return w3_mlp(lib, batch_size)
    if lib not in ("chainrule", "torch"):
        raise KeyError(lib)
    T = _lib(lib)
    F = T.nn.functional
    x, y = batch(batch_size, 784, 10)
    params = []
    for W, b in mlp_weights(MLP_SIZES):
        params += [T.tensor(np.ascontiguousarray(W.T)).requires_grad_(),
                   T.tensor(b).requires_grad_()]
    X, Y = T.tensor(x), T.tensor(y)

    def step():
        h = X
        for i in range(0, len(params), 2):
            h = h @ params[i] + params[i + 1]
            if i < len(params) - 2:
                h = h.relu()
        loss = F.cross_entropy(h, Y)
        loss.backward()
        with T.no_grad():
            for p in params:
                p -= 0.01 * p.grad
                p.grad = None
        return loss.item()
    return step


# ---- W4: small CNN training step -----------------------------------------------------------------
def cnn_weights():
    rng = np.random.default_rng(SEED)

    def u(shape, fan_in):
        b = 1 / math.sqrt(fan_in)
        return rng.uniform(-b, b, shape).astype(np.float32)
    return {
        "c1w": u((8, 1, 3, 3), 9), "c1b": u((8,), 9),
        "c2w": u((16, 8, 3, 3), 72), "c2b": u((16,), 72),
        "fw": u((10, 16 * 5 * 5), 400), "fb": u((10,), 400),
    }


def w4_cnn(lib: str, batch_size: int = 32):
    """conv3×3(8)–ReLU–maxpool2–conv3×3(16)–ReLU–maxpool2–linear(10), CE, SGD, batch 32."""
    x, y = batch(batch_size, 0, 10, shape=(1, 28, 28))
    w = cnn_weights()
    if lib not in ("chainrule", "torch"):
        raise KeyError(lib)
    T = _lib(lib)
    nn = T.nn
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(400, 10),
    )
    with T.no_grad():
        for mod, (wk, bk) in zip([model[0], model[3], model[7]],
                                 [("c1w", "c1b"), ("c2w", "c2b"), ("fw", "fb")]):
            mod.weight.copy_(T.tensor(w[wk]))
            mod.bias.copy_(T.tensor(w[bk]))
    xt, yt = T.tensor(x), T.tensor(y)
    loss_fn = nn.CrossEntropyLoss()
    return _sgd_step(T, model, lambda: loss_fn(model(xt), yt))


def w4_mnist(lib: str, batch_size: int = 64):
    """The MNIST example CNN of pytorch/examples: conv3×3(32)–ReLU–conv3×3(64)–ReLU–maxpool2–
    linear(9216→128)–ReLU–linear(10), log-softmax + NLL, Adadelta(lr=1), batch 64 (no dropout:
    the two libraries draw different masks)."""
    if lib not in ("chainrule", "torch"):
        raise KeyError(lib)
    T = _lib(lib)
    nn, F = T.nn, T.nn.functional
    rng = np.random.default_rng(SEED)
    x = rng.standard_normal((batch_size, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, batch_size)
    model = nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.Conv2d(32, 64, 3), nn.ReLU(),
                          nn.MaxPool2d(2), nn.Flatten(), nn.Linear(9216, 128), nn.ReLU(),
                          nn.Linear(128, 10), nn.LogSoftmax(dim=1))
    with T.no_grad():
        for p in model.parameters():
            fan_in = int(np.prod(p.shape[1:])) if p.ndim > 1 else 128
            b = 1 / math.sqrt(fan_in)
            p.copy_(T.tensor(rng.uniform(-b, b, tuple(p.shape)).astype(np.float32)))
    opt = T.optim.Adadelta(model.parameters(), lr=1.0)
    xt, yt = T.tensor(x), T.tensor(y)

    def step():
        opt.zero_grad()
        loss = F.nll_loss(model(xt), yt)
        loss.backward()
        opt.step()
        return loss.item()
    return step


# ---- W5: long chains of scalar ops ---------------------------------------------------------------
def w5_chain(lib: str, n: int = 100_000):
    """Build and backprop a chain of n scalar ops: n/2 × [sin, ×1.0001], in float64 (in float32
    the gradient through 1M ops is subnormal garbage, and rounding differs between libraries by
    more than the answer check allows)."""
    if lib in ("chainrule", "torch"):
        T = _lib(lib)

        def step():
            x = T.tensor(0.5, dtype=T.float64, requires_grad=True)
            h = x
            for _ in range(n // 2):
                h = h.sin() * 1.0001
            h.backward()
            return float(x.grad)
        return step
    if lib == "numpy":
        def step():
            h = np.float64(0.5)
            ys = []
            for _ in range(n // 2):
                ys.append(h)
                h = np.sin(h) * 1.0001
            g = np.float64(1.0)
            for v in reversed(ys):
                g = g * 1.0001 * np.cos(v)
            return float(g)
        return step
    if lib == "mygrad":
        import mygrad as mg

        def step():
            x = mg.tensor(0.5)
            h = x
            for _ in range(n // 2):
                h = mg.sin(h) * 1.0001
            h.backward()
            return float(x.grad)
        return step
    if lib == "micrograd":
        from micrograd.engine import Value

        def step():
            x = Value(0.5)
            h = x
            for _ in range(n // 2):
                h = (h * 1.0001).relu()  # micrograd has no sin/tanh: a depth test only
            h.backward()
            return x.grad
        return step
    raise KeyError(lib)


# ---- W7: LSTM and transformer block --------------------------------------------------------------
def w7_lstm(lib: str):
    """2-layer LSTM (input 64, hidden 128), seq 32, batch 32: one SGD step on an MSE loss."""
    if lib not in ("chainrule", "torch"):
        raise KeyError(lib)
    T = _lib(lib)
    rng = np.random.default_rng(SEED)
    lstm = T.nn.LSTM(64, 128, num_layers=2)
    with T.no_grad():
        for _name, p in sorted(lstm.named_parameters(), key=lambda kv: kv[0]):
            p.copy_(T.tensor(rng.uniform(-0.088, 0.088, tuple(p.shape)).astype(np.float32)))
    x = T.tensor(rng.standard_normal((32, 32, 64)).astype(np.float32))
    target = T.tensor(rng.standard_normal((32, 32, 128)).astype(np.float32))
    return _sgd_step(T, lstm, lambda: ((lstm(x)[0] - target) ** 2).mean())


def w7_transformer(lib: str):
    """A pre-norm transformer block (d=128, 4 heads, MLP 512, GELU), seq 64, batch 16: SGD step."""
    T, block, x, target = w7_transformer_parts(lib)
    return _sgd_step(T, block, lambda: ((block(x) - target) ** 2).mean())


def w7_transformer_parts(lib: str):
    """W7's transformer block, its input and its target: ``(library, block, x, target)``."""
    if lib not in ("chainrule", "torch"):
        raise KeyError(lib)
    T = _lib(lib)
    nn = T.nn
    rng = np.random.default_rng(SEED)

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln1 = nn.LayerNorm(128)
            self.attn = nn.MultiheadAttention(128, 4, batch_first=True)
            self.ln2 = nn.LayerNorm(128)
            self.mlp = nn.Sequential(nn.Linear(128, 512), nn.GELU(), nn.Linear(512, 128))

        def forward(self, x):
            h = self.ln1(x)
            x = x + self.attn(h, h, h, need_weights=False)[0]
            return x + self.mlp(self.ln2(x))

    block = Block()
    with T.no_grad():
        for _name, p in sorted(block.named_parameters(), key=lambda kv: kv[0]):
            p.copy_(T.tensor(rng.uniform(-0.08, 0.08, tuple(p.shape)).astype(np.float32)))
    x = T.tensor(rng.standard_normal((16, 64, 128)).astype(np.float32))
    target = T.tensor(rng.standard_normal((16, 64, 128)).astype(np.float32))
    return T, block, x, target


def _sgd_step(T, model, compute_loss):
    """One timed unit of the training workloads: zero_grad, loss, backward, SGD(lr=0.01) step."""
    opt = T.optim.SGD(model.parameters(), lr=0.01)

    def step():
        opt.zero_grad()
        loss = compute_loss()
        loss.backward()
        opt.step()
        return loss.item()
    return step


def _lib(lib: str):
    if lib == "torch":
        import os

        import torch

        if os.environ.get("BENCH_THREADS") != "default":
            torch.set_num_threads(1)
        return torch
    import chainrule

    return chainrule


WORKLOADS = {
    "W1": w1_scalar_mlp,
    "W2": w2_elementwise,
    "W3": w3_mlp,
    "W3-raw": w3_raw,
    "W4": w4_cnn,
    "W4-mnist": w4_mnist,
    "W5-10k": lambda lib: w5_chain(lib, 10_000),
    "W5-100k": lambda lib: w5_chain(lib, 100_000),
    "W5-1M": lambda lib: w5_chain(lib, 1_000_000),
    "W7-LSTM": w7_lstm,
    "W7-transformer": w7_transformer,
}
