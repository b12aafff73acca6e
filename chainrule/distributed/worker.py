"""One rank of ``chainrule launch``: torchrun's variables from MPI's, then the script.

``python -m chainrule.distributed.worker [-m | --no-python] -- SCRIPT ARGS`` (run by mpiexec).
"""

from __future__ import annotations

import os
import runpy
import sys

__all__ = ["torchrun_environment", "main"]

_RANK = ("OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK")
_SIZE = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE")
_LOCAL_RANK = ("OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID")
_LOCAL_SIZE = ("OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "CHAINRULE_LOCAL_WORLD_SIZE")


def _first(env, names, default=None):
    for n in names:
        if env.get(n, "") != "":
            return env[n]
    return default


def torchrun_environment(env: dict) -> dict:
    """RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, GROUP_RANK, MASTER_ADDR, MASTER_PORT as
    torchrun sets them, read from the MPI launcher's variables in ``env``."""
    rank, size = _first(env, _RANK), _first(env, _SIZE)
    if rank is None or size is None:
        raise RuntimeError("chainrule.distributed.worker runs under mpiexec (chainrule launch); "
                           "no MPI rank variable is set")
    local_rank = _first(env, _LOCAL_RANK, "0")
    local_size = _first(env, _LOCAL_SIZE, size)
    return {"RANK": rank, "WORLD_SIZE": size, "LOCAL_RANK": local_rank,
            "LOCAL_WORLD_SIZE": local_size,
            "GROUP_RANK": str(int(rank) // max(int(local_size), 1)),
            "MASTER_ADDR": env.get("MASTER_ADDR", "127.0.0.1"),
            "MASTER_PORT": env.get("MASTER_PORT", "29500")}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    mode = "script"
    while argv and argv[0] != "--":
        flag = argv.pop(0)
        mode = {"-m": "module", "--no-python": "program"}[flag]
    args = argv[1:]
    os.environ.update(torchrun_environment(os.environ))
    if mode == "program":
        os.execvp(args[0], args)
    sys.argv = list(args)
    if mode == "module":
        runpy.run_module(args[0], run_name="__main__", alter_sys=True)
    else:
        sys.path.insert(0, os.path.dirname(os.path.abspath(args[0])))
        runpy.run_path(args[0], run_name="__main__")
    return 0


if __name__ == "__main__":
    sys.exit(main())
