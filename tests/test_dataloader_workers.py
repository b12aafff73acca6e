"""DataLoader with worker processes (num_workers > 0): order, seeds, errors, IterableDataset
sharding, persistent workers and shutdown, against num_workers=0 and against PyTorch."""

from __future__ import annotations

import gc
import multiprocessing
import os
import pickle
import random
import threading
import time

import numpy as np
import pytest

import chainrule as cr
from chainrule.data import (
    BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler,
    TensorDataset, get_worker_info,
)
from chainrule.data import _worker


def _np(batch):
    """Nested batches as NumPy / Python values (chainrule or torch tensors)."""
    if isinstance(batch, (list, tuple)):
        return [_np(b) for b in batch]
    if isinstance(batch, dict):
        return {k: _np(v) for k, v in batch.items()}
    if hasattr(batch, "numpy"):
        return np.asarray(batch.numpy())
    return batch


def _equal(a, b) -> bool:
    a, b = _np(a), _np(b)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(map(_equal, a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.shape == b.shape and np.array_equal(a, b)
    return a == b


def _no_children():
    """Every worker started by a loader has been joined (no live child process left); a
    collection first, for iterators kept alive by an exception's traceback cycle."""
    gc.collect()
    deadline = time.monotonic() + 10
    while multiprocessing.active_children() and time.monotonic() < deadline:
        time.sleep(0.05)
    return multiprocessing.active_children() == []


class Squares(Dataset):
    """Sample i: (i, i², the pid of the process that built it)."""

    def __init__(self, n: int = 11) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i):
        return {"i": i, "sq": np.array([i * i], dtype=np.int64), "pid": os.getpid()}


def _strip_pid(batches):
    return [{k: v for k, v in b.items() if k != "pid"} for b in batches]


pytestmark = pytest.mark.filterwarnings("ignore:This DataLoader will create:UserWarning")


# ---- order and equality with num_workers=0 ------------------------------------------------------
@pytest.mark.parametrize("workers", [1, 2, 3])
def test_batches_in_sampler_order_equal_to_single_process(workers):
    ds = Squares(11)
    ref = _strip_pid(DataLoader(ds, batch_size=3))
    loader = DataLoader(ds, batch_size=3, num_workers=workers)
    got = list(loader)
    assert _equal(_strip_pid(got), ref)
    assert len(loader) == len(ref) == 4
    pids = {int(p) for b in got for p in b["pid"].numpy()}
    assert os.getpid() not in pids and len(pids) == workers
    assert _no_children()


def test_shuffle_drop_last_collate_and_batch_sampler_equal_to_single_process():
    ds = Squares(13)

    def collate(samples):
        return [s["i"] for s in samples]

    for kwargs in ({"batch_size": 4, "shuffle": True, "drop_last": True},
                   {"batch_size": 5, "collate_fn": collate},
                   {"batch_sampler": BatchSampler(SequentialSampler(ds), 6, False),
                    "collate_fn": collate},
                   {"batch_size": None, "collate_fn": lambda s: s["i"]}):
        cr.manual_seed(3)
        ref = list(DataLoader(ds, **kwargs))
        cr.manual_seed(3)
        got = list(DataLoader(ds, num_workers=2, **kwargs))
        if kwargs.get("collate_fn") is None:
            ref, got = _strip_pid(ref), _strip_pid(got)
        assert _equal(got, ref), kwargs
    assert _no_children()


def test_tensor_dataset_batches_cross_the_queue():
    x = cr.arange(40.0).reshape(20, 2)
    y = cr.arange(20)
    ref = list(DataLoader(TensorDataset(x, y), batch_size=6))
    got = list(DataLoader(TensorDataset(x, y), batch_size=6, num_workers=2))
    assert _equal(got, ref)
    assert isinstance(got[0][0], cr.Tensor) and got[0][0].dtype == cr.float32
    assert got[0][1].dtype == cr.int64
    with pytest.raises(TypeError):  # ordinary pickle still refuses tensors
        pickle.dumps(x)


def test_infinite_random_sampler_with_replacement_matches_single_process_and_shuts_down():
    # makemore's InfiniteDataLoader: RandomSampler(replacement=True, num_samples=1e10)
    ds = TensorDataset(cr.arange(30))
    batches = {}
    for workers in (0, 2):
        cr.manual_seed(7)
        sampler = RandomSampler(ds, replacement=True, num_samples=int(1e10))
        it = iter(DataLoader(ds, sampler=sampler, batch_size=4, num_workers=workers))
        batches[workers] = [next(it) for _ in range(5)]
        del it
    assert _equal(batches[2], batches[0])
    assert _no_children()


def test_in_order_false_gives_every_batch():
    ds = Squares(17)
    got = _strip_pid(DataLoader(ds, batch_size=2, num_workers=3, in_order=False))
    ref = _strip_pid(DataLoader(ds, batch_size=2))
    key = lambda b: int(b["i"].numpy()[0])  # noqa: E731
    assert _equal(sorted(got, key=key), sorted(ref, key=key))


# ---- random streams and worker info against PyTorch ---------------------------------------------
def _random_dataset(lib):
    class Noisy(lib.utils.data.Dataset):
        def __len__(self):
            return 8

        def __getitem__(self, i):
            info = lib.utils.data.get_worker_info()
            return {
                "rand": lib.rand(3),
                "randn": lib.randn(2, dtype=lib.float64),
                "py": random.random(),
                "np": float(np.random.rand()),
                "worker": (info.id, info.num_workers, info.seed),
            }
    return Noisy()


def _worker_fields(batches):
    return [[tuple(int(v) for v in w) for w in zip(*b.pop("worker"))] for b in batches]


@pytest.mark.parametrize("seed", [0, 1234])
def test_worker_random_streams_and_info_equal_torch(seed):
    torch = pytest.importorskip("torch")
    out = {}
    for name, lib in (("torch", torch), ("cr", cr)):
        lib.manual_seed(seed)
        loader = lib.utils.data.DataLoader(_random_dataset(lib), batch_size=3, num_workers=2,
                                           shuffle=True)
        epochs = [list(loader), list(loader)]
        after = lib.rand(2)  # the main stream after two epochs
        out[name] = (epochs, _np(after))
    (t_epochs, t_after), (c_epochs, c_after) = out["torch"], out["cr"]
    for t, c in zip(t_epochs, c_epochs):
        ids = _worker_fields(c)
        assert _worker_fields(t) == ids
        assert _equal(c, t)
    assert np.array_equal(t_after, c_after)
    assert {w[0] for b in ids for w in b} == {0, 1} and all(w[1] == 2 for b in ids for w in b)


def test_persistent_workers_reuse_processes_and_seeds_as_torch():
    torch = pytest.importorskip("torch")
    out = {}
    for name, lib in (("torch", torch), ("cr", cr)):
        lib.manual_seed(5)
        loader = lib.utils.data.DataLoader(_random_dataset(lib), batch_size=4, num_workers=2,
                                           persistent_workers=True)
        out[name] = (list(loader), list(loader), _np(lib.rand(1)))
        del loader
    for t, c in zip(out["torch"], out["cr"]):
        assert _equal(c, t)
    # the workers carry on their streams: the second epoch differs from the first
    assert not _equal(out["cr"][0][0]["rand"], out["cr"][1][0]["rand"])
    assert _no_children()


def test_persistent_workers_same_processes_across_epochs_and_after_break():
    loader = DataLoader(Squares(12), batch_size=2, num_workers=2, persistent_workers=True)
    pids = [{int(p) for b in loader for p in b["pid"].numpy()} for _ in range(2)]
    for _ in loader:  # a partial epoch, then a full one
        break
    third = list(loader)
    assert pids[0] == pids[1] and len(pids[0]) == 2
    assert {int(p) for b in third for p in b["pid"].numpy()} == pids[0]
    assert _equal(_strip_pid(third), _strip_pid(DataLoader(Squares(12), batch_size=2)))
    assert len(multiprocessing.active_children()) == 2
    del loader
    assert _no_children()


def test_get_worker_info_none_in_main_process_and_frozen_in_worker():
    assert get_worker_info() is None
    assert cr.utils.data.get_worker_info is get_worker_info

    class Info(Dataset):
        def __len__(self):
            return 2

        def __getitem__(self, i):
            info = get_worker_info()
            try:
                info.id = 5
                frozen = False
            except AttributeError:
                frozen = True
            return info.id, info.dataset is self, frozen, repr(info).startswith("WorkerInfo(id=")

    got = list(DataLoader(Info(), batch_size=None, num_workers=2))
    assert [list(g) for g in got] == [[0, True, True, True], [1, True, True, True]]


def test_worker_init_fn_runs_in_each_worker():
    class WhoInit(Dataset):
        marker = None

        def __len__(self):
            return 4

        def __getitem__(self, i):
            return get_worker_info().dataset.marker

    def init(worker_id):
        get_worker_info().dataset.marker = 100 + worker_id

    got = list(DataLoader(WhoInit(), batch_size=None, num_workers=2, worker_init_fn=init))
    assert got == [100, 101, 100, 101]
    assert WhoInit.marker is None


# ---- errors -------------------------------------------------------------------------------------
class Failing(Dataset):
    def __init__(self, exc):
        self.exc = exc

    def __len__(self):
        return 6

    def __getitem__(self, i):
        if i == 4:
            raise self.exc
        return i


def _error_text(lib, exc):
    loader = lib.utils.data.DataLoader(Failing(exc), batch_size=2, num_workers=2)
    seen = []
    try:
        for b in loader:
            seen.append(_np(b).tolist())
    except type(exc) as e:  # (no pytest.raises: its traceback would keep the iterator alive)
        return seen, str(e)
    raise AssertionError("no error")


def test_worker_error_reraised_with_worker_traceback_as_torch():
    torch = pytest.importorskip("torch")
    for exc in (ValueError("bad sample 4"), KeyError("missing"), IndexError("out")):
        c_seen, c_msg = _error_text(cr, exc)
        assert _no_children()  # shut down once the error is handled
        t_seen, t_msg = _error_text(torch, exc)
        assert c_seen == t_seen == [[0, 1], [2, 3]]
        head = f"Caught {type(exc).__name__} in DataLoader worker process 0.\nOriginal Traceback"
        assert c_msg.startswith(head) and t_msg.startswith(head)
        assert c_msg.splitlines()[-1] == t_msg.splitlines()[-1]
        assert "in __getitem__" in c_msg
    assert _no_children()


def test_worker_init_fn_error_reraised():
    def init(worker_id):
        raise RuntimeError(f"init failed in {worker_id}")

    with pytest.raises(RuntimeError, match="(?s)Caught RuntimeError in DataLoader worker process "
                                           "0.*init failed in 0"):
        list(DataLoader(Squares(4), batch_size=2, num_workers=2, worker_init_fn=init))
    assert _no_children()


def test_timeout_and_dead_worker(monkeypatch):
    class Slow(Dataset):
        def __len__(self):
            return 2

        def __getitem__(self, i):
            time.sleep(0.6)
            return i

    with pytest.raises(RuntimeError, match=r"DataLoader timed out after 0.1 seconds"):
        list(DataLoader(Slow(), batch_size=None, num_workers=1, timeout=0.1))

    class Dies(Dataset):
        def __len__(self):
            return 2

        def __getitem__(self, i):
            os._exit(3)

    monkeypatch.setattr(_worker, "MP_STATUS_CHECK_INTERVAL", 0.2)
    with pytest.raises(RuntimeError, match=r"DataLoader worker \(pid\(s\) \d+\) exited "
                                           "unexpectedly"):
        list(DataLoader(Dies(), batch_size=None, num_workers=1))
    assert _no_children()


def test_option_errors_as_torch():
    ds = Squares(4)
    with pytest.raises(ValueError, match="prefetch_factor option could only be specified"):
        DataLoader(ds, prefetch_factor=2)
    with pytest.raises(ValueError, match="prefetch_factor option should be non-negative"):
        DataLoader(ds, num_workers=1, prefetch_factor=-1)
    with pytest.raises(ValueError, match="persistent_workers option needs num_workers > 0"):
        DataLoader(ds, persistent_workers=True)
    with pytest.raises(ValueError, match="multiprocessing_context can only be used"):
        DataLoader(ds, multiprocessing_context="fork")
    with pytest.raises(ValueError, match="should specify a valid start method"):
        DataLoader(ds, num_workers=1, multiprocessing_context="teleport")
    with pytest.raises(TypeError, match="valid context object"):
        DataLoader(ds, num_workers=1, multiprocessing_context=3)
    assert DataLoader(ds, num_workers=2).prefetch_factor == 2
    assert DataLoader(ds).prefetch_factor is None
    assert DataLoader(ds, num_workers=1, pin_memory=True).pin_memory is True
    with pytest.warns(UserWarning, match="This DataLoader will create"):
        DataLoader(ds, num_workers=len(os.sched_getaffinity(0)) + 1)


def test_spawn_context_and_prefetch_factor():
    x = cr.arange(12.0).reshape(6, 2)
    loader = DataLoader(TensorDataset(x), batch_size=4, num_workers=1, prefetch_factor=1,
                        multiprocessing_context="spawn")
    assert _equal(list(loader), list(DataLoader(TensorDataset(x), batch_size=4)))
    assert _no_children()
    unpicklable = TensorDataset(x)
    unpicklable.lock = threading.Lock()
    with pytest.raises(TypeError, match="pickle"):
        iter(DataLoader(unpicklable, batch_size=4, num_workers=2, multiprocessing_context="spawn"))
    assert _no_children()


# ---- IterableDataset ----------------------------------------------------------------------------
def _range_stream(lib, sharded: bool, n: int = 10):
    class Stream(lib.utils.data.IterableDataset):
        def __iter__(self):
            info = lib.utils.data.get_worker_info()
            if not sharded or info is None:
                return iter(range(n))
            per = -(-n // info.num_workers)
            return iter(range(info.id * per, min(n, (info.id + 1) * per)))
    return Stream()


@pytest.mark.parametrize("sharded", [True, False])
@pytest.mark.parametrize("kwargs", [{"batch_size": 3}, {"batch_size": 3, "drop_last": True},
                                    {"batch_size": None}])
def test_iterable_dataset_with_workers_equal_torch(sharded, kwargs):
    torch = pytest.importorskip("torch")
    got = {}
    for name, lib in (("torch", torch), ("cr", cr)):
        loader = lib.utils.data.DataLoader(_range_stream(lib, sharded), num_workers=2, **kwargs)
        got[name] = [np.asarray(_np(b)).tolist() for b in loader]
    assert got["cr"] == got["torch"]
    flat = sorted(v for b in got["cr"] for v in (b if isinstance(b, list) else [b]))
    if not sharded and "drop_last" not in kwargs:
        assert flat == sorted(list(range(10)) * 2)  # each worker iterates its own copy
    if sharded and "drop_last" not in kwargs:
        assert flat == list(range(10))


def test_iterable_dataset_persistent_workers_two_epochs():
    loader = DataLoader(_range_stream(cr, True), batch_size=4, num_workers=2,
                        persistent_workers=True)
    first = [b.tolist() for b in loader]
    second = [b.tolist() for b in loader]
    assert first == second == [[0, 1, 2, 3], [5, 6, 7, 8], [4], [9]]
    del loader
    assert _no_children()


# ---- shutdown -----------------------------------------------------------------------------------
def test_no_processes_left_after_loop_or_break():
    loader = DataLoader(Squares(20), batch_size=2, num_workers=2)
    list(loader)
    assert _no_children()
    for i, _ in enumerate(loader):
        if i == 1:
            break
    assert _no_children()
    it = iter(loader)
    workers = list(it._workers)
    next(it)
    del it
    assert _no_children() and not any(w.is_alive() for w in workers)


def test_program_exit_with_live_workers_does_not_hang(tmp_path):
    script = tmp_path / "prog.py"
    script.write_text(
        "import chainrule as cr\n"
        "from chainrule.data import DataLoader, TensorDataset, RandomSampler\n"
        "ds = TensorDataset(cr.arange(50))\n"
        "s = RandomSampler(ds, replacement=True, num_samples=int(1e10))\n"
        "it = iter(DataLoader(ds, sampler=s, batch_size=4, num_workers=2))\n"
        "keep = iter(DataLoader(ds, batch_size=4, num_workers=2, persistent_workers=True))\n"
        "print(next(it)[0].shape[0], next(keep)[0].shape[0])\n")
    import subprocess
    import sys

    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [os.path.dirname(os.path.dirname(os.path.abspath(cr.__file__)))]
        + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=60, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["4", "4"]


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as f:
            return any(line.split()[1:2] == ["Z"] for line in f if line.startswith("State:"))
    except OSError:
        return True


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="needs /proc")
def test_workers_end_when_the_program_is_killed_with_results_in_flight(tmp_path):
    # os._exit skips every clean-up: the orphaned workers notice their parent is gone and leave,
    # even with a full result pipe that no one will read
    script = tmp_path / "prog.py"
    script.write_text(
        "import os, sys\n"
        "import chainrule as cr\n"
        "from chainrule.data import DataLoader, TensorDataset, _worker\n"
        "_worker.MP_STATUS_CHECK_INTERVAL = 0.2\n"
        "ds = TensorDataset(cr.zeros(64, 20000))\n"
        "it = iter(DataLoader(ds, batch_size=4, num_workers=2, prefetch_factor=4))\n"
        "next(it)\n"
        "print(*[w.pid for w in it._workers], flush=True)\n"
        "os._exit(0)\n")
    import subprocess
    import sys

    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [os.path.dirname(os.path.dirname(os.path.abspath(cr.__file__)))]
        + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    proc = subprocess.run([sys.executable, str(script)], stdout=subprocess.PIPE, text=True,
                          timeout=60, env=env)
    pids = [int(p) for p in proc.stdout.split()]
    assert len(pids) == 2
    deadline = time.monotonic() + 20
    while not all(map(_gone, pids)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert all(map(_gone, pids))


# ---- collation of tensor samples (the workers' and the main process's) --------------------------
def test_default_collate_of_tensors_equal_torch_and_keeps_gradients():
    torch = pytest.importorskip("torch")
    from chainrule.data import default_collate

    rng = np.random.default_rng(0)
    cases = [
        [rng.standard_normal((3, 2)).astype(np.float32) for _ in range(5)],
        [np.array(i, dtype=np.int64) for i in range(4)],  # 0-d samples
        [rng.standard_normal(4)[::2] for _ in range(3)],  # non-contiguous float64
        [np.arange(3, dtype=np.int64), np.arange(3, dtype=np.float32)],  # promotion
    ]
    for arrays in cases:
        got = default_collate([cr.from_numpy(a.copy()) for a in arrays])
        want = torch.utils.data.default_collate([torch.from_numpy(a.copy()) for a in arrays])
        assert str(got.dtype).split(".")[-1] == str(want.dtype).split(".")[-1]
        assert tuple(got.shape) == tuple(want.shape)
        assert np.array_equal(got.numpy(), want.numpy())
    leaves = [cr.tensor([1.0, 2.0], requires_grad=True) for _ in range(3)]
    out = default_collate(leaves)
    assert out.requires_grad
    out.sum().backward()
    assert all(np.array_equal(p.grad.numpy(), [1.0, 1.0]) for p in leaves)
    stacked = default_collate([cr.zeros(2), cr.ones(2)])
    assert not stacked.requires_grad and stacked.is_leaf
