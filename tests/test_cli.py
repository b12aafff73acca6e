"""The ``chainrule`` command: argument errors (one line, exit 2, nothing written), --version,
dispatch to demo/explain."""

from __future__ import annotations

import os
import subprocess
import sys
import types

import pytest

import chainrule as cr
from chainrule.cli import main


def _run_error(capsys, argv, match):
    rc = main(argv)
    captured = capsys.readouterr()
    err = captured.err
    assert rc == 2, (rc, err)
    assert err.endswith("\n") and err.count("\n") == 1, f"not one line: {err!r}"
    assert err.startswith("chainrule"), err
    assert match in err, err
    assert captured.out == ""
    return err


@pytest.mark.parametrize("args,match", [
    (["--data", "imagenet"], "unknown dataset 'imagenet'"),
    (["--lr", "-0.1"], "--lr must be positive"),
    (["--lr", "0"], "--lr must be positive"),
    (["--lr", "nan"], "--lr must be finite"),
    (["--lr", "fast"], "expected a number"),
    (["--epochs", "0"], "--epochs must be positive"),
    (["--epochs", "2.5"], "expected an integer"),
    (["--batch-size", "-4"], "--batch-size must be positive"),
    (["--optimizer", "lbfgs"], "unknown optimizer 'lbfgs'"),
    (["--model", "transformer"], "unknown model"),
    (["--data", "moons", "--model", "cnn"], "needs image data"),
    (["--val-fraction", "1.5"], "--val-fraction must be between 0 and 1"),
    (["--device", "tpu"], "unknown device 'tpu'"),
    (["--data", "mnist"], "needs --data-root"),
    (["--resume"], "no checkpoint to resume from"),
    (["--frobnicate"], "unrecognized arguments: --frobnicate"),
])
def test_bad_arguments_exit_2_with_one_line_and_write_nothing(tmp_path, capsys, args, match):
    out = tmp_path / "run"
    _run_error(capsys, ["train", "--out", str(out), "--no-progress", *args], match)
    assert not out.exists()
    assert os.listdir(tmp_path) == []


def test_unreadable_paths(tmp_path, capsys):
    out = tmp_path / "run"
    _run_error(capsys, ["train", "--data", "mnist", "--data-root", str(tmp_path / "nope"),
                        "--out", str(out)], "is not a directory")
    empty = tmp_path / "mnist"
    empty.mkdir()
    _run_error(capsys, ["train", "--data", "mnist", "--data-root", str(empty), "--out", str(out)],
               "missing file train-images-idx3-ubyte")
    afile = tmp_path / "afile"
    afile.write_text("x")
    _run_error(capsys, ["train", "--out", str(afile)], "exists and is not a directory")
    _run_error(capsys, ["train", "--out", str(afile / "sub")], "cannot be created")
    assert not out.exists()
    assert sorted(os.listdir(tmp_path)) == ["afile", "mnist"]


def test_cuda_request_without_cuda(tmp_path, capsys):
    if cr.cuda.is_available():
        pytest.skip("CUDA is available here")
    _run_error(capsys, ["train", "--device", "cuda", "--out", str(tmp_path / "o")],
               "CUDA is not available")
    assert not (tmp_path / "o").exists()


def test_resume_from_corrupt_or_foreign_checkpoint(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    ck = out / "checkpoint.safetensors"
    ck.write_bytes(b"\x80\x04garbage")
    err = _run_error(capsys, ["train", "--resume", "--out", str(out)], "cannot read")
    assert "pickle" in err
    cr.save({"just": "a dict"}, ck)
    _run_error(capsys, ["train", "--resume", "--out", str(out)], "not a chainrule training")
    assert os.listdir(out) == ["checkpoint.safetensors"]


def test_version_returns_zero(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"chainrule {cr.__version__}"


def test_no_command_prints_help(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert "train" in out and "demo" in out and "explain" in out


def test_python_dash_m_is_the_same_command(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(cr.__file__)))
    done = subprocess.run([sys.executable, "-m", "chainrule", "--version"], capture_output=True,
                          text=True, env=env, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == f"chainrule {cr.__version__}"
    done = subprocess.run([sys.executable, "-m", "chainrule", "train", "--lr", "-1", "--out",
                           str(tmp_path / "o")], capture_output=True, text=True, env=env,
                          timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == ["chainrule train: error: --lr must be positive, "
                                                "got -1.0"]
    assert not (tmp_path / "o").exists()


def test_explain_dispatches_to_viz(monkeypatch):
    seen = {}
    fake = types.ModuleType("chainrule.viz.explain_command")

    def fake_main(argv):
        seen["argv"] = argv
        return 7

    fake.main = fake_main
    monkeypatch.setitem(sys.modules, "chainrule.viz.explain_command", fake)
    assert main(["explain", "x*y", "x=3", "y=-4"]) == 7
    assert seen["argv"] == ["x*y", "x=3", "y=-4"]


def test_demo_shows_circuits_then_trains_digits(tmp_path, monkeypatch):
    import chainrule.train as T

    calls = []
    fake = types.ModuleType("chainrule.viz.demo")
    fake.show_lecture_circuits = lambda out_dir: calls.append(("circuits", out_dir))
    monkeypatch.setitem(sys.modules, "chainrule.viz.demo", fake)
    monkeypatch.setattr(T, "train", lambda cfg, plan: calls.append(("train", cfg.data, cfg.model,
                                                                      cfg.out, cfg.epochs)))
    out = str(tmp_path / "demo")
    assert main(["demo", "--out", out, "--no-progress"]) == 0
    assert calls[0] == ("circuits", out)
    assert calls[1][:4] == ("train", "digits", "mlp", out)
    assert calls[1][4] == T._DEFAULTS[("digits", "mlp")]["epochs"]


def test_explain_runs_the_real_explainer(capsys):
    pytest.importorskip("chainrule.viz.explain")
    assert main(["explain", "x*y + x", "x=3", "y=-4"]) == 0
    out = capsys.readouterr().out
    assert "forward" in out and "backward" in out and "-3" in out
