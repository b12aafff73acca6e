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

    @staticmethod
    def is_built() -> bool:
        """True when chainrule can run on CUDA here (CuPy is installed)."""
        import importlib.util

        return importlib.util.find_spec("cupy") is not None


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


# ---- torch.backends.cudnn / mps / mkldnn: the switches programs set --------------------------
class _Flags:
    """A namespace of switches, as ``torch.backends.<name>`` (a module in torch)."""

    def __init__(self, name: str, **flags) -> None:
        self.__name__ = f"chainrule.backends.{name}"
        self.__dict__.update(flags)

    def __repr__(self) -> str:
        return f"<flags {self.__name__}>"


def _cudnn_version():
    """cuDNN's version number when CuPy has it, else None (as torch without cuDNN)."""
    try:
        from cupy.cuda import cudnn as _cudnn  # noqa: F401  (optional)
    except Exception:  # noqa: BLE001  (no CuPy, no GPU or no cuDNN: all mean "none")
        return None
    return _cudnn.getVersion()


# chainrule runs convolutions as matrix products; the switches are kept (and read back) so
# programs that set them run, and they change nothing: `benchmark`, `deterministic` (results are
# deterministic already), `allow_tf32` (TF32 is cr.backends.cuda.matmul.allow_tf32).
cudnn = _Flags("cudnn", enabled=True, benchmark=False, benchmark_limit=10, deterministic=False,
               allow_tf32=True, is_available=lambda: _cudnn_version() is not None,
               version=_cudnn_version)
mps = _Flags("mps", is_available=lambda: False, is_built=lambda: False)
mkldnn = _Flags("mkldnn", enabled=True, is_available=lambda: False)

__all__ += ["cudnn", "mps", "mkldnn"]
