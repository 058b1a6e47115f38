#!/usr/bin/env python
"""Study v2, the law (``docs/study/protocol.md`` §3.2, §6, §7): every registered test from committed zoo-v2
records, offline, no model.

    python scripts/reproduce_study_law.py [--results results/zoo-v2] [--md docs/study/results_law.md]
        [--figures figures/study] [--json FILE] [--n-boot 10000] [--min-sd 5]

The command line of :mod:`saemui.analysis.study_law_report`, whose ``report``, ``markdown`` and ``figures`` a
notebook calls too; what it tests is listed there. ``--min-sd`` is §3.2's training-moves threshold.

Writes ``<results>/study_law.json`` (every number, the settings, m, α′, seeds and versions), the generated
table ``docs/study/results_law.md`` and figures under ``figures/study/``. Refuses (exit 2) while the directory
holds no law-task record of a fine-tuned run, naming the stages that are missing. A fit that cannot be made
(too few points, a regressor constant within a family, a missing value) is reported with its reason; a missing
point is never imputed, and a test without a fit counts as "inconclusive" in the overall verdict.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from saemui.analysis import study
from saemui.analysis import study_law_report as slr
from saemui.analysis.eligibility import MIN_SD_POINTS
from saemui.analysis.study_report import add_output_options, write_outputs
from saemui.errors import SaemuiError


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_output_options(ap, json_name=slr.JSON_NAME, md_default=slr.DEFAULT_MD)
    ap.add_argument(
        "--n-boot", type=int, default=study.N_BOOT, help="bootstrap resamples (default %(default)s)"
    )
    ap.add_argument(
        "--min-sd",
        type=float,
        default=MIN_SD_POINTS,
        help="§3.2 training-moves threshold, points of P (default %(default)s; tests of tiny zoos lower it)",
    )
    args = ap.parse_args(argv)
    try:
        rep = slr.report(Path(args.results), n_boot=args.n_boot, min_sd=args.min_sd)
        out_json, written = write_outputs(
            args, slr.JSON_NAME, rep.data, slr.markdown(rep.data), lambda: slr.figures(rep)
        )
    except SaemuiError as e:
        print(f"reproduce_study_law: error: {e}", file=sys.stderr)
        return 2
    data = rep.data
    print(
        f"law tasks {', '.join(data['law_tasks']) or 'none'} (m = {data['m']}); wrote {out_json}, {args.md}"
    )
    for name, v in data["overall"].items():
        print(f"  {name}: {v['verdict'] or '–'}")
    if written:
        print(f"  {len(written)} figure file(s) under {args.figures}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
