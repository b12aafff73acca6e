"""``chainrule.distributed``: training on many processes (PyTorch's ``torch.distributed``).

Processes are started by an MPI launcher (``chainrule launch --nproc-per-node N SCRIPT``);
host tensors travel through MPI (mpi4py), CuPy tensors through NCCL. See docs/distributed.md.
"""

from __future__ import annotations

from chainrule.distributed.collectives import (
    ReduceOp, all_gather, all_gather_into_tensor, all_reduce, barrier, broadcast, gather, irecv,
    isend, recv, reduce, reduce_scatter_tensor, scatter, send,
)
from chainrule.distributed.process_group import (
    Backend, DistBackendError, DistError, GroupMember, Work, default_timeout,
    destroy_process_group, get_backend, get_node_local_rank, get_rank, get_world_size, group,
    init_process_group, is_available, is_initialized, is_mpi_available, is_nccl_available,
    is_torchelastic_launched,
)

__all__ = [
    "init_process_group", "destroy_process_group", "is_initialized", "is_available",
    "is_mpi_available", "is_nccl_available", "is_torchelastic_launched", "get_rank",
    "get_world_size", "get_backend", "get_node_local_rank", "default_timeout", "Backend",
    "DistError", "DistBackendError", "Work", "group", "GroupMember", "ReduceOp", "all_reduce",
    "reduce", "broadcast", "all_gather", "all_gather_into_tensor", "reduce_scatter_tensor",
    "gather", "scatter", "send", "recv", "isend", "irecv", "barrier",
]
