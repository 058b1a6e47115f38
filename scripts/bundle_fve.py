#!/usr/bin/env python
"""Per-layer response-token FVE and L0 of SAE bundles, all measured the same way: a before / after table.

The text is the bundle cards' evaluation text: GSM8K / ARC test questions with their gold answers in chat format
(:func:`saemui.sae_train.task_samples`, seed 0, from ``../shared/data``), scored on the response tokens MUI reads,
sink rule of :mod:`saemui.sae_eval`. Every bundle must encode the same model. Writes one JSON (``--out``) with the
rows, the sink counts, the settings, versions and machine.

    PYTHONPATH=. HF_HUB_OFFLINE=1 python scripts/bundle_fve.py --bundle saes/A --bundle saes/B --out fve.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def measure(bundles: list[Path], n: int, seed: int, threads: int) -> dict:
    import torch

    from saemui import sae_eval, sae_train
    from saemui.errors import SaemuiError
    from saemui.models import load_model
    from saemui.provenance import machine_summary, package_versions
    from saemui.records import sample_from_dict

    torch.set_num_threads(threads)
    mans = [json.loads((b / "manifest.json").read_text()) for b in bundles]
    models = {m["model"]["name"] for m in mans}
    if len(models) != 1:
        raise SaemuiError(
            f"--bundle: the bundles encode different models {sorted(models)}; compare one model"
        )
    if not (SHARED_DATA / "gsm8k" / "test.jsonl").is_file():
        raise SaemuiError(f"{SHARED_DATA}/gsm8k/test.jsonl: the evaluation text needs ../shared/data")
    lm = load_model(models.pop(), device="cpu", dtype="float32")
    recs, source = sae_train.task_samples([], SHARED_DATA, n, "shared", seed)
    samples = [sample_from_dict(r, f"eval sample {i}") for i, r in enumerate(recs)]
    batches = sae_eval.batches_from_samples(lm.tokenizer, samples)
    out: dict = {
        "schema": "saemui-bundle-fve/1",
        "eval_source": source,
        "n_samples": len(samples),
        "seed": seed,
        "sink_rule": sae_eval.sink_rule_text(sae_eval.DEFAULT_NORM_FACTOR),
        "bundles": {},
        "versions": package_versions(),
        "machine": machine_summary(),
        "threads": threads,
    }
    for b, m in zip(bundles, mans):
        t0 = time.time()
        saes = {s["layer"]: sae_train.load_sae(b / s["path"]) for s in m["saes"]}
        rec, sinks = sae_eval.recon_eval(lm, saes, batches)
        rows = [
            {
                "layer": layer,
                **{k: st.summary()[k] for k in ("fve_pooled", "fve_token_median", "l0", "n_tokens")},
            }
            for layer, st in sorted(rec.items())
        ]
        fve = [r["fve_pooled"] for r in rows]
        out["bundles"][b.name] = {
            "rows": rows,
            "fve_median": statistics.median(fve),
            "fve_min": min(fve),
            "sink_share_median": statistics.median(s.to_json()["shares"]["total"] for s in sinks.values()),
            "seconds": time.time() - t0,
        }
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", action="append", required=True, type=Path, help="a bundle directory (repeat)")
    ap.add_argument("--n", type=int, default=400, help="task answers (the cards use 400)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args(argv)
    from saemui.errors import SaemuiError
    from saemui.io import atomic_write_json

    try:
        res = measure(a.bundle, a.n, a.seed, a.threads)
    except SaemuiError as e:
        print(f"bundle_fve: error: {e}", file=sys.stderr)
        return 2
    atomic_write_json(a.out, res)
    names = list(res["bundles"])
    print("layer  " + "  ".join(f"{n[:40]:>40s}" for n in names))
    for i, row in enumerate(res["bundles"][names[0]]["rows"]):
        vals = [res["bundles"][n]["rows"][i]["fve_pooled"] for n in names]
        print(f"{row['layer']:5d}  " + "  ".join(f"{v:40.3f}" for v in vals))
    for n in names:
        b = res["bundles"][n]
        print(f"{n}: median {b['fve_median']:.3f}, min {b['fve_min']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
