#!/usr/bin/env python
"""Build the model zoo (``saemui.zoo``): train the derived models, evaluate every (model, task) point.

    python scripts/build_zoo.py --plan                 # stages, status and CPU estimate; does nothing
    python scripts/build_zoo.py                        # run every pending stage (resumable; re-run after a kill)
    python scripts/build_zoo.py --only 'smollm2*'      # only these models (and the trainings they need)
    python scripts/build_zoo.py --tiny --results DIR   # seconds-long zoo of tiny random models (CI)
    python scripts/build_zoo.py --spec v2 --plan       # Study v2 (docs/study/protocol.md): plan per §9 group
    python scripts/build_zoo.py --spec v2 --only 'smollm2*'   # v2 build of one family (results/zoo-v2)

Weights and generation caches go to ``$SAEMUI_CACHE/zoo/<zoo>/`` (default ``~/.cache/saemui``), never into the
repository; results (small JSON per point) go to ``--results`` (default ``results/zoo``, ``results/zoo-v2`` for
``--spec v2``; ``--tiny`` defaults to the cache so it never overwrites the committed real results).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

from saemui.errors import SaemuiError  # noqa: E402


def _measured_fwd(args: argparse.Namespace, base: dict[str, float]) -> dict[str, float]:
    fwd = dict(base)
    for pair in args.rate or []:
        name, sep, val = pair.partition("=")
        try:
            fwd[name] = float(val)
        except ValueError:
            raise SaemuiError(f"--rate {pair!r}: expected MODEL=TOKENS_PER_SECOND") from None
        if not sep or fwd[name] <= 0:
            raise SaemuiError(f"--rate {pair!r}: expected MODEL=TOKENS_PER_SECOND (> 0)")
    return fwd


def _rates_v2(args: argparse.Namespace):
    from saemui.zoo.stages_v2 import StudyRates

    base = StudyRates()
    return StudyRates(
        fwd_tok_s=tuple(_measured_fwd(args, dict(base.fwd_tok_s)).items()),
        gen_factor=args.gen_factor or base.gen_factor,
        one_pass=not args.loop_cost,
    )


def _rates(args: argparse.Namespace):
    from saemui.zoo import Rates

    base = Rates()
    fwd = _measured_fwd(args, dict(base.fwd_tok_s))
    return Rates(
        fwd_tok_s=tuple(fwd.items()),
        gen_factor=args.gen_factor or base.gen_factor,
        train_factor=args.train_factor or base.train_factor,
    )


def tiny_spec(cache: Path):
    """Two tiny random roots (saemui.testing) saved under the cache, and the tiny zoo on them."""
    from saemui.testing import save_tiny_model
    from saemui.zoo import tiny_zoo

    root = cache / "zoo" / "tiny" / "roots"
    root.mkdir(parents=True, exist_ok=True)
    return tiny_zoo(save_tiny_model(root, "llama"), save_tiny_model(root, "gemma"))


def tiny_spec_v2(cache: Path):
    """The tiny v2 zoo on the same two tiny random roots, with a random SAE per layer of the llama root (the
    causal check's SAE arm and SAE health need a suite)."""
    from saemui.testing import save_synthetic_sae, save_tiny_model
    from saemui.zoo.spec_v2 import tiny_zoo_v2

    root = cache / "zoo" / "tiny" / "roots"
    root.mkdir(parents=True, exist_ok=True)
    llama = save_tiny_model(root, "llama")
    cfg = json.loads((llama / "config.json").read_text())
    saes = cache / "zoo" / "tiny" / "saes-llama"
    for layer in range(cfg["num_hidden_layers"]):
        d = saes / f"layer_{layer}"
        if not (d / "cfg.json").is_file():
            save_synthetic_sae(d, cfg["hidden_size"], 48, f"blocks.{layer}.hook_resid_post", seed=layer)
    return tiny_zoo_v2(llama, save_tiny_model(root, "gemma"), saes)


def cut_table(plan, results: Path, cache: Path, rates, only: list[str] | None) -> str:
    """§9's re-plan: the remaining CPU time under each number of cuts, at the plan's rates and scaled by the
    measured / estimated ratio of the finished stages (the figure §9 compares with 10.5 h)."""
    from saemui.zoo.spec_v2 import CUTS, zoo_v2
    from saemui.zoo.stages_v2 import measured_ratio, plan_v2, remaining_by_root, remaining_seconds

    ratio, n = measured_ratio(plan)
    head = f"§9 cuts (applied now: {len(plan.spec.cuts)}); remaining CPU at the plan's rates"
    head += f", and × {ratio:.2f} (measured / estimated, {n} stages)" if ratio is not None else ""
    head += "; per root (one root per core, §9) and the larger of the two × the ratio"
    lines = [head]
    for k in range(len(CUTS) + 1):
        p = plan_v2(zoo_v2(k), results, cache, rates, only)
        rem = remaining_seconds(p) / 3600
        per = remaining_by_root(p)
        scaled = f"  → {rem * ratio:5.2f} h" if ratio is not None else ""
        roots = " / ".join(f"{r} {v / 3600:.2f} h" for r, v in per.items())
        wall = f" → wall ≈ {max(per.values()) / 3600 * ratio:.2f} h" if ratio is not None else ""
        what = "no cut" if k == 0 else f"+ cut {k}: {CUTS[k]}"
        lines.append(f"  {rem:5.2f} h{scaled}  [{roots}{wall}]  {what}")
    return "\n".join(lines)


def main_v2(args: argparse.Namespace, cache: Path, only: list[str] | None) -> int:
    from saemui.zoo.builder_v2 import build_v2
    from saemui.zoo.spec_v2 import zoo_v2
    from saemui.zoo.stages_v2 import format_plan_v2, plan_v2

    if args.saes:
        raise SaemuiError("--saes applies to the v1 zoo; the v2 spec names its SAE bundle (protocol §5)")
    spec = tiny_spec_v2(cache) if args.tiny else zoo_v2()
    if args.results:
        results = Path(args.results)
    elif args.tiny:
        results = cache / "zoo" / "tiny-v2" / "results"
    else:
        results = REPO / "results" / "zoo-v2"
    if args.plan:
        plan = plan_v2(spec, results, cache, _rates_v2(args), only)
        print(format_plan_v2(plan))
        if not args.tiny:
            print(cut_table(plan, results, cache, _rates_v2(args), only))
        return 0
    # The engine runs gc.collect() after every measurement (SAE groups hold reference cycles); with torch and
    # transformers imported that scans ~400k long-lived objects, about a second per call on a busy 2-core
    # machine and one call per setting. Freezing what exists now limits the scans to the build's own objects.
    gc.freeze()
    try:
        groups = [g.strip() for g in args.groups.split(",") if g.strip()] if args.groups else None
        rep = build_v2(
            spec, results, cache, only=only, device=args.device, progress=args.progress, groups=groups
        )
    finally:
        gc.unfreeze()
    print(f"ran {len(rep.ran)} stage(s), skipped {len(rep.skipped)} already done; results in {results}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--plan", action="store_true", help="print stages, status and CPU estimate; run nothing")
    ap.add_argument(
        "--spec",
        choices=("v1", "v2"),
        default="v1",
        help="v1: the zoo of docs/zoo.md (results/zoo); v2: Study v2 (docs/study/protocol.md, results/zoo-v2)",
    )
    ap.add_argument(
        "--loop-cost",
        action="store_true",
        help="v2 --plan: cost one forward per setting (before compute_mui_many) instead of one per pass group",
    )
    ap.add_argument("--only", help="comma-separated model names or globs (default: all)")
    ap.add_argument(
        "--groups",
        help="v2: run only these stage groups, comma-separated (e.g. 0 = stage 0 alone; see --plan)",
    )
    ap.add_argument("--tiny", action="store_true", help="the tiny random-model zoo (seconds; for CI)")
    ap.add_argument(
        "--results", help="result directory (default results/zoo; --tiny: <cache>/zoo/tiny/results)"
    )
    ap.add_argument("--cache", help="cache root (default $SAEMUI_CACHE or ~/.cache/saemui)")
    ap.add_argument("--device", help="cpu or cuda (a lent GPU machine); default: cuda when available")
    ap.add_argument("--rate", action="append", metavar="MODEL=TOK_S", help="measured forward rate for --plan")
    ap.add_argument("--gen-factor", type=float, help="generation is forward rate / this (default 4)")
    ap.add_argument("--train-factor", type=float, help="a training token costs this many forward tokens (3)")
    ap.add_argument(
        "--saes",
        action="append",
        metavar="ROOT=BUNDLE",
        help="also measure SAE-feature MUI of ROOT (e.g. smollm2) and its derived models with this bundle",
    )
    ap.add_argument("--progress", action="store_true", help="progress bars for generation and MUI")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        from saemui.models import cache_dir
        from saemui.zoo import build, format_plan, plan, real_zoo

        cache = Path(args.cache) if args.cache else cache_dir()
        only = [x.strip() for x in args.only.split(",") if x.strip()] if args.only else None
        if args.spec == "v2":
            return main_v2(args, cache, only)
        spec = tiny_spec(cache) if args.tiny else real_zoo()
        if args.saes:
            from dataclasses import replace

            from saemui.zoo import validate

            pairs = []
            for item in args.saes:
                root, sep, bundle = item.partition("=")
                if not sep or not root or not bundle:
                    raise SaemuiError(f"--saes {item!r}: expected ROOT=BUNDLE_DIR")
                pairs.append((root, bundle))
            spec = validate(replace(spec, saes=tuple(pairs)))
        if args.results:
            results = Path(args.results)
        elif args.tiny:
            results = cache / "zoo" / "tiny" / "results"
        else:
            results = REPO / "results" / "zoo"
        rates = _rates(args)
        if args.plan:
            print(format_plan(spec, plan(spec, results, cache, rates, only), rates))
            return 0
        rep = build(spec, results, cache, only=only, device=args.device, progress=args.progress)
        print(f"ran {len(rep.ran)} stage(s), skipped {len(rep.skipped)} already done; results in {results}")
        return 0
    except SaemuiError as e:
        print(f"build_zoo: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
