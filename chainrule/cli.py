"""The ``chainrule`` command: ``train``, ``demo``, ``explain``, ``launch``, ``run``, ``--version``.

Bad arguments print one line on stderr and exit with status 2, before anything is written.
"""

from __future__ import annotations

import argparse
import os
import sys

from chainrule.command_args import Parser, float_arg, int_arg

__all__ = ["main", "build_parser"]


def _add_train_args(p: argparse.ArgumentParser) -> None:
    from chainrule.train import DATASETS, MODELS, OPTIMIZERS

    p.add_argument("--data", default="digits", metavar="|".join(DATASETS),
                   help="dataset (default: digits, scikit-learn's 8x8 digits; no download)")
    p.add_argument("--data-root", metavar="DIR", help="folder with the MNIST IDX files")
    p.add_argument("--model", default="mlp", metavar="|".join(MODELS), help="default: mlp")
    p.add_argument("--epochs", type=int_arg, help="default depends on data and model")
    p.add_argument("--batch-size", type=int_arg, help="default: 32 (64 for mnist)")
    p.add_argument("--lr", type=float_arg, help="learning rate (default depends on data)")
    p.add_argument("--lr-decay", type=float_arg,
                   help="multiply the learning rate by this every epoch (default depends on data)")
    p.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None,
                   help="random 1-pixel shifts of training images (default: on for the cnn)")
    p.add_argument("--optimizer", metavar="|".join(OPTIMIZERS), help="default: adam")
    p.add_argument("--hidden", type=int_arg, help="hidden width of the model")
    p.add_argument("--weight-decay", type=float_arg, help="default: 0")
    p.add_argument("--val-fraction", type=float_arg,
                   help="share of the training set held out for validation (default: 0.1)")
    p.add_argument("--seed", type=int_arg, help="default: 0")
    p.add_argument("--out", default="out", metavar="DIR",
                   help="where the checkpoint, metrics and curves go (default: out)")
    p.add_argument("--resume", action="store_true",
                   help="continue from the checkpoint in --out up to --epochs")
    p.add_argument("--device", default="cpu", metavar="cpu|cuda", help="default: cpu")
    p.add_argument("--threads", type=int_arg,
                   help="BLAS threads while training (default: 1, all for mnist)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--nproc", type=int_arg,
                   help="train on N processes (DistributedDataParallel, started through MPI as "
                        "`chainrule launch` does); --batch-size stays the global batch")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``chainrule`` command."""
    from chainrule import __version__

    parser = Parser(prog="chainrule", description="chainrule: backpropagation you can read "
                     "(PyTorch's API on NumPy).")
    parser.add_argument("--version", action="version", version=f"chainrule {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="{train,demo,explain,launch,run}",
                                parser_class=Parser)
    _add_train_args(sub.add_parser("train", help="train a classifier (digits, moons, spirals, "
                                                 "mnist) and write checkpoint + metrics + curves"))
    demo = sub.add_parser("demo", help="the lecture's circuits, then train on digits into --out")
    demo.add_argument("--out", default="out", metavar="DIR", help="default: out")
    demo.add_argument("--no-progress", action="store_true", help="no progress bar")
    sub.add_parser("explain", add_help=False,
                   help='staged forward/backward pass of an expression: explain "EXPR" x=3 y=-4')
    sub.add_parser("launch", add_help=False,
                   help="run a script on N processes (torchrun's flags, through MPI): "
                        "launch --nproc-per-node N SCRIPT [ARGS]")
    sub.add_parser("run", add_help=False,
                   help="run a program written for PyTorch on chainrule (import torch is "
                        "chainrule): run SCRIPT.py [ARGS] | run -m MODULE [ARGS]")
    return parser


def _fail(prog: str, message: str) -> int:
    print(f"{prog}: error: {message}", file=sys.stderr)
    return 2


def _run_train(args: argparse.Namespace, explicit: set[str], prog: str,
               argv: list[str] | None = None) -> int:
    from chainrule.train import TrainConfig, UsageError, prepare, train

    values = {k: v for k, v in vars(args).items() if k in TrainConfig.__dataclass_fields__
              and v is not None}
    cfg = TrainConfig(**values, progress=not args.no_progress, explicit=tuple(sorted(explicit)))
    try:
        plan = prepare(cfg)
    except UsageError as e:
        return _fail(prog, str(e))
    if cfg.nproc > 1 and argv is not None and "WORLD_SIZE" not in os.environ:
        from chainrule.distributed.launch import main as launch_main

        return launch_main(["--nproc-per-node", str(cfg.nproc), "-m", "chainrule", *argv])
    try:
        train(cfg, plan)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; continue with --resume --out {cfg.out}", file=sys.stderr)
        return 130
    except UsageError as e:  # found while running: unreadable data, an unwritable --out
        return _fail(prog, str(e))
    except BrokenPipeError:
        raise
    except OSError as e:  # e.g. the disk filled up while writing the checkpoint
        return _fail(prog, f"{e.filename or cfg.out}: {e.strerror or e}")
    return 0


def _explicit(argv: list[str]) -> set[str]:
    """Names of the options given on the command line (``--batch-size`` -> ``batch_size``)."""
    names = set()
    for a in argv:
        if a.startswith("--"):
            name = a[2:].split("=", 1)[0].replace("-", "_")
            names.add(name[3:] if name == "no_augment" else name)
    return names


def _demo(args: argparse.Namespace) -> int:
    from chainrule.train import TrainConfig, UsageError, prepare, train

    try:
        from chainrule.viz.demo import show_lecture_circuits
    except ImportError as e:
        print(f"chainrule demo: skipping the lecture circuits ({e})", file=sys.stderr)
    else:
        show_lecture_circuits(out_dir=args.out)
    cfg = TrainConfig(out=args.out, progress=not args.no_progress)
    try:
        plan = prepare(cfg)
    except UsageError as e:
        return _fail("chainrule demo", str(e))
    train(cfg, plan)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``chainrule`` command; returns the exit status."""
    try:
        return _main(argv)
    except BrokenPipeError:  # the reader went away (``chainrule train | head``): quietly stop
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())  # (so the exit's flush has nowhere to fail)
            os.close(devnull)
        except (OSError, ValueError):
            pass
        return 1


def _main(argv: list[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "explain":
        from chainrule.viz.explain_command import main as explain_main

        return explain_main(argv[1:])
    if argv and argv[0] == "launch":
        from chainrule.distributed.launch import main as launch_main

        return launch_main(argv[1:])
    if argv and argv[0] == "run":
        from chainrule.run_command import main as run_main

        return run_main(argv[1:])
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return int(e.code) if isinstance(e.code, int) else (0 if e.code is None else 2)
    if args.command == "train":
        return _run_train(args, _explicit(argv[1:]), "chainrule train", argv)
    if args.command == "demo":
        return _demo(args)
    parser.print_help()
    return 0
