"""Device API on a machine without a GPU: clear errors, CPU semantics, PyTorch's device objects."""

import pytest

import chainrule as cr
from chainrule import devices

needs_no_gpu = pytest.mark.skipif(cr.cuda.is_available(), reason="a GPU is present")


def test_cpu_device_object():
    x = cr.ones(2)
    assert x.device == cr.device("cpu")
    assert x.device == "cpu"
    assert str(x.device) == "cpu"
    assert repr(x.device) == "device(type='cpu')"
    assert x.cpu() is x
    assert x.to("cpu") is x
    assert not x.is_cuda


def test_bad_device_string():
    with pytest.raises(RuntimeError, match="Expected one of cpu, cuda, mps device type"):
        cr.zeros(2, device="tpu")


@needs_no_gpu
def test_cuda_unavailable_is_false_and_errors_say_how_to_install():
    assert cr.cuda.is_available() is False
    assert cr.cuda.device_count() == 0
    with pytest.raises(AssertionError, match="Torch not compiled with CUDA enabled"):
        cr.cuda.synchronize()  # as torch's CPU build
    cr.cuda.manual_seed(0)  # quietly nothing, as torch's CPU build
    for make in (lambda: cr.zeros(3, device="cuda"), lambda: cr.ones(3).to("cuda"),
                 lambda: cr.ones(3).cuda(), lambda: cr.randn(2, device="cuda")):
        with pytest.raises(RuntimeError, match=r"chainrule\[cuda\]"):
            make()


def test_to_dtype_and_device_together():
    x = cr.ones(2, requires_grad=True)
    y = x.to("cpu", cr.float64)
    assert y.dtype == cr.float64 and y.device == "cpu"
    y.sum().backward()
    assert x.grad.dtype == cr.float32


def test_device_parsing():
    assert cr.device("cuda:1").index == 1
    assert str(cr.device("cuda", 0)) == "cuda:0"
    assert devices.as_device(None) == cr.device("cpu")
