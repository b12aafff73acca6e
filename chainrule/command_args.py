"""Argument parsing shared by chainrule's commands (``chainrule train``, ``launch``, ...)."""

from __future__ import annotations

import argparse

__all__ = ["Parser", "int_arg", "float_arg"]


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (``chainrule train: error: ...``), exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def int_arg(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def float_arg(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
