"""``cr.backends``: library switches, as ``torch.backends``.

``cr.backends.cuda.matmul.allow_tf32 = True`` lets float32 matrix products on the GPU (matmul,
linear, and the convolutions, which chainrule runs as matrix products) use TF32 tensor cores:
about 10 mantissa bits instead of 23, several times the speed. Off by default, as in PyTorch.
``cr.set_float32_matmul_precision("high")`` is the same switch.
"""

from __future__ import annotations

from chainrule import devices

__all__ = ["cuda", "cudnn", "mps", "mkl", "openmp", "mkldnn", "cpu"]


class _Matmul:
    __slots__ = ("_allow_tf32", "allow_fp16_reduced_precision_reduction",
                 "allow_bf16_reduced_precision_reduction", "allow_fp16_accumulation")

    def __init__(self) -> None:
        self._allow_tf32 = False
        # recorded, as torch's (CuPy's cuBLAS calls choose their own reductions)
        self.allow_fp16_reduced_precision_reduction = True
        self.allow_bf16_reduced_precision_reduction = True
        self.allow_fp16_accumulation = False

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

    def sdp_kernel(self, enable_flash: bool = True, enable_math: bool = True,
                   enable_mem_efficient: bool = True, enable_cudnn: bool = True):
        """``with cr.backends.cuda.sdp_kernel(enable_flash=False):`` (deprecated in torch)."""
        import contextlib
        import warnings

        warnings.warn("`torch.backends.cuda.sdp_kernel()` is deprecated. In the future, this "
                      "context manager will be removed. Please see "
                      "`torch.nn.attention.sdpa_kernel()` for the new context manager, with "
                      "updated signature.", FutureWarning, stacklevel=2)

        @contextlib.contextmanager
        def ctx():
            prev = dict(SDP)
            SDP.update(flash=bool(enable_flash), math=bool(enable_math),
                       mem_efficient=bool(enable_mem_efficient), cudnn=bool(enable_cudnn))
            try:
                yield
            finally:
                SDP.update(prev)

        return ctx()

    @staticmethod
    def is_built() -> bool:
        """True when chainrule can run on CUDA here (CuPy is installed)."""
        import importlib.util

        return importlib.util.find_spec("cupy") is not None

    # torch.backends.cuda's scaled-dot-product-attention switches (torch.nn.attention.sdpa_kernel
    # sets them): chainrule has one exact implementation, which runs while "math" or "flash" is
    # on (as torch's CPU kernels do), whatever the device.
    @staticmethod
    def flash_sdp_enabled() -> bool:
        return SDP["flash"]

    @staticmethod
    def enable_flash_sdp(enabled: bool) -> None:
        SDP["flash"] = bool(enabled)

    @staticmethod
    def mem_efficient_sdp_enabled() -> bool:
        return SDP["mem_efficient"]

    @staticmethod
    def enable_mem_efficient_sdp(enabled: bool) -> None:
        SDP["mem_efficient"] = bool(enabled)

    @staticmethod
    def math_sdp_enabled() -> bool:
        return SDP["math"]

    @staticmethod
    def enable_math_sdp(enabled: bool) -> None:
        SDP["math"] = bool(enabled)

    @staticmethod
    def cudnn_sdp_enabled() -> bool:
        return SDP["cudnn"]

    @staticmethod
    def enable_cudnn_sdp(enabled: bool) -> None:
        SDP["cudnn"] = bool(enabled)


SDP = {"flash": True, "mem_efficient": True, "math": True, "cudnn": True}
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


# ---- torch.backends.cudnn / mps / mkldnn / ...: the switches programs set -----------------
def _cudnn_version():
    """cuDNN's version number when CuPy has it, else None (as torch without cuDNN)."""
    try:
        from cupy.cuda import cudnn as _cudnn  # noqa: F401  (optional)
    except Exception:  # noqa: BLE001  (no CuPy, no GPU or no cuDNN: all mean "none")
        return None
    return _cudnn.getVersion()


class _Flags:
    """A backend's switches: attributes as torch has them, recorded (chainrule does not use
    cuDNN/oneDNN; CuPy's cuBLAS and NumPy's BLAS do the work)."""

    def __init__(self, name: str, available: bool, **flags) -> None:
        self._name, self._available = name, available
        self.__dict__.update(flags)

    def is_available(self) -> bool:
        available = self._available
        return bool(available() if callable(available) else available)  # cuDNN: asked late

    def is_built(self) -> bool:
        return self.is_available()

    def version(self):
        return _cudnn_version() if self._name == "cudnn" else None

    def flags(self, **kw):
        """``with cr.backends.cudnn.flags(enabled=False):`` sets flags for a block."""
        import contextlib

        @contextlib.contextmanager
        def ctx():
            prev = {k: getattr(self, k) for k in kw}
            self.__dict__.update(kw)
            try:
                yield
            finally:
                self.__dict__.update(prev)

        return ctx()

    def __repr__(self) -> str:
        return f"<chainrule.backends.{self._name}>"


# cudnn.enabled / benchmark / deterministic / allow_tf32 are read and written by training
# scripts; chainrule runs no cuDNN kernels, so they only record what was asked.
cudnn = _Flags("cudnn", lambda: _cudnn_version() is not None, enabled=True, benchmark=False,
               deterministic=False, allow_tf32=True, benchmark_limit=10)
mps = _Flags("mps", False)
mkl = _Flags("mkl", False)
openmp = _Flags("openmp", False)
mkldnn = _Flags("mkldnn", False, enabled=True)
cpu = _Flags("cpu", True)
cpu.get_cpu_capability = lambda: "DEFAULT"

