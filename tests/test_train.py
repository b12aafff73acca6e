"""``chainrule train`` end to end: accuracy, outputs, resume equivalence, determinism, MNIST."""

from __future__ import annotations

import csv
import gzip
import json
import os

import numpy as np
import pytest

import chainrule as cr
from chainrule.cli import main
from chainrule.train import random_shift

pytest.importorskip("sklearn")


def _train(capsys, out, *args):
    rc = main(["train", "--out", str(out), "--no-progress", *args])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    return captured.out


def _weights(out):
    return cr.load(os.path.join(out, "checkpoint.safetensors"))


def test_digits_mlp_end_to_end(tmp_path, capsys):
    out = tmp_path / "run"
    log = _train(capsys, out, "--epochs", "5")
    assert "epoch   5/5" in log and "samples/s" in log and "test accuracy" in log
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test_acc"] >= 0.95, metrics["test_acc"]
    assert metrics["config"]["data"] == "digits" and metrics["config"]["model"] == "mlp"
    assert len(metrics["history"]) == 5
    assert metrics["history"][-1]["train_loss"] < metrics["history"][0]["train_loss"]
    with open(out / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4, 5]
    assert {"train_loss", "train_acc", "val_loss", "val_acc", "samples_per_s"} <= set(rows[0])
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ck = _weights(out)
    assert ck["epoch"] == 5 and "0.weight" not in ck["model"] and "1.weight" in ck["model"]
    assert set(ck["optimizer"]) == {"state", "param_groups"}
    assert set(ck["rng"]) == {"global", "loader"}
    # the checkpoint really holds the trained model: reload it and re-evaluate
    from chainrule.train import TrainConfig, build_model, evaluate, load_data, prepare

    cfg = prepare(TrainConfig(out=str(out), epochs=5)).cfg
    model = build_model("mlp", (1, 8, 8), 10, cfg.hidden)
    model.load_state_dict(ck["model"])
    _, _, test = load_data(cfg)
    assert evaluate(model, test)[1] == pytest.approx(metrics["test_acc"])


@pytest.mark.parametrize("model,target", [("mlp", 0.97), ("cnn", 0.98)])
def test_digits_defaults_reach_target_accuracy(tmp_path, capsys, model, target):
    out = tmp_path / model
    _train(capsys, out, "--model", model)
    acc = json.loads((out / "metrics.json").read_text())["test_acc"]
    assert acc >= target, f"{model}: {acc:.4f} < {target}"


@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_resume_matches_uninterrupted_run(tmp_path, capsys, model):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    common = ["--model", model, "--hidden", "16"]
    _train(capsys, straight, "--epochs", "4", *common)
    _train(capsys, resumed, "--epochs", "2", *common)
    log = _train(capsys, resumed, "--epochs", "4", "--resume", *common)
    assert "resuming" in log and "epoch   3/4" in log and "epoch   1/4" not in log
    a, b = _weights(straight), _weights(resumed)
    assert b["epoch"] == 4 and list(a["model"]) == list(b["model"])
    for k in a["model"]:
        np.testing.assert_array_equal(a["model"][k].numpy(), b["model"][k].numpy(), err_msg=k)
    for pa, pb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values(),
                      strict=True):
        np.testing.assert_array_equal(pa["exp_avg"].numpy(), pb["exp_avg"].numpy())
    ma = json.loads((straight / "metrics.json").read_text())
    mb = json.loads((resumed / "metrics.json").read_text())
    assert ma["test_acc"] == mb["test_acc"]
    assert [h["val_loss"] for h in ma["history"]] == [h["val_loss"] for h in mb["history"]]


def test_resume_with_conflicting_setting_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    _train(capsys, out, "--data", "moons", "--epochs", "1")
    before = (out / "checkpoint.safetensors").read_bytes()
    rc = main(["train", "--out", str(out), "--resume", "--lr", "0.5", "--epochs", "2"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "--lr 0.01, not 0.5" in err
    assert (out / "checkpoint.safetensors").read_bytes() == before
    # without the conflicting flag the saved settings are reused
    log = _train(capsys, out, "--resume", "--epochs", "2")
    assert "moons" in log and "epoch   2/2" in log


def test_seed_changes_the_run_and_same_seed_repeats_it(tmp_path, capsys):
    runs = {}
    for name, seed in (("a", "0"), ("b", "0"), ("c", "1")):
        _train(capsys, tmp_path / name, "--data", "spirals", "--epochs", "2", "--seed", seed)
        runs[name] = _weights(tmp_path / name)["model"]
    w = "1.weight"
    np.testing.assert_array_equal(runs["a"][w].numpy(), runs["b"][w].numpy())
    assert not np.array_equal(runs["a"][w].numpy(), runs["c"][w].numpy())


def test_progress_bar_reports_loss_and_throughput(tmp_path, capsys):
    pytest.importorskip("tqdm")
    rc = main(["train", "--data", "moons", "--epochs", "1", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 0
    assert "epoch 1/1" in err and "sample/s" in err


def test_random_shift_moves_images_by_at_most_one_pixel():
    x = cr.arange(2 * 1 * 4 * 4, dtype=cr.float32).reshape(2, 1, 4, 4) + 1
    cr.manual_seed(0)
    y = random_shift(x).numpy()
    for img, out in zip(x.numpy()[:, 0], y[:, 0], strict=True):
        padded = np.pad(img, 1)
        assert any(np.array_equal(out, padded[r:r + 4, c:c + 4])
                   for r in range(3) for c in range(3))


def _idx(arr: np.ndarray) -> bytes:
    head = bytes([0, 0, 0x08, arr.ndim]) + b"".join(s.to_bytes(4, "big") for s in arr.shape)
    return head + arr.astype(np.uint8).tobytes()


@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_mnist_from_local_idx_files(tmp_path, capsys, model):
    rng = np.random.default_rng(0)
    root = tmp_path / "mnist"
    root.mkdir()
    for prefix, n in (("train", 40), ("t10k", 10)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = np.zeros((n, 28, 28), np.uint8)
        for i, lbl in enumerate(labels):  # a learnable pattern: a bright bar per class
            images[i, 2 + 2 * lbl: 4 + 2 * lbl, 4:24] = 255
        (root / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx(images)))
        (root / f"{prefix}-labels-idx1-ubyte").write_bytes(_idx(labels))
    out = tmp_path / "run"
    log = _train(capsys, out, "--data", "mnist", "--data-root", str(root), "--model", model,
                 "--epochs", "1", "--batch-size", "8", "--hidden", "16")
    assert "36 train / 4 val / 10 test" in log
    assert (out / "checkpoint.safetensors").exists()
