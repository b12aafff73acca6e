"""``cr.backends``: library switches, as ``torch.backends``.

``cr.backends.cuda.matmul.allow_tf32 = True`` lets float32 matrix products on the GPU (matmul,
linear, and the convolutions, which chainrule runs as matrix products) use TF32 tensor cores:
about 10 mantissa bits instead of 23, several times the speed. Off by default, as in PyTorch.
``cr.set_float32_matmul_precision("high")`` is the same switch.
"""

from __future__ import annotations

from chainrule import devices

__all__ = ["cuda"]


class _Matmul:
    __slots__ = ("_allow_tf32",)

    def __init__(self) -> None:
        self._allow_tf32 = False

    @property
    def allow_tf32(self) -> bool:
        return self._allow_tf32

    @allow_tf32.setter
    def allow_tf32(self, value: bool) -> None:
        self._allow_tf32 = bool(value)
        apply_tf32()


class _Cuda:
    __slots__ = ("matmul",)

    def __init__(self) -> None:
        self.matmul = _Matmul()


cuda = _Cuda()


def apply_tf32() -> None:
    """Tell CuPy's cuBLAS calls the float32 compute type the switch asks for."""
    cupy = devices.loaded_cupy()
    if cupy is None:
        return
    import numpy

    from cupy._core import _routines_linalg as rl

    rl.set_compute_type(numpy.float32, rl.COMPUTE_TYPE_TF32 if cuda.matmul.allow_tf32
                        else rl.COMPUTE_TYPE_DEFAULT)


devices.on_cupy_loaded.append(apply_tf32)

_PRECISIONS = ("highest", "high", "medium")


def set_float32_matmul_precision(precision: str) -> None:
    """"highest": full float32; "high"/"medium": TF32 allowed (as torch)."""
    if precision not in _PRECISIONS:
        raise RuntimeError(f"set_float32_matmul_precision: precision must be one of "
                           f"{', '.join(_PRECISIONS)}, got {precision!r}")
    cuda.matmul.allow_tf32 = precision != "highest"


def get_float32_matmul_precision() -> str:
    return "high" if cuda.matmul.allow_tf32 else "highest"
