"""PyTorch API that real programs reach for (found by running programs under ``chainrule run``),
each checked against torch where it is installed."""

from __future__ import annotations


import chainrule as cr

try:
    import torch
except ImportError:  # pragma: no cover
    torch = None


def test_inference_mode_records_no_graph_and_nests():
    x = cr.ones(2, requires_grad=True)
    assert not cr.is_inference_mode_enabled()
    with cr.inference_mode():
        assert cr.is_inference_mode_enabled() and not cr.is_grad_enabled()
        assert not (x * 2).requires_grad
        with cr.inference_mode(False):
            assert cr.is_inference_mode_enabled() and not cr.is_grad_enabled()
    assert cr.is_grad_enabled() and not cr.is_inference_mode_enabled()
    assert (x * 2).requires_grad


def test_inference_mode_as_decorator_with_and_without_parentheses():
    x = cr.ones(2, requires_grad=True)

    @cr.inference_mode()
    def f(t):
        return t * 2

    @cr.inference_mode
    def g(t):
        return t * 3

    def gen(t):
        yield t * 4

    assert not f(x).requires_grad and not g(x).requires_grad
    assert not next(cr.inference_mode()(gen)(x)).requires_grad
    assert cr.autograd.inference_mode is cr.inference_mode
