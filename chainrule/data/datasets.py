"""Small datasets that need no download (digits, moons, spirals) and a reader for local MNIST
IDX files."""

from __future__ import annotations

import gzip
import os
import zlib

import numpy as np

from chainrule.creation import randn, randperm
from chainrule.data.dataset import TensorDataset
from chainrule.dtypes import float64
from chainrule.tensor import wrap

__all__ = ["digits", "moons", "spirals", "mnist", "mnist_files", "read_idx", "IDX_TYPES"]

# IDX type code -> big-endian NumPy dtype (http://yann.lecun.com/exdb/mnist/, "THE IDX FILE FORMAT")
IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _generator(seed: int):
    from chainrule.random import Generator

    return Generator().manual_seed(seed)


def _dataset(x: np.ndarray, y: np.ndarray) -> TensorDataset:
    return TensorDataset(wrap(np.ascontiguousarray(x, np.float32)),
                         wrap(np.ascontiguousarray(y, np.int64)))


def _load_digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled digits as (images float64 0..16 (N, 64), labels (N,))."""
    import importlib.util

    spec = importlib.util.find_spec("sklearn")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(
            "digits() reads the 8x8 digits bundled with scikit-learn: pip install scikit-learn"
        )
    path = os.path.join(os.path.dirname(spec.origin), "datasets", "data", "digits.csv.gz")
    if os.path.exists(path):  # read the CSV directly: importing sklearn.datasets takes ~1 s
        table = np.loadtxt(path, delimiter=",")
        return table[:, :-1], table[:, -1].astype(np.int64)
    from sklearn.datasets import load_digits  # pragma: no cover (layout changed)

    d = load_digits()
    return d.data, d.target.astype(np.int64)


def digits(test_size: float = 0.2, seed: int = 0,
           flatten: bool = False) -> tuple[TensorDataset, TensorDataset]:
    """The 1797 8x8 handwritten digits bundled with scikit-learn, as ``(train, test)``.

    Each is a ``TensorDataset(images, labels)``: images float32 in [0, 1] of shape (N, 1, 8, 8)
    (or (N, 64) with ``flatten=True``), labels int64 in 0..9. The split is stratified: a
    ``test_size`` fraction of every class goes to the test set (360 of 1797 by default), the
    first of ``randperm(len(class), generator=g)`` for each class in turn, with
    ``g = Generator().manual_seed(seed)`` (the same calls in PyTorch give the same split).
    """
    if not 0.0 < test_size < 1.0:
        raise ValueError(f"digits: test_size must be in (0, 1), got {test_size}")
    x, y = _load_digits_arrays()
    x = (x / 16.0).astype(np.float32)
    g = _generator(seed)
    test_idx = []
    for c in range(10):
        members = np.flatnonzero(y == c)
        order = randperm(len(members), generator=g)._data
        test_idx.append(members[order[: int(round(len(members) * test_size))]])
    test_mask = np.zeros(len(y), bool)
    test_mask[np.concatenate(test_idx)] = True
    shape = (-1, 64) if flatten else (-1, 1, 8, 8)
    train = _dataset(x[~test_mask].reshape(shape), y[~test_mask])
    test = _dataset(x[test_mask].reshape(shape), y[test_mask])
    return train, test


def moons(n: int = 1000, noise: float = 0.1, seed: int = 0) -> TensorDataset:
    """Two interleaving half circles (as scikit-learn's ``make_moons``): points (n, 2) float32,
    labels 0/1 int64, shuffled by ``randperm(n, generator=g)`` and jittered by
    ``noise * randn(n, 2, dtype=float64, generator=g)``, ``g = Generator().manual_seed(seed)``."""
    if n < 2:
        raise ValueError(f"moons: n must be at least 2, got {n}")
    if noise < 0:
        raise ValueError(f"moons: noise must be non-negative, got {noise}")
    g = _generator(seed)
    n_out = n // 2
    n_in = n - n_out
    t_out = np.linspace(0, np.pi, n_out)
    t_in = np.linspace(0, np.pi, n_in)
    x = np.concatenate([np.stack([np.cos(t_out), np.sin(t_out)], 1),
                        np.stack([1 - np.cos(t_in), 1 - np.sin(t_in) - 0.5], 1)])
    y = np.concatenate([np.zeros(n_out, np.int64), np.ones(n_in, np.int64)])
    perm = randperm(n, generator=g)._data
    x = x[perm] + randn(n, 2, dtype=float64, generator=g)._data * noise
    return _dataset(x, y[perm])


def spirals(n_classes: int = 3, n_per_class: int = 200, noise: float = 0.2,
            seed: int = 0) -> TensorDataset:
    """``n_classes`` interleaved spiral arms (the CS231n toy problem): points float32 (N, 2),
    labels int64, N = n_classes * n_per_class; the angles jittered by
    ``noise * randn(n_per_class, dtype=float64, generator=g)`` per class, then shuffled by
    ``randperm(N, generator=g)``, ``g = Generator().manual_seed(seed)``."""
    if n_classes < 2 or n_per_class < 1:
        raise ValueError(f"spirals: need n_classes >= 2 and n_per_class >= 1, got {n_classes} "
                         f"and {n_per_class}")
    if noise < 0:
        raise ValueError(f"spirals: noise must be non-negative, got {noise}")
    g = _generator(seed)
    xs, ys = [], []
    for c in range(n_classes):
        r = np.linspace(0.0, 1.0, n_per_class)
        jitter = randn(n_per_class, dtype=float64, generator=g)._data * noise
        t = np.linspace(c * 4.0, (c + 1) * 4.0, n_per_class) + jitter
        xs.append(np.stack([r * np.sin(t), r * np.cos(t)], 1))
        ys.append(np.full(n_per_class, c, np.int64))
    x, y = np.concatenate(xs), np.concatenate(ys)
    perm = randperm(len(y), generator=g)._data
    return _dataset(x[perm], y[perm])


# ---- IDX / MNIST --------------------------------------------------------------------------------
def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (gzipped or not; detected from its first bytes) into a NumPy array,
    checking the magic number and that the data size matches the header."""
    path = os.fspath(path)
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise ValueError(f"read_idx: {path} is a corrupt or truncated gzip file ({e})") \
                from None
    if len(raw) < 4:
        raise ValueError(f"read_idx: {path} is too short to be an IDX file ({len(raw)} bytes)")
    zero, code, ndim = int.from_bytes(raw[:2], "big"), raw[2], raw[3]
    if zero != 0 or code not in IDX_TYPES or ndim == 0:
        raise ValueError(f"read_idx: {path} is not an IDX file (bad magic number "
                         f"0x{raw[:4].hex()}; expected 0x0000TTDD with a known type TT)")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"read_idx: {path} is truncated inside its header")
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(IDX_TYPES[code])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != expected:
        raise ValueError(f"read_idx: {path} holds {len(raw) - header} data bytes but its header "
                         f"(shape {shape}, {dtype.name}) needs {expected}"
                         + (" (truncated?)" if len(raw) - header < expected else ""))
    arr = np.frombuffer(raw, dtype, offset=header).reshape(shape)
    return arr.astype(dtype.newbyteorder("="))


def _find(root: str, name: str) -> str:
    dirs = [root, os.path.join(root, "MNIST", "raw")]
    for d in dirs:
        for candidate in (name, name + ".gz"):
            p = os.path.join(d, candidate)
            if os.path.isfile(p):
                return p
    raise FileNotFoundError(
        f"mnist: missing file {name} (or {name}.gz); looked in " + ", ".join(dirs)
    )


def mnist_files(root: str | os.PathLike, train: bool = True) -> tuple[str, str]:
    """The paths of the (images, labels) IDX files for a split; FileNotFoundError names any
    missing one."""
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise FileNotFoundError(f"mnist: data root {root} is not a directory")
    prefix = "train" if train else "t10k"
    return (_find(root, f"{prefix}-images-idx3-ubyte"), _find(root, f"{prefix}-labels-idx1-ubyte"))


def mnist(root: str | os.PathLike, train: bool = True) -> TensorDataset:
    """MNIST from the standard IDX files in ``root`` (or ``root/MNIST/raw``), gzipped or not:
    ``TensorDataset(images float32 (N, 1, H, W) in [0, 1], labels int64)``."""
    img_path, lbl_path = mnist_files(root, train)
    images, labels = read_idx(img_path), read_idx(lbl_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(f"mnist: {img_path} should hold uint8 images (N, H, W), found "
                         f"{images.dtype} {images.shape}")
    if labels.ndim != 1 or labels.dtype != np.uint8:
        raise ValueError(f"mnist: {lbl_path} should hold uint8 labels (N,), found "
                         f"{labels.dtype} {labels.shape}")
    if len(images) != len(labels):
        raise ValueError(f"mnist: {img_path} has {len(images)} images but {lbl_path} has "
                         f"{len(labels)} labels")
    if labels.size and labels.max() > 9:
        raise ValueError(f"mnist: {lbl_path} has a label {int(labels.max())} outside 0..9")
    x = images.astype(np.float32)[:, None] / np.float32(255.0)
    return _dataset(x, labels)
