"""cr.data: DataLoader batching, shuffling, samplers, collation, random_split, datasets, IDX."""

from __future__ import annotations

import gzip
import os
from collections import namedtuple

import numpy as np
import pytest

import chainrule as cr
from chainrule.data import (
    BatchSampler, ConcatDataset, DataLoader, Dataset, RandomSampler, SequentialSampler, Subset,
    TensorDataset, default_collate, random_split,
)
from chainrule.data import datasets as D


def _ds(n=10):
    x = cr.arange(n * 3, dtype=cr.float32).reshape(n, 3)
    y = cr.arange(n)
    return TensorDataset(x, y)


class _ListDataset(Dataset):
    """A plain (non-Tensor) dataset, to exercise the per-sample collation path."""

    def __init__(self, items):
        self.items = items

    def __getitem__(self, i):
        return self.items[i]

    def __len__(self):
        return len(self.items)


# ---- datasets ----------------------------------------------------------------------------------
def test_tensor_dataset_indexing_and_errors():
    ds = _ds(5)
    x, y = ds[2]
    assert x.tolist() == [6.0, 7.0, 8.0] and y.item() == 2
    assert len(ds) == 5
    with pytest.raises(ValueError, match=r"size mismatch.*\(5, 3\).*\(4,\)"):
        TensorDataset(cr.zeros(5, 3), cr.zeros(4))
    with pytest.raises(TypeError, match="must be a Tensor"):
        TensorDataset(np.zeros(3))


def test_subset_and_concat():
    ds = _ds(6)
    sub = Subset(ds, [4, 1])
    assert len(sub) == 2 and sub[0][1].item() == 4 and sub[1][1].item() == 1
    cat = ConcatDataset([ds, sub])
    assert len(cat) == 8
    assert cat[6][1].item() == 4 and cat[-1][1].item() == 1 and cat[5][1].item() == 5
    with pytest.raises(IndexError):
        cat[8]
    assert len(ds + sub) == 8


# ---- DataLoader --------------------------------------------------------------------------------
@pytest.mark.parametrize("drop_last,expected_len,last", [(False, 4, 1), (True, 3, 3)])
def test_batching_len_and_drop_last(drop_last, expected_len, last):
    loader = DataLoader(_ds(10), batch_size=3, drop_last=drop_last)
    batches = list(loader)
    assert len(loader) == expected_len == len(batches)
    assert isinstance(batches[0], list) and len(batches[0]) == 2  # tuples collate to lists
    x, y = batches[0]
    assert x.shape == (3, 3) and x.dtype == cr.float32 and y.dtype == cr.int64
    assert y.tolist() == [0, 1, 2]
    assert batches[-1][1].shape == (last,)
    seen = np.concatenate([b[1].numpy() for b in batches])
    assert seen.tolist() == list(range(10 if not drop_last else 9))


def test_shuffle_is_seeded_and_covers_everything():
    ds = _ds(50)

    def order(seed):
        g = cr.Generator().manual_seed(seed)
        loader = DataLoader(ds, batch_size=7, shuffle=True, generator=g)
        epochs = [np.concatenate([y.numpy() for _, y in loader]).tolist() for _ in range(2)]
        return epochs

    a, b, c = order(0), order(0), order(1)
    assert a == b  # same seed, same orders
    assert a != c
    assert a[0] != a[1]  # a new permutation each epoch
    assert sorted(a[0]) == list(range(50))
    assert a[0] != list(range(50))


def test_shuffle_without_generator_follows_manual_seed():
    ds = _ds(30)
    cr.manual_seed(3)
    first = [y.tolist() for _, y in DataLoader(ds, batch_size=30, shuffle=True)]
    cr.manual_seed(3)
    second = [y.tolist() for _, y in DataLoader(ds, batch_size=30, shuffle=True)]
    assert first == second


def test_fast_path_matches_per_sample_collation():
    ds = _ds(23)
    g1, g2 = cr.Generator().manual_seed(5), cr.Generator().manual_seed(5)
    fast = DataLoader(ds, batch_size=4, shuffle=True, generator=g1)
    slow = DataLoader(ds, batch_size=4, shuffle=True, generator=g2, collate_fn=default_collate)
    assert fast._fast and not slow._fast
    for (xf, yf), (xs, ys) in zip(fast, slow, strict=True):
        np.testing.assert_array_equal(xf.numpy(), xs.numpy())
        np.testing.assert_array_equal(yf.numpy(), ys.numpy())
    sub = random_split(ds, [20, 3], generator=cr.Generator().manual_seed(0))[0]
    fast_sub = DataLoader(sub, batch_size=6)
    assert fast_sub._fast
    ys = np.concatenate([y.numpy() for _, y in fast_sub])
    assert ys.tolist() == sub.indices


def test_fast_path_keeps_gradients():
    w = cr.ones(4, 2, requires_grad=True)
    loader = DataLoader(TensorDataset(w), batch_size=2)
    (batch,) = next(iter(loader))
    batch.sum().backward()
    assert w.grad.tolist() == [[1.0, 1.0], [1.0, 1.0], [0.0, 0.0], [0.0, 0.0]]


def test_collate_structures():
    Point = namedtuple("Point", "x y")
    items = [{"a": np.array([i, i]), "b": float(i), "c": i, "s": f"s{i}", "p": Point(i, -i),
              "t": (cr.tensor([i]), [i * 2])} for i in range(3)]
    batch = next(iter(DataLoader(_ListDataset(items), batch_size=3)))
    assert set(batch) == {"a", "b", "c", "s", "p", "t"}
    assert batch["a"].shape == (3, 2) and batch["a"].dtype == cr.int64
    assert batch["b"].dtype == cr.float64 and batch["b"].tolist() == [0.0, 1.0, 2.0]
    assert batch["c"].dtype == cr.int64
    assert batch["s"] == ["s0", "s1", "s2"]
    assert isinstance(batch["p"], Point) and batch["p"].y.tolist() == [0, -1, -2]
    assert batch["t"][0].shape == (3, 1) and batch["t"][1][0].tolist() == [0, 2, 4]
    with pytest.raises(TypeError, match="default_collate"):
        default_collate([None, None])


def test_collate_matches_torch():
    torch = pytest.importorskip("torch")
    from torch.utils.data import default_collate as tcollate

    items = [(np.ones((2, 2), np.float32) * i, i, float(i), True) for i in range(4)]
    ours, theirs = default_collate(items), tcollate(items)
    assert isinstance(ours, list) and isinstance(theirs, list)
    for o, t in zip(ours, theirs, strict=True):
        assert str(o.dtype).split(".")[-1] == str(t.dtype).split(".")[-1]
        np.testing.assert_array_equal(o.numpy(), t.numpy())
    assert torch is not None


def test_batch_size_none_and_samplers():
    ds = _ListDataset([np.array([1.0, 2.0]), np.array([3.0, 4.0])])
    items = list(DataLoader(ds, batch_size=None))
    assert len(items) == 2 and isinstance(items[0], cr.Tensor)
    bs = BatchSampler(SequentialSampler(range(7)), 3, drop_last=False)
    assert list(bs) == [[0, 1, 2], [3, 4, 5], [6]] and len(bs) == 3
    loader = DataLoader(_ds(7), batch_sampler=bs)
    assert [y.tolist() for _, y in loader] == [[0, 1, 2], [3, 4, 5], [6]]
    rs = RandomSampler(range(5), replacement=True, num_samples=12,
                       generator=cr.Generator().manual_seed(0))
    draws = list(rs)
    assert len(draws) == 12 and all(0 <= d < 5 for d in draws)


def test_dataloader_argument_errors():
    ds = _ds(4)
    with pytest.raises(ValueError, match="mutually exclusive with shuffle"):
        DataLoader(ds, sampler=SequentialSampler(ds), shuffle=True)
    with pytest.raises(ValueError, match="batch_size should be a positive integer"):
        DataLoader(ds, batch_size=0)
    with pytest.raises(ValueError, match="num_workers"):
        DataLoader(ds, num_workers=-1)
    with pytest.raises(ValueError, match="drop_last"):
        DataLoader(ds, batch_size=None, drop_last=True)


def test_dataloader_matches_torch_lengths():
    torch = pytest.importorskip("torch")
    for n, bs, dl in [(10, 3, False), (10, 3, True), (9, 3, True), (2, 5, True)]:
        ours = DataLoader(_ds(n), batch_size=bs, drop_last=dl)
        theirs = torch.utils.data.DataLoader(torch.arange(n), batch_size=bs, drop_last=dl)
        assert len(ours) == len(theirs) == len(list(ours))


# ---- random_split ------------------------------------------------------------------------------
def test_random_split_lengths_and_fractions():
    ds = _ds(10)
    a, b = random_split(ds, [7, 3], generator=cr.Generator().manual_seed(0))
    assert len(a) == 7 and len(b) == 3
    assert sorted(a.indices + b.indices) == list(range(10))
    c, d = random_split(ds, [7, 3], generator=cr.Generator().manual_seed(0))
    assert c.indices == a.indices
    parts = random_split(ds, [0.5, 0.3, 0.2], generator=cr.Generator().manual_seed(1))
    assert [len(p) for p in parts] == [5, 3, 2]
    parts = random_split(_ds(11), [0.5, 0.5])  # remainder distributed round-robin like torch
    assert [len(p) for p in parts] == [6, 5]
    with pytest.raises(ValueError, match="sum of input lengths"):
        random_split(ds, [5, 4])


def test_random_split_fraction_counts_match_torch():
    torch = pytest.importorskip("torch")
    for n, fracs in [(11, [0.5, 0.5]), (10, [0.33, 0.33, 0.34]), (7, [0.1, 0.9])]:
        theirs = torch.utils.data.random_split(range(n), fracs)
        ours = random_split(_ds(n), fracs)
        assert [len(p) for p in ours] == [len(p) for p in theirs]


# ---- bundled datasets --------------------------------------------------------------------------
def test_digits_shapes_dtypes_and_split():
    pytest.importorskip("sklearn")
    train, test = D.digits()
    x, y = train.tensors
    assert x.shape[1:] == (1, 8, 8) and x.dtype == cr.float32 and y.dtype == cr.int64
    assert len(train) + len(test) == 1797
    assert 340 <= len(test) <= 380
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    assert set(y.tolist()) == set(range(10)) and set(test.tensors[1].tolist()) == set(range(10))
    flat, _ = D.digits(flatten=True)
    assert flat.tensors[0].shape == (len(train), 64)
    again, _ = D.digits()
    np.testing.assert_array_equal(again.tensors[0].numpy(), x.numpy())
    from sklearn.datasets import load_digits

    ref = load_digits()
    assert sorted(map(tuple, np.concatenate([x.numpy().reshape(-1, 64),
                                             test.tensors[0].numpy().reshape(-1, 64)]) * 16)) \
        == sorted(map(tuple, ref.data.astype(np.float32)))


def test_moons_and_spirals():
    m = D.moons(n=101, noise=0.05, seed=1)
    x, y = m.tensors
    assert x.shape == (101, 2) and x.dtype == cr.float32 and y.dtype == cr.int64
    assert sorted(set(y.tolist())) == [0, 1] and int((y == 1).sum()) == 51
    np.testing.assert_array_equal(D.moons(n=101, noise=0.05, seed=1).tensors[0].numpy(),
                                  x.numpy())
    s = D.spirals(n_classes=4, n_per_class=25)
    assert s.tensors[0].shape == (100, 2) and sorted(set(s.tensors[1].tolist())) == [0, 1, 2, 3]
    assert float(s.tensors[0].abs().max()) <= 1.0 + 1e-6
    with pytest.raises(ValueError, match="moons: noise"):
        D.moons(noise=-1)


# ---- IDX / MNIST -------------------------------------------------------------------------------
def _idx(arr: np.ndarray, code: int) -> bytes:
    head = bytes([0, 0, code, arr.ndim]) + b"".join(s.to_bytes(4, "big") for s in arr.shape)
    return head + arr.astype(D.IDX_TYPES[code]).tobytes()


def _write_mnist(root, n=5, gz=False, prefix="train"):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n, dtype=np.uint8)
    for name, data in [(f"{prefix}-images-idx3-ubyte", _idx(images, 0x08)),
                       (f"{prefix}-labels-idx1-ubyte", _idx(labels, 0x08))]:
        if gz:
            with gzip.open(os.path.join(root, name + ".gz"), "wb") as f:
                f.write(data)
        else:
            with open(os.path.join(root, name), "wb") as f:
                f.write(data)
    return images, labels


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_reads_idx_files(tmp_path, gz):
    images, labels = _write_mnist(tmp_path, gz=gz)
    ds = D.mnist(tmp_path, train=True)
    x, y = ds.tensors
    assert x.shape == (5, 1, 28, 28) and x.dtype == cr.float32 and y.dtype == cr.int64
    np.testing.assert_allclose(x.numpy()[:, 0], images / 255.0, rtol=1e-6)
    assert y.tolist() == labels.tolist()
    _write_mnist(tmp_path, n=3, gz=gz, prefix="t10k")
    assert len(D.mnist(tmp_path, train=False)) == 3


def test_read_idx_other_dtypes(tmp_path):
    arr = np.arange(24, dtype=np.float64).reshape(2, 3, 4) / 7
    p = tmp_path / "x.idx"
    p.write_bytes(_idx(arr, 0x0E))
    np.testing.assert_array_equal(D.read_idx(p), arr)
    arr16 = np.array([-3, 300], np.int16)
    p.write_bytes(_idx(arr16, 0x0B))
    np.testing.assert_array_equal(D.read_idx(p), arr16)


def test_mnist_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        D.mnist(tmp_path)
    _write_mnist(tmp_path)
    os.remove(tmp_path / "train-labels-idx1-ubyte")
    with pytest.raises(FileNotFoundError, match="train-labels-idx1-ubyte"):
        D.mnist(tmp_path)
    with pytest.raises(FileNotFoundError, match="not a directory"):
        D.mnist(tmp_path / "nope")
    img = tmp_path / "train-images-idx3-ubyte"
    raw = img.read_bytes()
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(_idx(np.zeros(5, np.uint8), 0x08))
    img.write_bytes(raw[:-10])
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte.*truncated"):
        D.mnist(tmp_path)
    img.write_bytes(b"\x12\x34" + raw[2:])
    with pytest.raises(ValueError, match="magic number"):
        D.mnist(tmp_path)
    img.write_bytes(raw)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(_idx(np.zeros(4, np.uint8), 0x08))
    with pytest.raises(ValueError, match="5 images but .* 4 labels"):
        D.mnist(tmp_path)
    os.remove(img)
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(raw)[:-8])
    with pytest.raises(ValueError, match="gzip"):
        D.mnist(tmp_path)
