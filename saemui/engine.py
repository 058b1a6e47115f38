"""The MUI engine: samples → one forward per batch → unit scores → key units → counter → result.

``compute_mui_many`` is the whole pipeline: several settings (thresholds, alignments, neuron sites, first-T
cuts) measured from one forward pass per batch, one result each. ``compute_mui`` is that function with one
setting; the CLI's ``saemui run`` calls ``compute_mui_many`` (``--also`` adds settings).
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
from saemui.capture import get_backend, site_name
from saemui.config import UNIT_DEFAULTS, RunConfig, check_one_pass
from saemui.counter import UtilizationCounter
from saemui.errors import SaemuiError
from saemui.health import HealthAccumulator, firing_stats, health_rows
from saemui.heap import trim_heap
from saemui.inputs import Batch, collate_views, encode_samples, plan_batches, realign
from saemui.models import LoadedModel
from saemui.provenance import machine_info, package_versions
from saemui.records import Sample, assign_ids
from saemui.result import SCHEMA_VERSION, MUIResult, summary_counts
from saemui.rules import few_units_warning
from saemui.saes import SAESuite, check_compatible, check_suite_for_model, open_suite
from saemui.selection import KeyRule, LayerScores, Selector, make_selector
from saemui.units import NEURON_SITES, MLPNeurons, SAEFeatures, UnitScorer

# RunConfig, UNIT_DEFAULTS, firing_stats, package_versions and machine_info moved to their own modules; they stay
# importable from here.
__all__ = [
    "UNIT_DEFAULTS",
    "Observer",
    "RunConfig",
    "compute_mui",
    "compute_mui_many",
    "firing_stats",
    "machine_info",
    "package_versions",
]

log = logging.getLogger(__name__)


@dataclass
class _Group:
    """The scorers of one SAE group (or every neuron scorer) and their SAE-health sums per (view, layer)."""

    scorers: list[UnitScorer]
    health: dict[tuple[int, int], HealthAccumulator] = field(default_factory=dict)


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
    return _Group(scorers)


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
    This is :func:`compute_mui_many` with one setting.
    """
    return compute_mui_many(
        lm,
        samples,
        [config or RunConfig()],
        progress=progress,
        checkpoint_dir=checkpoint_dir,
        checkpoint_every=checkpoint_every,
        extra_summary=extra_summary,
        observers=observers,
    )[0]


@dataclass
class _Setting:
    """One setting of a pass: its config, rule and selector, the view (scored positions) it reads, its counter."""

    cfg: RunConfig
    rule: KeyRule
    selector: Selector
    view: int
    counter: UtilizationCounter | None = None


#: a score stream: one scorer read at one view's positions, feeding these settings
_Stream = tuple[UnitScorer, int, list[int]]


def _streams(
    scorers: Sequence[UnitScorer], settings: Sequence[_Setting], units: str
) -> dict[str, list[_Stream]]:
    """capture site → the (scorer, view, settings) streams it feeds. Settings that read the same scorer at the same
    positions share its scores (one SAE encode for several thresholds); a neuron scorer serves only the settings
    of its site."""
    out: dict[str, list[_Stream]] = {}
    for sc in scorers:
        by_view: dict[int, list[int]] = {}
        for i, st in enumerate(settings):
            if units == "sae" or sc.site == site_name(sc.layer, NEURON_SITES[st.cfg.neuron_site]):
                by_view.setdefault(st.view, []).append(i)
        out.setdefault(sc.site, []).extend((sc, v, members) for v, members in by_view.items())
    return out


def compute_mui_many(
    lm: LoadedModel,
    samples: Sequence[Sample],
    configs: Sequence[RunConfig],
    progress: bool = True,
    checkpoint_dir: str | os.PathLike | None = None,
    checkpoint_every: int = 20,
    extra_summary: Mapping[str, Any] | None = None,
    observers: Sequence[Observer] = (),
) -> list[MUIResult]:
    """MUI of ``lm`` on ``samples`` under several settings from one forward pass per batch; one result per config,
    in order, each equal to what :func:`compute_mui` gives for that config alone (timing aside).

    Settings may differ only in :data:`~saemui.config.PER_SETTING_FIELDS` (threshold, alignment, neuron site,
    first_tokens, preset, keep_sets); anything else differing is refused, naming the field. The batches are
    planned once for all settings; settings that read the same unit scores at the same positions share them.
    Checkpoints (``checkpoint_dir``) cover every setting; ``observers`` see the scores of the first setting.
    """
    if isinstance(configs, RunConfig):
        raise SaemuiError("compute_mui_many takes a list of RunConfig (use compute_mui for one)")
    cfgs = [(c or RunConfig()).resolved(model=(lm.name, lm.hf_id)) for c in configs]
    check_one_pass(cfgs)
    cfg = cfgs[0]  # the fields every setting shares
    extra = dict(extra_summary or {})
    try:
        json.dumps(extra)
    except (TypeError, ValueError) as e:
        # checked before the forward passes: save() would fail only after the whole run
        raise SaemuiError(f"extra_summary is not JSON-serializable ({e})") from None
    samples = assign_ids([Sample(s.prompt, s.response, s.id, s.correct, dict(s.meta)) for s in samples])
    if not samples:
        raise SaemuiError("no samples to evaluate")
    views: list[tuple[str, int | None]] = []
    settings: list[_Setting] = []
    for c in cfgs:
        rule = KeyRule.parse(c.threshold, positive_only=c.units == "sae")
        view = (c.alignment, c.first_tokens)
        if view not in views:
            views.append(view)
        settings.append(_Setting(c, rule, make_selector(rule), views.index(view)))
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
    sites = list(dict.fromkeys(st.cfg.neuron_site for st in settings))

    def load_group(g: int) -> _Group:
        if suite is not None:
            group = _load_sae_group(lm, entry_groups[g], cfg)
            if cfg.health:
                # SAE health depends on the positions read, not on the rule: one accumulator per (view, layer)
                group.health = {
                    (v, sc.layer): HealthAccumulator() for v in range(len(views)) for sc in group.scorers
                }
            return group
        return _Group([MLPNeurons(lm, lay, site) for site in sites for lay in layers])

    # The ids do not depend on the alignment or the first-T cut: tokenize once, derive the other views' positions.
    (align0, first0), *other_views = views
    encoded = [encode_samples(lm.tokenizer, samples, align0, cfg.prompt_format, cfg.max_length, first0)]
    encoded += [realign(lm.tokenizer, encoded[0], a, t) for a, t in other_views]
    # Only the plan (sample positions per batch) is kept; tensors are built per batch when it runs. It depends on
    # the ids alone, so every setting gets the same batches.
    batches = plan_batches(encoded[0], cfg.max_batch_tokens, cfg.max_batch_size)
    backend = get_backend(cfg.backend, lm)
    # finished layers' health sums per (view, layer) (kept whole, not summarised, so that results of several
    # processes merge)
    health: dict[tuple[int, int], HealthAccumulator] = {}
    n_units = None
    t_fwd = 0.0
    start = (0, 0)
    health_acc: dict = {}

    fp = None
    if checkpoint_dir is not None:
        fp = ckpt.fingerprint(_fingerprint_components(lm, samples, cfgs, suite))
        state = ckpt.load(Path(checkpoint_dir), fp)
        if state is not None:
            start = tuple(state["next"])
            n_units = state["n_units"]
            for st, saved in zip(settings, state["settings"]):
                st.counter = UtilizationCounter.from_state_dict(saved["counter"], device=lm.device)
                st.selector.load_state_dict(saved["selector"])
            health = {_health_key(k): HealthAccumulator(**v) for k, v in state["health_done"].items()}
            health_acc = {_health_key(k): v for k, v in state["health_acc"].items()}
            t_fwd = float(state["t_fwd"])
            for obs, ob_state in zip(observers, state.get("observers", [])):
                obs.load_state_dict(ob_state)
            log.info("resuming from %s at group %d, batch %d", checkpoint_dir, *start)

    def save_checkpoint(next_pos: tuple[int, int], group: _Group | None) -> None:
        acc = {f"{v},{lay}": h.state() for (v, lay), h in group.health.items()} if group is not None else {}
        ckpt.save(
            Path(checkpoint_dir),
            {
                "fingerprint": fp,
                "next": list(next_pos),
                "n_units": n_units,
                "settings": [
                    {"counter": st.counter.state_dict(), "selector": st.selector.state_dict()}
                    for st in settings
                ],
                "health_done": {f"{v},{lay}": h.state() for (v, lay), h in health.items()},
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
            for st in settings:
                if (msg := few_units_warning(st.rule, n_units, len(layers))) is not None:
                    log.warning("%s", msg)
                st.counter = UtilizationCounter(layers, n_units, device=lm.device, keep_sets=st.cfg.keep_sets)
        for sc in group.scorers:
            if sc.n_units != n_units:
                raise SaemuiError(
                    f"layer {sc.layer} has {sc.n_units} units but layer {layers[0]} has {n_units}: MUI's "
                    "denominator needs the same width on every layer (select layers or SAEs of one width)"
                )
        first = start[1] if g == start[0] else 0
        if first:
            for key, h_state in health_acc.items():
                if key in group.health:
                    group.health[key] = HealthAccumulator(**h_state)
        streams = _streams(group.scorers, settings, cfg.units)
        for b in range(first, len(batches)):
            tb = time.perf_counter()
            views_b = [[enc[i] for i in batches[b]] for enc in encoded]
            batch_v = collate_views(views_b, lm.tokenizer.pad_token_id, cfg.padding_side, lm.device)
            _run_batch(backend, batch_v, streams, settings, group.health, cfg.encode_chunk, observers)
            del batch_v, views_b
            trim_heap()
            t_fwd += time.perf_counter() - tb
            bar.update(1)
            if checkpoint_dir is not None and (b + 1) % checkpoint_every == 0 and b + 1 < len(batches):
                save_checkpoint((g, b + 1), group)
        health.update(group.health)
        if checkpoint_dir is not None and g + 1 < n_groups:
            save_checkpoint((g + 1, 0), None)
        # Drop every reference to this group's SAEs before the next group loads, or two groups are resident at
        # once (group, streams and the loop variable sc would keep them alive).
        del group, streams, sc
        # SAEs with input normalisation (normalize_activations) hold closures that refer back to themselves: a
        # reference cycle, so `del` alone does not free them and finished groups pile up until Python's cyclic
        # GC happens to run (a 42-layer, 131k-wide run reported 67.5 GiB peak RSS instead of 9.7 GiB).
        gc.collect()
    bar.close()

    elapsed = time.perf_counter() - t0
    results = []
    for st in settings:
        st.selector.finish(st.counter)
        view_health = {lay: h for (v, lay), h in health.items() if v == st.view}
        result = _build_result(
            lm, samples, encoded[st.view], st.cfg, st.rule, suite, st.counter, view_health, elapsed, t_fwd
        )
        clash = sorted(set(extra) & set(result.summary))
        if clash:
            raise SaemuiError(
                f"extra_summary key(s) {', '.join(clash)} would replace the engine's own summary keys"
            )
        result.summary.update(extra)
        results.append(result)
    return results


def _health_key(text: str) -> tuple[int, int]:
    view, _, layer = text.partition(",")
    return int(view), int(layer)


def _fingerprint_components(
    lm: LoadedModel, samples: Sequence[Sample], configs: RunConfig | Sequence[RunConfig], suite
) -> dict:
    """What a checkpoint must match; a single setting keeps the one-setting layout (threshold, settings)."""
    cfgs = [configs] if isinstance(configs, RunConfig) else list(configs)
    thresholds = [c.threshold for c in cfgs]
    settings = [{k: v for k, v in asdict(c).items() if k not in ("threshold", "saes")} for c in cfgs]
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
        "threshold": thresholds[0] if len(cfgs) == 1 else thresholds,
        "settings": settings[0] if len(cfgs) == 1 else settings,
        "data": [(s.id, s.prompt, s.response, s.correct) for s in samples],
        "saemui version": package_versions().get("saemui"),
    }


def _run_batch(
    backend,
    batch_v: Sequence[Batch],
    streams: dict[str, list[_Stream]],
    settings: Sequence[_Setting],
    health: dict[tuple[int, int], HealthAccumulator],
    encode_chunk: int,
    observers: Sequence[Observer] = (),
) -> None:
    """One forward over the batch (``batch_v``: the same rows per view); every stream scores its site's
    activations at its view's positions and feeds its settings' selectors and counters."""
    B = len(batch_v[0].sample_index)

    def on_activation(site: str, acts_BTD: torch.Tensor) -> None:
        for scorer, v, members in streams.get(site, ()):
            batch = batch_v[v]
            acts_ND = acts_BTD.reshape(-1, acts_BTD.shape[-1])[batch.flat_N]
            # One float64 sum instead of an elementwise isfinite (5 passes over the activations): any NaN/Inf
            # makes the sum non-finite, and finite fp32/fp16/bf16 values (< 3.4e38 each) cannot overflow it.
            if not torch.isfinite(acts_ND.sum(dtype=torch.float64)):
                raise SaemuiError(
                    f"non-finite activations (NaN/Inf) at {site}: check the model's dtype (fp16 overflow?)"
                )
            # Settings whose rules reduce the scores alike (topscore η 0.9 and 0.95; topk of one k) share one
            # accumulator: the reduction is a function of the scores, the rule only reads it.
            accs: dict[tuple, LayerScores] = {}
            acc_of = []
            for m in members:
                sel = settings[m].selector
                key = (sel.k_for(scorer.n_units), sel.rule.positive_only)
                if key not in accs:
                    accs[key] = sel.begin(B, scorer.n_units, acts_ND.device)
                acc_of.append(accs[key])
            h = health.get((v, scorer.layer))
            watch = observers if 0 in members else ()
            for off, sc_nU in scorer.scores(acts_ND, batch.target_N, encode_chunk):
                seg = batch.seg_N[off : off + sc_nU.shape[0]]
                for obs in watch:
                    obs.observe(scorer.layer, batch, off, sc_nU)
                for acc in accs.values():
                    acc.add(sc_nU, seg)
                if h is not None:
                    x = acts_ND[off : off + sc_nU.shape[0]].to(scorer.sae.dtype)
                    h.add(x, scorer.sae.decode(sc_nU.to(scorer.sae.dtype)))
            n_tok = int(batch.flat_N.numel())
            for m, acc in zip(members, acc_of):
                st = settings[m]
                key_SU = st.selector.key_sets(acc, scorer.layer, batch.sample_index)
                st.counter.update(scorer.layer, batch.sample_index, key_SU, acc.fire_U, n_tok)

    with torch.inference_mode():
        backend.run(
            batch_v[0].input_ids_BT,
            batch_v[0].attention_mask_BT,
            list(streams),
            on_activation,
            position_ids_BT=batch_v[0].position_ids_BT,
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
        **summary_counts(counter, rows, cfg.first_tokens),
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
    short = summary.get("short_samples")
    if short and short["short"]:
        log.warning(
            "%d of %d samples have fewer than first_tokens=%d scored positions (%.0f %% > %.0f %%: flagged short)",
            short["n"],
            len(rows),
            cfg.first_tokens,
            100 * short["share"],
            100 * short["flag_above_share"],
        )
    result = MUIResult(
        summary, arrays, rows, run_info, health_sums=dict(health) if cfg.units == "sae" else None
    )
    result.set_mui_correct()
    return result
