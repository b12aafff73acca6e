"""``swap_in_optimizer_params_and_state``: run an optimizer on other parameters and state.

Inside the context the optimizer's groups hold the supplied parameters (and the hyper-parameters
of the supplied ``state_dict()``-shaped dict) and its ``state`` is that dict's state keyed by
those parameters; on exit the optimizer is as it was. State tensors are shared, not copied, so
``step()`` updates the supplied state's tensors in place (PyTorch's semantics).
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

from chainrule.tensor import Tensor

__all__ = ["swap_in_optimizer_params_and_state"]

_NAME = "swap_in_optimizer_params_and_state"


def _check_state(state: Any) -> dict:
    if not isinstance(state, dict):
        raise RuntimeError(
            f"{_NAME} requires swapin_optim_state['state'] to be a dict mapping packed parameter "
            f"ids to per-param state dicts, got {type(state).__name__}.")
    if any(isinstance(k, Tensor) for k in state):
        raise RuntimeError(
            f"{_NAME} requires optimizer.state_dict()-style state keyed by packed parameter ids.")
    if any(isinstance(k, int) and not isinstance(v, dict) for k, v in state.items()):
        raise RuntimeError(
            f"{_NAME} requires per-parameter optimizer state entries to be dictionaries.")
    return state


def _check_groups(optimizer: Any, groups: Any) -> list:
    if not isinstance(groups, list):
        raise RuntimeError(
            f"{_NAME} requires swapin_optim_state['param_groups'] to be a list of param-group "
            f"dicts, got {type(groups).__name__}.")
    if len(groups) != len(optimizer.param_groups):
        raise RuntimeError(
            "swapin_optim_state has a different number of parameter groups than the live "
            "optimizer.")
    return groups


def _group_ids(idx: int, live: dict, saved: Any) -> list:
    """The packed parameter ids of saved group ``idx``, after checking it fits the live one."""
    if not isinstance(saved, dict):
        raise RuntimeError(f"{_NAME} requires each optimizer param group to be a dictionary.")
    ids = saved.get("params")
    if not isinstance(ids, list) or not all(isinstance(i, int) for i in ids):
        raise RuntimeError(
            f"{_NAME} requires optimizer.state_dict()-style param_groups[*]['params'] entries "
            "keyed by packed parameter ids.")
    if len(ids) != len(live["params"]):
        raise RuntimeError(
            f"swapin_optim_state param group {idx} has a different number of params than the "
            "live optimizer param group.")
    only_saved = [k for k in saved if k not in live]
    only_live = [k for k in live if k not in saved]
    if only_saved or only_live:
        raise RuntimeError(
            f"{_NAME} requires optimizer.state_dict()-style param group keys to exactly match "
            f"the live optimizer group keys for group {idx}. Keys only in swap-in: "
            f"{only_saved}. Keys only in live: {only_live}.")
    return ids


@contextlib.contextmanager
def swap_in_optimizer_params_and_state(
    optimizer: Any,
    swapin_parameters: dict[str, Tensor],
    swapin_optim_state: dict[str, Any],
) -> Iterator[None]:
    """Temporarily give ``optimizer`` the parameters ``swapin_parameters`` (in the order of its
    groups' parameters) and the state and group options of ``swapin_optim_state`` (a dict shaped
    like ``optimizer.state_dict()``); restore its own parameters, options and state on exit.

    Unlike ``load_state_dict``, ``step()`` inside the context updates the supplied tensors: the
    parameters, and the state tensors in place (new entries or replaced tensors stay local).
    """
    if not optimizer.state:
        raise RuntimeError(f"{_NAME} requires initialized optimizer state.")
    if not isinstance(swapin_optim_state, dict):
        raise RuntimeError(f"{_NAME} requires a DCP-style optimizer state_dict.")
    saved_state = _check_state(swapin_optim_state.get("state"))
    saved_groups = _check_groups(optimizer, swapin_optim_state.get("param_groups"))

    tensors = list(swapin_parameters.values())
    plan, used, offset = [], set(), 0
    for idx, (live, saved) in enumerate(zip(optimizer.param_groups, saved_groups)):
        ids = _group_ids(idx, live, saved)
        used.update(ids)
        if offset + len(ids) > len(tensors):
            raise RuntimeError(
                f"{_NAME} requires the explicit parameter state to match "
                "optimizer.param_groups ordering.")
        plan.append((live, saved, tensors[offset:offset + len(ids)], ids))
        offset += len(ids)
    extra = [k for k in saved_state if k not in used]
    if extra:
        raise RuntimeError(
            f"{_NAME} requires swapin_optim_state['state'] to be keyed only by packed parameter "
            f"ids from param_groups[*]['params']; got extra keys {extra!r}.")

    own_state = optimizer.state
    own_groups = [dict(g) for g in optimizer.param_groups]  # same dicts restored, same lists
    own_scratch = dict(getattr(optimizer, "_scratch_bufs", {}))
    try:
        state: defaultdict = defaultdict(dict)
        for live, saved, params, ids in plan:
            live["params"] = params
            live.update((k, v) for k, v in saved.items() if k != "params")
            for p, i in zip(params, ids):
                state[p] = dict(saved_state.get(i, {}))  # the same tensors, a dict of its own
        optimizer.state = state
        yield
    finally:
        for live, own in zip(optimizer.param_groups, own_groups):
            live.clear()
            live.update(own)
        optimizer.state = own_state
        if hasattr(optimizer, "_scratch_bufs"):
            optimizer._scratch_bufs = own_scratch  # no work arrays kept for the swapped-in ones
