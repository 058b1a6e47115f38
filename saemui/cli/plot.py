"""``saemui plot KIND``: a zoo figure and its table from result files (:func:`saemui.reproduce.reproduce`), and the
entry point of the ``scripts/reproduce_<kind>.py`` scripts."""

from __future__ import annotations

import argparse
import sys

from saemui.analysis import KINDS
from saemui.errors import SaemuiError


def add_plot_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--results", help="zoo results directory (default $SAEMUI_ZOO_RESULTS or results/zoo)")
    p.add_argument("--out", default="figures", help="output directory (default figures)")
    p.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples (default 2000)")


def cmd_plot(args: argparse.Namespace) -> int:
    from saemui.reproduce import reproduce

    for path in reproduce(args.kind, args.results, args.out, args.n_boot):
        print(path)
    return 0


def script_main(kind: str, argv: list[str] | None = None) -> int:
    """Entry point shared by ``scripts/reproduce_<kind>.py``."""
    ap = argparse.ArgumentParser(
        description=f"Reproduce the zoo's {kind} figure and table from result files."
    )
    add_plot_args(ap)
    args = ap.parse_args(argv)
    args.kind = kind
    try:
        cmd_plot(args)
    except SaemuiError as e:
        print(f"reproduce_{kind}: error: {e}", file=sys.stderr)
        return 2
    return 0


__all__ = ["KINDS", "add_plot_args", "cmd_plot", "script_main"]
