"""docs/lecture.md is executable: every >>> example runs and its output must match."""

import doctest
import io
import os
import re
import warnings

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(ROOT, "docs", "lecture.md")


def _text() -> str:
    with open(DOC, encoding="utf-8") as f:
        return f.read()


def _split(text: str) -> tuple[str, str]:
    """(code inside fenced blocks, prose outside them)."""
    code, prose = [], []
    for k, part in enumerate(re.split(r"^```.*$", text, flags=re.M)):
        (code if k % 2 else prose).append(part)
    return "\n".join(code), "\n".join(prose)


def test_every_example_in_the_lecture_runs_and_matches():
    parser = doctest.DocTestParser()
    test = parser.get_doctest(_text(), {}, "lecture.md", DOC, 0)
    assert len(test.examples) >= 60
    out = io.StringIO()
    runner = doctest.DocTestRunner(
        optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        result = runner.run(test, out=out.write)
    assert result.failed == 0, out.getvalue()


def test_doctest_would_catch_a_drifted_number():
    text = _text().replace("(2.0596, 1.5922)", "(2.0597, 1.5922)", 1)
    test = doctest.DocTestParser().get_doctest(text, {}, "drifted", DOC, 0)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        assert runner.run(test, out=lambda s: None).failed == 1


def test_numbers_in_the_prose_are_produced_by_the_code():
    code, prose = _split(_text())
    prose = re.sub(r"\(img/[^)]*\)", "", prose)
    numbers = set(re.findall(r"-?\d+\.\d+|-\d+", prose))
    assert {"-0.2", "0.39", "-0.59", "0.73", "-12", "-8", "-3"} <= numbers
    missing = sorted(n for n in numbers if n not in code)
    assert not missing, f"numbers in the prose that no example prints: {missing}"


@pytest.mark.parametrize("topic", [
    "f(x, y) = xy", "limit", "sensitivity", "max(x, y)", "(x + y) z", "sigmoid", "cache",
    "add up at forks", "add gate", "max gate", "multiply gate", "dD Xᵀ",
])
def test_the_lecture_covers(topic):
    assert topic.lower() in _text().lower()


def test_the_embedded_circuit_exists():
    assert "img/sigmoid_neuron.svg" in _text()
    with open(os.path.join(ROOT, "docs", "img", "sigmoid_neuron.svg"), encoding="utf-8") as f:
        assert "<svg" in f.read(2000)
