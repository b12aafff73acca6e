"""cr.viz.draw: every wire's value and gradient, as the lecture draws them, after backward()."""

import re
import shutil
import xml.etree.ElementTree as ET

import numpy as np
import pytest

import chainrule as cr
from chainrule.autograd import graph
from chainrule.viz import Diagram, draw, record
from chainrule.viz.render import FLAG, GREEN, RED
from square_gates import GoodSquare

SVG = "{http://www.w3.org/2000/svg}"


def _wires(d: Diagram) -> dict:
    """wire id -> (src box label, dst box id, value text, gradient text) from the SVG."""
    root = ET.fromstring(d.svg())
    labels = {b.id: b.label for b in d.circuit.boxes}
    out = {}
    for g in root.iter(f"{SVG}g"):
        if g.get("class") != "wire":
            continue
        texts = {t.get("class"): t.text for t in g.iter(f"{SVG}text")}
        out[g.get("id")] = (labels.get(g.get("data-src")), g.get("data-dst"),
                            texts.get("value"), texts.get("grad"))
    return out


def _by_src(d: Diagram) -> dict:
    return {src: (v, g) for src, _, v, g in _wires(d).values()}


def _neuron():
    w0 = cr.tensor(2.0, requires_grad=True)
    x0 = cr.tensor(-1.0, requires_grad=True)
    w1 = cr.tensor(-3.0, requires_grad=True)
    x1 = cr.tensor(-2.0, requires_grad=True)
    w2 = cr.tensor(-3.0, requires_grad=True)
    f = 1 / (1 + cr.exp(-(w0 * x0 + w1 * x1 + w2)))
    f.backward()
    return (w0, x0, w1, x1, w2), f


def test_after_backward_every_wire_of_the_sigmoid_neuron_has_value_and_gradient():
    torch = pytest.importorskip("torch")
    (w0, x0, w1, x1, w2), f = _neuron()  # the natural order: backward() first, then draw
    d = draw(f)
    wires = _wires(d)
    assert len(wires) == 13
    assert all(v is not None and g is not None for _, _, v, g in wires.values()), wires
    assert not d.notes
    # leaves carry the caller's variable names, each with its value and its gradient
    by = _by_src(d)
    assert by["w0"] == ("2", f"{w0.grad.item():.4g}") == ("2", "-0.1966")
    assert by["x0"] == ("-1", "0.3932") and by["w1"] == ("-3", "-0.3932")
    assert by["x1"] == ("-2", "-0.5898") and by["w2"] == ("-3", "0.1966")
    # the lecture's gates and the numbers on their output wires, against torch
    tw = [torch.tensor(v, dtype=torch.float64, requires_grad=True)
          for v in (2.0, -1.0, -3.0, -2.0, -3.0)]
    steps = [tw[0] * tw[1] + tw[2] * tw[3] + tw[4]]
    steps += [-steps[0]]
    steps += [steps[-1].exp()]
    steps += [1 + steps[-1]]
    steps += [1 / steps[-1]]
    for t in steps:
        t.retain_grad()
    steps[-1].backward()
    for label, t in zip(["+", "−x", "exp", "+1", "1/x"], steps):
        v, g = by[label]
        assert (v, g) == (f"{t.item():.4g}", f"{t.grad.item():.4g}"), label
    assert by["1/x"] == ("0.7311", "1")


def test_the_graph_still_refuses_a_second_backward():
    _, f = _neuron()
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        f.backward()
    draw(f)  # drawing does not bring the freed values back for good
    with pytest.raises(RuntimeError, match="second time"):
        f.backward()


def test_vector_leaves_show_their_wires_and_their_total_gradient():
    w = cr.tensor([2.0, -3.0, -3.0], requires_grad=True)
    x = cr.tensor([-1.0, -2.0], requires_grad=True)
    f = cr.sigmoid(w[0] * x[0] + w[1] * x[1] + w[2])
    f.backward()
    d = draw(f)
    leaf = {b.label: b for b in d.circuit.boxes if b.kind == "leaf"}
    assert set(leaf) == {"w", "x"}
    np.testing.assert_allclose(leaf["w"].grad, w.grad.numpy())
    np.testing.assert_allclose(leaf["x"].grad, x.grad.numpy())
    svg = d.svg()
    assert f">Σ [{', '.join(f'{v:.4g}' for v in w.grad.tolist())}]<" in svg
    index_wires = [v for k, (s, _, v, g) in _wires(d).items() if s == "w"]
    assert len(index_wires) == 3  # one wire per use, each with its part of the gradient
    gates_ = {b.label for b in d.circuit.boxes if b.kind == "gate"}
    assert {"[0]", "[1]", "[2]", "σ"} <= gates_


def test_names_from_name_argument_names_dict_and_intermediates():
    a = cr.tensor(2.0, requires_grad=True, name="w0")
    b = cr.tensor(-1.0, requires_grad=True)
    h = a * b
    h.name = "prod"
    out = (h + 1.0).tanh()
    out.backward()
    d = draw(out, names={"x0": b})
    labels = {bx.label for bx in d.circuit.boxes if bx.kind == "leaf"}
    assert labels == {"w0", "x0"}
    assert any(v == "prod = -2" for _, _, v, _ in _wires(d).values())
    assert a.name == "w0" and b.name is None and cr.zeros(2, name="z").name == "z"
    with pytest.raises(TypeError, match="name must be a str"):
        a.name = 3


def test_names_come_from_the_callers_variables_inside_a_function():
    def model():
        weight = cr.tensor([0.5, -1.0], requires_grad=True)
        xs = [cr.tensor(1.0, requires_grad=True), cr.tensor(2.0, requires_grad=True)]
        logit = weight[0] * xs[0] + weight[1] * xs[1]
        out = cr.sigmoid(logit)
        return draw(out)

    d = model()
    assert {b.label for b in d.circuit.boxes if b.kind == "leaf"} == {"weight", "xs[0]", "xs[1]"}
    assert any(v and v.startswith("logit = ") for _, _, v, _ in _wires(d).values())
    assert [b.label for b in d.circuit.boxes if b.kind == "output"] == ["out"]


def _net():
    nn = cr.nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(3, 4), nn.Linear(4, 1)

        def forward(self, x):
            return self.fc2(self.fc1(x).tanh())

    cr.manual_seed(0)
    return Net()


def test_mlp_after_backward_every_wire_carries_value_and_gradient():
    net = _net()
    x = cr.randn(2, 3)
    loss = net(x).pow(2).mean()
    loss.backward()
    d = draw(loss)
    wires = _wires(d)
    assert all(v is not None for _, _, v, _ in wires.values())
    assert all(g is not None for s, _, _, g in wires.values() if s != "x")  # x: no gradient
    linear_to_tanh = [w for w in d.circuit.wires if w.src in {
        b.id for b in d.circuit.boxes if b.gate is not None and type(b.gate).__name__ == "Linear"}
        and w.dst in {b.id for b in d.circuit.boxes if b.label == "tanh"}]
    (w,) = linear_to_tanh
    h = net.fc1(x)
    np.testing.assert_allclose(w.value, h.detach().numpy(), rtol=1e-6)
    assert {b.label for b in d.circuit.boxes if b.kind in ("leaf", "const")} == {
        "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias", "x"}
    (w_fc1,) = [w for w in d.circuit.wires if w.key == id(net.fc1.weight)]
    np.testing.assert_allclose(w_fc1.grad, net.fc1.weight.grad.numpy(), rtol=1e-6)
    np.testing.assert_allclose(w_fc1.value, net.fc1.weight.detach().numpy())
    labels = {c.label for c in d.circuit.clusters.values()}
    assert labels == {"Net", "Linear (fc1)", "Linear (fc2)"}


def test_a_wide_mlp_wraps_into_rows_layer_by_layer():
    net = _net()
    loss = net(cr.randn(2, 3)).pow(2).mean()
    d = draw(loss, max_width=700)
    assert d.drawing.layout.rows >= 2
    boxes = d.drawing.layout.boxes
    fc = [b for b in d.circuit.boxes if b.gate is not None and type(b.gate).__name__ == "Linear"]
    assert boxes[fc[0].id].y < boxes[fc[1].id].y  # fc1 on a row above fc2
    assert draw(loss, max_width=None).drawing.layout.rows == 1


def _overlap(a, b) -> bool:
    return (abs(a.x - b.x) * 2 < a.w + b.w - 0.5) and (abs(a.y - b.y) * 2 < a.h + b.h - 0.5)


@pytest.mark.parametrize("case", ["neuron", "mlp", "fork"])
def test_labels_sit_on_their_own_wire_and_overlap_nothing(case):
    if case == "neuron":
        _, out = _neuron()
    elif case == "mlp":
        out = _net()(cr.randn(2, 3)).pow(2).mean()
    else:
        x = cr.tensor(3.0, requires_grad=True)
        y = cr.tensor(-4.0, requires_grad=True)
        out = (x + cr.sigmoid(y)) / (cr.sigmoid(x) + (x + y) ** 2) * x
    lay = draw(out, max_width=700).drawing.layout
    labels = [r.label for r in lay.routes.values() if r.label is not None]
    assert labels
    for wid, r in lay.routes.items():
        if r.label is None:
            continue
        lab = r.label  # the wire runs straight through the middle of its own label
        k = r.points.index((lab.x - lab.w / 2, lab.y))
        assert r.points[k + 1] == (lab.x + lab.w / 2, lab.y) and k in r.straight, wid
    for i, a in enumerate(labels):
        for b in labels[i + 1:]:
            assert not _overlap(a, b)
        for box in lay.boxes.values():
            assert not _overlap(a, box)


def test_collapse_true_is_the_overview_one_box_per_module():
    net = _net()
    out = net(cr.randn(2, 3)).sum()
    out.backward()
    d = draw(out, collapse=True)
    assert [b.label for b in d.circuit.boxes if b.kind == "module"] == ["Net"]
    d2 = draw(out, collapse=2)
    assert sorted(b.label for b in d2.circuit.boxes if b.kind == "module") == [
        "Linear (fc1)", "Linear (fc2)"]
    assert "tanh" in {b.label for b in d2.circuit.boxes}


def test_large_graph_after_backward_keeps_nothing_and_says_so():
    x = cr.tensor(1.0, requires_grad=True)
    h = x
    for _ in range(graph.keep_max_nodes + 10):
        h = h * 1.01
    h.backward()
    assert getattr(h.grad_fn, "_viz_kept", None) is None
    d = draw(h, fold=False, max_nodes=300)
    assert any("freed" in n for n in d.notes)
    assert _wires(d)[d.circuit.wires[0].id][3] == f"{x.grad.item():.4g}"  # the leaf's .grad
    with record():  # the way to draw every value of a large graph after backward()
        y = cr.tensor(1.0, requires_grad=True)
        h = y
        for _ in range(graph.keep_max_nodes + 10):
            h = h * 1.01
    h.backward()
    assert not draw(h, fold=False, max_nodes=300).notes


def test_the_hook_keeps_nothing_for_big_saved_values_or_retain_graph(monkeypatch):
    x = cr.ones(4, requires_grad=True)
    y = (x * x).sum()
    y.backward(retain_graph=True)
    assert getattr(y.grad_fn, "_viz_kept", None) is None  # the graph kept its values anyway
    monkeypatch.setattr(graph, "keep_max_bytes", 16)
    big = cr.ones(100, requires_grad=True)
    z = (big * big).sum()
    z.backward()
    assert getattr(z.grad_fn, "_viz_kept", None) is None


def test_the_seed_of_backward_is_the_one_drawn():
    x = cr.tensor([1.0, 2.0], requires_grad=True)
    y = x * 3.0
    y.backward(cr.tensor([0.5, -1.0]))
    (w_out,) = [w for w in draw(y).circuit.wires if w.dst.startswith("out")]
    np.testing.assert_allclose(w_out.grad, [0.5, -1.0])
    np.testing.assert_allclose(draw(y).circuit.wires[0].grad, x.grad.numpy())


def test_large_tensors_are_summarised_with_mean_min_max_and_grad_norm():
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    x = cr.tensor(a, requires_grad=True)
    f = (x * 2.0).sum()
    f.backward()
    (v, g) = _by_src(draw(f))["x"]
    assert v == "[3×4] μ=5.5 min=0 max=11"
    assert g == f"[3×4] ‖g‖={np.sqrt(12 * 4):.3g}"


def test_nan_and_inf_are_flagged_in_colour():
    with np.errstate(all="ignore"):
        x = cr.tensor([1.0, -1.0], requires_grad=True)
        f = cr.log(x).sum()
        d = draw(f)
    svg = d.svg()
    assert "[0, nan] ⚠ NaN×1" in svg
    assert re.search(rf'<path [^>]*stroke="{FLAG}" stroke-width="2.2"', svg)
    assert f'fill="{GREEN}"' in svg and f'fill="{RED}"' in svg


def test_custom_function_gets_a_dashed_cluster():
    x = cr.tensor(3.0, requires_grad=True)
    f = GoodSquare.apply(x) + 1.0
    f.backward()
    d = draw(f)
    assert [c.label for c in d.circuit.clusters.values()] == ["Function GoodSquare"]
    assert 'stroke-dasharray="5,3"/><text' in d.svg()
    assert _by_src(d)["x"] == ("3", "6")


def test_repeated_chain_is_folded_and_the_node_limit_keeps_the_output_side():
    with record():
        x = cr.tensor(1.0, requires_grad=True)
        h = x
        for _ in range(50):
            h = (h * 0.9 + 0.1).tanh()
    d = draw(h)
    assert [b.label for b in d.circuit.boxes if b.kind == "fold"] == ["Mul → Add → Tanh  ×50"]
    d = draw(h, fold=False, max_nodes=10)
    assert sum(b.kind == "gate" for b in d.circuit.boxes) == 10
    assert any("140 more gates not drawn (max_nodes=10)" in n for n in d.notes)


@pytest.mark.parametrize("fmt, magic", [("svg", b"<svg"), ("png", b"\x89PNG"), ("pdf", b"%PDF"),
                                        ("dot", b"digraph")])
def test_files_without_any_system_package(tmp_path, monkeypatch, fmt, magic):
    pytest.importorskip("matplotlib")
    monkeypatch.setattr(shutil, "which", lambda name: None)  # no Graphviz `dot` anywhere
    _, f = _neuron()
    path = tmp_path / f"circuit.{fmt}"
    draw(f, path=str(path))
    assert path.read_bytes()[:400].find(magic) >= 0
    if fmt == "png":
        from matplotlib.image import imread

        img = imread(str(path))
        assert img.shape[0] > 200 and img.shape[1] > 800  # a real picture, twice the SVG's size
        assert (img[..., :3] < 0.5).any()  # with ink on it


def test_notebook_repr_svg_and_repr():
    _, f = _neuron()
    d = draw(f)
    assert d._repr_svg_().startswith("<svg") and d._repr_svg_() == d.svg()
    assert repr(d).startswith("<Diagram: ")
    ET.fromstring(d.svg())  # well-formed XML


def test_bad_arguments_are_clear_errors():
    with pytest.raises(TypeError, match="draw"):
        draw(3.0)
    x = cr.tensor(1.0, requires_grad=True)
    with pytest.raises(ValueError, match="format"):
        draw(x * 2, format="jpg2000")
    with pytest.raises(TypeError, match="names"):
        draw(x * 2, names={3.5: "x"})


def test_show_lecture_circuits_writes_svg_png_and_pages(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from chainrule.viz.demo import show_lecture_circuits

    paths = show_lecture_circuits(str(tmp_path))
    out = capsys.readouterr().out
    assert "sigx = 1/(1+exp(-x))" in out and "df/dx0 = 0.3932" in out
    assert sorted(p.rsplit(".", 1)[1] for p in paths) == ["html"] * 4 + ["png"] * 4 + ["svg"] * 4
    svg = (tmp_path / "sigmoid_neuron.svg").read_text(encoding="utf-8")
    assert ">+1<" in svg and ">1/x<" in svg and ">w0<" in svg and ">0.7311<" in svg


def test_lecture_gate_labels_show_constants():
    from chainrule.viz.demo import draw_circuit

    labels = [b.label for b in draw_circuit("sigmoid_neuron").circuit.boxes if b.kind == "gate"]
    assert "+1" in labels and "1/x" in labels and "exp" in labels
    flow = [b.label for b in draw_circuit("flow_patterns").circuit.boxes if b.kind == "gate"]
    assert "×2" in flow and "max" in flow
