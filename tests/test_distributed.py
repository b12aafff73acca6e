"""chainrule.distributed, DDP, SyncBatchNorm and the launcher, on 2 processes over loopback.

The pytest side starts this very file under ``chainrule launch --nproc-per-node 2`` (the
``__main__`` block below runs one *case* on every rank); each rank checks what it can see and
writes a JSON report that the tests read. DDP's references are computed on every rank in the
same process: one model trained on the global batch (or, for plain BatchNorm, the per-rank
batches in turn, as torch's DDP semantics give).
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys

import numpy as np
import pytest

HERE = os.path.abspath(__file__)
ROOT = os.path.dirname(os.path.dirname(HERE))
STEPS = 3
GLOBAL_BATCH = 8
DEVICE = os.environ.get("CHAINRULE_TEST_DEVICE", "cpu")  # "cuda": the NCCL backend, one GPU each

mpi4py = pytest.importorskip("mpi4py") if __name__ != "__main__" else None


# ================================ the cases (run on every rank) ================================
def _rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


def _models(cr, nn, kind: str, dtype):
    """A fresh model of ``kind`` in ``dtype`` (seeded: the same on every rank) and an input
    sampler."""
    cr.manual_seed(0)
    if kind == "mlp":
        m = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3))
        shape = (6,)
    elif kind == "transformer":
        m = _Block(nn, 8)
        shape = (5, 8)
    else:  # cnn / cnn_bn: Conv -> BatchNorm -> ReLU -> pool -> Linear
        m = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                          nn.AvgPool2d(2), nn.Flatten(), nn.Linear(16, 3))
        shape = (2, 4, 4)
    return m.to(dtype).to(DEVICE), shape


class _Block:
    """A pre-norm transformer block (attention + MLP, residuals) then a mean over tokens."""

    def __new__(cls, nn, d):
        class Block(nn.Module):
            def __init__(self):
                super().__init__()
                self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
                self.attn = nn.MultiheadAttention(d, 2, batch_first=True)
                self.mlp = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))
                self.head = nn.Linear(d, 3)

            def forward(self, x):
                h = self.ln1(x)
                x = x + self.attn(h, h, h, need_weights=False)[0]
                x = x + self.mlp(self.ln2(x))
                return self.head(x.mean(1))
        return Block()


def _batches(cr, shape, dtype, steps=STEPS):
    rng = np.random.default_rng(1)
    out = []
    for _ in range(steps):
        x = rng.standard_normal((GLOBAL_BATCH, *shape))
        y = rng.standard_normal((GLOBAL_BATCH, 3))
        out.append((cr.tensor(x, dtype=dtype, device=DEVICE),
                    cr.tensor(y, dtype=dtype, device=DEVICE)))
    return out


def _train(cr, model, batches, take=lambda x: x, before_step=None):
    opt = cr.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for x, y in batches:
        opt.zero_grad()
        loss = cr.nn.functional.mse_loss(model(take(x)), take(y))
        loss.backward()
        if before_step is not None:
            before_step(model)
        opt.step()


def _state(module) -> dict:
    return {k: v.detach().cpu().numpy() for k, v in module.state_dict().items()}


def case_ddp(report: dict) -> None:
    """DDP on the local half of each global batch == one process on the global batch."""
    import chainrule as cr
    import chainrule.distributed as dist
    from chainrule import nn

    rank, world = dist.get_rank(), dist.get_world_size()
    per = GLOBAL_BATCH // world
    local = slice(rank * per, (rank + 1) * per)
    for dtype_name in ("float64", "float32"):
        dtype = getattr(cr, dtype_name)
        for kind in ("mlp", "transformer", "cnn"):
            ref, shape = _models(cr, nn, kind, dtype)
            batches = _batches(cr, shape, dtype)
            model = copy.deepcopy(ref)
            if kind == "cnn":
                model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
            if rank != 0:  # rank 0's weights must win at construction
                with cr.no_grad():
                    for p in model.parameters():
                        p.add_(1.0)
            ddp = nn.parallel.DistributedDataParallel(model)
            _train(cr, ref, batches)
            _train(cr, ddp, batches, take=lambda t: t[local])
            mine, want = _state(ddp.module), _state(ref)
            report[f"ddp_{kind}_{dtype_name}"] = max(_rel(mine[k], want[k]) for k in want)
            report[f"ddp_{kind}_{dtype_name}_keys"] = sorted(ddp.state_dict()) == sorted(
                "module." + k for k in want)


def case_plain_batchnorm(report: dict) -> None:
    """Plain BatchNorm under DDP: rank-local statistics, rank 0's buffers at each forward."""
    import chainrule as cr
    import chainrule.distributed as dist
    from chainrule import nn

    rank, world = dist.get_rank(), dist.get_world_size()
    per = GLOBAL_BATCH // world
    dtype = cr.float64
    ref, shape = _models(cr, nn, "cnn_bn", dtype)
    batches = _batches(cr, shape, dtype)
    ddp = nn.parallel.DDP(copy.deepcopy(ref))
    _train(cr, ddp, batches, take=lambda t: t[rank * per:(rank + 1) * per])
    # the reference: every rank's half in turn, each from rank 0's buffers; gradients averaged
    bn = ref[1]
    opt = cr.optim.SGD(ref.parameters(), lr=0.1, momentum=0.9)
    for x, y in batches:
        opt.zero_grad()
        start = [b.detach().clone() for b in bn.buffers()]
        ends = []
        for r in range(world):
            for b, s in zip(bn.buffers(), start):
                b.copy_(s)
            part = slice(r * per, (r + 1) * per)
            (cr.nn.functional.mse_loss(ref(x[part]), y[part]) / world).backward()
            ends.append([b.detach().clone() for b in bn.buffers()])
        for b, e in zip(bn.buffers(), ends[rank]):
            b.copy_(e)
        opt.step()
        for b, e in zip(bn.buffers(), ends[0]):  # the next forward starts from rank 0's
            b.copy_(e)
    for b, e in zip(bn.buffers(), ends[rank]):
        b.copy_(e)
    mine, want = _state(ddp.module), _state(ref)
    report["plain_bn"] = max(_rel(mine[k], want[k]) for k in want)


def case_no_sync(report: dict) -> None:
    """Two micro-batches, the first under no_sync(): the same as the global batch of both."""
    import chainrule as cr
    import chainrule.distributed as dist
    from chainrule import nn

    rank, world = dist.get_rank(), dist.get_world_size()
    per = GLOBAL_BATCH // world
    ref, shape = _models(cr, nn, "mlp", cr.float64)
    (x1, y1), (x2, y2) = _batches(cr, shape, cr.float64, steps=2)
    ddp = nn.parallel.DDP(copy.deepcopy(ref))
    part = slice(rank * per, (rank + 1) * per)
    loss = cr.nn.functional.mse_loss
    with ddp.no_sync():
        loss(ddp(x1[part]), y1[part]).backward()
    local_only = [p.grad.clone() for p in ddp.parameters()]
    grads = [(p.grad, p.grad._version) for p in ddp.parameters()]
    loss(ddp(x2[part]), y2[part]).backward()
    # the averages go into the accumulated gradients' own memory, as torch's DDP copies them
    report["no_sync_same_grads"] = all(p.grad is g and p.grad._version > v
                                       for p, (g, v) in zip(ddp.parameters(), grads))
    loss(ref(x1), y1).backward()
    loss(ref(x2), y2).backward()
    report["no_sync"] = max(_rel(p.grad.cpu().numpy(), q.grad.cpu().numpy())
                            for p, q in zip(ddp.parameters(), ref.parameters()))
    # under no_sync nothing was averaged: rank-local gradients differ between the ranks
    first = local_only[0]
    other = first.clone()
    dist.broadcast(other, 0)
    report["no_sync_local"] = bool(rank == 0 or not np.allclose(first.cpu().numpy(),
                                                                other.cpu().numpy()))


def case_unused(report: dict) -> None:
    """find_unused_parameters: a branch used on rank 1 only, and one used by no rank."""
    import chainrule as cr
    import chainrule.distributed as dist
    from chainrule import nn

    rank = dist.get_rank()

    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.body, self.extra, self.never = nn.Linear(4, 2), nn.Linear(4, 2), nn.Linear(4, 2)

        def forward(self, x, use_extra):
            out = self.body(x)
            return out + self.extra(x) if use_extra else out

    cr.manual_seed(0)
    net = Branchy().double()
    ddp = nn.parallel.DDP(copy.deepcopy(net), find_unused_parameters=True)
    x = cr.tensor(np.random.default_rng(rank).standard_normal((3, 4)))
    for _ in range(2):  # two iterations: the reduction state resets correctly
        ddp.zero_grad()
        ddp(x, use_extra=rank == 1).sum().backward()
    # rank 1's local gradient of `extra`, halved, is everyone's
    net(x, use_extra=True).sum().backward()
    mine = net.extra.weight.grad.clone() / 2
    dist.broadcast(mine, 1)
    report["unused_extra"] = _rel(ddp.module.extra.weight.grad.numpy(), mine.numpy())
    report["unused_never_none"] = ddp.module.never.weight.grad is None
    # without find_unused_parameters, the next forward names the parameter that got no gradient
    plain = nn.parallel.DDP(copy.deepcopy(net))
    plain(x, use_extra=False).sum().backward()
    try:
        plain(x, use_extra=False)
        report["unused_error"] = ""
    except RuntimeError as e:
        report["unused_error"] = str(e)


def case_collectives(report: dict) -> None:
    """Every collective, sync and async, against what it must give on 2 ranks."""
    import chainrule as cr
    import chainrule.distributed as dist

    r, n = dist.get_rank(), dist.get_world_size()
    got = {}
    for op, want in ((dist.ReduceOp.SUM, [3.0, 6.0]), (dist.ReduceOp.AVG, [1.5, 3.0]),
                     (dist.ReduceOp.MAX, [2.0, 4.0]), (dist.ReduceOp.MIN, [1.0, 2.0]),
                     (dist.ReduceOp.PRODUCT, [2.0, 8.0])):
        t = cr.tensor([1.0, 2.0], dtype=cr.float64) * (r + 1)
        dist.all_reduce(t, op)
        got[f"all_reduce_{op.name}"] = t.tolist() == want
    t = cr.arange(4).reshape(2, 2)[:, 0]  # a non-contiguous view: written back in place
    dist.all_reduce(t)
    got["all_reduce_strided"] = t.tolist() == [0, 4]
    t = cr.tensor([r, r], dtype=cr.int64)
    dist.broadcast(t, 1)
    got["broadcast"] = t.tolist() == [1, 1]
    out = [cr.zeros(2) for _ in range(n)]
    dist.all_gather(out, cr.full((2,), float(r)))
    got["all_gather"] = [o.tolist() for o in out] == [[0.0, 0.0], [1.0, 1.0]]
    o = cr.zeros(2 * n)
    dist.all_gather_into_tensor(o, cr.full((2,), float(r)))
    got["all_gather_into_tensor"] = o.tolist() == [0.0, 0.0, 1.0, 1.0]
    o = cr.zeros(2)
    dist.reduce_scatter_tensor(o, cr.arange(2 * n, dtype=cr.float32) * (r + 1))
    got["reduce_scatter_tensor"] = o.tolist() == ([0.0, 3.0] if r == 0 else [6.0, 9.0])
    gl = [cr.zeros(1) for _ in range(n)] if r == 0 else None
    dist.gather(cr.tensor([float(r + 5)]), gl, dst=0)
    got["gather"] = r != 0 or [g.item() for g in gl] == [5.0, 6.0]
    s = cr.zeros(1)
    dist.scatter(s, [cr.tensor([7.0]), cr.tensor([8.0])] if r == 0 else None, src=0)
    got["scatter"] = s.item() == 7.0 + r
    t = cr.ones(3)
    w = dist.all_reduce(t, async_op=True)
    got["async"] = w.wait() and t.tolist() == [2.0, 2.0, 2.0] and w.is_completed()
    if r == 0:
        dist.send(cr.tensor([5.0]), 1)
        w = dist.irecv(x := cr.zeros(2), 1)
        w.wait()
        got["p2p"] = x.tolist() == [1.0, 2.0]
    else:
        x = cr.zeros(1)
        got["p2p"] = dist.recv(x) == 0 and x.item() == 5.0
        dist.isend(cr.tensor([1.0, 2.0]), 0).wait()
    b = cr.tensor([r == 0, False])
    dist.all_reduce(b)
    got["bool"] = b.tolist() == [True, False]
    dist.barrier()
    # every rank raises the same error on mismatched shapes or dtypes, then goes on
    for name, make in (("shape", lambda: cr.zeros(2 + r)),
                       ("dtype", lambda: cr.zeros(2, dtype=cr.float32 if r else cr.float64))):
        try:
            dist.all_reduce(make())
            got[f"mismatch_{name}"] = ""
        except RuntimeError as e:
            got[f"mismatch_{name}"] = str(e)
    try:
        dist.broadcast(cr.zeros(2), src=r)  # different roots
        got["mismatch_root"] = ""
    except RuntimeError as e:
        got["mismatch_root"] = str(e)
    t = cr.ones(1)
    dist.all_reduce(t)
    got["after_mismatch"] = t.item() == 2.0
    report["collectives"] = got
    report["rank"], report["world_size"] = r, n
    report["env"] = {k: os.environ.get(k) for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE",
                                                    "LOCAL_WORLD_SIZE", "MASTER_PORT")}


def case_sampler(report: dict) -> None:
    import chainrule as cr

    s = cr.data.DistributedSampler(list(range(11)), shuffle=True, seed=3)
    s.set_epoch(1)
    report["sampler"] = list(s)


def case_fault(report: dict) -> None:
    """Rank 1 misbehaves (argv[3]) while rank 0 waits in an all_reduce."""
    import signal
    import time

    import chainrule as cr
    import chainrule.distributed as dist

    if dist.get_rank() == 1:
        how = sys.argv[3]
        if how == "raise":
            raise ValueError("rank 1 raises on purpose")
        if how == "hang":
            time.sleep(120)
        if how == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
    dist.all_reduce(cr.ones(2))
    report["finished"] = True


def _main() -> None:
    import chainrule.distributed as dist

    cases, out = sys.argv[1].split(","), sys.argv[2]
    backend = os.environ.get("CHAINRULE_TEST_BACKEND", "nccl" if DEVICE == "cuda" else "mpi")
    if backend == "nccl":
        import cupy

        cupy.cuda.Device(int(os.environ["LOCAL_RANK"])).use()
    dist.init_process_group(backend)
    report: dict = {}
    for case in cases:
        globals()[f"case_{case}"](report)
    with open(f"{out}.rank{dist.get_rank()}.json", "w") as f:
        json.dump(report, f)
    dist.destroy_process_group()


if __name__ == "__main__":
    sys.path.insert(0, ROOT)
    _main()


# ================================ the tests ===================================================
def _mpiexec_found() -> bool:
    from chainrule.distributed.launch import _find_mpiexec

    try:
        _find_mpiexec(None)
    except FileNotFoundError:
        return False
    return True


needs_mpiexec = pytest.mark.skipif(not _mpiexec_found(), reason="no mpiexec (MPI launcher)")


def _launch(tmp_path, cases: str, *extra, timeout: float = 300, env: dict | None = None,
            nproc: int = 2):
    cmd = [sys.executable, "-m", "chainrule", "launch", "--nproc-per-node", str(nproc), HERE,
           cases, str(tmp_path / "report"), *extra]
    run_env = dict(os.environ, PYTHONPATH=ROOT)
    run_env.update(env or {})
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=run_env)
    reports = []
    for r in range(nproc):
        path = tmp_path / f"report.rank{r}.json"
        reports.append(json.loads(path.read_text()) if path.exists() else None)
    return proc, reports


@pytest.fixture(scope="module")
def main_run(tmp_path_factory):
    if not _mpiexec_found():
        pytest.skip("no mpiexec (MPI launcher)")
    tmp = tmp_path_factory.mktemp("dist")
    proc, reports = _launch(tmp, "collectives,ddp,plain_batchnorm,no_sync,unused,sampler")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return reports


def test_launcher_sets_torchrun_environment(main_run):
    for r, rep in enumerate(main_run):
        assert rep["rank"] == r and rep["world_size"] == 2
        assert rep["env"] == {"RANK": str(r), "LOCAL_RANK": str(r), "WORLD_SIZE": "2",
                              "LOCAL_WORLD_SIZE": "2", "MASTER_PORT": "29500"}


def test_collectives(main_run):
    for rep in main_run:
        got = rep["collectives"]
        bad = [k for k, v in got.items() if not k.startswith("mismatch") and v is not True]
        assert not bad, got


def test_mismatched_collectives_raise_on_every_rank(main_run):
    for rep in main_run:
        got = rep["collectives"]
        assert "rank 0 has float32 (2,), rank 1 has float32 (3,)" in got["mismatch_shape"]
        assert "rank 0 has float64 (2,), rank 1 has float32 (2,)" in got["mismatch_dtype"]
        assert "rank 0: root 0" in got["mismatch_root"] and "rank 1: root 1" in got[
            "mismatch_root"]
        assert got["after_mismatch"] is True


@pytest.mark.parametrize("kind", ["mlp", "transformer", "cnn"])
@pytest.mark.parametrize("dtype,tol", [("float64", 1e-12), ("float32", 1e-5)])
def test_ddp_equals_one_process_on_the_global_batch(main_run, kind, dtype, tol):
    for rep in main_run:
        assert rep[f"ddp_{kind}_{dtype}"] <= tol
        assert rep[f"ddp_{kind}_{dtype}_keys"] is True  # state_dict keys: "module." + name


@needs_mpiexec
def test_ddp_on_4_processes(tmp_path):
    proc, reports = _launch(tmp_path, "ddp,no_sync", nproc=4)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    for rep in reports:
        for kind in ("mlp", "transformer", "cnn"):
            assert rep[f"ddp_{kind}_float64"] <= 1e-12 and rep[f"ddp_{kind}_float32"] <= 1e-5
        assert rep["no_sync"] <= 1e-12


def _gpus() -> int:
    import chainrule as cr

    return cr.cuda.device_count() if cr.cuda.is_available() else 0


@needs_mpiexec
def test_ddp_on_gpu_tensors_through_mpi(tmp_path):
    """CuPy tensors with the MPI backend (host copies), on tests/fakecupy's stand-in GPU."""
    fake = os.path.join(ROOT, "tests", "fakecupy")
    proc, reports = _launch(tmp_path, "ddp,no_sync", env={
        "CHAINRULE_TEST_DEVICE": "cuda", "CHAINRULE_TEST_BACKEND": "mpi",
        "PYTHONPATH": os.pathsep.join([ROOT, fake])})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    for rep in reports:
        for kind in ("mlp", "transformer", "cnn"):
            assert rep[f"ddp_{kind}_float64"] <= 1e-12 and rep[f"ddp_{kind}_float32"] <= 1e-5
        assert rep["no_sync"] <= 1e-12


@pytest.mark.cuda
@pytest.mark.parametrize("nproc", [1, 2])
def test_ddp_on_nccl(tmp_path, nproc):
    """NCCL cannot put two ranks on one GPU: 2 ranks need 2 GPUs; 1 rank runs on 1."""
    if _gpus() < nproc or getattr(__import__("cupy"), "IS_FAKE", False):
        pytest.skip(f"needs {nproc} real GPU(s)")
    proc, reports = _launch(tmp_path, "ddp", nproc=nproc, env={"CHAINRULE_TEST_DEVICE": "cuda"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    for rep in reports:
        for kind in ("mlp", "transformer", "cnn"):
            assert rep[f"ddp_{kind}_float64"] <= 1e-12 and rep[f"ddp_{kind}_float32"] <= 1e-5


def test_ddp_plain_batchnorm_is_rank_local(main_run):
    for rep in main_run:
        assert rep["plain_bn"] <= 1e-12


def test_ddp_no_sync_accumulates_locally(main_run):
    for rep in main_run:
        assert rep["no_sync"] <= 1e-12
        assert rep["no_sync_local"] is True
        assert rep["no_sync_same_grads"] is True


def test_ddp_find_unused_parameters(main_run):
    for rep in main_run:
        assert rep["unused_extra"] <= 1e-12
        assert rep["unused_never_none"] is True
        assert "Expected to have finished reduction in the prior iteration" in rep["unused_error"]
        assert "extra.weight" in rep["unused_error"]


def test_distributed_sampler_shards(main_run):
    a, b = main_run[0]["sampler"], main_run[1]["sampler"]
    assert len(a) == len(b) == 6
    assert sorted(set(a) | set(b)) == list(range(11))  # 12 slots: one index padded twice


def test_distributed_sampler_matches_torch_unshuffled():
    torch = pytest.importorskip("torch")
    import chainrule as cr

    for n, replicas, drop_last in ((10, 3, False), (10, 3, True), (2, 4, False), (7, 2, True)):
        for r in range(replicas):
            ours = cr.data.DistributedSampler(range(n), replicas, r, shuffle=False,
                                              drop_last=drop_last)
            theirs = torch.utils.data.DistributedSampler(range(n), replicas, r, shuffle=False,
                                                         drop_last=drop_last)
            assert list(ours) == list(theirs) and len(ours) == len(theirs)
    with pytest.raises(ValueError, match="Invalid rank 3"):
        cr.data.DistributedSampler(range(4), 3, 3)


def test_distributed_sampler_shuffles_per_epoch():
    import chainrule as cr

    s = cr.data.DistributedSampler(range(20), 2, 0, seed=1)
    first = list(s)
    assert list(s) == first  # the same epoch, the same order
    s.set_epoch(1)
    assert list(s) != first and len(list(s)) == 10
    other = cr.data.DistributedSampler(range(20), 2, 1, seed=1)
    other.set_epoch(1)
    assert sorted(list(s) + list(other)) == list(range(20))


@pytest.mark.parametrize("how,needle", [
    ("raise", "rank 1 failed: ValueError: rank 1 raises on purpose"),
    ("hang", "rank 1 is not in a collective"),
    ("kill", "rank 1"),
])
@needs_mpiexec
def test_a_failing_rank_stops_every_rank_with_its_name(tmp_path, how, needle):
    proc, reports = _launch(tmp_path, "fault", how, timeout=90,
                            env={"CHAINRULE_DIST_TIMEOUT": "3"})
    assert proc.returncode != 0
    assert needle in proc.stderr + proc.stdout
    assert reports == [None, None]  # rank 0 never finished its all_reduce
    if how != "kill":  # rank 0 itself says why it stops
        assert "chainrule.distributed: rank 0 stops: " in proc.stderr or \
            "chainrule.distributed: rank 0: all_reduce" in proc.stderr


def test_not_initialized_raises_torchs_error():
    import chainrule as cr
    import chainrule.distributed as dist

    assert not dist.is_initialized()
    with pytest.raises(ValueError, match="Default process group has not been initialized"):
        dist.get_rank()
    with pytest.raises(ValueError, match="Default process group has not been initialized"):
        dist.all_reduce(cr.ones(1))


@needs_mpiexec
def test_launch_dry_run_and_usage_errors(capsys):
    from chainrule.cli import main

    assert main(["launch", "--nproc-per-node", "3", "--dry-run", "train.py", "--lr", "1"]) == 0
    cmd = capsys.readouterr().out
    assert " -n 3 " in cmd and cmd.rstrip().endswith("-- train.py --lr 1")
    assert main(["launch", "--nnodes", "2", "--dry-run", "train.py"]) == 2
    assert "needs --hostfile" in capsys.readouterr().err
    assert main(["launch", "--nproc-per-node", "x", "--dry-run", "train.py"]) == 2


def test_worker_reads_mpi_rank_variables():
    from chainrule.distributed.worker import torchrun_environment

    env = torchrun_environment({"PMI_RANK": "3", "PMI_SIZE": "4", "MPI_LOCALRANKID": "1",
                                "MPI_LOCALNRANKS": "2"})
    assert env["RANK"] == "3" and env["WORLD_SIZE"] == "4" and env["LOCAL_RANK"] == "1"
    assert env["LOCAL_WORLD_SIZE"] == "2" and env["GROUP_RANK"] == "1"
    with pytest.raises(RuntimeError, match="mpiexec"):
        torchrun_environment({})


@needs_mpiexec
def test_train_nproc_2_writes_one_checkpoint_and_resumes(tmp_path):
    out = tmp_path / "run"
    base = [sys.executable, "-m", "chainrule", "train", "--data", "moons", "--nproc", "2",
            "--out", str(out), "--no-progress"]
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.run(base + ["--epochs", "1"], capture_output=True, text=True, timeout=120,
                          env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("epoch   1/1") == 1  # rank 0 alone reports
    assert sorted(p.name for p in out.iterdir()) == [
        "checkpoint.safetensors", "curves.png", "metrics.csv", "metrics.json"]
    proc = subprocess.run(base + ["--epochs", "2", "--resume"], capture_output=True, text=True,
                          timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resuming from" in proc.stdout and "epoch   2/2" in proc.stdout
    import chainrule as cr

    ck = cr.load(str(out / "checkpoint.safetensors"))
    assert ck["epoch"] == 2 and not any(k.startswith("module.") for k in ck["model"])


def test_train_nproc_must_divide_the_batch(capsys):
    from chainrule.cli import main

    assert main(["train", "--data", "moons", "--nproc", "3", "--batch-size", "32"]) == 2
    assert "must be a multiple of --nproc 3" in capsys.readouterr().err


@needs_mpiexec
def test_launch_no_python_runs_a_program(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "chainrule", "launch", "--nproc-per-node", "2",
                           "--no-python", "sh", "-c", 'echo "rank $RANK of $WORLD_SIZE"'],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert sorted(proc.stdout.split("\n")[:2]) == ["rank 0 of 2", "rank 1 of 2"]


# ---- the hook DDP relies on ---------------------------------------------------------------------
def _hook_run(lib):
    rng = np.random.default_rng(0)
    x = lib.tensor(rng.standard_normal((2, 3)))
    w1 = lib.tensor(rng.standard_normal((3, 3)), requires_grad=True)
    w2 = lib.tensor(rng.standard_normal((3, 3)), requires_grad=True)
    seen = []
    w1.register_post_accumulate_grad_hook(lambda p: seen.append(("w1", p.grad.sum().item())))
    handle = w2.register_post_accumulate_grad_hook(
        lambda p: seen.append(("w2", p.grad.sum().item(), w1.grad is None)))
    h = x @ w1  # w1 feeds two consumers: its hook fires once, after both
    ((h.relu() @ w2) + h * 2).sum().backward()
    handle.remove()
    ((x @ w1) @ w2).sum().backward()  # accumulates; w2's hook is gone
    return seen, w1.grad.numpy(), w2.grad.numpy()


def test_post_accumulate_grad_hook_matches_torch():
    torch = pytest.importorskip("torch")
    import chainrule as cr

    ours, theirs = _hook_run(cr), _hook_run(torch)
    assert [s[0] for s in ours[0]] == [s[0] for s in theirs[0]] == ["w2", "w1", "w1"]
    assert ours[0][0][2] is True  # w2's hook ran before w1's gradient existed: early
    np.testing.assert_allclose([s[1] for s in ours[0]], [s[1] for s in theirs[0]], rtol=1e-12)
    np.testing.assert_allclose(ours[1], theirs[1], rtol=1e-12)
    np.testing.assert_allclose(ours[2], theirs[2], rtol=1e-12)


def test_post_accumulate_grad_hook_errors():
    import chainrule as cr

    with pytest.raises(RuntimeError, match="doesn't require gradient"):
        cr.ones(2).register_post_accumulate_grad_hook(print)
    w = cr.ones(2, requires_grad=True)
    with pytest.raises(RuntimeError, match="non-leaf"):
        (w * 2).register_post_accumulate_grad_hook(print)
    calls = []
    w.register_post_accumulate_grad_hook(calls.append)
    cr.autograd.grad((w * 3).sum(), w)  # autograd.grad accumulates nothing: no call
    assert calls == []
    (w * w).sum().backward(inputs=[w])
    assert calls == [w] and w.grad.tolist() == [2.0, 2.0]


def test_convert_sync_batchnorm_shares_parameters_and_buffers():
    import chainrule as cr
    from chainrule import nn

    cr.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.Sequential(nn.BatchNorm1d(4)))
    net[1].eval()
    bn, inner = net[1], net[2][0]
    conv = nn.SyncBatchNorm.convert_sync_batchnorm(net)
    assert type(conv[1]) is nn.SyncBatchNorm and type(conv[2][0]) is nn.SyncBatchNorm
    assert conv[1].weight is bn.weight and conv[1].running_mean is bn.running_mean
    assert conv[2][0].bias is inner.bias and conv[1].training is False
    assert sorted(conv.state_dict()) == sorted(net.state_dict())
    # without a process group it is BatchNorm: the same output, the same running stats
    x = cr.randn(4, 3, 5, 5)
    plain, sync = nn.BatchNorm2d(3), nn.SyncBatchNorm(3)
    np.testing.assert_allclose(sync(x).detach().numpy(), plain(x).detach().numpy(), rtol=1e-6)
    np.testing.assert_allclose(sync.running_var.numpy(), plain.running_var.numpy(), rtol=1e-6)
    with pytest.raises(ValueError, match="expected at least 2D input"):
        sync(cr.randn(3))


def test_launch_commands_for_open_mpi_and_hydra(tmp_path):
    from chainrule.distributed.launch import build_parser, mpiexec_command

    args = build_parser().parse_args(["--nnodes", "2", "--nproc-per-node", "4", "--hostfile",
                                      "hosts", "--mpiexec", "mpiexec", "--timeout", "30",
                                      "train.py", "--lr", "1"])
    cmd, env = mpiexec_command(args, flavour="openmpi")
    assert cmd[:3] == ["mpiexec", "-n", "8"]
    assert "--hostfile hosts --map-by ppr:4:node" in " ".join(cmd)
    assert "-x MASTER_ADDR" in " ".join(cmd) and "-x CHAINRULE_DIST_TIMEOUT" in " ".join(cmd)
    assert cmd[-5:] == ["chainrule.distributed.worker", "--", "train.py", "--lr", "1"]
    assert env["CHAINRULE_DIST_TIMEOUT"] == "30.0" and env["MASTER_PORT"] == "29500"
    cmd, env = mpiexec_command(args, flavour="hydra")
    assert "-f hosts -ppn 4" in " ".join(cmd) and "-genv MASTER_PORT 29500" in " ".join(cmd)
    module = build_parser().parse_args(["--mpiexec", "m", "-m", "pkg.mod", "x"])
    assert mpiexec_command(module, flavour="hydra")[0][-5:] == [
        "chainrule.distributed.worker", "-m", "--", "pkg.mod", "x"]


# ---- nanoGPT's DDP path under `chainrule launch ... chainrule run` ------------------------------
def _nanogpt_copy(tmp_path):
    """A writable copy of shared/realworld's nanoGPT, or a skip where the folder is absent."""
    import shutil

    sys.path.insert(0, os.path.join(ROOT, "bench"))
    import realworld

    folder = realworld.realworld_dir()
    if folder is None:
        pytest.skip("no shared/realworld folder")
    work = tmp_path / "nanoGPT"
    shutil.copytree(os.path.join(folder, "programs", "nanoGPT"), work)
    os.chmod(work, 0o755)
    for sub, _, files in os.walk(work):
        for name in files:
            os.chmod(os.path.join(sub, name), 0o644)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    realworld._chainrule_bin(str(bindir))
    return work, str(bindir), os.path.join(folder, "standins")


NANOGPT_ARGS = ["train.py", "config/train_shakespeare_char.py", "--device=cpu", "--compile=False",
                "--eval_iters=5", "--eval_interval=20", "--log_interval=5", "--block_size=32",
                "--batch_size=12", "--n_layer=2", "--n_head=2", "--n_embd=64", "--max_iters=20",
                "--lr_decay_iters=20", "--dropout=0.0", "--dtype=float32", "--out_dir=out",
                "--gradient_accumulation_steps=2", "--backend=gloo"]

# Imported at start-up by each rank's `chainrule run` (on PYTHONPATH): counts each rank's
# backward passes and checkpoint writes and notes its GPU, in report.rank<R>.json at exit.
_NANOGPT_PROBE = '''
import atexit, json, os

_seen = {"backward": 0, "saves": 0, "loss_devices": []}


def _wrap():
    import chainrule as cr

    backward, save = cr.Tensor.backward, cr.save

    def counted_backward(self, *args, **kwargs):
        _seen["backward"] += 1
        if str(self.device) not in _seen["loss_devices"]:
            _seen["loss_devices"].append(str(self.device))
        return backward(self, *args, **kwargs)

    def counted_save(*args, **kwargs):
        _seen["saves"] += 1
        return save(*args, **kwargs)

    cr.Tensor.backward, cr.save = counted_backward, counted_save


def _report():
    import chainrule as cr

    _seen["current_device"] = cr.cuda.current_device() if cr.cuda.is_available() else None
    with open(os.path.join(os.environ["PROBE_OUT"], f"report.rank{os.environ['RANK']}.json"),
              "w") as f:
        json.dump(_seen, f)


if os.environ.get("RANK"):
    _wrap()
    atexit.register(_report)
'''


def _losses(text: str) -> list[float]:
    import re

    return [float(v) for v in re.findall(r"step \d+: train loss ([0-9.]+)", text)]


@needs_mpiexec
def test_nanogpt_ddp_trains_on_two_gpus(tmp_path):
    """nanoGPT's DDP branch (`torch.cuda.set_device(f"cuda:{LOCAL_RANK}")`, DDP with
    device_ids, gloo = chainrule's MPI backend through host copies) on tests/fakecupy's two
    stand-in GPUs: both ranks train on their own GPU, the loss falls, rank 0 alone saves."""
    work, bindir, standins = _nanogpt_copy(tmp_path)
    probe = tmp_path / "probe"
    probe.mkdir()
    (probe / "sitecustomize.py").write_text(_NANOGPT_PROBE)
    env = dict(os.environ, PATH=bindir + os.pathsep + os.environ.get("PATH", ""),
               PYTHONPATH=os.pathsep.join([str(probe), ROOT, os.path.join(ROOT, "tests",
                                                                        "fakecupy"), standins]),
               FAKECUPY_DEVICES="2", PROBE_OUT=str(tmp_path), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "chainrule", "launch", "--nproc-per-node", "2",
                           "--no-python", "chainrule", "run", *NANOGPT_ARGS], cwd=work, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    losses = _losses(proc.stdout)
    assert len(losses) == 2 and losses[1] < losses[0] - 0.1, proc.stdout[-3000:]
    assert (work / "out" / "ckpt.pt").exists()
    reports = [json.loads((tmp_path / f"report.rank{r}.json").read_text()) for r in (0, 1)]
    for r, rep in enumerate(reports):
        # 21 iterations x 2 micro-steps (gradient_accumulation_steps 2 split over 2 ranks is 1)
        assert rep["backward"] == 21, rep
        assert rep["loss_devices"] == [f"cuda:{r}"] and rep["current_device"] == r, rep
    assert [rep["saves"] for rep in reports] == [1, 0]
    import chainrule as cr

    ckpt = cr.load(str(work / "out" / "ckpt.pt"), map_location="cpu")
    assert ckpt["iter_num"] == 20 and ckpt["config"]["backend"] == "gloo"


@needs_mpiexec
def test_nanogpt_ddp_without_a_gpu_fails_as_torchs_cpu_build(tmp_path):
    """On a machine without a GPU the same command stops where PyTorch's CPU build stops, with
    its error: torch.cuda.set_device in the DDP branch."""
    import chainrule as cr

    if cr.cuda.is_available():
        pytest.skip("a GPU is present")
    work, bindir, standins = _nanogpt_copy(tmp_path)
    env = dict(os.environ, PATH=bindir + os.pathsep + os.environ.get("PATH", ""),
               PYTHONPATH=os.pathsep.join([ROOT, standins]), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "chainrule", "launch", "--nproc-per-node", "2",
                           "--no-python", "chainrule", "run", *NANOGPT_ARGS], cwd=work, env=env,
                          capture_output=True, text=True, timeout=300)
    needle = "AttributeError: module 'torch._C' has no attribute '_cuda_setDevice'"
    assert proc.returncode != 0
    assert needle in proc.stderr and "torch.cuda.set_device(device)" in proc.stderr, \
        proc.stderr[-3000:]
    assert "not implemented by chainrule" not in proc.stderr
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        return
    # PyTorch's CPU build on the same program (one rank, torchrun's variables by hand): the
    # same last line (torch prefixes its ranks' lines with "[rank0]: ")
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1",
               MASTER_PORT=str(port), PYTHONPATH=standins)
    theirs = subprocess.run([sys.executable, *NANOGPT_ARGS], cwd=work, env=env,
                            capture_output=True, text=True, timeout=300)
    assert theirs.returncode != 0
    last = theirs.stderr.strip().splitlines()[-1].split("]: ", 1)[-1]
    assert last == needle, theirs.stderr[-2000:]
