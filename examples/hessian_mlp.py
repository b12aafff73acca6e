"""The full Hessian of a small MLP's loss with ``cr.func.hessian``, checked by finite differences.

The network's parameters live in one flat vector theta (17 numbers: a 2-4-1 tanh MLP), so the
Hessian of the mean squared error is a 17 x 17 matrix. ``hessian = jacfwd(jacrev(loss))``:
one gradient with graph, then one forward-mode pass per parameter. The check is independent of
chainrule: second differences of the same loss written in plain NumPy.

Run: ``python examples/hessian_mlp.py``
"""

from __future__ import annotations

import numpy as np

import chainrule as cr
from chainrule.func import hessian

SIZES = (2, 4, 1)


def n_params(sizes: tuple = SIZES) -> int:
    """Number of weights and biases of the MLP."""
    return sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))


def unpack(theta, sizes: tuple = SIZES) -> list:
    """Slice the flat vector into [(W, b), ...] (works on chainrule tensors and NumPy arrays)."""
    layers, i = [], 0
    for a, b in zip(sizes[:-1], sizes[1:]):
        W = theta[i:i + a * b].reshape(a, b)
        i += a * b
        layers.append((W, theta[i:i + b]))
        i += b
    return layers


def loss(theta: cr.Tensor, X: cr.Tensor, y: cr.Tensor) -> cr.Tensor:
    """Mean squared error of the tanh MLP with parameters ``theta``."""
    h = X
    layers = unpack(theta)
    for k, (W, b) in enumerate(layers):
        h = h @ W + b
        if k < len(layers) - 1:
            h = h.tanh()
    return ((h.squeeze(-1) - y) ** 2).mean()


def loss_np(theta: np.ndarray, X: np.ndarray, y: np.ndarray) -> float:
    """The same loss in plain NumPy (the independent reference)."""
    h = X
    layers = unpack(theta)
    for k, (W, b) in enumerate(layers):
        h = h @ W + b
        if k < len(layers) - 1:
            h = np.tanh(h)
    return float(((h[:, 0] - y) ** 2).mean())


def hessian_fd(theta: np.ndarray, X: np.ndarray, y: np.ndarray, h: float = 1e-4) -> np.ndarray:
    """H_ij by central second differences of the NumPy loss."""
    n = theta.size
    H = np.zeros((n, n))
    E = np.eye(n) * h
    for i in range(n):
        for j in range(i, n):
            H[i, j] = H[j, i] = (
                loss_np(theta + E[i] + E[j], X, y) - loss_np(theta + E[i] - E[j], X, y)
                - loss_np(theta - E[i] + E[j], X, y) + loss_np(theta - E[i] - E[j], X, y)
            ) / (4 * h * h)
    return H


def data(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Initial parameters and a small regression problem: y = sin(x0) + x1^2."""
    rng = np.random.default_rng(seed)
    theta = rng.normal(0.0, 0.7, n_params())
    X = rng.normal(size=(12, 2))
    y = np.sin(X[:, 0]) + X[:, 1] ** 2
    return theta, X, y


def main(verbose: bool = False) -> dict:
    """Hessian by cr.func vs finite differences: max error, symmetry and eigenvalue range."""
    theta, X, y = data()
    Xc, yc = cr.tensor(X), cr.tensor(y)
    H = hessian(lambda t: loss(t, Xc, yc))(cr.tensor(theta)).numpy()
    H_fd = hessian_fd(theta, X, y)
    eig = np.linalg.eigvalsh(H)
    result = {
        "n_params": theta.size,
        "shape": H.shape,
        "max_abs_error": float(np.abs(H - H_fd).max()),
        "max_abs_entry": float(np.abs(H).max()),
        "asymmetry": float(np.abs(H - H.T).max()),
        "eig_min": float(eig[0]),
        "eig_max": float(eig[-1]),
    }
    if verbose:
        print(f"2-4-1 tanh MLP, {theta.size} parameters: Hessian {H.shape} of the MSE loss")
        print(f"  max |H - H_fd|      = {result['max_abs_error']:.2e}"
              f"   (largest entry {result['max_abs_entry']:.3f})")
        print(f"  max |H - H^T|       = {result['asymmetry']:.2e}")
        print(f"  eigenvalues in [{result['eig_min']:.4f}, {result['eig_max']:.4f}]")
    return result


if __name__ == "__main__":
    main(verbose=True)
