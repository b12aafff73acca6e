"""How much of torch.nn, torch.nn.functional and torch.nn.init chainrule has: at least 90% of
the public callables of each, less a short list of names that do not apply (each with its
reason). The project-wide table with every namespace is bench/api_coverage.py's."""

from __future__ import annotations

import inspect

import pytest

import chainrule.nn as cnn
import chainrule.nn.functional as CF
import chainrule.nn.init as cinit

torch = pytest.importorskip("torch")

NOT_APPLICABLE = {
    "torch.nn": {
        # lazy modules infer their shapes on the first call; chainrule needs them up front
        **{n: "lazy (uninitialized) parameters" for n in (
            "LazyBatchNorm1d", "LazyBatchNorm2d", "LazyBatchNorm3d", "LazyConv1d", "LazyConv2d",
            "LazyConv3d", "LazyConvTranspose1d", "LazyConvTranspose2d", "LazyConvTranspose3d",
            "LazyInstanceNorm1d", "LazyInstanceNorm2d", "LazyInstanceNorm3d",
            "UninitializedBuffer", "UninitializedParameter")},
    },
    "torch.nn.functional": {
        "Callable": "typing name", "DType": "typing name", "Optional": "typing name",
        "boolean_dispatch": "TorchScript helper",
        "handle_torch_function": "__torch_function__ protocol",
        "has_torch_function": "__torch_function__ protocol",
        "has_torch_function_unary": "__torch_function__ protocol",
        "has_torch_function_variadic": "__torch_function__ protocol",
        "grouped_mm": "fp8/grouped GEMM kernels", "scaled_grouped_mm": "fp8/grouped GEMM kernels",
        "scaled_mm": "fp8/grouped GEMM kernels", "ScalingType": "fp8/grouped GEMM kernels",
        "SwizzleType": "fp8/grouped GEMM kernels",
    },
    "torch.nn.init": {},
}


def _public(mod) -> list:
    names = getattr(mod, "__all__", None) or [n for n in dir(mod) if not n.startswith("_")]
    return sorted({n for n in names if not n.startswith("_") and callable(getattr(mod, n, None))
                   and not inspect.ismodule(getattr(mod, n))})


@pytest.mark.parametrize("name,theirs,ours", [
    ("torch.nn", torch.nn, cnn), ("torch.nn.functional", torch.nn.functional, CF),
    ("torch.nn.init", torch.nn.init, cinit)])
def test_at_least_90_percent_of_the_namespace(name, theirs, ours):
    wanted = [n for n in _public(theirs) if n not in NOT_APPLICABLE[name]]
    missing = [n for n in wanted if not hasattr(ours, n)]
    have = len(wanted) - len(missing)
    assert have / len(wanted) >= 0.9, f"{name}: {have}/{len(wanted)}, missing {missing}"


def test_the_names_of_issue_13_are_there():
    for n in ("Transformer", "TransformerEncoder", "TransformerEncoderLayer",
              "TransformerDecoder", "TransformerDecoderLayer", "ParameterList", "ParameterDict",
              "PReLU", "GLU", "RMSNorm", "InstanceNorm1d", "InstanceNorm2d", "InstanceNorm3d",
              "Upsample", "PixelShuffle", "ReflectionPad2d", "EmbeddingBag", "CosineSimilarity",
              "Conv3d", "CTCLoss", "MarginRankingLoss", "TripletMarginLoss"):
        assert issubclass(getattr(cnn, n), cnn.Module), n
