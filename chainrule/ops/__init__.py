"""All differentiable ops, grouped by family (each op's gate and its public function).

Tensor's methods and operators are these functions (see ``chainrule/tensor.py``).
"""

from __future__ import annotations

from chainrule.ops import binary as _binary
from chainrule.ops import elementwise as _elementwise
from chainrule.ops import index as _index
from chainrule.ops import linalg as _linalg
from chainrule.ops import reduce as _reduce
from chainrule.ops import shape as _shape
from chainrule.ops import sorting as _sorting
from chainrule.ops import special as _special
from chainrule.ops.binary import *  # noqa: F403
from chainrule.ops.elementwise import *  # noqa: F403
from chainrule.ops.elementwise import cast, move  # noqa: F401  (Tensor.to)
from chainrule.ops.index import *  # noqa: F403
from chainrule.ops.index import getitem  # noqa: F401  (Tensor.__getitem__)
from chainrule.ops.linalg import *  # noqa: F403
from chainrule.ops.reduce import *  # noqa: F403
from chainrule.ops.shape import *  # noqa: F403
from chainrule.ops.sorting import *  # noqa: F403
from chainrule.ops.special import *  # noqa: F403
from chainrule.ops.shape import normalize_dim  # noqa: F401  (Tensor.size)
from chainrule.ops.shape import tensor_unfold  # noqa: F401  (Tensor.unfold)
# gates that chainrule.ops.either and the kernels reach for their Tensor routes
from chainrule.ops.conv import Col2Im, Im2Col  # noqa: F401
from chainrule.ops.index import Gather, IndexPut, ScatterAdd  # noqa: F401
from chainrule.ops.reduce import Prod, sum_to_size  # noqa: F401
from chainrule.ops.shape import ConstantPad  # noqa: F401

_FAMILIES = (_binary, _elementwise, _index, _linalg, _reduce, _shape, _sorting, _special)
__all__ = [name for fam in _FAMILIES for name in fam.__all__]


# ---- NumPy's spellings: torch accepts axis= for dim= and keepdims= for keepdim= -----------------
def _numpy_aliases(fn):
    """``fn`` accepting ``axis``/``keepdims`` as aliases of its ``dim``/``keepdim`` (ops and
    Tensor methods alike: Tensor binds these functions)."""
    import functools
    import inspect

    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return fn
    if "dim" not in params and "keepdim" not in params:
        return fn

    @functools.wraps(fn)
    def call(*args, **kwargs):
        if not kwargs:  # (the common case: no keyword to unpack)
            return fn(*args)
        if "axis" not in kwargs and "keepdims" not in kwargs:
            return fn(*args, **kwargs)
        for alias, name in (("axis", "dim"), ("keepdims", "keepdim")):
            if alias in kwargs:
                if name in kwargs:
                    raise TypeError(f"{fn.__name__}() got both '{name}' and its alias "
                                    f"'{alias}'")
                kwargs[name] = kwargs.pop(alias)
        return fn(*args, **kwargs)

    return call


for _name in __all__:
    globals()[_name] = _numpy_aliases(globals()[_name])
del _name
