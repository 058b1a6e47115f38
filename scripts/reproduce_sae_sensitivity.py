#!/usr/bin/env python
"""The SAE width / k sensitivity table and figure from ``results/sae_sensitivity.json`` (issue 17; offline, no
model).

    python scripts/reproduce_sae_sensitivity.py [--results results/sae_sensitivity.json]
        [--figure figures/sae_sensitivity] [--readme saes/README.md | --readme '']

The JSON is what ``scripts/sae_recipes.py --sensitivity RECIPE`` writes (one-factor-at-a-time grid of widths and k
around RECIPE, trained on the same activations). Writes ``<figure>.png`` / ``.pdf``
(:func:`saemui.plots.plot_sae_sensitivity`) and refreshes the "Width / k sensitivity" section of ``--readme``
between its markers (:func:`saemui.analysis.sensitivity.sae_grid_markdown`); prints the table.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from saemui.analysis.sensitivity import sae_grid, sae_grid_markdown
from saemui.errors import SaemuiError
from saemui.io import atomic_write_text, splice_section
from saemui.readers import read_json

MARKER = "sae sensitivity"
COMMAND = "python scripts/reproduce_sae_sensitivity.py"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", default="results/sae_sensitivity.json", help="default %(default)s")
    ap.add_argument("--figure", default="figures/sae_sensitivity", help="figure stem (default %(default)s)")
    ap.add_argument(
        "--readme", default="saes/README.md", help="README whose section is refreshed ('' = none)"
    )
    args = ap.parse_args(argv)
    try:
        res = read_json(Path(args.results), dict, "SAE sensitivity results")
        grid = sae_grid(res)
        md = sae_grid_markdown(grid, res, COMMAND)
        from saemui.plots import plot_sae_sensitivity, save_figure

        n = sorted({int(m["n_samples"]) for m in res["default_run_mui"] if "n_samples" in m})
        fig = plot_sae_sensitivity(
            grid,
            caption=f"{res.get('model', '?')}, layers {grid['layers'].iloc[0]}; MUI over the default run's "
            f"{'/'.join(map(str, n))} samples; FVE on the response tokens of {res.get('eval_sequences', '?')} "
            "held-out answers, median over layers with their min-max range; one training seed per SAE",
        )
        written = save_figure(fig, args.figure)
        if args.readme:
            readme = Path(args.readme)
            if not readme.is_file():
                raise SaemuiError(f"--readme {readme}: no such file")
            atomic_write_text(readme, splice_section(readme.read_text(encoding="utf-8"), MARKER, md))
    except SaemuiError as e:
        print(f"reproduce_sae_sensitivity: error: {e}", file=sys.stderr)
        return 2
    print(md)
    print(
        "wrote "
        + ", ".join(map(str, written))
        + (f" and the section of {args.readme}" if args.readme else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
