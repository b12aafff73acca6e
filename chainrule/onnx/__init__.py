"""``cr.onnx``: export a model to an ONNX file, as ``torch.onnx.export``.

Importable without the ``onnx`` package (programs ``import torch.onnx`` at their top); ``export``
then raises an ImportError naming the extra to install: ``pip install 'chainrule[onnx]'``.
"""

from __future__ import annotations

from typing import Any

from chainrule.onnx import errors
from chainrule.onnx.errors import UnsupportedOperatorError

__all__ = ["export", "errors", "UnsupportedOperatorError", "is_onnx_available"]


def is_onnx_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("onnx") is not None


def export(model, args: Any = (), f=None, *, kwargs: dict | None = None,
           export_params: bool = True, verbose: bool | None = None,
           input_names: list | None = None, output_names: list | None = None,
           opset_version: int | None = None, dynamic_axes: dict | None = None,
           do_constant_folding: bool = True, training=None, keep_initializers_as_inputs=None,
           dynamo: bool = False, **unused: Any):
    """Run ``model(*args)`` once, recording its graph of gates, and write that graph as ONNX.

    ``f`` is a path or a binary file object (``None``: nothing is written); returns the
    ``onnx.ModelProto``. ``input_names``/``output_names`` name the graph's inputs and outputs
    (``input_0``, ``output_0``, ... otherwise); ``dynamic_axes`` (``{"x": {0: "batch"}}`` or
    ``{"x": [0]}``) marks dimensions that may change. Parameters become initializers (graph
    inputs with ``export_params=False``). Parts that depend on parameters and constants only
    (batch norm's folded scale, attention masks) are computed once and stored as constants
    (``do_constant_folding`` is always on). The model runs in eval mode. torch's dynamo-only
    arguments (``dynamic_shapes``, ``external_data``, ...) are accepted and ignored.
    """
    from chainrule.onnx.exporter import export_model

    return export_model(model, args, f, kwargs=kwargs or {}, export_params=export_params,
                        verbose=bool(verbose), input_names=input_names,
                        output_names=output_names, opset_version=opset_version,
                        dynamic_axes=dynamic_axes or {})
