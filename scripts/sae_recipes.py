#!/usr/bin/env python
"""Compare SAE training recipes on held-out task text at a few layers, before the full bundle run (issue 17).

Recipes differ in optimiser steps (batch size, epochs over the captured activations), k and the TopK variant
(per-token TopK vs BatchTopK); every recipe is trained on the same captured activations of the
:mod:`saemui.sae_data` text mix and evaluated with :mod:`saemui.sae_eval` on the response tokens of held-out task
answers (GSM8K / ARC test questions with their gold answers; the held-out chat / maths part of the mix when the
shared data is absent): FVE pooled / per-token median, CE-loss recovered, KL, dead, dense, train seconds.

Stages, each written atomically under ``--workdir`` and skipped when its output exists (kill at any time and
re-run the same command to resume; a half-finished stage restarts, finished ones are never redone):

    data          text mix + manifest (sae_data.build_mix) and the evaluation samples
    capture       per layer, chunks of sink-filtered activations (fp16 .npy, one file per chunk)
    train         one SAE per (recipe, layer), sae-lens inference format
    zero          per layer, the zero-ablation CE / KL sums (shared by all recipes)
    eval          per (recipe, layer), reconstruction + CE / KL summaries
    mui           per recipe, the default run's MUI (built-in samples, the recipe's SAEs at the compared
                  layers, topscore 0.9 and 0.95): how much MUI depends on the dictionary
    results       one JSON of recipe × layer (``--out``)

``--sensitivity RECIPE`` replaces the recipe list by the width / k grid around RECIPE (widths 512 / 1024 / 2048
at its k, k 16 / 32 / 64 at its width; :func:`saemui.sae_train.grid_recipes`), trained on the same captured
activations; the results then carry ``saemui.analysis.sensitivity.sensitivity_table``'s input rows.

``--workers N``: N copies of one command (each ``--threads 1``) share the workdir through lock files, as in
``scripts/train_saes.py``: one does the data, the capture and the zero-ablation baselines while the others wait,
then each claims free (recipe, layer) trainings, recipe evaluations and MUI rows.

``--plan`` prints the CPU-time estimate of each stage from the measured rates in cpu-budget.md and exits.

    PYTHONPATH=. HF_HUB_OFFLINE=1 python scripts/sae_recipes.py --plan
    PYTHONPATH=. HF_HUB_OFFLINE=1 nohup python scripts/sae_recipes.py --out results/sae_recipes.json &
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

os.environ.setdefault("TQDM_MININTERVAL", "60")

import torch  # noqa: E402

from saemui import sae_eval, sae_train  # noqa: E402
from saemui.errors import SaemuiError  # noqa: E402
from saemui.io import atomic_write_json  # noqa: E402
from saemui.sae_train import DEFAULT_RECIPES, LOAD_SECONDS, RATE_FORWARD, RATE_TRAIN, Recipe  # noqa: E402

log = logging.getLogger("sae_recipes")
#: the thresholds of the default-run MUI stage (the SAE primary of docs/study/protocol.md §5 and its neighbour)
MUI_THRESHOLDS = ("topscore:0.9", "topscore:0.95")
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@dataclass
class Config(sae_train.RunConfig):
    layers: list[int] | None = field(default_factory=lambda: [5, 15, 25])
    recipes: list[Recipe] = field(default_factory=lambda: list(DEFAULT_RECIPES))
    workdir: str = str(Path.home() / ".cache" / "saemui" / "sae_recipes")
    out: str = "results/sae_recipes.json"
    #: the recipe a ``--sensitivity`` grid is built around (None for a recipe comparison, the only case where the
    #: choice rule below picks a recipe)
    grid_of: str | None = None


# ---------------------------------------------------------------------------------------------------------------
# plan


def plan(cfg: Config, tokens_per_seq: float = 150.0) -> list[tuple[str, float]]:
    """(stage, CPU seconds) from the measured rates; capture forwards stop at the deepest layer, no head."""
    cap_rate = sae_train.capture_rate(cfg.model, max(cfg.layers))
    fwd_rate = sae_train.forward_rate(cfg.model)
    R, L = len(cfg.recipes), len(cfg.layers)
    eval_tok = cfg.eval_seqs * tokens_per_seq
    ce_tok = cfg.ce_seqs * tokens_per_seq
    rows = [("load model", LOAD_SECONDS), ("data (mix + task-item index)", 120.0)]
    rows.append(
        (f"capture {cfg.train_tokens:,} tokens × {L} layers (one pass)", cfg.train_tokens * 1.15 / cap_rate)
    )
    for r in cfg.recipes:
        rows.append(
            (
                f"train {r.name} × {L} layers ({r.steps(cfg.train_tokens):,} steps each)",
                L * r.train_seconds(cfg.train_tokens),
            )
        )
    rows.append((f"zero ablation {L} layers × {cfg.ce_seqs} seqs", 3 * L * ce_tok / fwd_rate))
    rows.append((f"eval FVE {R} recipes × {cfg.eval_seqs} seqs", R * eval_tok / cap_rate))
    rows.append(
        (f"eval CE/KL {R} recipes × {L} layers × {cfg.ce_seqs} seqs", R * (1 + L) * ce_tok / fwd_rate)
    )
    rows.append(
        (f"default-run MUI {R} recipes × {len(MUI_THRESHOLDS)} thresholds", R * (20 + 2_000 / cap_rate))
    )
    return rows


def print_plan(cfg: Config) -> None:
    rows = plan(cfg)
    print(
        f"plan: model {cfg.model}, layers {cfg.layers}, {len(cfg.recipes)} recipes, {cfg.train_tokens:,} training tokens"
    )
    print(
        f"rates: forward {RATE_FORWARD:.0f} tok/s (full, with head), SAE training {RATE_TRAIN:.0f} samples/s (w1024 k32)"
    )
    for name, s in rows:
        print(f"  {s / 60:7.1f} min  {name}")
    total = sum(s for _, s in rows)
    print(f"  {total / 60:7.1f} min  total on 1 thread (±2x with machine load); every stage resumable")


# ---------------------------------------------------------------------------------------------------------------
# stages (the pieces live in saemui.sae_train, shared with scripts/train_saes.py)


def stage_data(cfg: Config, lm, wd: Path) -> dict:
    shared = SHARED_DATA if SHARED_DATA.is_dir() else None
    return sae_train.run_data(cfg, lm, wd, Path(cfg.wheel_dir) if cfg.wheel_dir else wd / "wheels", shared)


def stage_capture(cfg: Config, lm, data: dict, wd: Path) -> dict[int, list[Path]]:
    return sae_train.exclusive(
        cfg.workers,
        wd / "locks" / "capture",
        lambda: (wd / "capture" / "complete.json").is_file(),
        lambda: sae_train.capture(
            lm,
            data["train_texts"],
            cfg.layers,
            wd / "capture",
            cfg.norm_factor,
            cfg.max_seq_len,
            cfg.capture_batch_tokens,
            cfg.chunk_batches,
            sae_train.capture_dtype(cfg.model, cfg.capture_dtype),
        ),
    )


def stage_mui(cfg: Config, lm, wd: Path) -> list[dict]:
    """The default run's MUI with each recipe's SAEs at the compared layers: rows for
    :func:`saemui.analysis.sensitivity.sensitivity_table` (basis, width, l0 = k for TopK, eta, mui in %)."""
    from saemui.engine import RunConfig as MUIConfig
    from saemui.engine import compute_mui
    from saemui.records import BUILTIN_SAMPLES, read_samples

    samples = read_samples(BUILTIN_SAMPLES)

    def dest(r: Recipe, th: str) -> Path:
        return wd / "mui" / r.name / f"{th.replace(':', '-')}.json"

    for r in cfg.recipes:
        for th in MUI_THRESHOLDS:
            lock = wd / "locks" / f"mui-{r.name}-{th.replace(':', '-')}"
            with sae_train.claimed(cfg.workers, lock, lambda r=r, th=th: dest(r, th).is_file()) as mine:
                if not mine:
                    continue
                res = compute_mui(
                    lm,
                    samples,
                    MUIConfig(
                        units="sae", saes=str(wd / "saes" / r.name), threshold=th, layers=list(cfg.layers)
                    ),
                    progress=False,
                )
                row = {
                    "basis": r.name,
                    "width": r.width,
                    "l0": r.k,
                    "eta": float(th.split(":")[1]),
                    "mui": 100 * res.mui,
                    "n_samples": int(res.summary["n_samples"]),
                    "layers": list(cfg.layers),
                    "mui_per_layer": {str(k): 100 * v for k, v in zip(res.layers, res.per_layer)},
                }
                atomic_write_json(dest(r, th), row)
                log.info("mui %s %s: %.3f %%", r.name, th, row["mui"])
    every = [dest(r, th) for r in cfg.recipes for th in MUI_THRESHOLDS]
    sae_train.wait_until(cfg.workers, lambda: all(d.is_file() for d in every), "the other workers' MUI rows")
    return [json.loads(d.read_text()) for d in every]


def run(cfg: Config) -> dict:
    from saemui.models import load_model
    from saemui.records import sample_from_dict

    torch.set_num_threads(cfg.threads)
    wd = Path(cfg.workdir)
    wd.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    lm = load_model(cfg.model)
    bad = [layer for layer in cfg.layers if not 0 <= layer < lm.n_layers]
    if bad:
        raise SaemuiError(f"layers {bad} do not exist (model has {lm.n_layers})")
    data = stage_data(cfg, lm, wd)
    files = stage_capture(cfg, lm, data, wd)
    samples = [sample_from_dict(s, f"eval sample {i}") for i, s in enumerate(data["eval_samples"])]
    eval_b = sae_eval.batches_from_samples(lm.tokenizer, samples, max_batch_tokens=cfg.capture_batch_tokens)
    ce_b = sae_eval.batches_from_samples(lm.tokenizer, samples[: cfg.ce_seqs], max_batch_tokens=1024)
    locks = wd / "locks"

    def trained(r: Recipe, layer: int) -> bool:
        return (wd / "saes" / r.name / f"L{layer:02d}" / "train_stats.json").is_file()

    def todo_eval(r: Recipe) -> list[int]:
        return [layer for layer in cfg.layers if not (wd / "eval" / r.name / f"L{layer:02d}.json").is_file()]

    # training: one unit per (recipe, layer); a layer's activations are loaded once for the units this worker takes
    for layer in cfg.layers:
        x = None
        for r in cfg.recipes:
            lock = locks / f"train-{r.name}-L{layer:02d}"
            with sae_train.claimed(cfg.workers, lock, lambda r=r, layer=layer: trained(r, layer)) as mine:
                if not mine:
                    continue
                x = sae_train.load_acts(files[layer]) if x is None else x
                log.info("train %s layer %d on %d tokens", r.name, layer, x.shape[0])
                dest = wd / "saes" / r.name / f"L{layer:02d}"
                sae_train.train_sae(x, r, f"blocks.{layer}.hook_resid_post", cfg.seed * 1000 + layer, dest)
        del x
    every = [(r, layer) for r in cfg.recipes for layer in cfg.layers]
    sae_train.wait_until(cfg.workers, lambda: all(trained(*u) for u in every), "the other workers' SAEs")
    # zero-ablation baselines per layer (shared by recipes; one worker computes them)
    zero = sae_train.exclusive(
        cfg.workers,
        locks / "zero",
        lambda: all((wd / "zero" / f"L{layer:02d}.json").is_file() for layer in cfg.layers),
        lambda: sae_train.zero_baselines(lm, cfg.layers, ce_b, wd / "zero", cfg.norm_factor),
    )
    # evaluation per recipe (one forward for all its layers) and per layer for CE; one unit per recipe
    for r in cfg.recipes:
        with sae_train.claimed(cfg.workers, locks / f"eval-{r.name}", lambda r=r: not todo_eval(r)) as mine:
            if mine:
                eval_recipe(cfg, lm, r, todo_eval(r), eval_b, ce_b, zero, wd)
    sae_train.wait_until(
        cfg.workers, lambda: not any(todo_eval(r) for r in cfg.recipes), "the other workers' evaluations"
    )
    rows = [
        json.loads((wd / "eval" / r.name / f"L{layer:02d}.json").read_text())
        for r in cfg.recipes
        for layer in cfg.layers
    ]
    mui_rows = stage_mui(cfg, lm, wd)
    capture_info = json.loads((wd / "capture" / "complete.json").read_text())
    result = {
        "model": cfg.model,
        "layers": cfg.layers,
        "recipes": [asdict(r) for r in cfg.recipes],
        "sink_rule": sae_eval.sink_rule_text(cfg.norm_factor),
        "eval_source": data["eval_source"],
        "eval_sequences": len(samples),
        "ce_sequences": min(cfg.ce_seqs, len(samples)),
        "capture_sinks": capture_info["sinks"],
        "data_manifest": {k: v for k, v in data["manifest"].items() if k != "dropped_overlaps"}
        | {"dropped_overlaps": data["manifest"]["dropped_overlaps"]["count"]},
        "rows": rows,
        "default_run_mui": mui_rows,
        "session_seconds": time.time() - t0,
        "config": {
            k: v
            for k, v in asdict(cfg).items()
            if k not in ("recipes", "workdir", "out", "wheel_dir", "workers")
        },
    }
    atomic_write_json(Path(cfg.out), result)
    return result


def eval_recipe(
    cfg: Config, lm, r: Recipe, todo: list[int], eval_b: list, ce_b: list, zero: dict, wd: Path
) -> None:
    if todo:
        saes = {layer: sae_train.load_sae(wd / "saes" / r.name / f"L{layer:02d}") for layer in todo}
        rec, sinks = sae_eval.recon_eval(lm, saes, eval_b, norm_factor=cfg.norm_factor)
        for layer in todo:
            ce = sae_eval.ce_eval(
                lm, {layer: saes[layer]}, ce_b, norm_factor=cfg.norm_factor, zero_cache=zero
            )
            st = json.loads((wd / "saes" / r.name / f"L{layer:02d}" / "train_stats.json").read_text())
            row = {
                "recipe": r.name,
                "layer": layer,
                **rec[layer].summary(),
                **ce[layer].summary(),
                "sinks": sinks[layer].to_json(),
                "train_seconds": st["train_seconds"],
                "train_steps": st["steps"],
                "train_tokens": st["train_tokens"],
            }
            atomic_write_json(wd / "eval" / r.name / f"L{layer:02d}.json", sae_train.json_safe(row))
            log.info(
                "eval %s L%d: fve %.3f ce_rec %.3f",
                r.name,
                layer,
                row["fve_pooled"],
                row.get("ce_loss_recovered", float("nan")),
            )


SENSITIVITY_OUT = "results/sae_sensitivity.json"


def parse_args(argv: list[str] | None = None) -> tuple[Config, bool]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    d = Config()
    sae_train.add_common_args(p, d)
    p.add_argument("--recipes", nargs="+", default=None, help="subset of recipe names (default: all)")
    p.add_argument("--width", type=int, default=None, help="override every recipe's width")
    p.add_argument(
        "--sensitivity",
        metavar="RECIPE",
        default=None,
        help="train and compare the width / k grid around RECIPE instead of the recipe list",
    )
    p.add_argument(
        "--out", default=None, help=f"result JSON (default {d.out}; with --sensitivity {SENSITIVITY_OUT})"
    )
    a = p.parse_args(argv)
    recipes = [sae_train.recipe_named(n) for n in a.recipes] if a.recipes else list(DEFAULT_RECIPES)
    if a.width:
        recipes = [replace(r, width=a.width) for r in recipes]
    if a.sensitivity:
        if a.recipes or a.width:
            raise SaemuiError("--sensitivity builds its own recipe grid: drop --recipes / --width")
        recipes = sae_train.grid_recipes(sae_train.recipe_named(a.sensitivity))
    # the grid never overwrites the recipe comparison's committed result
    out = a.out or (SENSITIVITY_OUT if a.sensitivity else d.out)
    cfg = Config(**sae_train.common_kwargs(a, d), recipes=recipes, out=out, grid_of=a.sensitivity)
    return cfg, a.plan


#: the choice rule, fixed before the comparison's results were read: the highest mean (over the compared layers) of
#: pooled FVE on held-out task response tokens, among recipes with ≤ 5 % dead features at every layer; recipes
#: within 0.005 of the best count as tied and the one with fewer training seconds wins (cheaper full run).
CHOICE_TIE = 0.005
CHOICE_MAX_DEAD = 0.05


def choose_recipe(rows: list[dict]) -> str:
    """The recipe of the full bundle run from the comparison's rows (see CHOICE_TIE / CHOICE_MAX_DEAD)."""
    by: dict[str, list[dict]] = {}
    for r in rows:
        by.setdefault(r["recipe"], []).append(r)
    cand = {
        name: (
            sum(float(r["fve_pooled"]) for r in rs) / len(rs),
            sum(float(r["train_seconds"]) for r in rs),
        )
        for name, rs in by.items()
        if all((r.get("dead_frac") or 0.0) <= CHOICE_MAX_DEAD for r in rs)
    }
    if not cand:
        raise SaemuiError(f"no recipe has <= {CHOICE_MAX_DEAD:.0%} dead features at every compared layer")
    best = max(f for f, _ in cand.values())
    tied = [n for n, (f, _) in cand.items() if f >= best - CHOICE_TIE]
    return min(tied, key=lambda n: (cand[n][1], n))


def report(res: dict) -> None:
    from saemui.analysis.sensitivity import sensitivity_table

    for row in res["rows"]:
        print(
            f"{row['recipe']:28s} L{row['layer']:02d} fve {row['fve_pooled']:.3f} (median {row['fve_token_median']:.3f}) "
            f"ce_rec {row.get('ce_loss_recovered') or float('nan'):.3f} kl {row.get('kl_spliced') or float('nan'):.3f} "
            f"dead {row['dead_frac']:.3f} dense {row['dense_frac']:.3f} {row['train_seconds']:.0f}s"
        )
    if not res.get("config", {}).get("grid_of"):
        # a sensitivity grid chooses nothing: it shows how figures and MUI move with width and k
        print(f"chosen recipe (rule fixed before the results): {choose_recipe(res['rows'])}")
    mui = res.get("default_run_mui") or []
    if mui:
        print(f"default-run MUI (%) at layers {res['layers']}:")
        keep = ("basis", "width", "l0", "eta", "mui")
        print(sensitivity_table([{k: m[k] for k in keep} for m in mui]).round(3).to_string())


def main(argv: list[str] | None = None) -> int:
    return sae_train.script_main("sae_recipes", argv, parse_args, print_plan, lambda cfg, _: run(cfg), report)


if __name__ == "__main__":
    sys.exit(main())
