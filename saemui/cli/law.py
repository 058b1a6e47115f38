"""``saemui law RUN [RUN ...]``: the Utility Law over your own run directories (:func:`saemui.runs.fit_law_runs`).

Every run is brought to the smallest N first (MUI is a union over samples and grows with N); the printed
output says so. Runs in another basis, selection, alignment or layer set are refused.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_law_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "runs", nargs="+", metavar="RUN", help="result directories of `saemui run` (or zoo record files)"
    )
    p.add_argument("--n", type=int, help="sample count to compare at (default: the smallest run's N)")
    p.add_argument(
        "--n-sub",
        type=int,
        default=1000,
        help="random subsets per larger run for its MUI at N (default 1000)",
    )
    p.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples over runs (default 2000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the subsets and the bootstrap (default 0)")
    p.add_argument("--csv", help="also write the equalized run table to this CSV file")


def cmd_law(args: argparse.Namespace) -> int:
    from saemui.errors import SaemuiError
    from saemui.io import atomic_write_text
    from saemui.runs import fit_law_runs, format_law

    for flag, v in (("--n-sub", args.n_sub), ("--n-boot", args.n_boot)):
        if v < 1:
            raise SaemuiError(f"{flag} {v}: expected a positive number")
    res = fit_law_runs(args.runs, n=args.n, n_sub=args.n_sub, n_boot=args.n_boot, seed=args.seed)
    print(format_law(res))
    if args.csv:
        atomic_write_text(Path(args.csv), res.table.to_csv(index=False, float_format="%.6g"))
        print(f"written    {args.csv}")
    return 0


__all__ = ["add_law_args", "cmd_law"]
