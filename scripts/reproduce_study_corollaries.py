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

``--cards DIR`` (default ``saes``) refreshes the "fidelity on the zoo's models" section of ``DIR/<bundle>/card.md``
for every bundle an SAE-health record used (:func:`saemui.analysis.zoo_v2_corollaries.fidelity_section`, between
markers); a bundle directory that is absent is named and skipped. ``--cards ''`` writes no card.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from saemui.analysis import study_corollaries_report as scr
from saemui.analysis import zoo_v2_corollaries as zc
from saemui.analysis.study_report import add_output_options, write_outputs
from saemui.errors import SaemuiError
from saemui.io import atomic_write_text, splice_section


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
    ap.add_argument(
        "--cards",
        default="saes",
        help="directory of SAE bundles whose card.md gets the zoo-fidelity section ('' = none; default %(default)s)",
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
        cards = write_cards(Path(args.cards), rep.context.health) if args.cards else []
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
    for line in cards:
        print(f"  {line}")
    return 0


def write_cards(cards: Path, health: list[dict]) -> list[str]:
    """Refresh the zoo-fidelity section of each used bundle's card.md; one line per bundle saying what was done."""
    out = []
    for suite in sorted({h["suite"] for h in health if h.get("suite")}):
        card = cards / suite / "card.md"
        if not card.is_file():
            out.append(f"card {card}: absent, fidelity section not written")
            continue
        body = zc.fidelity_section(health, suite)
        atomic_write_text(card, splice_section(card.read_text(encoding="utf-8"), zc.FIDELITY_MARKER, body))
        out.append(
            f"card {card}: fidelity section on {sum(h.get('suite') == suite for h in health)} model(s)"
        )
    return out


if __name__ == "__main__":
    sys.exit(main())
