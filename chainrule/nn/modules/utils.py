"""``torch.nn.modules.utils``: the argument helpers programs import (``_pair`` and friends)."""

from __future__ import annotations

import collections.abc
from itertools import repeat
from typing import Any

__all__: list = []


def _ntuple(n: int, name: str = "parse"):
    """A function turning a number into an n-tuple (an iterable passes through as a tuple)."""

    def parse(x: Any) -> tuple:
        if isinstance(x, collections.abc.Iterable):
            return tuple(x)
        return tuple(repeat(x, n))

    parse.__name__ = name
    return parse


_single = _ntuple(1, "_single")
_pair = _ntuple(2, "_pair")
_triple = _ntuple(3, "_triple")
_quadruple = _ntuple(4, "_quadruple")


def _reverse_repeat_tuple(t: tuple, n: int) -> tuple:
    """Each element of ``t`` repeated ``n`` times, in reverse order (padding arguments)."""
    return tuple(x for x in reversed(t) for _ in range(n))


def _list_with_default(out_size, defaults) -> list:
    """``out_size`` with its None entries taken from the trailing ``defaults``."""
    if isinstance(out_size, int):
        return [out_size]
    if len(defaults) <= len(out_size):
        raise ValueError(f"Input dimension should be at least {len(out_size) + 1}")
    return [v if v is not None else d for v, d in zip(out_size,
                                                        defaults[-len(out_size):])]
