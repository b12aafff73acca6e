"""Adding a gradient into a fork's buffer, in place where nothing else can see the buffer.

A gradient arriving at a node that already holds one is added to it. Out of place (``old + g``)
that allocates a new array every time; on the large batched arrays of ``jacrev``/``hessian``
(a whole basis of cotangents at once) the allocation and the write into fresh memory cost as
much as the addition. Like torch's input buffer, the sum goes into ``old``'s own memory when
``old`` is a plain (or one-level batched) CPU array that owns its memory and that nothing but
the engine refers to: no view of it, no saved tensor, no other buffer (its reference count
says so), with ``g`` of the same shape and dtype. Anything else (Tensors under
``create_graph``, views, shared arrays, GPU arrays, mixed levels) is added out of place.
"""

from __future__ import annotations

import sys

import numpy as np

from chainrule.batching import BatchedArray

__all__ = ["add_into"]

_ndarray = np.ndarray
_getrefcount = sys.getrefcount
# references to ``old`` while add_into checks it: the engine's buffer, the engine's local name,
# this function's parameter, getrefcount's argument (one fewer would be a miscount: no in place)
_OWNED_REFS = 4


def add_into(old, g):
    """``old + g``, written into ``old`` when only the engine's buffer holds ``old``."""
    t = type(old)
    if t is _ndarray:
        if (type(g) is _ndarray and g.shape == old.shape and g.dtype == old.dtype
                and _getrefcount(old) <= _OWNED_REFS and old.flags.owndata
                and old.flags.writeable):
            np.add(old, g, out=old)
            return old
    elif t is BatchedArray:
        p = old._p  # referenced by old and by this name only, if old owns it
        if (type(g) is BatchedArray and g._lv is old._lv and type(p) is _ndarray
                and type(g._p) is _ndarray and g._p.shape == p.shape and g.dtype == old.dtype
                and _getrefcount(old) <= _OWNED_REFS and _getrefcount(p) <= 3
                and p.flags.owndata and p.flags.writeable):
            np.add(p, g._p, out=p)
            return old
    return old + g
