"""``chainrule.nn``: layers, losses and the Module machinery (PyTorch's ``torch.nn``)."""

from __future__ import annotations

from chainrule.nn.module import Module
from chainrule.nn.parameter import Buffer, Parameter
from chainrule.nn import functional, init, parallel, utils  # noqa: F401
from chainrule.nn.modules import *  # noqa: F403
from chainrule.nn.modules import __all__ as _modules_all

__all__ = ["Module", "Parameter", "Buffer", "functional", "init", "parallel", "utils",
           "factory_kwargs"] + list(_modules_all)


def factory_kwargs(kwargs: dict | None) -> dict:
    """The ``device``/``dtype``/``memory_format`` keywords of ``kwargs`` as a dict for factory
    functions (``factory_kwargs={...}`` inside ``kwargs`` is merged in), refusing others."""
    if kwargs is None:
        return {}
    simple = {"device", "dtype", "memory_format"}
    expected = simple | {"factory_kwargs"}
    if not kwargs.keys() <= expected:
        raise TypeError(f"unexpected kwargs {kwargs.keys() - expected}")
    out = dict(kwargs.get("factory_kwargs", {}))
    for k in simple:
        if k in kwargs:
            if k in out:
                raise TypeError(f"{k} specified twice, in **kwargs and in factory_kwargs")
            out[k] = kwargs[k]
    return out
