"""``saemui ablate --run DIR --out FILE``: arm (a) of the causal check (protocol §8.5) for one run.

Loads the run's model (or ``--model``), ablates each sample's key units from the run's kept sets, and writes the
gold log-probabilities clean / key-ablated / under ``--draws`` random controls (:func:`saemui.ablation.logprob_arm`)
as JSON; prints the effect E with its paired item-bootstrap interval (:func:`saemui.analysis.causal.causal_effect`).
The accuracy arm needs a task's items and is Python only (:func:`saemui.ablation.accuracy_arm`).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_ablate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", required=True, help="result directory of `saemui run` whose key sets are ablated")
    p.add_argument("--out", required=True, help="JSON file to write (per-item log-probabilities)")
    p.add_argument(
        "--samples", help="JSONL records of the run, in its order (default: the prompts/responses it kept)"
    )
    p.add_argument("--model", help="model to load (default: the run's model name)")
    p.add_argument("--saes", help="SAE spec for an SAE run (default: the run's SAE source)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: cuda if available)")
    p.add_argument("--draws", type=int, default=5, help="random controls per sample (default 5)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random controls (default 0)")
    p.add_argument(
        "--n-boot", type=int, default=10_000, help="bootstrap resamples over items (default 10000)"
    )
    p.add_argument("--batch-size", type=int, default=8, help="samples per forward (default 8)")


def cmd_ablate(args: argparse.Namespace) -> int:
    from saemui.ablation import logprob_arm
    from saemui.analysis.causal import causal_effect
    from saemui.errors import SaemuiError
    from saemui.io import check_writable
    from saemui.models import load_model
    from saemui.records import read_samples
    from saemui.result import load_result

    for flag, v in (("--draws", args.draws), ("--n-boot", args.n_boot), ("--batch-size", args.batch_size)):
        if v < 1:
            raise SaemuiError(f"{flag} {v}: expected a positive number")
    out = Path(args.out)
    check_writable(out)
    res = load_result(args.run)
    model = res.summary.get("model") or {}
    spec = args.model or model.get("name")
    if not spec:
        raise SaemuiError(f"{args.run}: the result names no model; pass --model")
    lm = load_model(spec, device=args.device, dtype=model.get("dtype"))
    samples = read_samples(args.samples) if args.samples else None
    arm = logprob_arm(
        lm, res, samples, saes=args.saes, n_draws=args.draws, seed=args.seed, max_batch_size=args.batch_size
    )
    arm.save(out)
    eff = causal_effect(arm.delta_key, arm.delta_random, n_boot=args.n_boot, seed=0)
    print(f"items      {eff.n} ({arm.basis}; {int(arm.n_key.mean())} key units per sample on average)")
    print(f"Δlogp      key {eff.mean_key:.4f} nats, random {eff.mean_random:.4f} nats ({eff.n_draws} draws)")
    print(
        f"E          {eff.e:.4f} nats, {eff.level:.0%} interval [{eff.lo:.4f}, {eff.hi:.4f}] (B = {eff.n_boot})"
    )
    if arm.shortfall.any():
        print(f"shortfall  {int(arm.shortfall.sum())} control units could not be drawn (too few candidates)")
    print(f"written    {out}")
    return 0


__all__ = ["add_ablate_args", "cmd_ablate"]
