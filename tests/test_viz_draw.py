"""cr.viz.draw: the DOT source has the lecture's circuit (values in green, gradients in red)."""

import re
import shutil

import numpy as np
import pytest

pytest.importorskip("graphviz")

import chainrule as cr  # noqa: E402
from chainrule.viz import draw, record  # noqa: E402
from chainrule.viz.draw import FLAG, GREEN, RED  # noqa: E402
from square_gates import GoodSquare  # noqa: E402

HAS_DOT = shutil.which("dot") is not None


def _edges(src: str) -> dict:
    """(tail, head) -> [value text, gradient text] parsed from the DOT source."""
    out = {}
    for m in re.finditer(r"^\s*(\w+) -> (\w+)(?: \[(.*)\])?$", src, re.M):
        attrs = m.group(3) or ""
        texts = re.findall(r'<font color="(#\w+)">([^<]*)</font>', attrs)
        out[(m.group(1), m.group(2))] = {color: text for color, text in texts}
    return out


def _nodes(src: str) -> dict:
    """node id -> its attribute text."""
    return {m.group(1): m.group(2) for m in re.finditer(r"^\s*(\w+) \[(.*)\]$", src, re.M)
            if "->" not in m.group(0)}


def _xyz():
    with record():
        x = cr.tensor(-2.0, requires_grad=True)
        y = cr.tensor(5.0, requires_grad=True)
        z = cr.tensor(-4.0, requires_grad=True)
        f = (x + y) * z
    return x, y, z, f


def test_x_plus_y_times_z_structure_and_numbers():
    x, y, z, f = _xyz()
    src = draw(f, names={x: "x", y: "y", z: "z"}).source
    assert "rankdir=LR" in src
    nodes = _nodes(src)
    assert [nodes[k].split()[0] for k in ("l0", "l1", "l2")] == ["label=x", "label=y", "label=z"]
    assert "Add" in nodes["g0"] and "Mul" in nodes["g1"]
    e = _edges(src)
    assert e[("l0", "g0")] == {GREEN: "-2", RED: "-4"}
    assert e[("l1", "g0")] == {GREEN: "5", RED: "-4"}
    assert e[("g0", "g1")] == {GREEN: "3", RED: "-4"}
    assert e[("l2", "g1")] == {GREEN: "-4", RED: "3"}
    assert e[("g1", "out0")] == {GREEN: "-12", RED: "1"}
    assert len(e) == 5


def test_after_backward_intermediate_gradients_are_still_drawn_when_recorded():
    x, y, z, f = _xyz()
    f.backward()
    e = _edges(draw(f).source)
    assert e[("g0", "g1")] == {GREEN: "3", RED: "-4"}
    assert e[("l0", "g0")][RED] == "-4" and float(x.grad) == -4


def test_without_record_after_backward_leaves_use_grad_and_a_note_explains():
    x = cr.tensor(2.0, requires_grad=True)
    w = cr.tensor(3.0, requires_grad=True)
    f = (x * w).exp()
    f.backward()
    g = draw(f, names={x: "x", w: "w"})
    e = _edges(g.source)
    assert e[("l0", "g0")] == {GREEN: "2", RED: f"{float(x.grad):.4g}"}
    assert RED not in e[("g0", "g1")]
    assert any("freed the graph" in n for n in g.notes)


def test_sigmoid_neuron_gradients_match_torch():
    torch = pytest.importorskip("torch")
    vals = [2.0, -1.0, -3.0, -2.0, -3.0]
    with record():
        w0, x0, w1, x1, w2 = (cr.tensor(v, dtype=cr.float64, requires_grad=True) for v in vals)
        f = cr.sigmoid(w0 * x0 + w1 * x1 + w2)
    e = _edges(draw(f).source)
    tw0, tx0, tw1, tx1, tw2 = (torch.tensor(v, dtype=torch.float64, requires_grad=True)
                               for v in vals)
    dot = tw0 * tx0 + tw1 * tx1 + tw2
    dot.retain_grad()
    torch.sigmoid(dot).backward()
    into_sigmoid = [v for (a, b), v in e.items() if b == "g4"][0]
    assert into_sigmoid[GREEN] == "1"
    assert float(into_sigmoid[RED]) == pytest.approx(dot.grad.item(), abs=1e-4)
    assert float(e[("l0", "g0")][RED]) == pytest.approx(tw0.grad.item(), abs=1e-4)
    assert e[("g4", "out0")][GREEN] == "0.7311"


def test_large_tensors_are_summarised_with_mean_min_max_and_grad_norm():
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    with record():
        x = cr.tensor(a, requires_grad=True)
        f = (x * 2.0).sum()
    e = _edges(draw(f).source)
    assert e[("l0", "g0")][GREEN] == "[3×4] μ=5.5 min=0 max=11"
    assert e[("l0", "g0")][RED] == f"[3×4] ‖g‖={np.sqrt(12 * 4):.3g}"


def test_nan_and_inf_are_flagged_in_colour():
    with np.errstate(all="ignore"), record():
        x = cr.tensor([1.0, -1.0], requires_grad=True)
        f = cr.log(x).sum()
    src = draw(f).source
    e = _edges(src)
    assert e[("g0", "g1")][FLAG] == "[0, nan] ⚠ NaN×1"
    assert re.search(r'g0 -> g1 \[.*color="' + FLAG + '".*penwidth=2', src)


def test_custom_function_gets_a_dashed_cluster():
    with record():
        x = cr.tensor(3.0, requires_grad=True)
        f = GoodSquare.apply(x) + 1.0
    src = draw(f).source
    assert re.search(r'subgraph cluster_\d+ \{\s*[^}]*label="Function GoodSquare" style=dashed',
                     src)
    assert _edges(src)[("l0", "g0")] == {GREEN: "3", RED: "6"}


def _net():
    nn = pytest.importorskip("chainrule.nn")

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(3, 4), nn.Linear(4, 1)

        def forward(self, x):
            return self.fc2(self.fc1(x).tanh())

    cr.manual_seed(0)
    return Net()


def test_module_clusters_are_labelled_and_parameters_named():
    net = _net()
    with record():
        out = net(cr.randn(2, 3)).sum()
    src = draw(out).source
    assert 'label=Net style="rounded,filled"' in src
    assert 'label="Linear (fc1)"' in src and 'label="Linear (fc2)"' in src
    assert 'label="fc1.weight [4, 3]"' in src and 'label="fc2.bias [1]"' in src


def test_collapse_draws_each_module_as_one_box():
    net = _net()
    with record():
        out = net(cr.randn(2, 3)).sum()
    src = draw(out, collapse=True).source
    boxes = re.findall(r"label=(\S+) fillcolor=\"#eef2ff\" shape=box3d", src)
    assert boxes == ["Net"]
    src2 = draw(out, collapse=2).source
    boxes2 = re.findall(r'label="([^"]+)" fillcolor="#eef2ff" shape=box3d', src2)
    assert sorted(boxes2) == ["Linear (fc1)", "Linear (fc2)"]
    assert "Tanh" in src2 and "cluster" in src2


def test_repeated_chain_is_folded():
    with record():
        x = cr.tensor(1.0, requires_grad=True)
        h = x
        for _ in range(50):
            h = (h * 0.9 + 0.1).tanh()
    src = draw(h).source
    assert "Mul → Add → Tanh  ×50" in src
    assert len(_edges(src)) == 2


def test_node_limit_keeps_nodes_near_the_output_with_a_note():
    with record():
        x = cr.tensor(1.0, requires_grad=True)
        h = x
        for _ in range(40):
            h = (h * 0.9 + 0.1).tanh()
    g = draw(h, fold=False, max_nodes=10)
    gates = re.findall(r"^\s*g\d+ \[", g.source, re.M)
    assert len(gates) == 10
    assert "110 more gates not drawn (max_nodes=10)" in g.source
    assert any("max_nodes" in n for n in g.notes)


def test_bad_arguments_are_clear_errors():
    with pytest.raises(TypeError, match="draw"):
        draw(3.0)
    x = cr.tensor(1.0, requires_grad=True)
    with pytest.raises(ValueError, match="format"):
        draw(x * 2, format="jpg2000")


@pytest.mark.skipif(not HAS_DOT, reason="graphviz dot not installed")
@pytest.mark.parametrize("fmt, magic", [("svg", b"<svg"), ("png", b"\x89PNG"), ("pdf", b"%PDF")])
def test_real_render_with_dot(tmp_path, fmt, magic):
    *_, f = _xyz()
    path = tmp_path / f"circuit.{fmt}"
    draw(f, path=str(path), format=fmt)
    data = path.read_bytes()
    assert magic in data[:400]
    if fmt == "svg":
        text = data.decode()
        assert "Mul" in text and re.search(r">(-|&#45;)12</text>", text)


@pytest.mark.skipif(not HAS_DOT, reason="graphviz dot not installed")
def test_notebook_repr_svg():
    *_, f = _xyz()
    assert "<svg" in draw(f)._repr_svg_()


def test_without_dot_writes_source_and_says_how_to_install(tmp_path, monkeypatch, capsys):
    import sys

    d = sys.modules["chainrule.viz.draw"]

    monkeypatch.setattr(d.shutil, "which", lambda name: None)
    *_, f = _xyz()
    draw(f, path=str(tmp_path / "c.svg"))
    assert (tmp_path / "c.dot").read_text().startswith("digraph")
    assert not (tmp_path / "c.svg").exists()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "apt-get install graphviz" in err[0] and "brew" in err[0]


def test_show_lecture_circuits_prints_staged_code_and_writes_diagrams(tmp_path, capsys):
    from chainrule.viz.demo import show_lecture_circuits

    paths = show_lecture_circuits(str(tmp_path))
    out = capsys.readouterr().out
    assert "sigx = 1/(1+exp(-x))" in out and "df/dx0 = 0.3932" in out
    assert len(paths) == 4
    ext = ".svg" if HAS_DOT else ".dot"
    for p in paths:
        assert p.endswith(ext)
        head = open(p, encoding="utf-8").read(2000)
        assert ("<svg" in head) if HAS_DOT else head.startswith("digraph")


def test_lecture_gate_labels_show_constants():
    from chainrule.viz.demo import draw_circuit

    src = draw_circuit("sigmoid_neuron").source
    assert "<b>+1</b>" in src and "<b>1/x</b>" in src and "<b>exp</b>" not in src
