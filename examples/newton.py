"""Newton's method in one dimension with second derivatives from ``cr.func.grad(grad(f))``.

Minimise f(x) = e^x - 2x (minimum at x* = ln 2): each step is x <- x - f'(x) / f''(x), with
f' = grad(f) and f'' = grad(grad(f)) computed by differentiating chainrule's own backward pass.
The error roughly squares at every step (quadratic convergence), so a handful of steps reach
machine precision.

Run: ``python examples/newton.py``
"""

from __future__ import annotations

import math

import chainrule as cr
from chainrule.func import grad


def f(x: cr.Tensor) -> cr.Tensor:
    """The function to minimise: e^x - 2x."""
    return x.exp() - 2 * x


def newton(fn, x0: float, steps: int = 20, tol: float = 1e-14) -> list[float]:
    """Newton iterates x_0, x_1, ... until the step is below ``tol`` (float64)."""
    d1, d2 = grad(fn), grad(grad(fn))
    x = cr.tensor(x0, dtype=cr.float64)
    history = [x.item()]
    for _ in range(steps):
        step = d1(x) / d2(x)
        x = x - step
        history.append(x.item())
        if abs(step.item()) < tol:
            break
    return history


def main(verbose: bool = False) -> dict:
    """Run Newton from x0 = 2; return the iterates, errors and the exact answer."""
    history = newton(f, 2.0)
    exact = math.log(2.0)
    errors = [abs(x - exact) for x in history]
    if verbose:
        print("minimise f(x) = e^x - 2x with Newton's method (f'' from grad(grad(f)))")
        for k, (x, e) in enumerate(zip(history, errors)):
            print(f"  step {k}: x = {x:.16f}   |x - ln 2| = {e:.2e}")
    return {"history": history, "errors": errors, "x": history[-1], "exact": exact,
            "steps": len(history) - 1}


if __name__ == "__main__":
    main(verbose=True)
