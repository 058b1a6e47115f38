"""The MUI engine: samples → one forward per batch → unit scores → key units → counter → result.

``compute_mui`` is the whole pipeline; the CLI's ``saemui run`` calls exactly this function.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import platform
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from saemui import checkpoint as ckpt
from saemui.capture import get_backend
from saemui.counter import UtilizationCounter
from saemui.errors import SaemuiError
from saemui.heap import trim_heap
from saemui.inputs import Batch, collate, encode_samples, plan_batches
from saemui.models import LoadedModel
from saemui.records import Sample, assign_ids
from saemui.result import SCHEMA_VERSION, MUIResult
from saemui.saes import SAESuite, check_compatible, open_suite
from saemui.selection import KeyRule, merge_candidates, reduce_scores, select_from_max, topk_entries
from saemui.units import MLPNeurons, SAEFeatures, UnitScorer

log = logging.getLogger(__name__)

UNIT_DEFAULTS = {
    # SAE: the paper's topscore η=0.9 on the response tokens' own positions.
    "sae": {"threshold": "topscore:0.9", "alignment": "response"},
    # Neurons: the paper's top-1‰ entries, scored with the corrected next-token alignment.
    "neurons": {"threshold": "topk:0.001", "alignment": "predicting"},
}


@dataclass
class RunConfig:
    """Settings of one MUI run (all recorded in the result).

    units: "sae" (SAE features) or "neurons" (MLP neurons).
    saes: SAE spec for units="sae" (bundle dir, sae-lens dir, or sae-lens RELEASE[:ID]).
    threshold: key-unit rule (``topscore:0.9``, ``topk:0.001``, ``topk:5``, ``global_topk:10``, ``positive``);
        None → the unit type's default (see UNIT_DEFAULTS).
    alignment: "response" (paper: the response tokens' own positions, neuron target = that token) or
        "predicting" (corrected: positions predicting a response token, neuron target = the next token).
    neuron_site: "down_input" (act(gate)·up, the true coefficient) or "gate_act" (act(gate), the paper's code).
    layers: model layers to include (None: all layers of the model / SAE suite).
    prompt_format: "auto" (chat template when the tokenizer has one), "chat" or "raw".
    max_length: prompt+response tokens kept; longer responses lose their tail (warned, recorded per sample).
    max_batch_tokens / max_batch_size: batch budget in padded tokens / rows.
    padding_side: "right" (default) or "left" (explicit position ids); MUI does not depend on it.
    backend: capture backend ("hf" = transformers hooks, "tl" = TransformerLens TransformerBridge).
    sae_group_size: SAEs held in memory at once (None: all); each group costs one forward over the data.
    sae_dtype: dtype SAEs encode in (None: float32; residuals are cast to it).
    health: measure SAE L0 / dead / dense / explained variance on the same tokens (needs decoders).
    keep_sets: keep every sample's key set (subset MUI, coverage, diversity); small, on by default.
    encode_chunk: scored tokens encoded at once (bounds memory for wide SAEs).
    target_l0: for a bare sae-lens release, per layer the SAE with average L0 closest to this.
    allow_processing_mismatch: encode even if the SAE expects TransformerLens-processed activations.
    """

    units: str = "sae"
    saes: str | None = None
    threshold: str | None = None
    alignment: str | None = None
    neuron_site: str = "down_input"
    layers: list[int] | None = None
    prompt_format: str = "auto"
    max_length: int = 2048
    max_batch_tokens: int = 4096
    max_batch_size: int = 32
    padding_side: str = "right"
    backend: str = "hf"
    sae_group_size: int | None = None
    sae_dtype: str | None = None
    health: bool = True
    keep_sets: bool = True
    encode_chunk: int = 2048
    target_l0: float = 50.0
    allow_processing_mismatch: bool = False

    def resolved(self) -> RunConfig:
        if self.units not in UNIT_DEFAULTS:
            raise SaemuiError(f"units {self.units!r} unknown (expected 'sae' or 'neurons')")
        d = UNIT_DEFAULTS[self.units]
        out = RunConfig(**asdict(self))
        out.threshold = self.threshold or d["threshold"]
        out.alignment = self.alignment or d["alignment"]
        if self.units == "sae" and not self.saes:
            raise SaemuiError("units='sae' needs an SAE spec (--saes PATH|RELEASE[:ID]); or use --neurons")
        if self.max_length < 2:
            raise SaemuiError(f"max_length={self.max_length} too small")
        KeyRule.parse(out.threshold)  # validate now, before any model is loaded
        if out.alignment not in ("response", "predicting"):
            raise SaemuiError(f"alignment {out.alignment!r} unknown (expected 'response' or 'predicting')")
        if out.padding_side not in ("right", "left"):
            raise SaemuiError(f"padding side {out.padding_side!r} unknown (expected right or left)")
        return out


def package_versions() -> dict[str, str]:
    out = {}
    for name in ("saemui", "torch", "transformers", "transformer-lens", "sae-lens", "numpy", "safetensors"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def machine_info() -> dict:
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


@dataclass
class _Health:
    """Running sums for SAE explained variance over scored tokens (float64)."""

    sse: float = 0.0
    sum_sq: float = 0.0
    sum_x: torch.Tensor | None = None
    n: int = 0
    l2_ratio_sum: float = 0.0
    cos_sum: float = 0.0

    def add(self, x_ND: torch.Tensor, xhat_ND: torch.Tensor) -> None:
        x, xh = x_ND.double(), xhat_ND.double()
        self.sse += float(((x - xh) ** 2).sum())
        self.sum_sq += float((x**2).sum())
        s = x.sum(0)
        self.sum_x = s if self.sum_x is None else self.sum_x + s
        self.n += x.shape[0]
        xn = x.norm(dim=1).clamp_min(1e-12)
        self.l2_ratio_sum += float((xh.norm(dim=1) / xn).sum())
        self.cos_sum += float(torch.nn.functional.cosine_similarity(x, xh, dim=1).sum())

    def state(self) -> dict:
        return {
            "sse": self.sse,
            "sum_sq": self.sum_sq,
            "sum_x": self.sum_x,
            "n": self.n,
            "l2_ratio_sum": self.l2_ratio_sum,
            "cos_sum": self.cos_sum,
        }

    def summary(self) -> dict:
        if not self.n:
            return {"explained_variance": None, "mse": None, "l2_ratio": None, "cossim": None}
        mean = self.sum_x / self.n
        sst = self.sum_sq - self.n * float((mean**2).sum())
        d = mean.numel()
        return {
            "explained_variance": 1.0 - self.sse / sst if sst > 0 else None,
            "mse": self.sse / (self.n * d),
            "l2_ratio": self.l2_ratio_sum / self.n,
            "cossim": self.cos_sum / self.n,
        }


@dataclass
class _Group:
    scorers: list[UnitScorer]
    health: dict[int, _Health] = field(default_factory=dict)


def _sae_entry_groups(suite: SAESuite, cfg: RunConfig) -> list[list]:
    entries = [e for e in suite.entries if cfg.layers is None or e.layer in cfg.layers]
    if cfg.layers is not None:
        missing = sorted(set(cfg.layers) - {e.layer for e in entries})
        if missing:
            raise SaemuiError(
                f"SAE suite {suite.name!r} has no SAE for layer(s) {missing} (it covers {suite.layers})"
            )
    if not entries:
        raise SaemuiError(f"SAE suite {suite.name!r} is empty")
    size = cfg.sae_group_size or len(entries)
    return [entries[i : i + size] for i in range(0, len(entries), size)]


def _load_sae_group(lm: LoadedModel, entries: list, cfg: RunConfig) -> _Group:
    scorers = []
    for e in entries:
        sae = e.load(str(lm.device), cfg.sae_dtype or "float32", not cfg.health)
        check_compatible(sae, e, lm.d_model, lm.d_mlp, lm.n_layers, cfg.allow_processing_mismatch)
        scorers.append(SAEFeatures(sae, e.layer, e.hook_name, lm.device))
    return _Group(scorers, {s.layer: _Health() for s in scorers} if cfg.health else {})


class Observer:
    """Sees every chunk of unit scores during a run (e.g. to keep max-activating contexts per feature).

    ``observe`` gets the model layer, the batch, the offset of the chunk among the batch's scored tokens and the
    scores [n, U] (float32, on the run's device). Observers must not modify the scores.
    """

    def observe(
        self, layer: int, batch: Batch, offset: int, scores_nU: torch.Tensor
    ) -> None:  # pragma: no cover
        raise NotImplementedError


def compute_mui(
    lm: LoadedModel,
    samples: Sequence[Sample],
    config: RunConfig | None = None,
    progress: bool = True,
    observers: Sequence[Observer] = (),
    checkpoint_dir: str | os.PathLike | None = None,
    checkpoint_every: int = 20,
    extra_summary: Mapping[str, Any] | None = None,
) -> MUIResult:
    """Measure MUI of ``lm`` on ``samples`` (their responses' tokens) with the given unit basis.

    With ``checkpoint_dir`` the run saves its state every ``checkpoint_every`` batches and resumes from a matching
    checkpoint left by an interrupted run (see :mod:`saemui.checkpoint`); the checkpoint is removed at the end.
    extra_summary: JSON-serializable entries added to the result's summary (e.g. the task the samples came
        from); they may not replace the engine's own keys.
    """
    cfg = (config or RunConfig()).resolved()
    extra = dict(extra_summary or {})
    try:
        json.dumps(extra)
    except (TypeError, ValueError) as e:
        # checked before the forward passes: save() would fail only after the whole run
        raise SaemuiError(f"extra_summary is not JSON-serializable ({e})") from None
    samples = assign_ids([Sample(s.prompt, s.response, s.id, s.correct, dict(s.meta)) for s in samples])
    if not samples:
        raise SaemuiError("no samples to evaluate")
    rule = KeyRule.parse(cfg.threshold, positive_only=cfg.units == "sae")
    t0 = time.perf_counter()

    suite = None
    if cfg.units == "sae":
        suite = open_suite(cfg.saes, target_l0=cfg.target_l0)
        entry_groups = _sae_entry_groups(suite, cfg)
        layers = [e.layer for g in entry_groups for e in g]
        n_groups = len(entry_groups)
    else:
        layers = sorted(cfg.layers) if cfg.layers is not None else list(range(lm.n_layers))
        bad = [lay for lay in layers if not 0 <= lay < lm.n_layers]
        if bad:
            raise SaemuiError(f"layers {bad} out of range (model has {lm.n_layers} layers)")
        n_groups = 1

    def load_group(g: int) -> _Group:
        if suite is not None:
            return _load_sae_group(lm, entry_groups[g], cfg)
        return _Group([MLPNeurons(lm, lay, cfg.neuron_site) for lay in layers])

    encoded = encode_samples(lm.tokenizer, samples, cfg.alignment, cfg.prompt_format, cfg.max_length)
    # Only the plan (sample positions per batch) is kept; tensors are built per batch when it runs.
    batches = plan_batches(encoded, cfg.max_batch_tokens, cfg.max_batch_size)
    backend = get_backend(cfg.backend, lm)
    counter: UtilizationCounter | None = None
    global_cands: dict[int, list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]] = {}
    health: dict[int, dict] = {}
    n_units = None
    t_fwd = 0.0
    start = (0, 0)
    health_acc: dict = {}

    fp = None
    if checkpoint_dir is not None:
        fp = ckpt.fingerprint(_fingerprint_components(lm, samples, cfg, suite))
        state = ckpt.load(Path(checkpoint_dir), fp)
        if state is not None:
            start = tuple(state["next"])
            n_units = state["n_units"]
            counter = UtilizationCounter.from_state_dict(state["counter"], device=lm.device)
            global_cands = {int(k): [tuple(p) for p in v] for k, v in state["global_cands"].items()}
            health = {int(k): v for k, v in state["health_done"].items()}
            health_acc = {int(k): v for k, v in state["health_acc"].items()}
            t_fwd = float(state["t_fwd"])
            for obs, st in zip(observers, state.get("observers", [])):
                obs.load_state_dict(st)
            log.info("resuming from %s at group %d, batch %d", checkpoint_dir, *start)

    def save_checkpoint(next_pos: tuple[int, int], group: _Group | None) -> None:
        acc = {str(k): h.state() for k, h in group.health.items()} if group is not None else {}
        ckpt.save(
            Path(checkpoint_dir),
            {
                "fingerprint": fp,
                "next": list(next_pos),
                "n_units": n_units,
                "counter": counter.state_dict(),
                "global_cands": {str(k): [list(p) for p in v] for k, v in global_cands.items()},
                "health_done": {str(k): v for k, v in health.items()},
                "health_acc": acc,
                "t_fwd": t_fwd,
                "observers": [obs.state_dict() for obs in observers if hasattr(obs, "state_dict")],
            },
        )
        log.info("checkpoint: group %d, batch %d", *next_pos)

    bar = tqdm(
        total=len(batches) * n_groups,
        initial=start[0] * len(batches) + start[1],
        desc="MUI",
        unit="batch",
        disable=not progress,
    )
    for g in range(start[0], n_groups):
        group = load_group(g)
        if n_units is None:
            n_units = group.scorers[0].n_units
            counter = UtilizationCounter(layers, n_units, device=lm.device, keep_sets=cfg.keep_sets)
        for s in group.scorers:
            if s.n_units != n_units:
                raise SaemuiError(
                    f"layer {s.layer} has {s.n_units} units but layer {layers[0]} has {n_units}: MUI's denominator "
                    "needs the same width on every layer (select layers or SAEs of one width)"
                )
        first = start[1] if g == start[0] else 0
        if first:
            for layer, st in health_acc.items():
                if layer in group.health:
                    group.health[layer] = _Health(**st)
        by_site = {s.site: s for s in group.scorers}
        for b in range(first, len(batches)):
            tb = time.perf_counter()
            batch = collate(
                [encoded[i] for i in batches[b]], lm.tokenizer.pad_token_id, cfg.padding_side, lm.device
            )
            _run_batch(backend, batch, by_site, rule, counter, global_cands, group.health, cfg, observers)
            del batch
            trim_heap()
            t_fwd += time.perf_counter() - tb
            bar.update(1)
            if checkpoint_dir is not None and (b + 1) % checkpoint_every == 0 and b + 1 < len(batches):
                save_checkpoint((g, b + 1), group)
        for layer, h in group.health.items():
            health[layer] = h.summary()
        if checkpoint_dir is not None and g + 1 < n_groups:
            save_checkpoint((g + 1, 0), None)
        # Drop every reference to this group's SAEs before the next group loads, or two groups are resident at
        # once (group, by_site and the loop variable s would keep them alive).
        del group, by_site, s
        # SAEs with input normalisation (normalize_activations) hold closures that refer back to themselves: a
        # reference cycle, so `del` alone does not free them and finished groups pile up until Python's cyclic
        # GC happens to run (a 42-layer, 131k-wide run reported 67.5 GiB peak RSS instead of 9.7 GiB).
        gc.collect()
    bar.close()

    if rule.mode == "global_topk":
        _finish_global(global_cands, rule, counter, layers, n_units)

    n_tok = int(counter.n_tokens_L[0]) if len(layers) else 0
    elapsed = time.perf_counter() - t0
    result = _build_result(lm, samples, encoded, cfg, rule, suite, counter, health, n_tok, elapsed, t_fwd)
    clash = sorted(set(extra) & set(result.summary))
    if clash:
        raise SaemuiError(
            f"extra_summary key(s) {', '.join(clash)} would replace the engine's own summary keys"
        )
    result.summary.update(extra)
    return result


def _fingerprint_components(lm: LoadedModel, samples: Sequence[Sample], cfg: RunConfig, suite) -> dict:
    return {
        "model": {
            "hf_id": lm.hf_id,
            "provenance": lm.provenance,
            "dtype": str(lm.dtype),
            "device": lm.device.type,
        },
        "sae suite": None
        if suite is None
        else {"source": suite.source, "ids": [e.sae_id for e in suite.entries]},
        "threshold": cfg.threshold,
        "settings": {k: v for k, v in asdict(cfg).items() if k not in ("threshold", "saes")},
        "data": [(s.id, s.prompt, s.response, s.correct) for s in samples],
        "saemui version": package_versions().get("saemui"),
    }


def _run_batch(
    backend,
    batch: Batch,
    by_site: dict[str, UnitScorer],
    rule: KeyRule,
    counter: UtilizationCounter,
    global_cands: dict,
    health: dict[int, _Health],
    cfg: RunConfig,
    observers: Sequence[Observer] = (),
) -> None:
    B = len(batch.sample_index)

    def on_activation(site: str, acts_BTD: torch.Tensor) -> None:
        scorer = by_site.get(site)
        if scorer is None:
            return
        acts_ND = acts_BTD.reshape(-1, acts_BTD.shape[-1])[batch.flat_N]
        # One float64 sum instead of an elementwise isfinite (5 passes over the activations): any NaN/Inf makes
        # the sum non-finite, and finite fp32/fp16/bf16 values (< 3.4e38 each) cannot overflow a float64 sum.
        if not torch.isfinite(acts_ND.sum(dtype=torch.float64)):
            raise SaemuiError(
                f"non-finite activations (NaN/Inf) at {site}: check the model's dtype (fp16 overflow?)"
            )
        k = rule.k_for(scorer.n_units) if rule.mode in ("topk", "global_topk") else None
        dev = acts_ND.device
        max_SU = torch.full((B, scorer.n_units), float("-inf"), device=dev)
        fire_U = torch.zeros(scorer.n_units, dtype=torch.int64, device=dev)
        cands: list[list] = [[] for _ in range(B)]
        h = health.get(scorer.layer)
        for off, sc_nU in scorer.scores(acts_ND, batch.target_N, cfg.encode_chunk):
            seg = batch.seg_N[off : off + sc_nU.shape[0]]
            for obs in observers:
                obs.observe(scorer.layer, batch, off, sc_nU)
            m, f, c = reduce_scores(sc_nU, seg, B, k, rule.positive_only)
            max_SU = torch.maximum(max_SU, m)
            fire_U += f
            if c is not None:
                for b in range(B):
                    cands[b].extend(c[b])
            if h is not None:
                x = acts_ND[off : off + sc_nU.shape[0]].to(scorer.sae.dtype)
                h.add(x, scorer.sae.decode(sc_nU.to(scorer.sae.dtype)))
        n_tok = int(batch.flat_N.numel())
        if rule.mode in ("topscore", "positive"):
            key_SU = select_from_max(max_SU, rule)
        else:
            key_SU = torch.zeros(B, scorer.n_units, dtype=torch.bool, device=dev)
            for b in range(B):
                units, vals = merge_candidates(cands[b], dev)
                chosen = topk_entries(vals, units, k, rule.positive_only)
                if rule.mode == "topk":
                    key_SU[b, units[chosen]] = True
                else:
                    # Keep this layer's own top-k entries; the choice across layers is made at the end.
                    global_cands.setdefault(batch.sample_index[b], []).append(
                        (torch.full((chosen.numel(),), scorer.layer), units[chosen].cpu(), vals[chosen].cpu())
                    )
        counter.update(scorer.layer, batch.sample_index, key_SU, fire_U, n_tok)

    with torch.inference_mode():
        backend.run(
            batch.input_ids_BT,
            batch.attention_mask_BT,
            list(by_site),
            on_activation,
            position_ids_BT=batch.position_ids_BT,
        )


def _finish_global(
    global_cands, rule: KeyRule, counter: UtilizationCounter, layers: list[int], n_units: int
) -> None:
    k = rule.k_for(n_units)
    row = {lay: i for i, lay in enumerate(layers)}
    for s, parts in global_cands.items():
        lay = torch.cat([p[0] for p in parts])
        unit = torch.cat([p[1] for p in parts])
        val = torch.cat([p[2] for p in parts])
        rows = torch.tensor([row[int(x)] for x in lay], dtype=torch.long)
        chosen = topk_entries(val, rows * n_units + unit, k, rule.positive_only)
        for r in range(len(layers)):
            pick = unit[chosen][rows[chosen] == r]
            key = torch.zeros(n_units, dtype=torch.bool)
            key[pick] = True
            counter.union_LU[r] |= key.to(counter.union_LU.device)
            counter.keyfreq_LU[r] += key.long().to(counter.keyfreq_LU.device)
            if counter.keep_sets:
                counter.add_sets([s], [r], [0, pick.numel()], np.sort(pick.numpy().astype(np.int32)))


def firing_stats(layer: int, fire_U: np.ndarray, n_tokens: int) -> dict:
    """SAE-health numbers that follow from firing counts alone (sae-lens / SAEBench names)."""
    nt = max(int(n_tokens), 1)
    dens = fire_U / nt
    return {
        "layer": layer,
        "l0": float(fire_U.sum() / nt),
        "dead_fraction": float((fire_U == 0).mean()),
        "dense_fraction": float((dens > 0.1).mean()),
        "freq_over_1_percent": float((dens > 0.01).mean()),
        "freq_over_10_percent": float((dens > 0.1).mean()),
    }


def _build_result(
    lm, samples, encoded, cfg, rule, suite, counter, health, n_tok, elapsed, t_fwd
) -> MUIResult:
    L = len(counter.layers)
    arrays = counter.arrays(len(samples))
    fire, n_tokens_L = arrays["fire_LU"], arrays["n_tokens_L"]
    per_layer_health = None
    if cfg.units == "sae":
        per_layer_health = []
        for r, layer in enumerate(counter.layers):
            row = firing_stats(layer, fire[r], int(n_tokens_L[r]))
            row.update(health.get(layer, {}))
            per_layer_health.append(row)
    rows = []
    for e, s in zip(encoded, samples):
        rows.append(
            {
                "index": e.index,
                "id": s.id,
                "correct": s.correct,
                "n_response_tokens": e.n_response_tokens,
                "n_scored": len(e.score_pos),
                "truncated": e.truncated,
            }
        )
    labelled = [s for s in samples if s.correct is not None]
    summary = {
        "schema_version": SCHEMA_VERSION,
        "mui": counter.mui(),
        "mui_percent": 100.0 * counter.mui(),
        "per_layer": counter.per_layer(),
        "layers": list(counter.layers),
        "n_samples": len(samples),
        "n_tokens": n_tok,
        "n_empty_samples": sum(1 for e in encoded if len(e.score_pos) == 0),
        "n_truncated_samples": sum(1 for e in encoded if e.truncated),
        "accuracy": (sum(s.correct for s in labelled) / len(labelled)) if labelled else None,
        "n_labelled": len(labelled),
        "selection": rule.describe(),
        "units": {
            "kind": cfg.units,
            "n_units": counter.n_units,
            "n_layers": L,
            "basis": (suite.name if suite else f"neurons:{cfg.neuron_site}"),
            "sae_ids": {str(e.layer): e.sae_id for e in suite.entries if e.layer in counter.layers}
            if suite
            else None,
            "sae_source": suite.source if suite else None,
        },
        "model": {
            "name": lm.name,
            "hf_id": lm.hf_id,
            "provenance": lm.provenance,
            "n_layers": lm.n_layers,
            "d_model": lm.d_model,
            "d_mlp": lm.d_mlp,
            "dtype": str(lm.dtype).replace("torch.", ""),
            "device": str(lm.device),
        },
        "dtypes": {
            "model": str(lm.dtype).replace("torch.", ""),
            "sae": (cfg.sae_dtype or "float32") if suite else None,
            "scores": "float32",
        },
        "config": asdict(cfg),
        "sae_health": per_layer_health,
        "versions": package_versions(),
    }
    run_info = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "timing": {
            "seconds_total": elapsed,
            "seconds_forward_and_score": t_fwd,
            "tokens_per_second": (sum(len(e.ids) for e in encoded) / t_fwd) if t_fwd > 0 else None,
            "note": "wall-clock on this machine; compare ratios from one run, not absolutes",
        },
        "machine": machine_info(),
    }
    result = MUIResult(summary, arrays, rows, run_info)
    result.set_mui_correct()
    return result
