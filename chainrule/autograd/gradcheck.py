"""Gradient checks against the limit definition: (f(x + h) - f(x - h)) / 2h, in float64.

On failure the message names the output, the input, the worst element and both values,
instead of printing whole Jacobians.
"""

from __future__ import annotations

from chainrule.devices import np
from chainrule.autograd.entry import grad
from chainrule.creation import tensor
from chainrule.tensor import Tensor

__all__ = ["gradcheck", "gradgradcheck", "GradcheckError", "numerical_jacobian",
           "analytical_jacobian"]


class GradcheckError(RuntimeError):
    """A backward rule disagrees with finite differences."""


def _tensors(xs):
    if isinstance(xs, Tensor):
        return (xs,)
    return tuple(xs)


def _diff(x) -> bool:
    """Whether ``x`` is an input to check (a Tensor that requires grad; numbers pass through)."""
    return getattr(x, "_requires_grad", False)


def _size(x) -> int:
    return x._data.size if hasattr(x, "_data") else 0


def _outputs(fn, inputs):
    out = fn(*inputs)
    outs = out if isinstance(out, (tuple, list)) else (out,)
    return [o for o in outs if isinstance(o, Tensor)]


def numerical_jacobian(fn, inputs, eps: float = 1e-6) -> list:
    """J[o][i] of shape (output o size, input i size) by central differences."""
    # Not under no_grad: fn may itself differentiate (gradgradcheck's first derivative).
    base = _outputs(fn, inputs)
    jac = [[np.zeros((o._data.size, _size(x))) for x in inputs] for o in base]
    for i, x in enumerate(inputs):
        if not _diff(x):
            continue
        flat = x._data.reshape(-1)
        if not flat.flags.writeable or not np.shares_memory(flat, x._data):
            x._data = np.array(x._data)
            flat = x._data.reshape(-1)
        for k in range(flat.size):
            orig = flat[k]
            flat[k] = orig + eps
            plus = [np.array(o._data, np.float64).reshape(-1) for o in _outputs(fn, inputs)]
            flat[k] = orig - eps
            minus = [np.array(o._data, np.float64).reshape(-1) for o in _outputs(fn, inputs)]
            flat[k] = orig
            for o in range(len(base)):
                jac[o][i][:, k] = (plus[o] - minus[o]) / (2 * eps)
    return jac


def analytical_jacobian(fn, inputs) -> list:
    """J[o][i] from the backward pass: one vector-Jacobian product per output element."""
    outs = _outputs(fn, inputs)
    wanted = [x for x in inputs if _diff(x)]
    jac = [[np.zeros((o._data.size, _size(x))) for x in inputs] for o in outs]
    for o, out in enumerate(outs):
        if not out._requires_grad:
            continue
        for j in range(out._data.size):
            seed = np.zeros(out._data.size, out._data.dtype)
            seed[j] = 1
            grads = grad(out, wanted, seed.reshape(out._data.shape), retain_graph=True,
                         allow_unused=True)
            gi = iter(grads)
            for i, x in enumerate(inputs):
                if _diff(x):
                    g = next(gi)
                    if g is not None:
                        jac[o][i][j, :] = np.asarray(g._data, np.float64).reshape(-1)
    return jac


def _unravel(index: int, shape: tuple) -> tuple:
    return tuple(int(v) for v in np.unravel_index(index, shape)) if shape else ()


def gradcheck(fn, inputs, *, eps: float = 1e-6, atol: float = 1e-5, rtol: float = 1e-3,
              raise_exception: bool = True, **_ignored) -> bool:
    """True if every analytic gradient of ``fn`` at ``inputs`` matches central differences."""
    import warnings

    inputs = _tensors(inputs)
    for i, x in enumerate(inputs):
        if _diff(x) and x._data.dtype != np.float64:
            warnings.warn(
                f"Input #{i} requires gradient and is not a double precision floating point. "
                "This check will likely fail if all the inputs are not of double precision "
                "floating point.", UserWarning, stacklevel=2,
            )
    outs = _outputs(fn, inputs)
    analytic = analytical_jacobian(fn, inputs)
    numeric = numerical_jacobian(fn, inputs, eps)
    for o in range(len(analytic)):
        for i, x in enumerate(inputs):
            if not _diff(x):
                continue
            a, n = analytic[o][i], numeric[o][i]
            bad = np.abs(a - n) > atol + rtol * np.abs(n)
            bad |= np.isnan(a) != np.isnan(n)
            if bad.any():
                err = np.where(bad, np.abs(a - n), -1.0)
                err = np.nan_to_num(err, nan=np.inf)
                r, c = np.unravel_index(int(np.argmax(err)), a.shape)
                out_idx = _unravel(int(r), tuple(outs[o]._data.shape))
                in_idx = _unravel(int(c), tuple(x._data.shape))
                node = outs[o]._grad_fn
                op = f" (output made by {node.name()})" if node is not None else ""
                msg = (
                    f"Jacobian mismatch for output {o}{op} with respect to input {i}: "
                    f"{int(bad.sum())} of {bad.size} entries differ. Worst: "
                    f"d output{list(out_idx)} "
                    f"/ d input{list(in_idx)}: analytic {a[r, c]:.8g} vs numerical {n[r, c]:.8g} "
                    f"(|difference| {abs(a[r, c] - n[r, c]):.3g} > allowed "
                    f"{atol + rtol * abs(n[r, c]):.3g})"
                )
                if raise_exception:
                    raise GradcheckError(msg)
                return False
    return True


def gradgradcheck(fn, inputs, grad_outputs=None, *, eps: float = 1e-6, atol: float = 1e-5,
                  rtol: float = 1e-3, gen_non_contig_grad_outputs: bool = False,
                  raise_exception: bool = True, **_ignored) -> bool:
    """Check second derivatives: gradcheck of the function (inputs, v) -> vᵀ·J(inputs)."""
    inputs = _tensors(inputs)
    outs = _outputs(fn, inputs)
    if grad_outputs is None:
        rng = np.random.default_rng(0)
        grad_outputs = tuple(
            tensor(rng.standard_normal(o._data.shape), dtype="float64", requires_grad=True)
            for o in outs
        )
    grad_outputs = _tensors(grad_outputs)
    n_in = len(inputs)
    diff_idx = [i for i, x in enumerate(inputs) if _diff(x)]

    def first_derivative(*args):
        xs, vs = args[:n_in], args[n_in:]
        ys = [o for o in _outputs(fn, xs) if o._requires_grad]
        used_v = [v for o, v in zip(_outputs(fn, xs), vs) if o._requires_grad]
        gs = grad(ys, [xs[i] for i in diff_idx], used_v, create_graph=True, allow_unused=True)
        return tuple(g for g in gs if g is not None)

    return gradcheck(first_derivative, inputs + grad_outputs, eps=eps, atol=atol, rtol=rtol,
                     raise_exception=raise_exception)
