"""bench/api_coverage.py runs, and chainrule's share of PyTorch's API never drops below the
counts committed in BENCHMARKS.md (rerun ``python bench/api_coverage.py --write`` after adding)."""

from __future__ import annotations

import pathlib
import re
import sys

import pytest

pytest.importorskip("torch")

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import api_coverage  # noqa: E402


def _committed() -> dict:
    text = (ROOT / "BENCHMARKS.md").read_text(encoding="utf-8")
    start, end = (f"<!-- {api_coverage.SECTION}:{k} -->" for k in ("start", "end"))
    body = text.split(start, 1)[1].split(end, 1)[0]
    rows = {}
    for m in re.finditer(r"^\| `([\w.]+)` \| (\d+) \| (\d+) \| (\d+) \| (\d+) \|", body, re.M):
        rows[m.group(1)] = int(m.group(5))
    return rows


@pytest.fixture(scope="module")
def rows() -> list:
    return api_coverage.measure()


def test_every_namespace_is_measured(rows) -> None:
    assert [r["namespace"] for r in rows] == [ns for ns, _ in api_coverage.NAMESPACES]
    for r in rows:
        assert r["measured"] + len(r["excluded"]) + r["inplace"] == r["public"]
        assert r["have"] + len(r["missing"]) == r["measured"]


def test_coverage_does_not_drop(rows) -> None:
    committed = _committed()
    assert set(committed) == {r["namespace"] for r in rows}
    dropped = {r["namespace"]: (committed[r["namespace"]], r["have"]) for r in rows
               if r["have"] < committed[r["namespace"]]}
    assert not dropped, f"fewer PyTorch names than BENCHMARKS.md says (was, now): {dropped}"


def test_every_exclusion_has_a_reason() -> None:
    for group in api_coverage.load_exclusions():
        assert group["reason"].strip() and group["names"] and group["namespaces"]
        known = {ns for ns, _ in api_coverage.NAMESPACES}
        assert set(group["namespaces"]) <= known


def test_the_script_prints_its_table(capsys) -> None:
    assert api_coverage.main([]) == 0
    out = capsys.readouterr().out
    assert "| `torch.linalg` |" in out and "| all |" in out
