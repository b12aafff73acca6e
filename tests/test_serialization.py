"""cr.save / cr.load: safetensors round trips, no pickle, corrupt files, atomic writes."""

from __future__ import annotations

import os
import pickle
from collections import OrderedDict

import numpy as np
import pytest

import chainrule as cr
from chainrule import serialization
from chainrule.serialization import SerializationError


def _assert_same(a, b, path="root"):
    assert type(a) is type(b), f"{path}: {type(a)} vs {type(b)}"
    if isinstance(a, cr.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape, path
        assert a.requires_grad == b.requires_grad, path
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=path)
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b, err_msg=path)
    elif isinstance(a, dict):
        assert list(a) == list(b), path
        for k in a:
            _assert_same(a[k], b[k], f"{path}/{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_same(x, y, f"{path}/{i}")
    elif isinstance(a, float) and np.isnan(a):
        assert np.isnan(b)
    else:
        assert a == b, path


def _checkpoint():
    gen = cr.Generator().manual_seed(0)
    w = cr.randn(4, 3, generator=gen)
    return {
        "model": {"fc1.weight": w, "fc1.bias": cr.zeros(4), "bn.num_batches_tracked": cr.tensor(7),
                  "half": cr.ones(2, dtype=cr.float16), "mask": cr.tensor([True, False]),
                  "i32": cr.tensor([1, -2], dtype=cr.int32), "scalar": cr.tensor(2.5)},
        "optimizer": {
            "state": {0: {"step": cr.tensor(3.0), "exp_avg": cr.randn(4, 3, generator=gen),
                          "momentum_buffer": None}},
            "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "params": [0, 1],
                              "amsgrad": False, "maximize": False, "foreign": None}],
        },
        "epoch": 2, "best": float("inf"), "nan": float("nan"), "name": "mlp",
        "history": [{"loss": 0.5, "acc": 0.9}], "shape": cr.Size([2, 3]),
        "rng": cr.get_rng_state(), "np": np.arange(6, dtype=np.int16).reshape(2, 3),
        "npscalar": np.float32(1.5), "empty": cr.zeros(0, 5), "big": 2**62, "t": (1, "a"),
        "dtype": cr.float64, "od": OrderedDict([("b", 1), ("a", cr.ones(1))]),
    }


def test_round_trip_nested_state(tmp_path):
    ckpt = _checkpoint()
    path = tmp_path / "ck.safetensors"
    cr.save(ckpt, path)
    _assert_same(ckpt, cr.load(path))
    _assert_same(ckpt, cr.load(str(path), map_location="cpu"))


def test_round_trip_file_objects(tmp_path):
    import io

    buf = io.BytesIO()
    cr.save({"a": cr.arange(3)}, buf)
    buf.seek(0)
    assert cr.load(buf)["a"].tolist() == [0, 1, 2]


def test_shared_tensors_stay_shared_and_grad_flags_survive(tmp_path):
    w = cr.randn(2, 2, requires_grad=True)
    cr.save({"a": w, "b": [w], "c": w.detach()}, tmp_path / "s.safetensors")
    out = cr.load(tmp_path / "s.safetensors")
    assert out["a"] is out["b"][0] and out["a"].requires_grad
    assert out["c"] is not out["a"] and not out["c"].requires_grad


def test_model_and_optimizer_state_dicts(tmp_path):
    nn = pytest.importorskip("chainrule.nn")
    if not hasattr(nn, "Linear") or not hasattr(cr.optim, "Adam"):
        pytest.skip("nn.Linear / optim.Adam not available yet")
    cr.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    opt = cr.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(2):
        opt.zero_grad()
        model(cr.randn(5, 3)).sum().backward()
        opt.step()
    cr.save({"model": model.state_dict(), "optimizer": opt.state_dict()}, tmp_path / "m.st")
    ck = cr.load(tmp_path / "m.st")
    _assert_same(model.state_dict(), ck["model"])
    _assert_same(opt.state_dict(), ck["optimizer"])
    model2 = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    opt2 = cr.optim.Adam(model2.parameters(), lr=0.01)
    model2.load_state_dict(ck["model"])
    opt2.load_state_dict(ck["optimizer"])
    x = cr.randn(5, 3)
    for m, o in ((model, opt), (model2, opt2)):
        o.zero_grad()
        m(x).sum().backward()
        o.step()
    for p, q in zip(model.parameters(), model2.parameters(), strict=True):
        np.testing.assert_array_equal(p.detach().numpy(), q.detach().numpy())


def test_interop_with_safetensors_package(tmp_path):
    st = pytest.importorskip("safetensors.numpy")
    state = {"layer.weight": cr.randn(3, 2), "layer.bias": cr.zeros(3, dtype=cr.float64)}
    cr.save(state, tmp_path / "ours.safetensors")
    theirs = st.load_file(str(tmp_path / "ours.safetensors"))
    assert set(theirs) == set(state)
    np.testing.assert_array_equal(theirs["layer.weight"], state["layer.weight"].numpy())
    st.save_file({"x": np.arange(4, dtype=np.int32)}, str(tmp_path / "plain.safetensors"))
    plain = cr.load(tmp_path / "plain.safetensors")
    assert list(plain) == ["x"] and plain["x"].dtype == cr.int32
    assert plain["x"].tolist() == [0, 1, 2, 3]


def test_torch_reads_our_state_dict(tmp_path):
    torch = pytest.importorskip("torch")
    st = pytest.importorskip("safetensors.torch")
    state = {"w": cr.randn(2, 3), "n": cr.tensor([1, 2])}
    cr.save(state, tmp_path / "w.safetensors")
    loaded = st.load_file(str(tmp_path / "w.safetensors"))
    assert loaded["w"].dtype == torch.float32 and loaded["n"].dtype == torch.int64
    np.testing.assert_array_equal(loaded["w"].numpy(), state["w"].numpy())


def test_unsupported_objects_are_refused(tmp_path):
    with pytest.raises(TypeError, match=r"cr.save: cannot store an object of type object at a/0"):
        cr.save({"a": [object()]}, tmp_path / "x.st")
    assert not (tmp_path / "x.st").exists()
    assert os.listdir(tmp_path) == []


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


@pytest.mark.parametrize("header_len", [640, 896, 1152, 1408])
def test_header_length_that_starts_like_a_pickle_still_loads(tmp_path, header_len):
    # 0x0280, 0x0380, 0x0480, 0x0580: the first two bytes of the file are those of a pickle
    path = tmp_path / "x.safetensors"
    for n in range(2000):
        cr.save({"s": "x" * n}, path)
        if int.from_bytes(path.read_bytes()[:8], "little") == header_len:
            break
    else:
        pytest.skip(f"no padding gives a header of {header_len} bytes")
    assert path.read_bytes()[:2] == header_len.to_bytes(2, "little")
    assert cr.load(path)["s"] == "x" * n


def test_pickle_payload_refused(tmp_path):
    p = tmp_path / "evil.pt"
    with open(p, "wb") as f:
        pickle.dump(_Evil(), f)
    with pytest.raises(SerializationError, match=r"refusing to load .*evil.pt.*pickle"):
        cr.load(p)


def test_torch_save_file_refused(tmp_path):
    torch = pytest.importorskip("torch")
    p = tmp_path / "model.pt"
    torch.save({"w": torch.zeros(2)}, p)
    with pytest.raises(SerializationError, match=r"refusing to load .*model.pt.*zip archive"):
        cr.load(p)


def test_truncated_and_corrupt_files(tmp_path):
    p = tmp_path / "ck.safetensors"
    cr.save({"w": cr.randn(10, 10), "e": 1}, p)
    raw = p.read_bytes()
    for cut in (len(raw) - 7, 60, 5):
        p.write_bytes(raw[:cut])
        with pytest.raises(SerializationError, match=r"ck\.safetensors is truncated"):
            cr.load(p)
    p.write_bytes(raw + b"junk")
    with pytest.raises(SerializationError, match="trailing bytes"):
        cr.load(p)
    n = int.from_bytes(raw[:8], "little")
    p.write_bytes(raw[:8] + b"{" * n + raw[8 + n:])
    with pytest.raises(SerializationError, match="not valid JSON"):
        cr.load(p)
    p.write_bytes(b"")
    with pytest.raises(SerializationError, match="truncated"):
        cr.load(p)
    with pytest.raises(FileNotFoundError):
        cr.load(tmp_path / "missing.safetensors")


def test_tampered_structure_is_an_error_not_code(tmp_path):
    p = tmp_path / "ck.safetensors"
    cr.save({"w": cr.zeros(1)}, p)
    raw = p.read_bytes().replace(b"__tensor__", b"__exec____")
    p.write_bytes(raw)
    with pytest.raises(SerializationError, match="corrupt"):
        cr.load(p)


def test_interrupted_save_keeps_old_checkpoint(tmp_path, monkeypatch):
    p = tmp_path / "ck.safetensors"
    cr.save({"epoch": 1, "w": cr.ones(3)}, p)

    def crash(src, dst):
        assert os.path.getsize(src) > 0  # the new file was fully written first
        raise OSError("simulated crash during rename")

    monkeypatch.setattr(serialization.os, "replace", crash)
    with pytest.raises(OSError, match="simulated crash"):
        cr.save({"epoch": 2, "w": cr.zeros(3)}, p)
    monkeypatch.undo()
    old = cr.load(p)
    assert old["epoch"] == 1 and old["w"].tolist() == [1.0, 1.0, 1.0]
    assert os.listdir(tmp_path) == ["ck.safetensors"]  # no temp file left behind


def test_save_into_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        cr.save({"a": 1}, tmp_path / "nope" / "x.st")


def test_map_location_cuda_without_cuda(tmp_path):
    if cr.cuda.is_available():
        pytest.skip("CUDA present")
    cr.save({"a": cr.ones(1)}, tmp_path / "a.st")
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        cr.load(tmp_path / "a.st", map_location="cuda")
