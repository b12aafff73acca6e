"""Variable-length sequences for the recurrent layers: ``PackedSequence``, packing, padding
(PyTorch's ``torch.nn.utils.rnn``).

A PackedSequence stores the time steps of a batch sorted by decreasing length, step by step:
``data`` holds, for t = 0, 1, ..., the rows of the ``batch_sizes[t]`` sequences still running.
Packing and unpacking are ``index_select`` with precomputed row maps, so gradients flow through
them. RNN/LSTM/GRU accept a PackedSequence: the batch is run in groups of equal length (each
group a plain padded-free call of the fused layer), and the results are packed again.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

from chainrule.devices import np
from chainrule import devices
from chainrule.tensor import Tensor, wrap
from chainrule.dtypes import float16, float32, float64, int32, int64
from chainrule.ops.shape import cat, pad, stack

__all__ = ["PackedSequence", "invert_permutation", "pack_padded_sequence", "pad_packed_sequence",
           "pad_sequence", "unpad_sequence", "pack_sequence", "unpack_sequence"]


class _PackedSequence(NamedTuple):
    data: Tensor
    batch_sizes: Tensor
    sorted_indices: Tensor | None
    unsorted_indices: Tensor | None


def _index(values: Any, like: Any = None) -> Tensor:
    arr = np.asarray(values, dtype=np.int64)
    return wrap(arr if like is None else devices.asarray_on(arr, like, np.int64))


class PackedSequence(_PackedSequence):
    """(data, batch_sizes, sorted_indices, unsorted_indices) of a packed batch of sequences."""

    def __new__(cls, data: Any, batch_sizes: Tensor | None = None,
                sorted_indices: Tensor | None = None,
                unsorted_indices: Tensor | None = None) -> PackedSequence:
        if unsorted_indices is None:
            unsorted_indices = invert_permutation(sorted_indices)
        if batch_sizes is None:
            if not (isinstance(data, (list, tuple)) and len(data) == 2):
                raise AssertionError("Expected data to be a list or tuple of length 2")
            data, batch_sizes = data
        elif batch_sizes.device.type != "cpu":
            raise ValueError("batch_sizes should always be on CPU. Instances of PackedSequence "
                             "should never be created manually. They should be instantiated by "
                             "functions like pack_sequence and pack_padded_sequences in "
                             "nn.utils.rnn.")
        return super().__new__(cls, data, batch_sizes, sorted_indices, unsorted_indices)

    def to(self, *args: Any, **kwargs: Any) -> PackedSequence:
        """The same packing with ``data`` moved/cast (indices follow its device)."""
        data = self.data.to(*args, **kwargs)
        if data is self.data:
            return self

        def move(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.to(data.device)

        return type(self)(data, self.batch_sizes, move(self.sorted_indices),
                          move(self.unsorted_indices))

    def cuda(self, *args: Any, **kwargs: Any) -> PackedSequence:
        """``to('cuda')``."""
        return self.to("cuda") if not args and not kwargs else self.to(*args, **kwargs)

    def cpu(self, *args: Any, **kwargs: Any) -> PackedSequence:
        """``to('cpu')``."""
        return self.to("cpu")

    def double(self) -> PackedSequence:
        """Data as float64."""
        return self.to(dtype=float64)

    def float(self) -> PackedSequence:
        """Data as float32."""
        return self.to(dtype=float32)

    def half(self) -> PackedSequence:
        """Data as float16."""
        return self.to(dtype=float16)

    def long(self) -> PackedSequence:
        """Data as int64."""
        return self.to(dtype=int64)

    def int(self) -> PackedSequence:
        """Data as int32."""
        return self.to(dtype=int32)

    @property
    def is_cuda(self) -> bool:
        """Whether the data lives on a GPU."""
        return self.data.device.type == "cuda"

    def is_pinned(self) -> bool:
        """Always False (chainrule does not pin memory)."""
        return False


def invert_permutation(permutation: Tensor | None) -> Tensor | None:
    """The permutation that undoes ``permutation`` (None stays None)."""
    if permutation is None:
        return None
    p = devices.to_device(permutation._data, "cpu")
    out = np.empty_like(p)
    out[p] = np.arange(p.shape[0])
    return wrap(devices.asarray_on(out, permutation._data))


def _lengths(lengths: Any) -> np.ndarray:
    if isinstance(lengths, Tensor):
        return np.asarray(devices.to_device(lengths._data, "cpu")).astype(np.int64).reshape(-1)
    return np.asarray(lengths, dtype=np.int64).reshape(-1)


def _packed_rows(lengths: np.ndarray, batch: int) -> tuple:
    """(row of each packed step in the (T·B) flattened time-major layout, batch_sizes)."""
    t_max = int(lengths[0]) if lengths.size else 0
    batch_sizes = (lengths[None, :] > np.arange(t_max)[:, None]).sum(1)
    rows = np.concatenate([t * batch + np.arange(n) for t, n in enumerate(batch_sizes)]) \
        if t_max else np.zeros(0, np.int64)
    return rows.astype(np.int64), batch_sizes.astype(np.int64)


def pack_padded_sequence(input: Tensor, lengths: Any, batch_first: bool = False,
                         enforce_sorted: bool = True) -> PackedSequence:
    """Pack a padded (T, B, *) (or (B, T, *) with ``batch_first``) batch of sequences of the
    given ``lengths`` (decreasing unless ``enforce_sorted=False``)."""
    lens = _lengths(lengths)
    sorted_indices = None
    if enforce_sorted:
        if np.any(np.diff(lens) > 0):
            raise RuntimeError("`lengths` array must be sorted in decreasing order when "
                               "`enforce_sorted` is True. You can pass `enforce_sorted=False` to "
                               "pack_padded_sequence and/or pack_sequence to sidestep this "
                               "requirement if you do not need ONNX exportability.")
    else:
        order = np.argsort(-lens, kind="stable")
        lens = lens[order]
        sorted_indices = _index(order, input._data)
        input = input.index_select(0 if batch_first else 1, sorted_indices)
    if batch_first:
        input = input.transpose(0, 1)
    t, b = input.shape[:2]
    if lens.shape[0] != b:
        raise RuntimeError(f"Expected `len(lengths)` to be equal to batch_size, but got "
                           f"{lens.shape[0]} (batch_size={b})")
    if lens.size and lens.min() <= 0:
        raise RuntimeError("Length of all samples has to be greater than 0, but found an element "
                           "in 'lengths' that is <= 0")
    if lens.size and lens.max() > t:
        raise RuntimeError(f"Expected sequence length to be at most {t}, but got "
                           f"{int(lens.max())}")
    rows, batch_sizes = _packed_rows(lens, b)
    flat = input.reshape(t * b, *input.shape[2:])
    data = flat.index_select(0, _index(rows, input._data))
    return PackedSequence(data, wrap(batch_sizes), sorted_indices, None)


def pad_packed_sequence(sequence: PackedSequence, batch_first: bool = False,
                        padding_value: float = 0.0,
                        total_length: int | None = None) -> tuple[Tensor, Tensor]:
    """Unpack to a padded (T, B, *) tensor (or (B, T, *)) and the (B,) lengths, in the original
    batch order."""
    batch_sizes = _lengths(sequence.batch_sizes)
    t_max = batch_sizes.shape[0]
    if total_length is not None:
        if total_length < t_max:
            raise ValueError(f"Expected total_length to be at least the length of the longest "
                             f"sequence in input, but got total_length={total_length} and max "
                             f"sequence length being {t_max}")
        t_max = total_length
    b = int(batch_sizes[0]) if batch_sizes.size else 0
    lens = (batch_sizes[None, :] > np.arange(b)[:, None]).sum(1).astype(np.int64)
    rows, _ = _packed_rows(lens, b)
    data = sequence.data
    n = data.shape[0]
    # every (t, b) position reads its packed row, or the appended padding row
    where = np.full(t_max * b, n, np.int64)
    where[rows] = np.arange(n)
    pad_row = data.new_full((1, *data.shape[1:]), padding_value)
    padded = cat([data, pad_row], 0).index_select(0, _index(where, data._data))
    padded = padded.reshape(t_max, b, *data.shape[1:])
    lengths = wrap(lens)
    if sequence.unsorted_indices is not None:
        padded = padded.index_select(1, sequence.unsorted_indices)
        lengths = wrap(lens[devices.to_device(sequence.unsorted_indices._data, "cpu")])
    if batch_first:
        padded = padded.transpose(0, 1)
    return padded, lengths


def pad_sequence(sequences: Any, batch_first: bool = False, padding_value: float = 0.0,
                 padding_side: str = "right") -> Tensor:
    """Stack sequences of shape (L_i, *) into (L_max, B, *) (or (B, L_max, *)), padded with
    ``padding_value`` on the ``padding_side``."""
    if isinstance(sequences, Tensor):
        sequences = sequences.unbind(0)
    if not isinstance(sequences, Iterable):
        raise RuntimeError(f"pad_sequence: Expected iterable for input sequences, but got arg "
                           f"of type: {type(sequences)}")
    sequences = tuple(sequences)
    if not sequences:
        raise RuntimeError("received an empty list of sequences")
    if padding_side not in ("left", "right"):
        raise ValueError(f"Expected padding_side to be one of left or right, but got "
                         f"{padding_side}.")
    trailing = tuple(sequences[0].shape[1:])
    longest = max(s.shape[0] for s in sequences)
    padded = []
    for s in sequences:
        if tuple(s.shape[1:]) != trailing:
            raise RuntimeError(f"The size of tensor a ({s.shape[1] if s.ndim > 1 else 0}) must "
                               f"match the size of tensor b ({trailing[0] if trailing else 0})")
        extra = longest - s.shape[0]
        widths = [0, 0] * len(trailing) + ([0, extra] if padding_side == "right" else [extra, 0])
        padded.append(pad(s, widths, value=padding_value) if extra else s)
    return stack(padded, 0 if batch_first else 1)


def unpad_sequence(padded_sequences: Tensor, lengths: Any,
                   batch_first: bool = False) -> list[Tensor]:
    """The inverse of ``pad_sequence``: the unpadded sequences, as a list."""
    lens = _lengths(lengths)
    x = padded_sequences if batch_first else padded_sequences.transpose(0, 1)
    return [x[i, :int(n)] for i, n in enumerate(lens)]


def pack_sequence(sequences: list[Tensor], enforce_sorted: bool = True) -> PackedSequence:
    """Pack a list of (L_i, *) sequences (decreasing length unless ``enforce_sorted=False``)."""
    lengths = [s.shape[0] for s in sequences]
    return pack_padded_sequence(pad_sequence(sequences), lengths, enforce_sorted=enforce_sorted)


def unpack_sequence(packed_sequences: PackedSequence) -> list[Tensor]:
    """The inverse of ``pack_sequence``: the list of (L_i, *) sequences."""
    padded, lengths = pad_packed_sequence(packed_sequences, batch_first=True)
    return unpad_sequence(padded, lengths, batch_first=True)


def rnn_packed_forward(module: Any, packed: PackedSequence, hx: list | None) -> tuple:
    """Run an RNN/LSTM/GRU on a PackedSequence: (packed output, final states in the caller's
    batch order). ``hx`` is a list of state tensors in the caller's order (or None)."""
    padded, lengths = pad_packed_sequence(PackedSequence(packed.data, packed.batch_sizes))
    lens = _lengths(lengths)  # decreasing
    t_max, b = padded.shape[:2]
    if hx is not None:
        if packed.sorted_indices is not None:
            hx = [h.index_select(1, packed.sorted_indices) for h in hx]
    outputs, finals = [], None
    start = 0
    while start < b:  # one call per run of equal lengths
        length = int(lens[start])
        stop = start + int((lens[start:] == length).sum())
        x = padded[:length, start:stop]
        if module.batch_first:
            x = x.transpose(0, 1)
        h = None if hx is None else [s[:, start:stop] for s in hx]
        out, last = module._forward(x, h)
        if module.batch_first:
            out = out.transpose(0, 1)
        outputs.append(pad(out, [0, 0] * (out.ndim - 1) + [0, t_max - length])
                       if length < t_max else out)
        finals = [[f] for f in last] if finals is None else [
            acc + [f] for acc, f in zip(finals, last)]
        start = stop
    out = cat(outputs, 1)
    rows, _ = _packed_rows(lens, b)
    data = out.reshape(t_max * b, *out.shape[2:]).index_select(0, _index(rows, out._data))
    finals = [cat(f, 1) for f in finals]
    if packed.unsorted_indices is not None:
        finals = [f.index_select(1, packed.unsorted_indices) for f in finals]
    return (PackedSequence(data, packed.batch_sizes, packed.sorted_indices,
                           packed.unsorted_indices), finals)
