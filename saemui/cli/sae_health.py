"""``saemui sae-health``: how an SAE suite reconstructs a model's residuals on the response tokens MUI reads
(:func:`saemui.sae_eval.suite_health`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from saemui.errors import SaemuiError


def add_sae_health_args(p: argparse.ArgumentParser) -> None:
    from saemui.cli.args import add_model_args, parse_layers

    add_model_args(p)
    p.add_argument(
        "--saes", help="SAE spec (bundle dir, sae-lens dir or RELEASE[:ID]); default: the model's bundle"
    )
    p.add_argument("--samples", help="JSONL of {prompt, response} records (default: the built-in set)")
    p.add_argument("--limit", type=int, help="use only the first N records")
    p.add_argument("--layers", type=parse_layers, help="layers to evaluate (default: all of the suite)")
    p.add_argument(
        "--ce-samples", type=int, default=200, help="records used for CE / KL (default 200; 0 = all)"
    )
    p.add_argument("--prompt-format", default="auto", choices=["auto", "chat", "raw"])
    p.add_argument("--out", required=True, help="JSON file to write")


def cmd_sae_health(args: argparse.Namespace) -> int:
    from saemui.bundles import find_bundles
    from saemui.io import atomic_write_json, check_writable
    from saemui.models import load_model
    from saemui.provenance import machine_info, package_versions
    from saemui.records import BUILTIN_SAMPLES, read_samples
    from saemui.sae_eval import json_safe, suite_health

    if args.limit is not None and args.limit < 1:
        raise SaemuiError(f"--limit {args.limit}: expected a positive number of records")
    if args.ce_samples < 0:
        raise SaemuiError(f"--ce-samples {args.ce_samples}: expected 0 (all) or a positive number")
    saes = args.saes
    if not saes:
        found = find_bundles([args.model])
        if not found:
            raise SaemuiError(f"no shipped SAE bundle names the model {args.model!r}: pass --saes")
        saes = str(found[0])
    out = Path(args.out)
    check_writable(out)
    path = Path(args.samples) if args.samples else BUILTIN_SAMPLES
    samples = read_samples(path)[: args.limit]
    lm = load_model(args.model, device=args.device, dtype=args.dtype)
    rep = suite_health(lm, saes, samples, args.layers, args.ce_samples or None, args.prompt_format)
    rep["config"] = {
        "samples": str(args.samples) if args.samples else "builtin:default_samples.jsonl",
        "limit": args.limit,
        "layers": args.layers,
        "ce_samples": args.ce_samples,
        "prompt_format": args.prompt_format,
    }
    rep["versions"] = package_versions()
    rep["machine"] = machine_info()
    atomic_write_json(out, json_safe(rep))
    m = rep["medians"]

    def f(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.3f}"

    print(
        f"{rep['suite']} on {args.model}: {len(rep['per_layer'])} layers, {rep['n_samples']} samples; median "
        f"FVE {f(m['fve_pooled'])} (min {f(rep['min_fve_pooled'])}), CE recovered {f(m['ce_loss_recovered'])}, "
        f"dead {f(m['dead_frac'])}"
    )
    print(f"written    {out}")
    return 0


__all__ = ["add_sae_health_args", "cmd_sae_health"]
