#!/usr/bin/env python
"""Study v2, part 2 (``docs/study/protocol.md`` §8.1-§8.5, W10): the corollary tests, the causal check and the
SAE-health table from committed zoo-v2 records, offline, no model.

    python scripts/reproduce_study_corollaries.py [--results results/zoo-v2]
        [--md docs/study/results_corollaries.md] [--figures figures/study] [--json FILE] [--n-boot 10000]
        [--embedder default|tfidf|minilm]

The command line of :mod:`saemui.analysis.study_corollaries_report`, whose ``report``, ``markdown`` and
``figures`` a notebook calls too; what each part tests is listed there.

Writes ``<results>/study_corollaries.json`` (every number, verdicts, seeds, versions, the embedder), the
generated ``docs/study/results_corollaries.md`` and ``figures/study/cor*.png`` and ``causal.png``. A part whose
records are missing is reported as "not run" with the stages that would make them (from the spec named in
``eligibility.json``); a part that ran on a partial build names the records it lacked. Refuses (exit 2) only
when the directory holds no v2 record at all.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from saemui.analysis import study_corollaries_report as scr
from saemui.analysis.study_report import add_output_options, write_outputs
from saemui.errors import SaemuiError


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_output_options(ap, json_name=scr.JSON_NAME, md_default=scr.DEFAULT_MD)
    d = scr.CorollaryOptions()  # the registered values
    ap.add_argument(
        "--n-boot",
        type=int,
        default=d.n_boot,
        help="run and item bootstraps of §8.2-§8.5 (default %(default)s)",
    )
    ap.add_argument(
        "--n-item-boot",
        type=int,
        default=d.n_item_boot,
        help="§8.1 per-seed item bootstrap (default %(default)s)",
    )
    ap.add_argument(
        "--n-random",
        type=int,
        default=d.n_random,
        help="§8.4 random subsets per cell (default %(default)s)",
    )
    ap.add_argument(
        "--dataset-n",
        type=int,
        default=d.dataset_n,
        help="§8.4 items per designed dataset (default %(default)s; tests of tiny zoos lower it)",
    )
    ap.add_argument(
        "--draws", type=int, default=d.draws, help="§8.4 datasets per level (default %(default)s)"
    )
    ap.add_argument(
        "--kmeans-k",
        type=int,
        default=d.kmeans_k,
        help="§8.4 k-means clusters over the pool (default %(default)s; tests of tiny zoos lower it)",
    )
    ap.add_argument(
        "--embedder",
        choices=scr.EMBEDDERS,
        default=d.embedder,
        help="§8.4 embedder: default = all-MiniLM-L6-v2 if installed, else TF-IDF + SVD (default %(default)s)",
    )
    args = ap.parse_args(argv)
    # every option of CorollaryOptions has the flag of the same name
    options = scr.CorollaryOptions(
        **{f.name: getattr(args, f.name) for f in dataclasses.fields(scr.CorollaryOptions)}
    )
    try:
        rep = scr.report(Path(args.results), options)
        out_json, written = write_outputs(
            args, scr.JSON_NAME, rep.data, scr.markdown(rep.data), lambda: scr.figures(rep)
        )
    except SaemuiError as e:
        print(f"reproduce_study_corollaries: error: {e}", file=sys.stderr)
        return 2
    data = rep.data
    print(f"task C {data['task_C'] or '–'}; wrote {out_json}, {args.md}")
    for k, name in scr.PARTS.items():
        part = data[k]
        print(f"  {name}: {part['status']}" + (f" ({part['error']})" if part["status"] == "error" else ""))
    if written:
        print(f"  {len(written)} figure file(s) under {args.figures}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
