"""Inside ``chainrule run`` a program prints what it would print under torch: dtypes, Size,
``Tensor.type()`` and tensor reprs say ``torch.`` (the program's torch is chainrule); outside,
chainrule's own reprs say ``chainrule.``. ``finfo.resolution`` is torch's (10^-precision)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import chainrule as cr

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROGRAM = textwrap.dedent("""
    import torch
    x = torch.ones(2, 3, dtype=torch.float64)
    print(x.dtype, x.shape, x.size(), x.type(), torch.int32, torch.finfo(torch.float32))
    print(x.to(torch.bfloat16), torch.zeros(0, 2, dtype=torch.int32))
    print(str(x.dtype) == "torch.float64", repr(torch.float16))
""")


def test_reprs_inside_chainrule_run_are_torchs(tmp_path) -> None:
    (tmp_path / "prog.py").write_text(PROGRAM)
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    ours = subprocess.run([sys.executable, "-m", "chainrule", "run", "prog.py"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=120)
    assert ours.returncode == 0, ours.stderr
    assert "torch.Size([2, 3]) torch.Size([2, 3]) torch.DoubleTensor torch.int32" in ours.stdout
    assert "chainrule" not in ours.stdout
    try:
        import torch  # noqa: F401
    except ImportError:
        return
    theirs = subprocess.run([sys.executable, "prog.py"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=120)
    assert ours.stdout == theirs.stdout


def test_reprs_outside_run_name_chainrule() -> None:
    x = cr.ones(2, dtype=cr.float64)
    assert repr(cr.float32) == "chainrule.float32"
    assert repr(x.shape) == "chainrule.Size([2])" and x.type() == "chainrule.DoubleTensor"
    assert "dtype=chainrule.float64" in repr(x)
    assert [cr.finfo(d).resolution for d in (cr.float16, cr.float32, cr.float64)] == \
        [0.001, 1e-06, 1e-15]
