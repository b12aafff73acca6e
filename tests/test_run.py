"""``chainrule run``: a program written for PyTorch runs on chainrule, as ``python SCRIPT.py``."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _run(args: list[str], cwd, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "chainrule", "run", *args], cwd=cwd, env=_env(),
                          capture_output=True, text=True, timeout=timeout)


def _write(path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))


def test_script_sees_torch_as_chainrule_with_argv_main_and_its_own_modules(tmp_path):
    _write(tmp_path / "prog" / "helper.py", """
        import torch
        SCALE = 3.0
        def double(t):
            return torch.mul(t, 2)
    """)
    _write(tmp_path / "prog" / "train.py", """
        import sys, os
        import torch
        import torch.nn as nn
        import torch.nn.functional as F
        from torch.utils.data import DataLoader, TensorDataset
        from torch.nn.modules.linear import Linear
        import torch.optim as optim
        import torch.autograd, torch.func
        import torch.nn.parallel, torch.distributed, torch.backends, torch.cuda.amp
        from torch.cuda.amp import GradScaler
        import chainrule
        import helper
        assert torch is chainrule, torch
        assert nn is chainrule.nn and F is chainrule.nn.functional
        assert Linear is chainrule.nn.Linear and optim is chainrule.optim
        assert DataLoader is chainrule.data.DataLoader
        assert torch.utils.data.DataLoader is DataLoader
        assert GradScaler is chainrule.cuda.amp.GradScaler
        assert sys.modules["torch.nn"] is chainrule.nn
        x = torch.ones(2, requires_grad=True)
        F.relu(helper.double(x)).sum().backward()
        assert x.grad.tolist() == [2.0, 2.0]
        print("name", __name__)
        print("argv", sys.argv)
        print("path0", sys.path[0])
        print("file", __file__)
    """)
    r = _run(["prog/train.py", "--lr", "0.1", "x"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    lines = dict(line.split(" ", 1) for line in r.stdout.splitlines())
    assert lines["name"] == "__main__"
    assert lines["argv"] == str(["prog/train.py", "--lr", "0.1", "x"])
    assert lines["path0"] == str(tmp_path / "prog")
    assert lines["file"] == str(tmp_path / "prog" / "train.py")  # absolute, as `python` gives it


def test_module_mode_runs_dash_m_with_cwd_on_path(tmp_path):
    _write(tmp_path / "pkg" / "__init__.py", "")
    _write(tmp_path / "pkg" / "util.py", "VALUE = 7\n")
    _write(tmp_path / "pkg" / "main.py", """
        import sys
        import torch
        from .util import VALUE
        if __name__ == "__main__":
            print(VALUE, torch.tensor([1.0, 2.0]).sum().item(), sys.argv[1:])
            print(sys.argv[0].endswith("main.py"), sys.path[0])
    """)
    r = _run(["-m", "pkg.main", "a", "--b"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    first, second = r.stdout.splitlines()
    assert first == "7 3.0 ['a', '--b']"
    assert second == f"True {tmp_path}"


@pytest.mark.parametrize("body, code", [
    ("import sys\nsys.exit(3)\n", 3),
    ("import sys\nsys.exit()\n", 0),
    ("raise SystemExit('bye')\n", 1),
    ("print('fine')\n", 0),
])
def test_exit_status_is_pythons(tmp_path, body, code):
    _write(tmp_path / "p.py", body)
    r = _run(["p.py"], cwd=tmp_path)
    assert r.returncode == code, r.stderr
    if "bye" in body:
        assert r.stderr.strip() == "bye"


def test_uncaught_exception_prints_the_programs_traceback_exit_1(tmp_path):
    _write(tmp_path / "p.py", """
        import torch
        def f():
            raise ValueError("boom")
        f()
    """)
    r = _run(["p.py"], cwd=tmp_path)
    assert r.returncode == 1
    assert r.stderr.startswith("Traceback (most recent call last):")
    assert "ValueError: boom" in r.stderr and 'p.py", line 5' in r.stderr
    assert "run_command" not in r.stderr and "runpy" not in r.stderr


@pytest.mark.parametrize("line, name", [
    ("loss = torch.nn.NoSuchLoss()", "torch.nn.NoSuchLoss"),
    ("from torch.nn import NoSuchLoss", "torch.nn.NoSuchLoss"),
    ("import torch.no_such_module", "torch.no_such_module"),
    ("torch.no_such_function(1)", "torch.no_such_function"),
    ("torch.ones(2).no_such_method()", "torch.Tensor.no_such_method"),
    ("torch.utils.data.NoSuchSampler", "torch.utils.data.NoSuchSampler"),
])
def test_missing_torch_name_is_one_line_naming_it_and_the_program_line(tmp_path, line, name):
    _write(tmp_path / "train.py", f"import torch\nimport torch.nn\n\n{line}\n")
    r = _run(["train.py"], cwd=tmp_path)
    assert r.returncode == 1
    assert r.stderr == f"chainrule run: {name} is not implemented by chainrule (train.py:4)\n"


def test_missing_name_in_the_programs_own_module_points_there(tmp_path):
    _write(tmp_path / "model.py", "import torch\n\nclass M(torch.nn.NoSuchLayer):\n    pass\n")
    _write(tmp_path / "train.py", "import model\n")
    r = _run(["train.py"], cwd=tmp_path)
    assert r.returncode == 1
    assert r.stderr == ("chainrule run: torch.nn.NoSuchLayer is not implemented by chainrule "
                        "(model.py:3)\n")


def test_hasattr_and_try_import_of_missing_names_still_work(tmp_path):
    _write(tmp_path / "p.py", """
        import torch
        assert not hasattr(torch.nn, "NoSuchThing")
        try:
            import torch.no_such_module
        except ImportError:
            print("fallback")
    """)
    r = _run(["p.py"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "fallback\n"


def test_bad_usage(tmp_path):
    r = _run([], cwd=tmp_path)
    assert r.returncode == 2 and "usage: chainrule run" in r.stderr
    r = _run(["missing.py"], cwd=tmp_path)
    assert r.returncode == 2 and "can't open file" in r.stderr
    r = _run(["-h"], cwd=tmp_path)
    assert r.returncode == 0 and "usage: chainrule run" in r.stdout


def test_nothing_is_installed_as_torch_outside_chainrule_run():
    code = textwrap.dedent("""
        import importlib.util, sys
        import chainrule, chainrule.torch_alias as alias
        real = importlib.util.find_spec("torch")
        alias.install()
        import torch
        assert torch is chainrule
        import torch.nn
        assert sys.modules["torch.nn"] is chainrule.nn
        alias.uninstall()
        assert "torch" not in sys.modules and "torch.nn" not in sys.modules
        if real is None:
            try:
                import torch
            except ImportError:
                print("no torch")
        else:
            import torch
            assert torch is not chainrule and hasattr(torch, "_C")
            print("real torch")
    """)
    r = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == ("real torch" if importlib.util.find_spec("torch") else "no torch")


def test_cli_lists_run():
    from chainrule.cli import build_parser

    assert "run" in build_parser().format_help()
