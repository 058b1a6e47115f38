"""The MUI engine: samples → one forward per batch → unit scores → key units → counter → result.

``compute_mui`` is the whole pipeline; the CLI's ``saemui run`` calls exactly this function.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from saemui import checkpoint as ckpt
from saemui.capture import get_backend
from saemui.config import UNIT_DEFAULTS, RunConfig
from saemui.counter import UtilizationCounter
from saemui.errors import SaemuiError
from saemui.health import HealthAccumulator, firing_stats, health_rows
from saemui.heap import trim_heap
from saemui.inputs import Batch, collate, encode_samples, plan_batches
from saemui.models import LoadedModel
from saemui.provenance import machine_info, package_versions
from saemui.records import Sample, assign_ids
from saemui.result import SCHEMA_VERSION, MUIResult, summary_counts
from saemui.rules import few_units_warning
from saemui.saes import SAESuite, check_compatible, check_suite_for_model, open_suite
from saemui.selection import KeyRule, Selector, make_selector
from saemui.units import MLPNeurons, SAEFeatures, UnitScorer

# RunConfig, UNIT_DEFAULTS, firing_stats, package_versions and machine_info moved to their own modules; they stay
# importable from here.
__all__ = [
    "UNIT_DEFAULTS",
    "Observer",
    "RunConfig",
    "compute_mui",
    "firing_stats",
    "machine_info",
    "package_versions",
]

log = logging.getLogger(__name__)


@dataclass
class _Group:
    scorers: list[UnitScorer]
    health: dict[int, HealthAccumulator] = field(default_factory=dict)


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
    return _Group(scorers, {s.layer: HealthAccumulator() for s in scorers} if cfg.health else {})


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
    cfg = (config or RunConfig()).resolved(model=(lm.name, lm.hf_id))
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
    selector = make_selector(rule)
    t0 = time.perf_counter()

    suite = None
    if cfg.units == "sae":
        suite = open_suite(cfg.saes, target_l0=cfg.target_l0)
        check_suite_for_model(suite, [lm.name, lm.hf_id], lm.n_layers)  # before any download
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
    # finished layers' health sums (kept whole, not summarised, so that results of several processes merge)
    health: dict[int, HealthAccumulator] = {}
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
            selector.load_state_dict(state["global_cands"])
            health = {int(k): HealthAccumulator(**v) for k, v in state["health_done"].items()}
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
                "global_cands": selector.state_dict(),
                "health_done": {str(k): h.state() for k, h in health.items()},
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
            if (msg := few_units_warning(rule, n_units, len(layers))) is not None:
                log.warning("%s", msg)
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
                    group.health[layer] = HealthAccumulator(**st)
        by_site = {s.site: s for s in group.scorers}
        for b in range(first, len(batches)):
            tb = time.perf_counter()
            batch = collate(
                [encoded[i] for i in batches[b]], lm.tokenizer.pad_token_id, cfg.padding_side, lm.device
            )
            _run_batch(backend, batch, by_site, selector, counter, group.health, cfg, observers)
            del batch
            trim_heap()
            t_fwd += time.perf_counter() - tb
            bar.update(1)
            if checkpoint_dir is not None and (b + 1) % checkpoint_every == 0 and b + 1 < len(batches):
                save_checkpoint((g, b + 1), group)
        health.update(group.health)
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

    selector.finish(counter)

    elapsed = time.perf_counter() - t0
    result = _build_result(lm, samples, encoded, cfg, rule, suite, counter, health, elapsed, t_fwd)
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
    selector: Selector,
    counter: UtilizationCounter,
    health: dict[int, HealthAccumulator],
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
        acc = selector.begin(B, scorer.n_units, acts_ND.device)
        h = health.get(scorer.layer)
        for off, sc_nU in scorer.scores(acts_ND, batch.target_N, cfg.encode_chunk):
            seg = batch.seg_N[off : off + sc_nU.shape[0]]
            for obs in observers:
                obs.observe(scorer.layer, batch, off, sc_nU)
            acc.add(sc_nU, seg)
            if h is not None:
                x = acts_ND[off : off + sc_nU.shape[0]].to(scorer.sae.dtype)
                h.add(x, scorer.sae.decode(sc_nU.to(scorer.sae.dtype)))
        n_tok = int(batch.flat_N.numel())
        key_SU = selector.key_sets(acc, scorer.layer, batch.sample_index)
        counter.update(scorer.layer, batch.sample_index, key_SU, acc.fire_U, n_tok)

    with torch.inference_mode():
        backend.run(
            batch.input_ids_BT,
            batch.attention_mask_BT,
            list(by_site),
            on_activation,
            position_ids_BT=batch.position_ids_BT,
        )


def _build_result(lm, samples, encoded, cfg, rule, suite, counter, health, elapsed, t_fwd) -> MUIResult:
    L = len(counter.layers)
    arrays = counter.arrays(len(samples))
    fire, n_tokens_L = arrays["fire_LU"], arrays["n_tokens_L"]
    per_layer_health = health_rows(counter.layers, fire, n_tokens_L, health) if cfg.units == "sae" else None
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
                "prompt": s.prompt,
                "response": s.response,
                "meta": s.meta,
            }
        )
    summary = {
        "schema_version": SCHEMA_VERSION,
        **summary_counts(counter, rows),
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
    result = MUIResult(
        summary, arrays, rows, run_info, health_sums=dict(health) if cfg.units == "sae" else None
    )
    result.set_mui_correct()
    return result
