"""Graphs and Python's garbage collector (both engines).

Compiled, a built-in op's node leaves the cyclic collector when it is recorded (a graph is
acyclic by construction: reference counting frees it); wherever an older object may start to hold
a newer one, the nodes it leads to are put back. Each test below builds a reference cycle through
graph nodes, checks that reference counting alone cannot free it (so the test can fail), and that
``gc.collect()`` does.
"""

from __future__ import annotations

import gc
import weakref

import pytest

import chainrule as cr
from chainrule._compiled import engine_compiled


def _freed_only_by_collect(build) -> None:
    """``build()`` makes a cycle through the graph and returns a weak reference into it, with no
    other reference left: alive until ``gc.collect()``, dead after it."""
    gc.collect()
    gc.disable()
    try:
        ref = build()
        assert ref() is not None, "no cycle: the test would prove nothing"
    finally:
        gc.enable()
    gc.collect()
    assert ref() is None, "a cycle through the graph was not collected"


def test_an_ordinary_graph_is_freed_by_reference_counting() -> None:
    x = cr.tensor([1.0, 2.0], requires_grad=True)
    gc.collect()
    gc.disable()
    try:
        y = ((x * 2).tanh() + 1).exp() * x
        out, node = weakref.ref(y), weakref.ref(y.grad_fn)
        inner = weakref.ref(y.grad_fn.next_functions[0][0])
        del y
        assert out() is None and node() is None and inner() is None
    finally:
        gc.enable()


def test_built_in_nodes_leave_the_collector_only_when_compiled() -> None:
    x = cr.tensor(1.0, dtype=cr.float64, requires_grad=True)
    y = (x * 2).sin()
    assert gc.is_tracked(y.grad_fn) is not engine_compiled()
    assert gc.is_tracked(y.grad_fn._edges) is not engine_compiled()
    y.backward()
    assert x.grad.item() == pytest.approx(2 * float(cr.cos(cr.tensor(2.0))))


def test_create_graph_grad_cycle_is_collected() -> None:
    def build():
        x = cr.tensor([1.0, 2.0], requires_grad=True)
        (x ** 3).sum().backward(create_graph=True)  # x.grad = 3x², whose history holds x
        return weakref.ref(x)
    _freed_only_by_collect(build)


def test_grad_setter_cycle_is_collected() -> None:
    def build():
        x = cr.tensor([1.0, 2.0], requires_grad=True)
        x.grad = (x * x).exp()
        return weakref.ref(x)
    _freed_only_by_collect(build)


def test_hook_on_a_non_leaf_holding_a_later_tensor_is_collected() -> None:
    def build():
        x = cr.tensor([1.0, 2.0], requires_grad=True)
        y = x * 2
        z = y.exp().sin()
        y.register_hook(lambda g: g * z.detach())  # y's node -> hook -> z -> ... -> y's node
        return weakref.ref(z)
    _freed_only_by_collect(build)


def test_hook_on_a_leaf_holding_a_later_tensor_is_collected() -> None:
    def build():
        x = cr.tensor([1.0, 2.0], requires_grad=True)
        z = (x * 2).tanh()
        x.register_hook(lambda g: g + z.detach())
        return weakref.ref(z)
    _freed_only_by_collect(build)


def test_hook_given_a_tensor_made_after_it_is_collected() -> None:
    def build():
        x = cr.tensor([1.0, 2.0], requires_grad=True)
        later = []
        x.register_hook(lambda g: g if not later else g * 1)
        z = (x * 2).exp()  # recorded after the hook: stays in the collector
        later.append(z)
        return weakref.ref(z)
    _freed_only_by_collect(build)


def test_post_accumulate_hook_holding_a_later_tensor_is_collected() -> None:
    def build():
        x = cr.tensor([1.0, 2.0], requires_grad=True)
        z = (x * 3).sin()
        x.register_post_accumulate_grad_hook(lambda t: z)
        return weakref.ref(z)
    _freed_only_by_collect(build)


def test_node_metadata_holding_its_output_is_collected() -> None:
    def build():
        x = cr.tensor([1.0, 2.0], requires_grad=True)
        y = (x * 2).exp()
        y.grad_fn.metadata["output"] = y
        return weakref.ref(y)
    _freed_only_by_collect(build)


def test_attribute_set_on_a_node_after_recording_is_collected() -> None:
    def build():
        x = cr.tensor([1.0, 2.0], requires_grad=True)
        y = (x * 2).exp()
        z = y.sin()
        y.grad_fn.later = z  # y's node -> z -> sin's node -> y's node
        return weakref.ref(z)
    _freed_only_by_collect(build)


def test_in_place_op_on_a_saved_tensor_closes_no_cycle() -> None:
    """The node that saved y watches y's version through y's counter, not through y: when y's
    new history leads to that node, no cycle forms, and reference counting frees it all."""
    def build():
        x = cr.tensor([1.0, 2.0], requires_grad=True)
        y = x * 2
        z = y * y  # mul saves y's array and watches y's version counter
        y.add_(z)  # y's new history leads to z's node
        node = weakref.ref(y.grad_fn)
        return weakref.ref(y), node
    gc.collect()
    gc.disable()
    try:
        y, node = build()
        assert y() is None and node() is None
    finally:
        gc.enable()


def test_saved_inputs_are_not_kept_alive_by_the_graph() -> None:
    """A chain of ops keeps its nodes, not the Python tensors between them (as torch's graph),
    and a modified one is still caught through the counter it shared."""
    x = cr.tensor(0.5, dtype=cr.float64, requires_grad=True)
    h, refs = x, []
    for _ in range(3):
        h = h.sin() * 1.5  # the next sin saves this h
        refs.append(weakref.ref(h))
    assert [r() is None for r in refs] == [True, True, False]
    y = x.exp()
    keep = y.detach()  # shares y's counter
    out = y.sin()  # saves y
    del y
    keep.add_(1.0)
    with pytest.raises(RuntimeError, match=r"\[chainrule.DoubleTensor \[\]\], which is output 0 "
                       r"of Exp, is at version 1; expected version 0"):
        (out + h).backward()


class _KeepsOutput(cr.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        out = x * 2
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, g):
        return g * 2


def test_a_custom_function_saving_its_output_is_collected() -> None:
    def build():
        x = cr.tensor([1.0, 2.0], requires_grad=True)
        y = _KeepsOutput.apply(x.exp())  # ctx -> saved y -> ctx
        z = y.sin()
        y.grad_fn.later = z  # ctx -> z -> sin's node -> ctx: sin's node must be in the collector
        return weakref.ref(z.grad_fn)
    _freed_only_by_collect(build)
    x = cr.tensor([1.0, 2.0], requires_grad=True)
    z = _KeepsOutput.apply(x.exp()).sin()
    # a user Function's node stays in the collector, and so do its ancestors and descendants
    assert gc.is_tracked(z.grad_fn) and gc.is_tracked(z.grad_fn.next_functions[0][0])


def test_a_module_keeping_its_output_is_collected() -> None:
    class Keeps(cr.nn.Module):
        def forward(self, x):
            self.last = (x * 2).tanh()  # output -> node -> its scope (this module) -> output
            return self.last

    def build():
        m = Keeps()
        m(cr.tensor([1.0, 2.0], requires_grad=True))
        return weakref.ref(m)
    _freed_only_by_collect(build)


def test_anomaly_mode_nodes_stay_in_the_collector() -> None:
    x = cr.tensor([1.0, 2.0], requires_grad=True)
    with cr.autograd.detect_anomaly():
        y = (x * 2).exp()
    assert gc.is_tracked(y.grad_fn)
    y.sum().backward()
    e = 2.718281828459045
    assert x.grad.tolist() == pytest.approx([2 * e ** 2, 2 * e ** 4])


def test_saved_input_modified_in_place_still_raises_after_the_tensor_is_gone() -> None:
    x = cr.tensor([1.0, 2.0, 3.0], requires_grad=True)
    a = cr.ones(3)
    loss = (x * a).sum()
    a.mul_(5)
    del a
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()
