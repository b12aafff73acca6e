"""``cr.save`` / ``cr.load``: checkpoints as safetensors files, with no pickle anywhere.

A checkpoint holds any nesting of dicts, lists, tuples, strings, numbers, bools, ``None`` and
Tensors (model and optimizer state dicts, epoch counters, RNG states, ...). Tensors (and NumPy
arrays) become safetensors entries named by their path in the structure ("model/fc.weight");
everything else is described by a JSON document in the file's ``__metadata__`` under
``"chainrule.structure"``. Loading parses JSON and raw little-endian arrays only, so an untrusted
file cannot run code; files written by ``torch.save``/``pickle.dump`` are refused.

Writes are atomic: the bytes go to a temporary file in the same directory, which is flushed,
fsync'ed and then ``os.replace``'d over the destination, so a crash mid-save leaves the previous
checkpoint intact. Plain safetensors files (e.g. from the ``safetensors`` package) load as a flat
``{name: Tensor}`` dict, and files written here are readable by any safetensors reader.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections import OrderedDict
from typing import IO, Any

import numpy as np

from chainrule import devices
from chainrule.tensor import Tensor, wrap

__all__ = ["save", "load", "SerializationError"]

_STRUCTURE_KEY = "chainrule.structure"
_FORMAT_KEY = "format"
_MAX_HEADER = 100 * 1024 * 1024  # as in the reference safetensors implementation

_DTYPES = {
    "BOOL": np.dtype(np.bool_), "U8": np.dtype("<u1"), "I8": np.dtype("<i1"),
    "I16": np.dtype("<i2"), "U16": np.dtype("<u2"), "I32": np.dtype("<i4"),
    "U32": np.dtype("<u4"), "I64": np.dtype("<i8"), "U64": np.dtype("<u8"),
    "F16": np.dtype("<f2"), "F32": np.dtype("<f4"), "F64": np.dtype("<f8"),
}
_CODES = {(dt.kind, dt.itemsize): code for code, dt in _DTYPES.items()}
_CODES[("V", 2)] = "BF16"  # ml_dtypes' bfloat16, imported when a file holds one


def _np_dtype(code: str):
    if code == "BF16":
        from chainrule.dtypes import bfloat16

        return bfloat16.np
    return _DTYPES[code]


class SerializationError(RuntimeError):
    """A checkpoint that cannot be written or read (corrupt, truncated, or not safetensors)."""


# ---- structure <-> JSON -------------------------------------------------------------------------
class _Encoder:
    """Turns a nested object into JSON-able data, collecting arrays under unique names."""

    def __init__(self) -> None:
        self.arrays: dict[str, np.ndarray] = {}
        self.seen: dict[int, str] = {}  # id(Tensor) -> name, so shared tensors stay shared

    def name(self, path: list[str]) -> str:
        base = "/".join(path) or "tensor"
        if base.startswith("__"):
            base = "_" + base
        name, n = base, 1
        while name in self.arrays:
            name, n = f"{base}#{n}", n + 1
        return name

    def array(self, arr, path: list[str]) -> str:
        arr = np.asarray(devices.to_device(arr, "cpu"))
        if (arr.dtype.kind, arr.dtype.itemsize) not in _CODES:
            raise TypeError(f"cr.save: cannot store an array of dtype {arr.dtype} at "
                            f"{'/'.join(path) or '<root>'}")
        name = self.name(path)
        self.arrays[name] = arr
        return name

    def key(self, k: Any, path: list[str]) -> Any:
        if isinstance(k, (Tensor, np.ndarray, dict, list)):
            raise TypeError(f"cr.save: dict key of type {type(k).__name__} at "
                            f"{'/'.join(path) or '<root>'} is not supported")
        return self.encode(k, path)

    def encode(self, obj: Any, path: list[str]) -> Any:
        if obj is None or isinstance(obj, (bool, str)):
            return obj
        if isinstance(obj, int):
            return int(obj)
        if isinstance(obj, float):
            return float(obj) if math.isfinite(obj) else {"__float__": repr(float(obj))}
        if isinstance(obj, Tensor):
            if id(obj) in self.seen:
                return {"__tensor__": self.seen[id(obj)]}
            name = self.array(obj._data, path)
            self.seen[id(obj)] = name
            out: dict[str, Any] = {"__tensor__": name}
            if obj.requires_grad:
                out["requires_grad"] = True
            if obj.device.type != "cpu":
                out["device"] = str(obj.device)
            if type(obj).__name__ == "Parameter":
                out["parameter"] = True
            return out
        if isinstance(obj, np.ndarray):
            return {"__ndarray__": self.array(obj, path)}
        if isinstance(obj, np.generic):
            return {"__npscalar__": self.array(np.asarray(obj), path)}
        from chainrule import dtypes as _dt

        if isinstance(obj, _dt.dtype):
            return {"__dtype__": str(obj).split(".")[-1]}
        if isinstance(obj, devices.device):
            return {"__device__": str(obj)}
        if isinstance(obj, dict):
            tag = "__odict__" if type(obj) is OrderedDict else "__dict__"
            return {tag: [[self.key(k, path), self.encode(v, path + [str(k)])]
                          for k, v in obj.items()]}
        if isinstance(obj, tuple):
            items = [self.encode(v, path + [str(i)]) for i, v in enumerate(obj)]
            if hasattr(obj, "_fields"):
                raise TypeError(f"cr.save: namedtuple {type(obj).__name__} at "
                                f"{'/'.join(path) or '<root>'} is not supported (use a dict)")
            tag = "__size__" if type(obj).__name__ == "Size" else "__tuple__"
            return {tag: items}
        if isinstance(obj, list):
            return [self.encode(v, path + [str(i)]) for i, v in enumerate(obj)]
        hint = ""
        if hasattr(obj, "state_dict") and callable(obj.state_dict):  # a Module or Optimizer
            hint = (f"; save its state_dict() instead: cr.save({_name_hint(obj)}.state_dict(), "
                    "path), and load it with load_state_dict(cr.load(path)). chainrule never "
                    "pickles whole objects (unpickling can run code)")
        raise TypeError(
            f"cr.save: cannot store an object of type {type(obj).__name__} at "
            f"{'/'.join(path) or '<root>'}: checkpoints hold dicts, lists, tuples, str, int, "
            "float, bool, None, Tensors and NumPy arrays (no pickle)" + hint
        )


def _name_hint(obj) -> str:
    return "optimizer" if hasattr(obj, "param_groups") else "model"


class _Decoder:
    def __init__(self, arrays: dict[str, np.ndarray], map_location: Any, where: str) -> None:
        self.arrays = arrays
        self.map_location = map_location
        self.where = where
        self.tensors: dict[str, Tensor] = {}

    def fail(self, what: str) -> SerializationError:
        return SerializationError(f"cr.load: {self.where} is corrupt: {what}")

    def array(self, name: Any) -> np.ndarray:
        if not isinstance(name, str) or name not in self.arrays:
            raise self.fail(f"the structure refers to a missing tensor entry {name!r}")
        return self.arrays[name]

    def device(self, saved: str | None):
        loc = self.map_location
        if isinstance(loc, dict):
            loc = loc.get(saved or "cpu", saved)
        elif loc is None:
            loc = saved
        dev = devices.as_device(loc)
        if dev.type == "cuda" and not devices.cuda_available():
            raise RuntimeError(
                f"cr.load: {self.where} holds tensors saved on {saved or 'cpu'}, mapped to "
                f"{dev}, but CUDA is not available; pass map_location='cpu'"
            )
        return dev

    def tensor(self, spec: dict) -> Tensor:
        name = spec["__tensor__"]
        if name in self.tensors:
            return self.tensors[name]
        data = self.array(name)
        dev = self.device(spec.get("device"))
        if dev.type != "cpu":
            data = devices.to_device(data, dev)
        if spec.get("parameter"):
            from chainrule.nn import Parameter

            t = Parameter(wrap(data), requires_grad=bool(spec.get("requires_grad", False)))
        else:
            t = wrap(data)
            if spec.get("requires_grad"):
                t.requires_grad_(True)
        self.tensors[name] = t
        return t

    def decode(self, obj: Any) -> Any:
        if obj is None or isinstance(obj, (bool, str, int, float)):
            return obj
        if isinstance(obj, list):
            return [self.decode(v) for v in obj]
        if not isinstance(obj, dict) or len(obj) == 0:
            raise self.fail(f"unexpected structure element {obj!r:.80}")
        if "__tensor__" in obj:
            return self.tensor(obj)
        if len(obj) != 1:
            raise self.fail(f"unexpected structure element {obj!r:.80}")
        ((tag, val),) = obj.items()
        if tag in ("__dict__", "__odict__") and isinstance(val, list):
            if not all(isinstance(kv, list) and len(kv) == 2 for kv in val):
                raise self.fail("a dict entry is not a [key, value] pair")
            items = {self.hashable(self.decode(k)): self.decode(v) for k, v in val}
            return OrderedDict(items) if tag == "__odict__" else items
        if tag == "__tuple__" and isinstance(val, list):
            return tuple(self.decode(v) for v in val)
        if tag == "__size__" and isinstance(val, list):
            from chainrule.tensor import Size

            return Size(self.decode(v) for v in val)
        if tag == "__float__" and val in ("nan", "inf", "-inf"):
            return float(val)
        if tag == "__ndarray__":
            return self.array(val).copy()
        if tag == "__npscalar__":
            return self.array(val)[()]
        if tag == "__dtype__" and isinstance(val, str):
            from chainrule import dtypes as _dt

            return _dt.to_dtype(val)
        if tag == "__device__" and isinstance(val, str):
            return devices.device(val)
        raise self.fail(f"unknown structure tag {tag!r}")

    def hashable(self, k: Any) -> Any:
        try:
            hash(k)
        except TypeError:
            raise self.fail(f"unhashable dict key {k!r:.80}") from None
        return k


# ---- the file format ----------------------------------------------------------------------------
def _serialize(obj: Any) -> tuple[bytes, list[np.ndarray]]:
    """The header bytes (length + JSON, 8-byte aligned) and the arrays to write after it."""
    enc = _Encoder()
    structure = enc.encode(obj, [])
    from chainrule import __version__

    header: dict[str, Any] = {"__metadata__": {
        _FORMAT_KEY: "chainrule", "chainrule.version": __version__,
        _STRUCTURE_KEY: json.dumps(structure, separators=(",", ":"), allow_nan=False),
    }}
    offset, arrays = 0, []
    for name, arr in enc.arrays.items():
        code = _CODES[(arr.dtype.kind, arr.dtype.itemsize)]
        arr = np.array(arr, dtype=_np_dtype(code), order="C", copy=None)  # keeps 0-d as 0-d
        header[name] = {"dtype": code, "shape": list(arr.shape),
                        "data_offsets": [offset, offset + arr.nbytes]}
        offset += arr.nbytes
        arrays.append(arr)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text, arrays


def _write(f: IO[bytes], head: bytes, arrays: list[np.ndarray]) -> None:
    f.write(head)
    for arr in arrays:
        if arr.nbytes:
            f.write(memoryview(arr.reshape(-1).view(np.uint8)))  # bfloat16 has no buffer code


def save(obj: Any, f: str | os.PathLike | IO[bytes]) -> None:
    """Save ``obj`` (nested dicts/lists/tuples of Tensors, numbers, strings, ...) to a safetensors
    file, atomically: an interrupted save never destroys an existing file at ``f``."""
    head, arrays = _serialize(obj)
    if hasattr(f, "write"):
        _write(f, head, arrays)  # a file object: written in place, no atomicity
        return
    path = os.fspath(f)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"cr.save: directory {directory} does not exist (saving {path})")
    mode = os.stat(path).st_mode & 0o777 if os.path.exists(path) else 0o644
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            _write(fh, head, arrays)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:  # make the rename itself durable
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def _refuse_pickle(raw: bytes, where: str) -> None:
    if raw[:4] == b"PK\x03\x04":
        kind = "a zip archive (what torch.save writes, with a pickle payload inside)"
    elif raw[:1] == b"\x80" and raw[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        kind = "a pickle (what pickle.dump and legacy torch.save write)"
    else:
        return
    raise SerializationError(
        f"cr.load: refusing to load {where}: it is {kind}, and unpickling can run arbitrary code. "
        "chainrule reads only safetensors files; in PyTorch convert it with "
        "safetensors.torch.save_file(torch.load(path, weights_only=True), 'model.safetensors')"
    )


def _parse(raw: bytes, where: str) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Validate and split a safetensors byte string into arrays and metadata."""
    n = int.from_bytes(raw[:8], "little") if len(raw) >= 8 else -1
    looks_like_safetensors = 0 < n <= _MAX_HEADER and 8 + n <= len(raw) and raw[8:9] == b"{"
    if not looks_like_safetensors:
        # Name the pickle/zip formats only when the bytes are not a safetensors header: a
        # header length of e.g. 640 begins with the same bytes as a pickle (0x80 0x02).
        _refuse_pickle(raw, where)
    if len(raw) < 8:
        raise SerializationError(f"cr.load: {where} is truncated or not a safetensors file "
                                 f"({len(raw)} bytes)")
    n = int.from_bytes(raw[:8], "little")
    if n > _MAX_HEADER or 8 + n > len(raw):
        raise SerializationError(
            f"cr.load: {where} is truncated or not a safetensors file (its header claims {n} "
            f"bytes, the file has {len(raw) - 8} after the length field)")
    try:
        header = json.loads(raw[8:8 + n].decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise SerializationError(f"cr.load: {where} is corrupt: its header is not valid JSON "
                                 f"({e})") from None
    if not isinstance(header, dict):
        raise SerializationError(f"cr.load: {where} is corrupt: its header is not a JSON object")
    meta = header.pop("__metadata__", None) or {}
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise SerializationError(f"cr.load: {where} is corrupt: __metadata__ must map str to str")
    buf = memoryview(raw)[8 + n:]
    arrays, spans = {}, []
    for name, spec in header.items():
        try:
            dtype = _np_dtype(spec["dtype"])
            shape = tuple(int(s) for s in spec["shape"])
            begin, end = (int(o) for o in spec["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise SerializationError(f"cr.load: {where} is corrupt or uses an unsupported dtype: "
                                     f"bad entry for tensor {name!r}: {spec!r:.120}") from None
        if any(s < 0 for s in shape) or begin < 0 or \
                end - begin != math.prod(shape) * dtype.itemsize:
            raise SerializationError(f"cr.load: {where} is corrupt: tensor {name!r} has shape "
                                     f"{shape} but data offsets [{begin}, {end}]")
        if end > len(buf):
            raise SerializationError(
                f"cr.load: {where} is truncated: tensor {name!r} needs bytes up to {end} of the "
                f"data section, the file has {len(buf)}")
        spans.append((begin, end))
        arrays[name] = np.frombuffer(buf[begin:end], dtype).reshape(shape).astype(
            dtype.newbyteorder("="), copy=True)
    spans.sort()
    covered = 0
    for begin, end in spans:
        if begin != covered:
            raise SerializationError(f"cr.load: {where} is corrupt: tensor data overlaps or "
                                     "leaves holes")
        covered = end
    if covered != len(buf):
        raise SerializationError(f"cr.load: {where} is corrupt: {len(buf) - covered} trailing "
                                 "bytes after the tensor data")
    return arrays, meta


def load(f: str | os.PathLike | IO[bytes], map_location: Any = None,
         weights_only: bool = True) -> Any:
    """Load what ``save`` wrote (or any safetensors file, as ``{name: Tensor}``); never unpickles.

    ``map_location`` is a device (``"cpu"``, ``"cuda"``) or a dict mapping saved device names to
    new ones; by default tensors return to the device they were saved from.
    """
    if not weights_only:
        raise ValueError("cr.load: weights_only=False is not supported: chainrule never unpickles")
    if hasattr(f, "read"):
        where = repr(getattr(f, "name", "<file object>"))
        raw = f.read()
    else:
        where = os.fspath(f)
        with open(where, "rb") as fh:
            raw = fh.read()
    if map_location is not None and not isinstance(map_location, (str, dict, devices.device)):
        raise TypeError("cr.load: map_location must be a device, a device string or a dict "
                        f"{{saved: new}}, got {type(map_location).__name__}")
    arrays, meta = _parse(raw, where)
    dec = _Decoder(arrays, map_location, where)
    if _STRUCTURE_KEY not in meta:
        return {name: dec.tensor({"__tensor__": name}) for name in arrays}
    try:
        structure = json.loads(meta[_STRUCTURE_KEY])
    except (ValueError, RecursionError) as e:
        raise dec.fail(f"its structure description is not valid JSON ({e})") from None
    try:
        return dec.decode(structure)
    except RecursionError:
        raise dec.fail("its structure is nested too deeply") from None
