"""``cr.utils.tensorboard.SummaryWriter`` writes event files that TensorBoard reads back."""

from __future__ import annotations

import glob
import os

import numpy as np
import pytest

import chainrule as cr

pytest.importorskip("tensorboard")

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

from chainrule.utils.tensorboard import SummaryWriter  # noqa: E402


def _load(log_dir: str) -> EventAccumulator:
    acc = EventAccumulator(log_dir, size_guidance={"scalars": 0, "histograms": 0, "tensors": 0,
                                                   "images": 0})
    acc.Reload()
    return acc


def test_scalars_reach_tensorboard(tmp_path):
    with SummaryWriter(log_dir=str(tmp_path)) as w:
        assert w.get_logdir() == str(tmp_path)
        for step in range(3):
            w.add_scalar("Loss/train", cr.tensor(0.5 / (step + 1)), step)
        w.add_scalar("lr", 1e-3, 7)
        w.flush()
    files = glob.glob(os.path.join(str(tmp_path), "events.out.tfevents.*"))
    assert len(files) == 1
    acc = _load(str(tmp_path))
    events = acc.Scalars("Loss/train")
    assert [e.step for e in events] == [0, 1, 2]
    np.testing.assert_allclose([e.value for e in events], [0.5, 0.25, 0.5 / 3], rtol=1e-6)
    assert acc.Scalars("lr")[0].step == 7


def test_scalar_must_be_one_number(tmp_path):
    with SummaryWriter(log_dir=str(tmp_path)) as w, pytest.raises(ValueError, match="one number"):
        w.add_scalar("x", cr.ones(2), 0)


def test_add_scalars_writes_one_run_per_key(tmp_path):
    with SummaryWriter(log_dir=str(tmp_path)) as w:
        w.add_scalars("loss", {"train": 1.0, "test": 2.0}, 0)
    assert {"loss_test", "loss_train"} <= set(os.listdir(tmp_path))
    assert _load(str(tmp_path / "loss_test")).Scalars("loss")[0].value == 2.0


def test_histogram_counts_every_value(tmp_path):
    values = np.random.default_rng(0).normal(size=1000)
    with SummaryWriter(log_dir=str(tmp_path)) as w:
        w.add_histogram("w", cr.tensor(values), 3)
        w.add_histogram("b", values, 4, bins=10)
    acc = _load(str(tmp_path))
    h = acc.Histograms("w")[0].histogram_value
    assert h.num == 1000 and sum(h.bucket) == 1000
    assert h.min == pytest.approx(values.min()) and h.max == pytest.approx(values.max())
    assert h.sum_squares == pytest.approx(float(values @ values))
    assert sum(acc.Histograms("b")[0].histogram_value.bucket) == 1000


def test_text_and_image(tmp_path):
    pytest.importorskip("PIL")
    with SummaryWriter(log_dir=str(tmp_path)) as w:
        w.add_text("note", "hello **world**", 0)
        w.add_image("img", cr.rand(3, 4, 5), 0)
        w.add_images("imgs", np.zeros((2, 1, 4, 5), dtype=np.float32), 0)
    acc = _load(str(tmp_path))
    img = acc.Images("img")[0]
    assert (img.height, img.width) == (4, 5)
    assert acc.Images("imgs")[0].width == 10
    text = acc.Tensors("note/text_summary")[0].tensor_proto.string_val[0]
    assert text == b"hello **world**"


def test_default_log_dir_is_under_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    w = SummaryWriter(comment="_x")
    w.close()
    assert w.get_logdir().startswith("runs" + os.sep) and w.get_logdir().endswith("_x")
    assert os.path.isdir(w.get_logdir())


def test_hparams_are_a_sub_run_with_their_metrics(tmp_path):
    with SummaryWriter(log_dir=str(tmp_path)) as w:
        w.add_hparams({"lr": 0.1, "layers": 2}, {"hparam/loss": 0.25}, run_name="trial")
    acc = _load(str(tmp_path / "trial"))
    assert acc.Scalars("hparam/loss")[0].value == 0.25
