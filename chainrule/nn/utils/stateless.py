"""Call a module with some parameters and buffers swapped for given tensors (PyTorch's
``torch.nn.utils.stateless.functional_call``)."""

from __future__ import annotations

from typing import Any

from chainrule.nn.module import Module

__all__ = ["functional_call"]


def _slot(module: Module, name: str) -> tuple:
    """(owning module, its dict holding ``name``'s last part, that part)."""
    path, _, leaf = name.rpartition(".")
    owner = module.get_submodule(path)
    for d in (owner._parameters, owner._buffers):
        if leaf in d:
            return owner, d, leaf
    return owner, None, leaf


def functional_call(module: Module, parameter_and_buffer_dicts: Any, args: Any = None,
                    kwargs: dict | None = None, *, tie_weights: bool = True,
                    strict: bool = False) -> Any:
    """``module(*args, **kwargs)`` with the named parameters/buffers replaced by the given
    tensors for the duration of the call (the module is restored afterwards)."""
    dicts = parameter_and_buffer_dicts
    if isinstance(dicts, dict):
        mapping = dict(dicts)
    else:
        mapping = {}
        for d in dicts:
            overlap = set(mapping) & set(d)
            if overlap:
                raise ValueError(f"{sorted(overlap)} appeared in multiple dictionaries; behavior "
                                 "of functional call is ambiguous")
            mapping.update(d)
    if strict:
        expected = {n for n, _ in module.named_parameters(remove_duplicate=False)}
        expected |= {n for n, _ in module.named_buffers(remove_duplicate=False)}
        missing = sorted(expected - set(mapping))
        unexpected = sorted(set(mapping) - expected)
        if missing or unexpected:
            problems = ([f"Unexpected key(s): {', '.join(map(repr, unexpected))}."] *
                        bool(unexpected) + [f"Missing key(s): {', '.join(map(repr, missing))}."] *
                        bool(missing))
            raise RuntimeError(f"Error(s) in reparametrizing for {module._get_name()}:\n\t"
                               + "\n\t".join(problems))
    if tie_weights:  # a tensor shared under several names follows its one replacement
        by_id: dict = {}
        for n, t in module.named_parameters(remove_duplicate=False):
            by_id.setdefault(id(t), []).append(n)
        for n, t in module.named_buffers(remove_duplicate=False):
            by_id.setdefault(id(t), []).append(n)
        for names in by_id.values():
            given = [n for n in names if n in mapping]
            for n in names:
                if given and n not in mapping:
                    mapping[n] = mapping[given[0]]
    saved = []
    try:
        for name, value in mapping.items():
            owner, store, leaf = _slot(module, name)
            if store is None:
                saved.append((owner, None, leaf, owner.__dict__.get(leaf, _MISSING)))
                object.__setattr__(owner, leaf, value)
            else:
                saved.append((owner, store, leaf, store[leaf]))
                store[leaf] = value
        if args is None:
            args = ()
        elif not isinstance(args, tuple):
            args = (args,)
        return module(*args, **(kwargs or {}))
    finally:
        for owner, store, leaf, old in reversed(saved):
            if store is not None:
                store[leaf] = old
            elif old is _MISSING:
                owner.__dict__.pop(leaf, None)
            else:
                object.__setattr__(owner, leaf, old)


_MISSING = object()
