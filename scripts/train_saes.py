#!/usr/bin/env python
"""Train, evaluate and package a residual-stream SAE bundle for a saemui model (SmolLM2-135M-Instruct, Gemma-3-270M).

Built from the library pieces the recipe comparison uses (``scripts/sae_recipes.py``), so its winning recipe is
passed here unchanged (``--recipe NAME``, or ``--arch/--k/--batch-size/--epochs/--lr/--width``):

    data     text mix of :mod:`saemui.sae_data` (general, chat Q&A, maths, code; task items excluded by hash) and
             the task-answer evaluation samples (:func:`saemui.sae_train.prepare_data`)
    capture  every layer's sink-filtered activations, one forward per batch, fp16 chunks (resumable by chunk)
    train    one sae-lens SAE per layer (:func:`saemui.sae_train.train_sae`), exported to fp16 (what ships)
    eval     :mod:`saemui.sae_eval` on the fp16 weights: sink rule, pooled and per-token FVE on ≥ 50k held-out
             tokens per text kind and on the response tokens of task answers, CE-loss recovered and KL with the
             reconstruction spliced in on ≥ 200 task answers, dead / dense over all evaluation tokens
    bundle   ``<out>/manifest.json``, ``layer_XX/{cfg.json,sae_weights.safetensors}``, card.json / card.md with
             the sink rule and share dropped, the text-mix manifest, and the issue-17 targets met or missed

Every stage writes atomically under ``--workdir`` and is skipped when done: re-run the same command to resume.
``--workers N`` lets N copies of one command (each ``--threads 1``) share the run on one machine: the data and
the capture are done by one of them while the others wait, then each claims free layers (training), recon chunks
and CE groups through lock files in the workdir, and one of them writes the bundle. Small SAEs use two threads
poorly, so two 1-thread workers finish the training and the CE stage sooner than one 2-thread process.
``--plan`` prints the CPU-time estimate per stage (and the disk the capture needs) and exits.

The v1 bundle (smollm2-135m-instruct-res-topk-w1024-k32, OpenWebText + Wikipedia only, evaluation without the
sink rule) was built by the previous version of this script: ``git show fd551a2:scripts/train_saes.py``
(the bundle itself is commit e3429e0); its corpus is reproducible from there, not from this script.

    PYTHONPATH=. HF_HUB_OFFLINE=1 python scripts/train_saes.py --plan
    PYTHONPATH=. HF_HUB_OFFLINE=1 nohup python scripts/train_saes.py > train_saes.log 2>&1 &
    PYTHONPATH=. HF_HUB_OFFLINE=1 nohup python scripts/train_saes.py --model gemma3-270m > gemma.log 2>&1 &
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import platform
import shutil
import statistics
import sys
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

os.environ.setdefault("TQDM_MININTERVAL", "60")

import torch  # noqa: E402

from saemui import sae_data, sae_eval, sae_train  # noqa: E402
from saemui.errors import SaemuiError  # noqa: E402
from saemui.io import atomic_write_json, atomic_write_text  # noqa: E402
from saemui.provenance import machine_summary  # noqa: E402
from saemui.sae_train import Recipe  # noqa: E402
from saemui.saes import bundle_entry, write_bundle_manifest  # noqa: E402

log = logging.getLogger("train_saes")
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
HOOK_TEMPLATE = "blocks.{layer}.hook_resid_post"
# Issue 17's bundle limits (MB, whole bundle directory).
SIZE_LIMITS_MB = {"smollm2-135m-instruct": 80.0, "gemma3-270m": 60.0}
TARGETS = {
    "response_fve_median": 0.72,
    "response_fve_min": 0.6,
    "ce_recovered_median": 0.9,
    "dead_max": 0.05,
}
# tokens per evaluation sample (chat template + GSM8K / ARC question + answer), for the plan only
SAMPLE_TOKENS = 200.0


@dataclass
class Config(sae_train.RunConfig):
    recipe: Recipe = sae_train.DEFAULT_RECIPE
    out: str | None = None  # default saes/<model>-res-<arch>-w<width>-k<k>
    # 0.2, not the comparison's 0.1: the general corpus has 2,000 documents and 50k held-out tokens need ~350
    heldout_frac: float = 0.2
    eval_tokens: int = 50_000  # per text kind
    ce_group: int = 5  # layers per CE call (one clean forward shared; the unit of resumption)
    size_limit_mb: float | None = None  # default SIZE_LIMITS_MB[model]
    workdir: str = str(Path.home() / ".cache" / "saemui" / "train_saes")

    def out_dir(self) -> Path:
        r = self.recipe
        return Path(self.out or f"saes/{Path(self.model).name}-res-{r.arch}-w{r.width}-k{r.k}")

    def data_key(self) -> str:
        """Workdir key: the fields that change the text, the capture or the evaluation samples."""
        keys = [
            "model",
            "train_tokens",
            "kind_shares",
            "heldout_frac",
            "eval_seqs",
            "eval_source",
            "norm_factor",
            "max_seq_len",
            "seed",
        ]
        blob = json.dumps({k: getattr(self, k) for k in keys}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


# ---------------------------------------------------------------------------------------------------------------
# plan


def model_shape(model: str) -> tuple[int, int]:
    """(layers, d_model) without loading a registry model; other models are loaded (tiny test models, paths)."""
    if model in sae_train.KNOWN_MODELS:
        return sae_train.KNOWN_MODELS[model][:2]
    from saemui.models import load_model

    lm = load_model(model)
    return lm.n_layers, lm.d_model


def _itemsize(dtype: str) -> int:
    return getattr(torch, dtype).itemsize


def id_ranges(ids: Iterable[int]) -> str:
    """Token ids as sorted runs ("0–4, 6–106, 256001–262143 (6,250 ids)"): Gemma-3 has thousands of special ids."""
    out: list[str] = []
    xs = sorted(set(ids))
    i = 0
    while i < len(xs):
        j = i
        while j + 1 < len(xs) and xs[j + 1] == xs[j] + 1:
            j += 1
        out.append(str(xs[i]) if i == j else f"{xs[i]}–{xs[j]}")
        i = j + 1
    return f"{', '.join(out)} ({len(xs):,} ids)"


def plan(cfg: Config) -> tuple[list[tuple[str, float]], dict]:
    """(stage, CPU seconds) from the measured rates, and the disk / bundle sizes in bytes."""
    n_layers, d = model_shape(cfg.model)
    layers = cfg.layers if cfg.layers is not None else list(range(n_layers))
    L, r = len(layers), cfg.recipe
    cap = sae_train.capture_rate(cfg.model, max(layers))
    fwd = sae_train.forward_rate(cfg.model)
    eval_tok = len(sae_data.KINDS) * cfg.eval_tokens + cfg.eval_seqs * SAMPLE_TOKENS
    ce_tok = cfg.ce_seqs * SAMPLE_TOKENS
    groups = -(-L // cfg.ce_group)
    rows = [
        ("load model", sae_train.LOAD_SECONDS),
        ("data (mix + task-item index)", 120.0),
        (f"capture {cfg.train_tokens:,} tokens × {L} layers (one pass)", cfg.train_tokens * 1.15 / cap),
        (
            f"train {r.name} ({r.arch}, w{r.width}, k{r.k}, batch {r.batch_size}, {r.epochs} epochs, lr {r.lr:g})"
            f" × {L} layers ({r.steps(cfg.train_tokens):,} steps each)",
            L * r.train_seconds(cfg.train_tokens),
        ),
        (
            f"eval FVE {len(sae_data.KINDS)} kinds × {cfg.eval_tokens:,} tokens + {cfg.eval_seqs} answers, "
            "all layers per forward",
            eval_tok / cap,
        ),
        (
            f"eval CE/KL (spliced + zero ablation) {L} layers × {cfg.ce_seqs} answers ({groups} groups)",
            (groups + 2 * L) * ce_tok / fwd,
        ),
    ]
    sizes = {
        "capture_bytes": cfg.train_tokens
        * L
        * d
        * _itemsize(sae_train.capture_dtype(cfg.model, cfg.capture_dtype)),
        "bundle_bytes": L * (2 * d * r.width + r.width + d) * 2,
    }
    return rows, sizes


def print_plan(cfg: Config) -> None:
    rows, sizes = plan(cfg)
    limit = cfg.size_limit_mb or SIZE_LIMITS_MB.get(cfg.model)
    print(f"plan: model {cfg.model}, recipe {json.dumps(asdict(cfg.recipe))}")
    print(
        f"  {cfg.train_tokens:,} training tokens per layer, mix {cfg.kind_shares}, out {cfg.out_dir()}; rates: "
        f"forward {sae_train.forward_rate(cfg.model):.0f} tok/s (full, with head), "
        f"SAE training {sae_train.RATE_TRAIN:.0f} samples/s (w1024 k32 topk)"
    )
    for name, s in rows:
        print(f"  {s / 60:7.1f} min  {name}")
    total = sum(s for _, s in rows)
    print(f"  {total / 60:7.1f} min  total on 1 thread (±2x with machine load); every stage resumable")
    print(
        f"  disk: capture {sizes['capture_bytes'] / 1e9:.1f} GB under the workdir; bundle ≈ "
        f"{sizes['bundle_bytes'] / 1e6:.1f} MB" + (f" (limit {limit:g} MB)" if limit else "")
    )


# ---------------------------------------------------------------------------------------------------------------
# stages


def sae_metadata(lm: Any, cfg: Config) -> dict:
    """sae-lens metadata of every layer (raw HF activations: no TransformerLens weight processing)."""
    bos = getattr(lm.tokenizer, "bos_token_id", None)
    first = sae_train.tokenize(lm.tokenizer, ["a"], 4)[0]
    return {
        "model_name": lm.hf_id,
        "model_class_name": "AutoModelForCausalLM",
        "prepend_bos": bool(bos is not None and first and first[0] == bos),
        "dataset_path": f"saemui.sae_data mix of {sae_data.EVALS_WHEEL} (see the bundle card)",
        "context_size": cfg.max_seq_len,
        "exclude_special_tokens": True,
        "seqpos_slice": [1, None],
    }


def check_disk(path: Path, need: int) -> None:
    path.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(path).free
    if free < need * 1.1:
        raise SaemuiError(f"capture needs ~{need / 1e9:.1f} GB in {path}, {free / 1e9:.1f} GB free")


def stage_eval(
    cfg: Config, lm: Any, data: dict, layers: list[int], exports: dict[int, Path], edir: Path, locks: Path
) -> dict[int, dict]:
    """Per layer: summaries per text kind and on response tokens, dead / dense over all evaluation tokens, and
    CE / KL on the first ``ce_seqs`` task answers. Reconstruction runs all missing layers in one forward per
    batch (with workers: one contiguous chunk of layers per worker); CE runs in groups of ``ce_group`` layers
    (claimed one by one by the workers); both leave one JSON per layer (the resumption unit)."""
    from saemui.records import sample_from_dict

    samples = [sample_from_dict(s, f"eval sample {i}") for i, s in enumerate(data["eval_samples"])]
    sets: dict[str, list[sae_eval.EvalBatch]] = {}
    for kind in sae_data.KINDS:
        texts = sae_train.take_tokens(data["heldout"][kind], lm.tokenizer, cfg.max_seq_len, cfg.eval_tokens)
        if texts:
            sets[kind] = sae_train.text_batches(lm, texts, cfg.max_seq_len, cfg.capture_batch_tokens)
    sets["response"] = sae_eval.batches_from_samples(
        lm.tokenizer, samples, max_batch_tokens=cfg.capture_batch_tokens
    )

    def missing(kind: str, group: list[int]) -> list[int]:
        return [layer for layer in group if not (edir / f"{kind}_L{layer:02d}.json").is_file()]

    n = -(-len(layers) // cfg.workers)
    for chunk in [layers[i : i + n] for i in range(0, len(layers), n)]:
        lock = locks / f"recon-{edir.name}-L{chunk[0]:02d}"
        with sae_train.claimed(cfg.workers, lock, lambda chunk=chunk: not missing("recon", chunk)) as mine:
            if mine:
                recon_layers(cfg, lm, sets, missing("recon", chunk), exports, edir)
    ce_b = sae_eval.batches_from_samples(lm.tokenizer, samples[: cfg.ce_seqs], max_batch_tokens=1024)
    for i in range(0, len(layers), cfg.ce_group):
        group = layers[i : i + cfg.ce_group]
        with sae_train.claimed(
            cfg.workers, locks / f"ce-{edir.name}-L{group[0]:02d}", lambda g=group: not missing("ce", g)
        ) as mine:
            if not mine:
                continue
            group = missing("ce", group)
            saes = {layer: sae_train.load_sae(exports[layer]) for layer in group}
            # zero ablation in the same pass (one SAE per layer here, so no baseline is shared)
            zero: dict[int, sae_eval.CEStats] = {}
            ce = sae_eval.ce_eval(lm, saes, ce_b, norm_factor=cfg.norm_factor, zero_cache=zero)
            for layer in group:
                atomic_write_json(edir / f"ce_L{layer:02d}.json", sae_train.json_safe(ce[layer].summary()))
            log.info("CE/KL layers %s done", group)
    sae_train.wait_until(
        cfg.workers,
        lambda: not missing("recon", layers) and not missing("ce", layers),
        "the other workers' evaluations",
    )
    return {
        layer: json.loads((edir / f"recon_L{layer:02d}.json").read_text())
        | {"ce": json.loads((edir / f"ce_L{layer:02d}.json").read_text())}
        for layer in layers
    }


def recon_layers(
    cfg: Config, lm: Any, sets: dict[str, list], todo: list[int], exports: dict[int, Path], edir: Path
) -> None:
    if todo:
        saes = {layer: sae_train.load_sae(exports[layer]) for layer in todo}
        per_set = {
            name: sae_eval.recon_eval(lm, saes, b, norm_factor=cfg.norm_factor) for name, b in sets.items()
        }
        for layer in todo:
            allstats = None
            row: dict[str, Any] = {"sets": {}}
            for name, (rec, sinks) in per_set.items():
                row["sets"][name] = {**rec[layer].summary(), "sinks": sinks[layer].to_json()}
                allstats = rec[layer] if allstats is None else allstats.merge(rec[layer])
            s = allstats.summary()
            row["all"] = {k: s[k] for k in ("n_tokens", "l0", "dead_frac", "dense_frac")}
            atomic_write_json(edir / f"recon_L{layer:02d}.json", sae_train.json_safe(row))


# ---------------------------------------------------------------------------------------------------------------
# card


def layer_row(layer: int, ev: dict, train: dict) -> dict:
    resp = ev["sets"]["response"]
    row = {
        "layer": layer,
        "fve_response": resp["fve_pooled"],
        "fve_token_median_response": resp["fve_token_median"],
        "l0_response": resp["l0"],
        "ce_loss_recovered": ev["ce"].get("ce_loss_recovered"),
        "kl_spliced": ev["ce"].get("kl_spliced"),
        "ce_increase": ev["ce"].get("ce_increase"),
        "sink_share_response": resp["sinks"]["shares"]["total"],
    }
    for kind in sae_data.KINDS:
        if kind in ev["sets"]:
            row[f"fve_{kind}"] = ev["sets"][kind]["fve_pooled"]
            row[f"fve_token_median_{kind}"] = ev["sets"][kind]["fve_token_median"]
            row[f"sink_share_{kind}"] = ev["sets"][kind]["sinks"]["shares"]["total"]
    row |= {
        "dead_frac": ev["all"]["dead_frac"],
        "dense_frac": ev["all"]["dense_frac"],
        "eval_tokens": ev["all"]["n_tokens"],
        "train_seconds": train["train_seconds"],
        "train_steps": train["steps"],
    }
    return row


def targets(rows: list[dict], bundle_mb: float, limit_mb: float | None) -> dict:
    """Issue 17's targets, each with its value, threshold, met and margin (value - threshold; for upper
    limits threshold - value, so a negative margin is always the amount missed)."""

    def vals(k: str) -> list[float]:
        return [r[k] for r in rows if r.get(k) is not None]

    fve, ce, dead = vals("fve_response"), vals("ce_loss_recovered"), vals("dead_frac")
    checks = [
        (
            "median response-token FVE ≥ 0.72",
            statistics.median(fve) if fve else None,
            TARGETS["response_fve_median"],
            1,
        ),
        ("no layer's response-token FVE < 0.6", min(fve) if fve else None, TARGETS["response_fve_min"], 1),
        (
            "median CE-loss recovered ≥ 0.9",
            statistics.median(ce) if ce else None,
            TARGETS["ce_recovered_median"],
            1,
        ),
        ("dead features ≤ 5 % (worst layer)", max(dead) if dead else None, TARGETS["dead_max"], -1),
    ]
    if limit_mb:
        checks.append((f"bundle ≤ {limit_mb:g} MB", bundle_mb, limit_mb, -1))
    out = {}
    for name, v, thr, sign in checks:
        margin = None if v is None else sign * (v - thr)
        out[name] = {
            "value": v,
            "threshold": thr,
            "met": margin is not None and margin >= 0,
            "margin": margin,
        }
    return out


def _f(v: float | None, nd: int = 3) -> str:
    return "–" if v is None else f"{v:.{nd}f}"


def render_card_md(card: dict) -> str:
    t, r = card["training"], card["training"]["recipe"]
    kinds = [k for k in sae_data.KINDS if any(f"fve_{k}" in row for row in card["layers"])]
    lines = [
        f"# SAE card: {card['name']}",
        "",
        f"Residual-stream {r['arch']} SAEs (`blocks.L.hook_resid_post`, raw HF activations) for "
        f"`{card['model']['hf_id']}` (saemui model `{card['model']['name']}`), one per layer, width {r['width']}, "
        f"k = {r['k']}. Figures measured on the shipped fp16 weights with `saemui.sae_eval`.",
        "",
        "## Targets (issue 17)",
        "",
        "| target | value | met | margin |",
        "|---|---|---|---|",
    ]
    for name, c in card["targets"].items():
        lines.append(f"| {name} | {_f(c['value'])} | {'yes' if c['met'] else '**no**'} | {_f(c['margin'])} |")
    ev = card["evaluation"]
    lines += [
        "",
        "## Evaluation",
        "",
        f"- Sink rule: {ev['sink_rule']}. Share of evaluated tokens dropped, median over layers: "
        + ", ".join(f"{k} {v:.2%}" for k, v in ev["sink_share_median"].items())
        + ".",
        f"- Response tokens: {ev['eval_samples']} task answers ({ev['eval_source']}), the positions MUI scores "
        f"(`saemui.inputs`, response alignment); CE-loss recovered and KL(clean ‖ spliced) on the first "
        f"{ev['ce_sequences']}, reconstruction spliced at the layer's non-sink positions, zero ablation of the same "
        "positions as the baseline.",
        "- Held-out text per kind (never trained on): "
        + ", ".join(f"{k} {n:,} tokens" for k, n in ev["heldout_tokens"].items())
        + f" (target ≥ {ev['heldout_tokens_target']:,} each).",
        "- FVE pooled = 1 - Σ‖x - x̂‖² / Σ‖x - x̄‖² over the evaluated tokens; per-token median with the SAE's b_dec "
        "as centre. Dead = never fires on any evaluation token; dense = fires on > 10 % of them.",
        "",
        "## Per layer",
        "",
        "| layer | FVE resp. | per-token median resp. | CE rec. | KL | "
        + " | ".join(f"FVE {k}" for k in kinds)
        + " | L0 resp. | dead | dense | sinks resp. | train s |",
        "|---" * (10 + len(kinds)) + "|",
    ]
    for row in card["layers"]:
        lines.append(
            f"| {row['layer']} | {_f(row['fve_response'])} | {_f(row['fve_token_median_response'])} | "
            f"{_f(row['ce_loss_recovered'])} | {_f(row['kl_spliced'], 4)} | "
            + " | ".join(_f(row.get(f"fve_{k}")) for k in kinds)
            + f" | {_f(row['l0_response'], 1)} | {_f(row['dead_frac'])} | {_f(row['dense_frac'])} | "
            f"{row['sink_share_response']:.2%} | {row['train_seconds']:.0f} |"
        )
    lines += [
        "",
        "## Training text",
        "",
        *[f"- {line}" for line in card["text_mix"]["summary"].splitlines()],
        "- Files and their sha256, drop counts and licences: `card.json` → `text_mix.manifest`. Rule: "
        "`saemui.sae_data` module docstring.",
        f"- Capture: {t['capture']}",
        "",
        "## Training",
        "",
        f"Recipe `{r['name']}`: sae-lens `{'BatchTopK' if r['arch'] == 'batchtopk' else 'TopK'}TrainingSAE` + "
        f"`SAETrainer`, {t['train_tokens_per_layer']:,} tokens per layer, batch {r['batch_size']}, {r['epochs']} "
        f"epoch(s), Adam lr {r['lr']} → {r['lr_end']} (cosine, {r['warmup_steps']} warm-up steps), "
        f"dead_feature_window {r['dead_feature_window']}, inputs scaled to norm √d (folded into the weights), "
        f"seed {t['seed']}. Weights stored in fp16; `cfg.json` says float32 so `SAE.load_from_disk` upcasts.",
        "",
        f"Machine: {t['machine']}. Versions: "
        + ", ".join(f"{k} {v}" for k, v in t["versions"].items())
        + ".",
        "",
        "Time per stage (wall time; with --workers, summed over the workers): "
        + ", ".join(f"{k} {v / 60:.1f} min" for k, v in t["wall_seconds"].items())
        + ".",
        "",
        f"Reproduce / resume: `PYTHONPATH=. HF_HUB_OFFLINE=1 python scripts/train_saes.py {t['command']}`.",
        "",
    ]
    return "\n".join(lines)


def write_bundle(
    cfg: Config, lm: Any, layers: list[int], exports: dict[int, Path], evals: dict, train: dict, info: dict
) -> dict:
    """The whole bundle directory, built beside ``out`` and renamed into place (never a mix of two runs)."""
    import sae_lens
    import transformers

    out = cfg.out_dir()
    r = cfg.recipe

    def fill(tmp: Path) -> None:
        for layer in layers:
            dest = tmp / f"layer_{layer:02d}"
            dest.mkdir()
            for f in ("cfg.json", "sae_weights.safetensors"):
                shutil.copyfile(exports[layer] / f, dest / f)
        saes = [
            bundle_entry(
                tmp,
                layer,
                HOOK_TEMPLATE.format(layer=layer),
                f"layer_{layer:02d}",
                # the inference architecture sae-lens loads (BatchTopK ships as JumpReLU with learned thresholds)
                architecture=json.loads((exports[layer] / "cfg.json").read_text())["architecture"],
                training_architecture=r.arch,
                d_in=lm.d_model,
                d_sae=r.width,
                k=r.k,
            )
            for layer in layers
        ]
        training = {
            "recipe": asdict(r),
            "trainer": "sae_lens.training.sae_trainer.SAETrainer via saemui.sae_train.train_sae",
            "train_tokens_per_layer": info["train_tokens"],
            "train_tokens_requested": cfg.train_tokens,
            "seed": cfg.seed,
            "capture": info["capture"],
            "weights_dtype": "float16 (cfg dtype float32: upcast on load)",
            "wall_seconds": info["wall_seconds"],
            "machine": machine_summary(),
            "versions": {
                "sae_lens": sae_lens.__version__,
                "torch": torch.__version__,
                "transformers": transformers.__version__,
                "python": platform.python_version(),
            },
            "command": info["command"],
        }
        manifest = write_bundle_manifest(
            tmp,
            out.name,
            {"name": cfg.model, "hf_id": lm.hf_id, "gguf_sha256": lm.provenance.get("sha256")},
            HOOK_TEMPLATE,
            saes,
            training=training,
            created_by="scripts/train_saes.py",
        )
        rows = [layer_row(layer, evals[layer], train[layer]) for layer in layers]
        # the card's own size is small and not yet known: weights + manifest decide the limit
        size_mb = sum(p.stat().st_size for p in tmp.rglob("*") if p.is_file()) / 1e6
        shares = {
            k: statistics.median(row[f"sink_share_{k}"] for row in rows)
            for k in ("response", *sae_data.KINDS)
            if all(f"sink_share_{k}" in row for row in rows)
        }
        card = {
            "name": out.name,
            "model": manifest["model"],
            "targets": targets(rows, size_mb, cfg.size_limit_mb or SIZE_LIMITS_MB.get(cfg.model)),
            "bundle_mb": size_mb,
            "layers": rows,
            "evaluation": info["evaluation"] | {"sink_share_median": shares},
            "text_mix": info["text_mix"],
            "training": training,
        }
        atomic_write_json(tmp / "card.json", sae_train.json_safe(card))
        atomic_write_text(tmp / "card.md", render_card_md(sae_train.json_safe(card)))

    sae_train.atomic_dir(out, fill)
    return json.loads((out / "manifest.json").read_text())


# ---------------------------------------------------------------------------------------------------------------
# driver


def run(cfg: Config, argv: list[str]) -> Path:
    from saemui.models import load_model

    torch.set_num_threads(max(1, cfg.threads))
    wd = Path(cfg.workdir).expanduser() / f"run-{cfg.data_key()}"
    wd.mkdir(parents=True, exist_ok=True)
    key = cfg.recipe.key()
    times_path = wd / (f"times-{key}.json" if cfg.workers == 1 else f"times-{key}-w{os.getpid()}.json")
    times: dict[str, float] = json.loads(times_path.read_text()) if times_path.is_file() else {}

    def timed(stage: str, t0: float) -> None:
        times[stage] = times.get(stage, 0.0) + time.time() - t0
        atomic_write_json(times_path, times)

    lm = load_model(cfg.model, device="cpu", dtype="float32")
    layers = cfg.layers if cfg.layers is not None else list(range(lm.n_layers))
    bad = [layer for layer in layers if not 0 <= layer < lm.n_layers]
    if bad:
        raise SaemuiError(f"layers {bad} do not exist (model has {lm.n_layers})")
    log.info("workdir %s, recipe %s (%s)", wd, cfg.recipe.name, cfg.recipe.key())

    t0 = time.time()
    new = not (wd / "data.json").is_file()
    shared = SHARED_DATA if SHARED_DATA.is_dir() else None
    wheels = Path(cfg.wheel_dir) if cfg.wheel_dir else Path(cfg.workdir).expanduser() / "wheels"
    data = sae_train.run_data(cfg, lm, wd, wheels, shared, cfg.heldout_frac)
    if new:
        timed("data", t0)

    t0 = time.time()
    cap_dtype = sae_train.capture_dtype(cfg.model, cfg.capture_dtype)
    # a capture in another dtype, and the SAEs trained on it, are other work; float16 keeps the unsuffixed names
    # of the shipped bundles' workdirs
    dtype_tag = "" if cap_dtype == "float16" else cap_dtype
    cdir = wd / (
        "capture-" + hashlib.sha256((json.dumps(sorted(layers)) + dtype_tag).encode()).hexdigest()[:8]
    )
    if not (cdir / "complete.json").is_file():
        check_disk(cdir, cfg.train_tokens * len(layers) * lm.d_model * _itemsize(cap_dtype))
    files = sae_train.exclusive(
        cfg.workers,
        wd / "locks" / cdir.name,
        lambda: (cdir / "complete.json").is_file(),
        lambda: sae_train.capture(
            lm,
            data["train_texts"],
            layers,
            cdir,
            cfg.norm_factor,
            cfg.max_seq_len,
            cfg.capture_batch_tokens,
            cfg.chunk_batches,
            cap_dtype,
        ),
    )
    timed("capture", t0)

    sdir = wd / "saes" / (f"{key}-{dtype_tag}" if dtype_tag else key)
    meta = sae_metadata(lm, cfg)
    ck = {layer: sdir / f"L{layer:02d}" for layer in layers}
    exports = {layer: sdir / f"L{layer:02d}-fp16" for layer in layers}

    def exported(layer: int) -> bool:
        return (exports[layer] / "sae_weights.safetensors").is_file()

    for layer in layers:
        with sae_train.claimed(
            cfg.workers, wd / "locks" / f"train-{key}-L{layer:02d}", lambda layer=layer: exported(layer)
        ) as mine:
            if not mine:
                continue
            if not (ck[layer] / "train_stats.json").is_file():
                t0 = time.time()
                x = sae_train.load_acts(files[layer])
                log.info("train layer %d on %d tokens", layer, x.shape[0])
                sae_train.train_sae(
                    x, cfg.recipe, HOOK_TEMPLATE.format(layer=layer), cfg.seed * 1000 + layer, ck[layer], meta
                )
                del x
                timed("train", t0)
            sae_train.export_fp16(ck[layer], exports[layer])
    sae_train.wait_until(
        cfg.workers, lambda: all(exported(layer) for layer in layers), "the other workers' layers"
    )
    train = {layer: json.loads((ck[layer] / "train_stats.json").read_text()) for layer in layers}

    t0 = time.time()
    evals = stage_eval(cfg, lm, data, layers, exports, wd / "eval" / key, wd / "locks")
    timed("eval", t0)

    cap = json.loads((cdir / "complete.json").read_text())
    heldout_tokens = {
        k: sum(
            len(ids)
            for ids in sae_train.tokenize(
                lm.tokenizer,
                sae_train.take_tokens(data["heldout"][k], lm.tokenizer, cfg.max_seq_len, cfg.eval_tokens),
                cfg.max_seq_len,
            )
        )
        for k in sae_data.KINDS
    }
    from saemui.inputs import special_ids

    info = {
        "train_tokens": min(t["train_tokens"] for t in train.values()),
        "capture": (
            "saemui.capture HF backend, one forward per batch for all layers, fp32 model, activations stored "
            f"{'fp16' if cap_dtype == 'float16' else cap_dtype}; "
            f"dropped by the sink rule (special ids {id_ranges(special_ids(lm.tokenizer))}), median share over "
            f"layers {statistics.median(v['shares']['total'] for v in cap['sinks'].values()):.2%}; the template's "
            "default system turn kept in every 20th chat row only (identical in every row)"
        ),
        "evaluation": {
            "sink_rule": sae_eval.sink_rule_text(cfg.norm_factor)
            if cfg.norm_factor is not None
            else "position 0 and special tokens",
            "eval_source": data["eval_source"],
            "eval_samples": len(data["eval_samples"]),
            "ce_sequences": min(cfg.ce_seqs, len(data["eval_samples"])),
            "heldout_tokens": heldout_tokens,
            "heldout_tokens_target": cfg.eval_tokens,
        },
        "text_mix": {
            "summary": sae_data.manifest_text(data["manifest"]),
            "manifest": data["manifest"],
        },
        "wall_seconds": merged_times(wd, key),
        "command": " ".join(_public_args(argv)),
    }
    # one worker writes the bundle; the others return once it is written (report() reads it)
    with sae_train.claimed(cfg.workers, wd / "locks" / f"bundle-{key}", lambda: False) as mine:
        if mine:
            write_bundle(cfg, lm, layers, exports, evals, train, info)
    sae_train.wait_until(
        cfg.workers,
        lambda: not sae_train.held(wd / "locks" / f"bundle-{key}"),
        "the bundle from another worker",
    )
    return cfg.out_dir()


def merged_times(wd: Path, key: str) -> dict[str, float]:
    """Seconds per stage, summed over the workers' time files (process time, not wall time, with workers)."""
    out: dict[str, float] = {}
    for p in sorted(wd.glob(f"times-{key}*.json")):
        for k, v in json.loads(p.read_text()).items():
            out[k] = out.get(k, 0.0) + v
    return out


def _public_args(argv: list[str]) -> list[str]:
    """The command line for the card, without the machine's own paths."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a in ("--workdir", "--wheel-dir"):
            skip = True
        elif not a.startswith(("--workdir=", "--wheel-dir=")):
            out.append(a)
    return out


def parse_args(argv: list[str] | None = None) -> tuple[Config, bool]:
    d = Config()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sae_train.add_common_args(p, d)
    p.add_argument(
        "--out", default=None, help="bundle directory (default saes/<model>-res-<arch>-w<width>-k<k>)"
    )
    p.add_argument(
        "--recipe",
        default=d.recipe.name,
        help="a recipe of scripts/sae_recipes.py ("
        + ", ".join(r.name for r in sae_train.DEFAULT_RECIPES)
        + "); the options below override its fields",
    )
    p.add_argument("--arch", choices=sae_train.ARCHS, default=None)
    p.add_argument("--k", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--width", type=int, default=None)
    p.add_argument("--eval-tokens", type=int, default=d.eval_tokens, help="held-out tokens per text kind")
    p.add_argument("--size-limit-mb", type=float, default=None)
    p.add_argument(
        "--ce-group", type=int, default=d.ce_group, help="layers per CE call (the unit a worker claims)"
    )
    a = p.parse_args(argv)
    recipe = sae_train.recipe_named(a.recipe)
    over = {
        f: getattr(a, f)
        for f in ("arch", "k", "batch_size", "epochs", "lr", "width")
        if getattr(a, f) is not None and getattr(a, f) != getattr(recipe, f)
    }
    if over:
        r = replace(recipe, **over)
        name = f"{r.arch}-k{r.k}-b{r.batch_size}-e{r.epochs}" + (f"-w{r.width}" if r.width != 1024 else "")
        recipe = replace(r, name=name + (f"-lr{r.lr:g}" if r.lr != recipe.lr else ""))
    cfg = Config(
        **sae_train.common_kwargs(a, d),
        recipe=recipe,
        out=a.out,
        eval_tokens=a.eval_tokens,
        size_limit_mb=a.size_limit_mb,
        ce_group=a.ce_group,
    )
    return cfg, a.plan


def report(out: Path) -> None:
    card = json.loads((out / "card.json").read_text())
    for name, c in card["targets"].items():
        print(f"{'met   ' if c['met'] else 'MISSED'} {name}: {_f(c['value'])} (margin {_f(c['margin'])})")
    print(f"bundle {out}: {len(card['layers'])} layers, {card['bundle_mb']:.1f} MB")


def main(argv: list[str] | None = None) -> int:
    return sae_train.script_main("train_saes", argv, parse_args, print_plan, run, report)


if __name__ == "__main__":
    sys.exit(main())
