"""``saemui plot KIND``: a zoo figure and its table from result files (:func:`saemui.reproduce.reproduce`), and the
entry point of the ``scripts/reproduce_<kind>.py`` scripts. With ``--runs RUN ...`` the figure is drawn from
ordinary ``saemui run`` result directories instead (:func:`saemui.reproduce.reproduce_runs`)."""

from __future__ import annotations

import argparse
import sys

from saemui.analysis import KINDS
from saemui.errors import SaemuiError


def add_plot_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--results", help="zoo results directory (default $SAEMUI_ZOO_RESULTS or results/zoo)")
    p.add_argument("--out", default="figures", help="output directory (default figures)")
    p.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples (default 2000)")
    p.add_argument(
        "--runs",
        nargs="+",
        metavar="RUN",
        help="draw from these `saemui run` result directories instead of the zoo (kinds: law, comparison); "
        "every run is subsampled to the smallest N",
    )
    p.add_argument(
        "--n",
        type=int,
        help="with --runs: sample count to compare MUI at (default: the smallest run's N, where a run's MUI is "
        "exact and has no interval)",
    )


def cmd_plot(args: argparse.Namespace) -> int:
    runs = getattr(args, "runs", None)
    if runs:
        if args.results:
            raise SaemuiError("--results (zoo records) and --runs (run directories) exclude each other")
        from saemui.reproduce import reproduce_runs

        paths = reproduce_runs(args.kind, runs, args.out, args.n_boot, n=args.n)
    else:
        if getattr(args, "n", None) is not None:
            raise SaemuiError("--n applies to --runs only (zoo records are measured at one N)")
        from saemui.reproduce import reproduce

        paths = reproduce(args.kind, args.results, args.out, args.n_boot)
    for path in paths:
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
