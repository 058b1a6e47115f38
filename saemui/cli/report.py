"""``saemui report``: one self-contained HTML page for finished runs (:func:`saemui.report.write_report`)."""

from __future__ import annotations

import argparse

from saemui.errors import SaemuiError


def cmd_report(args: argparse.Namespace) -> int:
    # imported here: the report pulls in the exploration views (pandas), which `saemui --help` does not need
    from saemui.report import write_report

    for n, v in (("--top", args.top), ("--contexts", args.contexts), ("--window", args.window)):
        if v < 1:
            raise SaemuiError(f"{n} {v}: expected a positive number")
    names = [x.strip() for x in args.names.split(",")] if args.names else None
    out = write_report(args.runs, args.out, names, n_top=args.top, n_show=args.contexts, window=args.window)
    print(f"written    {out} ({out.stat().st_size / 1024:.0f} KiB)")
    return 0


__all__ = ["cmd_report"]
