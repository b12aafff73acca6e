"""cr.viz.html: the self-contained interactive page, checked as data and in a real browser.

The browser test drives Debian's Chromium (installed by .ci/run) with Playwright; it skips
where either is missing. With CHAINRULE_DOC_IMAGES=1 it also writes the screenshot shown in
README.md and docs/lecture.md (docs/img/lecture_page.png).
"""

import json
import os
import re
import shutil

import numpy as np
import pytest

import chainrule as cr
from chainrule.viz.html import html

DOC_IMAGE = os.path.join(os.path.dirname(__file__), "..", "docs", "img", "lecture_page.png")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _neuron():
    w0 = cr.tensor(2.0, requires_grad=True)
    x0 = cr.tensor(-1.0, requires_grad=True)
    w1 = cr.tensor(-3.0, requires_grad=True)
    x1 = cr.tensor(-2.0, requires_grad=True)
    w2 = cr.tensor(-3.0, requires_grad=True)
    f = 1 / (1 + cr.exp(-(w0 * x0 + w1 * x1 + w2)))
    f.backward()
    return [w0, x0, w1, x1, w2], f


def _steps(page: str) -> dict:
    m = re.search(r'<script type="application/json" id="cr-steps">(.*?)</script>', page, re.S)
    return json.loads(m.group(1))


def test_the_page_is_self_contained(tmp_path):
    _, f = _neuron()
    page = html(f, str(tmp_path / "p.html"), title="The sigmoid neuron")
    assert (tmp_path / "p.html").read_text(encoding="utf-8") == page
    assert page.startswith("<!DOCTYPE html>") and "<svg" in page
    assert not re.search(r"<link|\ssrc=|\shref=|@import|url\((?!#)", page)  # nothing fetched
    assert re.findall(r"https?://[^\"' ]+", page) == ["http://www.w3.org/2000/svg"]


def test_steps_go_forward_value_by_value_then_backward_gate_by_gate():
    (w0, x0, w1, x1, w2), f = _neuron()  # the page names them after these variables
    leaves = [w0, x0, w1, x1, w2]
    data = _steps(html(f))
    st = data["steps"]
    forward = [s for s in st if s["phase"] == "forward"]
    backward = [s for s in st if s["phase"] == "backward"]
    assert data["forward"] == len(forward) == 5 + 8  # 5 inputs, 8 gates
    assert [s["title"] for s in forward[:5]] == [f"Input {n}" for n in
                                                 ("w0", "x0", "w1", "x1", "w2")]
    assert forward[5]["lines"][:3] == ["w0tx0 = w0 * x0", "   = 2 * (-1)", "   = -2"]
    # seed, 8 gates, the summary
    assert len(backward) == 10 and backward[0]["lines"][0].startswith("∂f/∂f = 1")
    exp_step = next(s for s in backward if s["title"].startswith("Gate exp"))
    assert exp_step["lines"][1] == ("→ negt: local gradient ∂expnegt/∂negt = expnegt = 0.3679; "
                                    "chain rule: 0.3679 × (-0.5344) = -0.1966")
    mul = [s for s in backward if s["title"].startswith("Gate × ")][-1]
    assert "→ x0: local gradient ∂w0tx0/∂x0 = w0 = 2; chain rule: 2 × 0.1966 = 0.3932" in mul[
        "lines"]
    assert backward[-1]["lines"][:5] == [f"∂f/∂{n} = {t.grad.item():.4g}" for n, t in
                                         zip(("w0", "x0", "w1", "x1", "w2"), leaves)]
    every_wire = {w for s in st for w in s["values"]}
    assert len(every_wire) == 13 and {w for s in st for w in s["grads"]} == every_wire


def test_forks_say_that_gradients_add_up():
    x = cr.tensor(3.0, requires_grad=True)
    y = cr.tensor(-4.0, requires_grad=True)
    f = (x + cr.sigmoid(y)) / (cr.sigmoid(x) + (x + y) ** 2)
    f.backward()
    lines = [line for s in _steps(html(f))["steps"] for line in s["lines"]]
    adds = [line for line in lines if "x feeds 3 wires: gradients add up at the fork" in line]
    assert len(adds) == 3 and adds[-1].endswith(f"∂f/∂x so far = {x.grad.item():.4g}")
    assert [line for line in lines if "y feeds 2 wires" in line][-1].endswith(
        f"∂f/∂y so far = {y.grad.item():.4g}")


def _launch(p):
    args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-dev-shm-usage"]
    return p.chromium.launch(executable_path=CHROMIUM, args=args)


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run does)")
def test_in_a_real_browser_stepping_highlights_and_numbers_equal_chainrule(tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    (w0, x0, w1, x1, w2), f = _neuron()
    leaves = [w0, x0, w1, x1, w2]
    path = tmp_path / "neuron.html"
    html(f, str(path), title="The sigmoid neuron: step through backprop")
    n_steps = len(_steps(path.read_text(encoding="utf-8"))["steps"])
    with sync_api.sync_playwright() as p:
        browser = _launch(p)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 540})
            errors = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(path.as_uri())
            page.wait_for_selector("#title:not(:empty)")

            def current() -> list:
                return page.eval_on_selector_all(".current", "els => els.map(e => e.id)")

            def visible(sel: str) -> int:
                return page.eval_on_selector_all(
                    sel, "els => els.filter(e => getComputedStyle(e).visibility === "
                         "'visible').length")

            assert current() == ["l0", "w0"] or sorted(current()) == ["l0", "w0"]
            assert page.inner_text("#title") == "Input w0"
            assert visible("text.value") == 1 and visible("text.grad") == 0
            seen = [tuple(current())]
            for _ in range(12):  # the rest of the forward pass: each step moves the highlight
                page.click("#next")
                seen.append(tuple(current()))
            assert len(set(seen)) == 13 and visible("text.value") == 13
            assert visible("text.grad") == 0
            assert "forward pass, step 13 of 13" in page.inner_text("#counter")
            page.keyboard.press("ArrowRight")  # the seed
            assert visible("text.grad") == 1
            for _ in range(3):  # 1/x, +1, exp
                page.keyboard.press("ArrowRight")
            assert page.inner_text("#title") == "Gate exp (Exp) sends gradients to its inputs"
            assert "chain rule: 0.3679 × (-0.5344) = -0.1966" in page.inner_text("#lines")
            page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
            if os.environ.get("CHAINRULE_DOC_IMAGES") == "1":
                page.screenshot(path=DOC_IMAGE, full_page=True)
            page.click("#last")
            assert page.get_attribute("body", "data-step") == str(n_steps - 1)
            assert visible("text.grad") == 13
            # the numbers on the page equal chainrule's: shown rounded, kept in full
            names = {b: page.eval_on_selector(f"#{b} text", "e => e.childNodes[0].nodeValue")
                     for b in ("l0", "l1", "l2", "l3", "l4")}
            shown = page.eval_on_selector_all(
                ".wire", "els => els.map(e => [e.getAttribute('data-src'), "
                         "e.querySelector('text.grad').textContent, e.getAttribute('data-grad')])")
            by_name = {names[s]: (text, json.loads(full)) for s, text, full in shown
                       if s in names}
            for name, leaf in zip(("w0", "x0", "w1", "x1", "w2"), leaves):
                text, full = by_name[name]
                assert text == f"{leaf.grad.item():.4g}"
                np.testing.assert_allclose(full, [leaf.grad.item()], rtol=1e-6)
            page.click("#prev")
            assert page.get_attribute("body", "data-step") == str(n_steps - 2)
            page.click("#first")
            assert visible("text.grad") == 0 and page.inner_text("#title") == "Input w0"
            assert errors == []
        finally:
            browser.close()


def test_tensor_circuits_show_statistics_and_the_rule_of_each_gate():
    cr.manual_seed(0)
    net = cr.nn.Sequential(cr.nn.Linear(3, 4), cr.nn.ReLU(), cr.nn.Linear(4, 1))
    loss = net(cr.randn(2, 3)).pow(2).mean()
    loss.backward()
    st = _steps(html(loss))["steps"]
    text = "\n".join(line for s in st for line in s["lines"])
    assert "?" not in text
    assert "local gradient dy @ W  (y = x Wᵀ + b)" in text and "local gradient 2*linear2" in text
    assert "local gradient 1/2 for every element" in text
    g = net[0].weight.grad.numpy()
    assert f"∂loss/∂0.weight = [4×3] ‖g‖={np.sqrt((g * g).sum()):.3g}" in text  # named as in here
