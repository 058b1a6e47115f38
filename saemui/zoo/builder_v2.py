"""Building the v2 zoo: items files, stage 0, the law tasks it decides, then trainings and every evaluation.

A build (i) writes the items files, (ii) runs the bases' stage-0 evaluations, (iii) re-plans: once every
stage-0 record exists the law tasks are known (§3.2) and ``eligibility.json`` is written, (iv) runs the rest root
by root (one lock per root, as in v1): trainings first, then per model point, with its weights loaded once, its
evaluations, its SAE health (W10) and its causal arms (§8.5), the last two after the verbatim text of C they
read. Every stage writes its record atomically and is skipped next time while its fingerprint matches.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from saemui.ablation import accuracy_arm, key_sets, logprob_arm
from saemui.analysis.causal import accuracy_effect, causal_effect
from saemui.analysis.eligibility import chance_level
from saemui.engine import compute_mui
from saemui.errors import SaemuiError
from saemui.io import atomic_write_compact_json, atomic_write_json
from saemui.models import LoadedModel, load_model
from saemui.records import Sample
from saemui.result import MUIResult
from saemui.tasks.generation import prompt_format_for, run_generation, seed_generation_cache
from saemui.zoo.builder import BuildReport, _build_lock
from saemui.zoo.data_v2 import (
    base_samples,
    candidate_sets,
    examples_digest,
    gold_samples,
    prompt_identity,
    root_task,
    sets_digest,
    styled_pairs,
    task_of,
    training_examples,
)
from saemui.zoo.finetune import load_trained, train_on_pairs
from saemui.zoo.record_v2 import (
    CAUSAL_SCHEMA,
    HEALTH_SCHEMA_V2,
    ITEMS_SCHEMA,
    RESULT_SCHEMA,
    TEXTS_SCHEMA,
    item_json,
    length_fields,
    read_texts,
    record_path,
    setting_fields,
    texts_path,
)
from saemui.zoo.settings import measure_settings, mui_t_setting, setting, setting_config, setting_configs
from saemui.zoo.spec import ZooModel, ZooTask
from saemui.zoo.spec_v2 import GROUPS, StudyRun, StudySpec
from saemui.zoo.stages import _read_json, zoo_cache
from saemui.zoo.stages_v2 import (
    Point,
    StudyPlan,
    StudyStage,
    causal_setting,
    generation_key_v2,
    measured_settings,
    plan_v2,
    points,
    train_fingerprint_v2,
    write_eligibility,
)


def smoothed_p(k: int, n: int) -> float:
    """P of §1: add-half smoothed accuracy in %, 100·(k + 0.5)/(n + 1)."""
    return 100.0 * (k + 0.5) / (n + 1)


def items_file(spec: StudySpec, plan: StudyPlan, task: str) -> dict[str, Any]:
    """The content of ``items/<task>.json``: eval items and twins, their chat prompts, chance and §3.3 counts."""
    s = candidate_sets(spec)[task]
    t = task_of(s.task)
    chance = chance_level(list(s.items))
    fp = next(st.fingerprint for st in plan.stages if st.id == f"items:{task}")
    return {
        "schema": ITEMS_SCHEMA,
        "zoo": spec.name,
        "task": task,
        "task_options": dict(s.task.options),
        "max_new_tokens": s.task.max_new_tokens,
        "n": len(s.items),
        "ids": [str(i.id) for i in s.items],
        "prompts": [t.format_prompt(i, "chat") for i in s.items],
        "gold": [i.gold for i in s.items],
        "twin_prompts": [t.format_prompt(i, "chat") for i in s.twins],
        "items": [item_json(i) for i in s.items],
        "twins": [item_json(i) for i in s.twins],
        "chance": {"p0": chance.p0, "rule": chance.rule, "rules": chance.rules, "n": chance.n},
        "check": plan.checks[task],
        "fingerprint": fp,
    }


def _zoo_model(spec: StudySpec, run: StudyRun) -> ZooModel:
    # the optimisation settings train_on_pairs reads, in v1's model type
    return ZooModel(
        run.model,
        run.root,
        "lora-finetune" if run.method == "lora" else "full-finetune",
        steps=run.steps,
        lr=run.lr,
        batch_size=spec.batch_size,
        seed=run.seed,
        lora_r=run.lora_r or 8,
        lora_alpha=run.lora_alpha or 16,
        max_length=spec.max_length,
        style=spec.root(run.root).style,
    )


def study_record(
    spec: StudySpec,
    p: Point,
    t: ZooTask,
    st: StudyStage,
    law: tuple[str, ...],
    samples: list[Sample],
    results: dict[str, MUIResult],
    style: str,
    scored: bool,
    model_sha256: str | None,
    generation_key: str | None = None,
) -> dict[str, Any]:
    """One v2 record (``<point>__<task>__<set>.json``); ``results`` maps setting names to MUI results;
    generation_key: the generated text's key (weights, task, items), which stage 0's law rule matches."""
    run = p.run
    n = len(samples)
    correct = [bool(s.correct) for s in samples] if scored else None
    k = sum(correct) if correct is not None else None
    p0 = results.get("P0")
    max_new = t.max_new_tokens if st.item_set in ("verbatim", "twins") else None
    wanted = measured_settings(spec, p.root, st.measure or "accuracy")
    configured = spec.settings if st.measure == "settings" else spec.tf_settings if st.measure == "tf" else ()
    return {
        "schema": RESULT_SCHEMA,
        "zoo": spec.name,
        "model": p.name,
        "root": p.root,
        "root_spec": Path(spec.root(p.root).base).name,
        "run": run.name if run else None,
        "role": run.role if run else "base",
        "method": run.method if run else None,
        "seed": run.seed if run else None,
        "dose": run.dose if run else 0.0,
        "step": p.step if p.step is not None else (run.steps if run else 0),
        "train_steps": run.steps if run else None,
        "checkpoint": p.step is not None,
        "contaminated": [law[0]] if run and run.dose else [],
        "law_tasks": list(law),
        "task": t.name,
        "task_options": dict(t.options),
        "set": st.item_set,
        "measure": st.measure,
        "style": style,
        "max_new_tokens": max_new,
        "n": n,
        "n_correct": k,
        "accuracy": k / n if k is not None else None,
        "P": smoothed_p(k, n) if k is not None else None,
        "mui": p0.mui if p0 is not None else None,
        "mui_t_setting": mui_t_setting(t.name) if st.measure == "settings" else None,
        **length_fields(p0, max_new),
        "ids": [str(s.id) for s in samples],
        "correct": [int(c) for c in correct] if correct is not None else None,
        "settings": {name: setting_fields(results[name], spec.max_set_entries) for name in wanted},
        "settings_omitted": [name for name in configured if name not in wanted],
        "model_sha256": model_sha256,
        "generation_key": generation_key,
        "fingerprint": st.fingerprint,
        # D1 (§11): the exemplars this root's prompts showed; absent under the registered prompts
        **({"exemplars": x} if (x := prompt_identity(spec, p.root, t)) is not None else {}),
    }


@dataclass
class _Ctx:
    spec: StudySpec
    plan: StudyPlan
    results: Path
    root_dir: Path
    report: BuildReport
    progress: bool
    log_fn: Callable[[str], None]
    device: str | None
    roots: dict[str, LoadedModel] = field(default_factory=dict)


def build_v2(
    spec: StudySpec,
    results: Path,
    cache: Path | None = None,
    only: Sequence[str] | None = None,
    device: str | None = None,
    progress: bool = False,
    log_fn: Callable[[str], None] = print,
    groups: Sequence[str] | None = None,
) -> BuildReport:
    """Run every pending v2 stage (see the module docstring); returns what ran and what was skipped.

    groups: run only the stages of these stage groups (e.g. ``["0"]``: stage 0 alone, so that the plan can be
    recomputed with measured rates and §9's cuts decided before anything else runs); None = all."""
    if groups is not None:
        unknown = sorted(set(groups) - set(GROUPS))
        if unknown:
            raise SaemuiError(
                f"stage group(s) {', '.join(unknown)} unknown (expected some of {', '.join(GROUPS)})"
            )

    def wanted(s) -> bool:
        return groups is None or s.group in groups

    results = Path(results)
    root_dir = zoo_cache(spec, cache)
    root_dir.mkdir(parents=True, exist_ok=True)
    report = BuildReport()
    plan = plan_v2(spec, results, cache, only=only)
    roots = sorted({s.root for s in plan.stages if s.root and (s.needed or s.blocked)})
    with contextlib.ExitStack() as locks:
        for r in roots:
            locks.enter_context(_build_lock(root_dir / f"build-{r}.lock"))
        ctx = _Ctx(spec, plan, results, root_dir, report, progress, log_fn, device)
        for s in plan.stages:
            if s.kind == "items" and s.needed:
                atomic_write_json(s.record, items_file(spec, plan, s.task))
                report.ran.append(s.id)
        _run(ctx, [s for s in plan.stages if s.group == "0" and wanted(s)])
        plan = plan_v2(spec, results, cache, only=only)
        ctx.plan = plan
        law = plan.outcome.law
        if law is None:
            log_fn(f"stage 0 incomplete ({', '.join(plan.outcome.missing)}): the law tasks are not known yet")
        elif not law:
            write_eligibility(spec, plan.outcome, results)
            log_fn("stage 0: no candidate is a law task (§3.2); nothing after stage 0 runs")
        else:
            write_eligibility(spec, plan.outcome, results)
            what = f"one-family study within {spec.family} (§11 case (3))" if spec.family else "law tasks"
            log_fn(f"{what}: {', '.join(law)} (C = {law[0]})")
            _run(ctx, [s for s in plan.stages if s.group != "0" and s.kind != "items" and wanted(s)])
        for s in plan.stages:
            if not s.needed and s.id not in report.ran:
                report.skipped.append(s.id)
    return report


def _root_lm(ctx: _Ctx, root: str) -> LoadedModel:
    if root not in ctx.roots:
        ctx.log_fn(f"loading {ctx.spec.root(root).base}")
        ctx.roots[root] = load_model(ctx.spec.root(root).base, device=ctx.device)
    return ctx.roots[root]


def _run(ctx: _Ctx, stages: list[StudyStage]) -> None:
    spec = ctx.spec
    todo = [s for s in stages if s.needed]
    law = ctx.plan.outcome.law or ()
    by_point = {p.name: p for p in points(spec)}
    for root in dict.fromkeys(s.root for s in todo):
        mine = [s for s in todo if s.root == root]
        root_lm = _root_lm(ctx, root)
        trains = {spec.run(x.point).name: x for x in mine if x.kind == "train"}
        work = [x for x in mine if x.kind in _KIND_ORDER]
        names = list(dict.fromkeys(x.point for x in work))

        def run_of(name: str) -> str | None:
            r = by_point[name].run
            return r.name if r is not None else None

        # the base's points, then run by run: its training, then at once every point of it. Trained weights live
        # in the cache, which a session on another machine does not have: a run evaluated right after its
        # training never has to be trained twice, while "all trainings first" could leave many half-used.
        order: list[tuple[StudyStage | None, list[str]]] = [(None, [n for n in names if run_of(n) is None])]
        for r in dict.fromkeys([*trains, *(run_of(n) for n in names if run_of(n) is not None)]):
            order.append((trains.get(r), [n for n in names if run_of(n) == r]))
        for train, group in order:
            if train is not None:
                _train(ctx, spec.run(train.point), root_lm, train, law)
            _evaluate_points(ctx, group, work, by_point, root_lm, law)


def _evaluate_points(
    ctx: _Ctx,
    names: list[str],
    work: list[StudyStage],
    by_point: dict[str, Point],
    root_lm: LoadedModel,
    law: tuple[str, ...],
) -> None:
    """Every pending stage of the points ``names``, point by point (its model loaded once); per point the
    evaluations come first (they write the verbatim text that health and the accuracy arm read)."""
    for name in names:
        p = by_point[name]
        lm = root_lm if p.run is None else _load_point(ctx, p, root_lm)
        for s in sorted((x for x in work if x.point == name), key=lambda x: _KIND_ORDER[x.kind]):
            t0 = time.perf_counter()
            if s.kind == "eval":
                _evaluate(ctx, p, s, lm, law)
            elif s.kind == "health":
                _health(ctx, p, s, lm)
            else:
                _causal(ctx, p, s, lm)
            secs = time.perf_counter() - t0
            atomic_write_json(
                ctx.root_dir / "stages" / f"{s.id.replace(':', '__').replace('/', '_')}.json",
                {"stage": s.id, "fingerprint": s.fingerprint, "seconds": secs, **_run_conditions()},
            )
            ctx.report.ran.append(s.id)
            ctx.report.seconds[s.id] = secs
        if lm is not root_lm:
            del lm


_KIND_ORDER = {"eval": 0, "health": 1, "causal": 2}


def _load_point(ctx: _Ctx, p: Point, root_lm: LoadedModel) -> LoadedModel:
    assert p.run is not None
    tag = f"step-{p.step}" if p.step is not None else "final"
    d = ctx.root_dir / "weights" / p.run.model / tag
    if not d.exists():
        raise SaemuiError(f"zoo point {p.name!r}: weights {d} missing (run the train:{p.run.model} stage)")
    return load_trained(root_lm, d, p.run.method, p.name)


def _train(ctx: _Ctx, run: StudyRun, root_lm: LoadedModel, s: StudyStage, law: tuple[str, ...]) -> None:
    spec = ctx.spec
    style = spec.root(run.root).style
    examples = training_examples(spec, run, law)
    fp = train_fingerprint_v2(spec, run, examples_digest(examples))
    if fp != s.fingerprint:
        raise SaemuiError(f"{s.id}: training data changed between plan and build")
    ctx.log_fn(f"[{s.id}] training ({run.method}, {run.steps} steps, {len(examples)} pairs)")
    info = train_on_pairs(
        _zoo_model(spec, run),
        root_lm,
        ctx.root_dir / "weights" / run.model,
        styled_pairs(spec, examples, style, run.root),
        fp,
        style,
        run.checkpoints,
        progress=True,
        log_fn=ctx.log_fn,
    )
    sources: dict[str, int] = {}
    for e in examples:
        sources[e.source] = sources.get(e.source, 0) + 1
    atomic_write_json(
        s.record, {"stage": s.id, "fingerprint": fp, "sources": sources, **info, **_run_conditions()}
    )
    ctx.report.ran.append(s.id)
    ctx.report.seconds[s.id] = info["seconds"]  # with the kept steps of earlier segments


def _run_conditions() -> dict[str, Any]:
    # a stage's seconds depend on its threads and on what else ran: kept so a re-plan can tell them apart
    import os

    import torch

    return {"threads": torch.get_num_threads(), "loadavg_1min": round(os.getloadavg()[0], 2)}


def _evaluate(ctx: _Ctx, p: Point, s: StudyStage, lm: LoadedModel, law: tuple[str, ...]) -> None:
    spec = ctx.spec
    t = spec.candidate(s.task)
    sets = candidate_sets(spec)[t.name]
    style = spec.root(p.root).style
    bundle = spec.sae_bundle(p.root)
    if s.item_set in ("verbatim", "twins"):
        items = list(sets.twins if s.item_set == "twins" else sets.items)
        task = root_task(spec, p.root, t)
        gkey = generation_key_v2(spec, p, t, s.item_set, sets_digest(items), ctx.plan.train_fps)
        gen_cache = ctx.root_dir / "generations" / f"{p.name}__{t.name}__{s.item_set}__{gkey}.jsonl"
        kept = _kept_responses(ctx, p.name, t.name, s.item_set, gkey)
        if kept and seed_generation_cache(lm, task, items, style, gen_cache, kept):
            ctx.log_fn(f"[{s.id}] responses from the committed texts file (same generation key)")
        gen = run_generation(lm, task, items, style, gen_cache, spec.gen_batch_size, progress=ctx.progress)
        samples = gen.samples
        results: dict[str, MUIResult] = {}
        if s.measure == "settings":
            results = measure_settings(
                lm, samples, setting_configs(spec.settings, gen.prompt_format, bundle), ctx.progress
            )
        texts = {
            "schema": TEXTS_SCHEMA,
            "zoo": spec.name,
            "model": p.name,
            "task": t.name,
            "set": s.item_set,
            "style": gen.style,
            "max_new_tokens": t.max_new_tokens,
            "ids": [str(x.id) for x in samples],
            "responses": [x.response for x in samples],
            "correct": [int(bool(x.correct)) for x in samples],
        }
        atomic_write_compact_json(texts_path(ctx.results, p.name, t.name, s.item_set), texts)
        scored = True
    else:
        items = list(sets.items)
        if s.item_set == "G":
            samples = gold_samples(root_task(spec, p.root, t), items, style)
        else:
            base = read_texts(texts_path(ctx.results, p.root, t.name, "verbatim"))
            samples = base_samples(root_task(spec, p.root, t), items, base, style)
        fmt = prompt_format_for(style)
        results = measure_settings(lm, samples, setting_configs(spec.tf_settings, fmt, bundle), ctx.progress)
        scored = False
        gkey = None
    rec = study_record(
        spec, p, t, s, law, samples, results, style, scored, (lm.provenance or {}).get("sha256"), gkey
    )
    atomic_write_compact_json(s.record, rec)
    acc = f"accuracy {100 * rec['accuracy']:.1f} %" if rec["accuracy"] is not None else "teacher-forced"
    mui = f", MUI {100 * rec['mui']:.4f} %" if rec["mui"] is not None else ""
    ctx.log_fn(f"[{s.id}] {acc}{mui}")


def _current_texts(ctx: _Ctx, point: str, task: str, item_set: str, gkey: str) -> dict[str, Any] | None:
    """The committed texts file of this stage when its record was generated under ``gkey``, else None."""
    rec = _read_json(record_path(ctx.results, point, task, item_set))
    f = texts_path(ctx.results, point, task, item_set)
    if not rec or rec.get("generation_key") != gkey or not f.is_file():
        return None
    return read_texts(f)


def _kept_responses(ctx: _Ctx, point: str, task: str, item_set: str, gkey: str) -> dict[str, str]:
    """The kept text a stage re-measures from when only its measurement changed (other settings or SAE bundle)
    and the generation cache is gone (a new machine): responses by id, or {}."""
    texts = _current_texts(ctx, point, task, item_set, gkey)
    return dict(zip(texts["ids"], texts["responses"])) if texts else {}


def _point_fields(spec: StudySpec, p: Point, lm: LoadedModel) -> dict[str, Any]:
    run = p.run
    return {
        "zoo": spec.name,
        "model": p.name,
        "root": p.root,
        "root_spec": Path(spec.root(p.root).base).name,
        "run": run.name if run else None,
        "role": run.role if run else "base",
        "step": run.steps if run else 0,
        "model_sha256": (lm.provenance or {}).get("sha256"),
    }


def _own_samples(ctx: _Ctx, p: Point, s: StudyStage) -> tuple[list[Sample], dict[str, Any], str]:
    """The point's own responses to task C (its verbatim texts file, checked against the generation key the
    plan expects), as samples in the root's style; also the texts and the key."""
    spec = ctx.spec
    t = spec.candidate(s.task)
    items = list(candidate_sets(spec)[t.name].items)
    gkey = generation_key_v2(spec, p, t, "verbatim", sets_digest(items), ctx.plan.train_fps)
    texts = _current_texts(ctx, p.name, t.name, "verbatim", gkey)
    if texts is None:
        raise SaemuiError(f"{s.id}: needs the current verbatim text of {p.name} on {t.name} (its eval stage)")
    return base_samples(root_task(spec, p.root, t), items, texts, spec.root(p.root).style), texts, gkey


def _health(ctx: _Ctx, p: Point, s: StudyStage, lm: LoadedModel) -> None:
    """SAE health (W10) on the point's own responses to C: FVE, L0, dead and dense at every layer on all of them
    (CE skipped there), CE-loss recovered and KL at ``health_layers`` on the first ``health_ce_samples``; and FVE,
    L0, dead and dense at every layer on C's gold responses (set G, the same text at every point)."""
    from saemui.sae_eval import json_safe, suite_health

    spec = ctx.spec
    bundle = spec.sae_bundle(p.root)
    samples, _, gkey = _own_samples(ctx, p, s)
    style = spec.root(p.root).style
    fmt = prompt_format_for(style)
    all_layers = suite_health(lm, bundle, samples, layers=None, ce_samples=0, prompt_format=fmt)
    ce = suite_health(
        lm,
        bundle,
        samples[: spec.health_ce_samples],
        layers=list(spec.health_layers),
        ce_samples=None,
        prompt_format=fmt,
    )
    # the same text at every point: the gold responses of set G, so Δ against the base is the residuals' alone
    t = spec.candidate(s.task)
    gold_text = gold_samples(root_task(spec, p.root, t), list(candidate_sets(spec)[t.name].items), style)
    gold = suite_health(lm, bundle, gold_text, layers=None, ce_samples=0, prompt_format=fmt)

    def strip(h: dict) -> dict:
        # the model's provenance and the suite's source name local paths: records stay machine-independent
        return {k: v for k, v in h.items() if k not in ("model", "suite_source", "schema")}

    rec = {
        "schema": HEALTH_SCHEMA_V2,
        **_point_fields(spec, p, lm),
        "task": s.task,
        "set": "verbatim",
        "bundle": str(bundle),
        "suite": all_layers["suite"],
        "n": len(samples),
        "ce_layers": list(spec.health_layers),
        "ce_samples": len(samples[: spec.health_ce_samples]),
        "all_layers": json_safe(strip(all_layers)),
        "ce": json_safe(strip(ce)),
        "gold": json_safe(strip(gold)),
        "generation_key": gkey,
        "fingerprint": s.fingerprint,
    }
    atomic_write_compact_json(s.record, rec)
    m = rec["all_layers"]["medians"]
    ctx.log_fn(
        f"[{s.id}] median FVE {m['fve_pooled']} (gold text {rec['gold']['medians']['fve_pooled']}), CE "
        f"recovered (median of {rec['ce_layers']}) {rec['ce']['medians']['ce_loss_recovered']}"
    )


def _causal(ctx: _Ctx, p: Point, s: StudyStage, lm: LoadedModel) -> None:
    """One arm of §8.5 at a point on task C (see :func:`saemui.zoo.stages_v2.causal_arms`), written with its
    per-item arrays and the effect :mod:`saemui.analysis.causal` computes from them."""
    spec = ctx.spec
    arm = s.measure
    t = spec.candidate(s.task)
    items = list(candidate_sets(spec)[t.name].items)
    style = spec.root(p.root).style
    fmt = prompt_format_for(style)
    sae = arm == "sae-logprob"
    bundle = spec.sae_bundle(p.root) if sae else None
    cfg = setting_config(setting(causal_setting(arm)), fmt, bundle)
    assert cfg is not None
    # the key sets only: SAE health is measured by its own stage
    cfg = dataclasses.replace(cfg, health=False)
    head = {
        "schema": CAUSAL_SCHEMA,
        **_point_fields(spec, p, lm),
        "task": t.name,
        "arm": arm,
        "setting": causal_setting(arm),
        "sae_bundle": str(bundle) if bundle else None,
    }
    if arm == "accuracy":
        samples, texts, gkey = _own_samples(ctx, p, s)
        res = compute_mui(lm, samples, cfg, progress=ctx.progress)
        a = accuracy_arm(
            lm,
            root_task(spec, p.root, t),
            items,
            res,
            style=style,
            n_draws=spec.causal_acc_draws,
            seed=spec.causal_seed,
            batch_size=spec.gen_batch_size,
        )
        eff = accuracy_effect(a.clean, a.key, a.random)
        rec = {
            **head,
            "key_source": "verbatim",
            "n": len(a.ids),
            "n_draws": spec.causal_acc_draws,
            "seed": spec.causal_seed,
            "key_mui": res.mui,
            "ids": a.ids,
            "clean": a.clean.astype(int).tolist(),
            "key": a.key.astype(int).tolist(),
            "random": a.random.astype(int).tolist(),
            "shortfall": a.shortfall.tolist() if a.shortfall is not None else None,
            "n_key": [int(sum(len(v) for v in k.values())) for k in key_sets(res)],
            "texts_correct": [int(c) for c in texts["correct"]],
            "responses": a.responses,
            "effect": asdict(eff),
            "generation_key": gkey,
            "fingerprint": s.fingerprint,
        }
        summary = f"ΔAcc {100 * eff.d_acc:+.1f} pp [{100 * eff.lo:+.1f}, {100 * eff.hi:+.1f}]"
    else:
        samples = gold_samples(root_task(spec, p.root, t), items, style)
        res = compute_mui(lm, samples, cfg, progress=ctx.progress)
        a = logprob_arm(lm, res, samples, saes=bundle, n_draws=spec.causal_draws, seed=spec.causal_seed)
        eff = causal_effect(a.delta_key, a.delta_random)
        rec = {
            **a.to_dict(),
            **head,
            "key_source": "G",
            "n": len(a.ids),
            "n_draws": spec.causal_draws,
            "key_mui": res.mui,
            "effect": asdict(eff),
            "fingerprint": s.fingerprint,
        }
        summary = f"E {eff.e:+.3f} nats [{eff.lo:+.3f}, {eff.hi:+.3f}]"
    atomic_write_compact_json(s.record, rec)
    ctx.log_fn(f"[{s.id}] {summary}")


__all__ = ["build_v2", "items_file", "smoothed_p", "study_record"]
