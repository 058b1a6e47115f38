"""Benchmark: K settings measured by K separate runs vs one ``compute_mui_many`` pass (docs/study/protocol.md §9, W4).

Both are measured in ONE invocation, on the same machine, model and samples, one after the other (separate runs
first, then the shared pass; ``--rounds`` repeats both and keeps each one's fastest round). The settings are the
protocol's §5 neuron settings (P0, the share sweep, the paper-compatible site/alignment at two shares, P0 over the
first T positions) and its SAE pair (topscore η 0.9 and 0.95). The JSON records the model (and whether it is the
tiny random test model), the settings, the wall times, their ratio and whether every shared-pass result equals
its separate run exactly. Wall-clock numbers move with machine load: compare the ratio, not the seconds.

    python scripts/bench_many.py --model tiny --out bench-many.json            # seconds, checks that it works
    python scripts/bench_many.py --model smollm2-135m-instruct --limit 64 --out bench-many.json   # real model
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from saemui.engine import RunConfig, compute_mui, compute_mui_many
from saemui.io import atomic_write_text
from saemui.models import load_model
from saemui.provenance import machine_info
from saemui.records import BUILTIN_SAMPLES, read_samples

#: docs/study/protocol.md §5: the neuron settings one law point measures (T = 4: the arith-style first-T control)
NEURON_SETTINGS = [
    {"threshold": "topk:0.001953125"},
    {"threshold": "topk:0.00390625"},
    {"threshold": "topk:0.0078125"},
    {"threshold": "topk:0.001953125", "neuron_site": "gate_act", "alignment": "response"},
    {"threshold": "topk:0.001", "neuron_site": "gate_act", "alignment": "response"},
    {"threshold": "topk:0.001953125", "first_tokens": 4},
]
NEURON_SHARED = {"units": "neurons", "neuron_site": "down_input", "alignment": "predicting"}
SAE_SETTINGS = [{"threshold": "topscore:0.9"}, {"threshold": "topscore:0.95"}]
SAE_SHARED = {"units": "sae", "alignment": "response"}


def _tiny(work: Path, with_saes: bool) -> tuple[str, str | None]:
    from saemui.testing import save_synthetic_sae, save_tiny_model

    model = save_tiny_model(work, "llama")
    saes = None
    if with_saes:
        saes = work / "saes"
        for layer in range(3):
            save_synthetic_sae(
                saes / f"layer_{layer}", 64, 128, f"blocks.{layer}.hook_resid_post", seed=layer
            )
    return str(model), None if saes is None else str(saes)


def _equal(a, b) -> bool:
    same_arrays = sorted(a.arrays) == sorted(b.arrays) and all(
        np.array_equal(a.arrays[k], b.arrays[k]) for k in a.arrays
    )
    return same_arrays and a.samples == b.samples and json.dumps(a.summary) == json.dumps(b.summary)


def bench_units(lm, samples, shared: dict, settings: list[dict], rounds: int) -> dict:
    cfgs = [RunConfig(**{**shared, **s}) for s in settings]
    compute_mui(lm, samples[:2], cfgs[0], progress=False)  # warm-up: first-call allocations, lazy imports
    best_sep: list[float] | None = None
    best_many = None
    for _ in range(rounds):
        sep_times, separate = [], []
        for cfg in cfgs:
            t = time.perf_counter()
            separate.append(compute_mui(lm, samples, cfg, progress=False))
            sep_times.append(time.perf_counter() - t)
        t = time.perf_counter()
        many = compute_mui_many(lm, samples, cfgs, progress=False)
        t_many = time.perf_counter() - t
        if best_sep is None or sum(sep_times) < sum(best_sep):
            best_sep = sep_times
        best_many = t_many if best_many is None else min(best_many, t_many)
    return {
        "settings": [{**shared, **s} for s in settings],
        "k": len(cfgs),
        "n_samples": len(samples),
        "n_scored_tokens": [r.summary["n_tokens"] for r in many],
        "mui_percent": [r.summary["mui_percent"] for r in many],
        "seconds_separate": best_sep,
        "seconds_separate_total": sum(best_sep),
        "seconds_many": best_many,
        "ratio_separate_over_many": sum(best_sep) / best_many,
        "results_equal": all(_equal(a, b) for a, b in zip(many, separate)),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--model", default="tiny", help="'tiny' (random test model, seconds) or a model name/path"
    )
    ap.add_argument(
        "--saes", default=None, help="SAE suite for the SAE pair (default: the model's shipped bundle)"
    )
    ap.add_argument("--units", default="neurons,sae", help="comma-separated: neurons, sae")
    ap.add_argument("--samples", default=None, help="JSONL records (default: the built-in samples)")
    ap.add_argument("--limit", type=int, default=None, help="first N records")
    ap.add_argument("--rounds", type=int, default=1, help="repeat both measurements, keep the fastest")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--out", default=None, help="write the measurements as JSON here")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    units = [u.strip() for u in args.units.split(",") if u.strip()]
    samples = read_samples(Path(args.samples) if args.samples else BUILTIN_SAMPLES)[: args.limit]
    with tempfile.TemporaryDirectory(prefix="bench-many-") as work:
        tiny = args.model == "tiny"
        model, saes = _tiny(Path(work), "sae" in units and not args.saes) if tiny else (args.model, None)
        saes = args.saes or saes
        lm = load_model(model, device="cpu")
        out: dict = {
            "model": "tiny random llama (saemui.testing, 3 layers, d_mlp 96)" if tiny else args.model,
            "tiny": tiny,
            "machine": machine_info(),
            "note": "wall-clock in one invocation; compare the ratio, not the seconds",
            "cases": {},
        }
        print(f"model: {out['model']}; {len(samples)} samples; {args.threads} thread(s)")
        for u in units:
            if u == "neurons":
                res = bench_units(lm, samples, NEURON_SHARED, NEURON_SETTINGS, args.rounds)
            elif u == "sae":
                shared = {**SAE_SHARED, **({"saes": saes} if saes else {})}
                res = bench_units(lm, samples, shared, SAE_SETTINGS, args.rounds)
            else:
                ap.error(f"--units: unknown {u!r} (expected neurons or sae)")
            out["cases"][u] = res
            print(
                f"{u}: K={res['k']}  separate {res['seconds_separate_total']:.2f} s  one pass "
                f"{res['seconds_many']:.2f} s  ratio {res['ratio_separate_over_many']:.2f}x  "
                f"results equal: {res['results_equal']}"
            )
    if args.out:
        atomic_write_text(Path(args.out), json.dumps(out, indent=2) + "\n")
    return 0 if all(c["results_equal"] for c in out["cases"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
