"""The v2 zoo's stages (protocol §9): what each model point is evaluated on, the law tasks decided by stage 0,
fingerprints, and the CPU plan per stage group.

Stages: ``items:<task>`` (the committed items file), ``train:<model>``, ``eval:<point>:<task>:<set>`` with
set ∈ ``verbatim`` / ``twins`` (generated answers) and ``G`` / ``B`` (teacher-forced, forward only),
``health:<point>:<C>`` (SAE health on the point's own responses to C, W10) and ``causal:<point>:<C>:<arm>`` (§8.5,
arms of :data:`saemui.zoo.record_v2.CAUSAL_ARMS`). Groups follow §9: 0 eligibility (the bases on every
candidate), 1 law trainings, 2 law evals (with G and B), 2h SAE health (not in §9's table), 3 twins, 4 Cor. 1 (R*
seeds and checkpoints on task C), 5 Cor. 2 (dose runs), 6 causal. A stage whose record carries its current
fingerprint is done; every record is written atomically, so a build can be killed and re-run. Health and the
causal accuracy arm read the point's verbatim text of C: they run after that evaluation, with the point's weights
loaded once, and their fingerprints name its generation key.

The law tasks are not part of the spec: :func:`law_outcome` reads the stage-0 records and applies §3.2 (exact
binomial test against the items' chance level; the first ``max_law_tasks`` two-family candidates). Until every
stage-0 record exists, the stages that depend on the law tasks are listed as blocked, named with the symbolic
tasks E1.. and costed with the first candidates in their place. A one-family spec (``StudySpec.family``, §11's
case (3)) builds on that root's one-family candidates instead, and only once stage 0 has confirmed m = 0.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from saemui.analysis.eligibility import chance_level, classify_task, eligibility, law_tasks, one_family_tasks
from saemui.errors import SaemuiError
from saemui.zoo.data_v2 import (
    TaskSets,
    candidate_sets,
    check_sets,
    examples_digest,
    prompt_identity,
    sets_digest,
    training_examples,
)
from saemui.zoo.record_v2 import (
    causal_path,
    eligibility_path,
    health_path,
    items_path,
    record_path,
    study_tasks,
    texts_path,
)
from saemui.zoo.settings import setting, setting_configs
from saemui.zoo.spec import GEMMA, SMOL, ZooTask
from saemui.zoo.spec_v2 import GROUPS, PROTOCOL_PLAN_H, StudyRun, StudySpec, validate_v2
from saemui.zoo.stages import _fmt_s, _read_json, digest, zoo_cache

#: bump when the meaning of a v2 stage's output changes (forces a rebuild of every v2 stage)
V2_VERSION = 1


@dataclass(frozen=True)
class StudyRates:
    """CPU rates of §9 for the v2 plan (``--rate`` replaces the forward rates with measured ones).

    fwd_tok_s: forward tokens/s per root model spec (SmolLM2 450 measured, Gemma-3 225 assumed); a pass that
        measures SAE features is costed at the forward rate (it runs at ≈ forward + encode).
    gen_factor: a generated token costs ``gen_factor`` forward tokens. step_s: seconds per LoRA step at batch 8;
        full_factor: full fine-tuning costs this many LoRA steps. answer_tokens: generated tokens per item of a
        root (``base``) and of its fine-tunes (``tuned``): the batch maximum of v1's answers; a root not listed
        is costed at the task's full ``max_new_tokens``. gold_tokens: tokens of a templated gold answer.
    load_s: seconds to load a root or a derived point (LoRA merge / full weights).
    one_pass: settings that differ only in rule, site, alignment and first-T positions share one forward
        (``compute_mui_many``, W4); False costs one forward per setting (today's loop).
    sae_ablation_factor: a forward with SAE features ablated (encode and decode at every SAE layer) costs this
        many forwards (measured 1.8 on SmolLM2 with the shipped bundle, task-C gold answers; a neuron-ablated
        log-prob forward measured 0.7 and is costed as 1).
    """

    fwd_tok_s: tuple[tuple[str, float], ...] = ((SMOL, 450.0), (GEMMA, 225.0))
    default_fwd: float = 450.0
    gen_factor: float = 4.0
    step_s: tuple[tuple[str, float], ...] = ((SMOL, 3.7), (GEMMA, 7.5))
    default_step_s: float = 3.7
    full_factor: float = 1.5
    answer_tokens: tuple[tuple[str, str, int], ...] = (
        (SMOL, "base", 48),
        (SMOL, "tuned", 16),
        (GEMMA, "base", 8),
        (GEMMA, "tuned", 8),
    )
    gold_tokens: int = 6
    load_s: tuple[tuple[str, float], ...] = ((SMOL, 25.0), (GEMMA, 55.0))
    default_load_s: float = 5.0
    one_pass: bool = True
    sae_ablation_factor: float = 2.0

    def fwd(self, root: str) -> float:
        return dict(self.fwd_tok_s).get(root, self.default_fwd)

    def step(self, root: str) -> float:
        return dict(self.step_s).get(root, self.default_step_s)

    def load(self, root: str) -> float:
        return dict(self.load_s).get(root, self.default_load_s)

    def answer(self, root: str, tuned: bool, max_new_tokens: int) -> int:
        # the answer lengths were measured on short-answer tasks (≤ 64 new tokens); a long-form task (gsm8k,
        # 256) is costed at its budget: one chain of thought per batch reaching it sets the batch's length
        if max_new_tokens > SHORT_ANSWER_BUDGET:
            return max_new_tokens
        kind = "tuned" if tuned else "base"
        for r, k, n in self.answer_tokens:
            if r == root and k == kind:
                return min(n, max_new_tokens)
        return max_new_tokens


#: the largest generation budget of the tasks whose answer lengths :class:`StudyRates` holds (arith 48, arc 64)
SHORT_ANSWER_BUDGET = 64


@dataclass(frozen=True)
class Point:
    """A model point: a root (``run`` None), a run's final weights (``step`` None) or one of its checkpoints."""

    name: str
    root: str
    run: StudyRun | None = None
    step: int | None = None

    @property
    def tuned(self) -> bool:
        return self.run is not None


@dataclass(frozen=True)
class EvalSpec:
    """One evaluation of a point: stage group, task, item set and what is measured (``settings``: every
    setting of the spec; ``accuracy``: generation and scoring only; ``tf``: the teacher-forced settings)."""

    group: str
    task: str
    item_set: str
    measure: str


@dataclass
class StudyStage:
    """One unit of work of the v2 zoo (see the module docstring); cost in estimated CPU seconds."""

    id: str
    group: str
    kind: str
    point: str | None
    root: str | None
    task: str | None
    item_set: str | None
    measure: str | None
    fingerprint: str | None
    cost_s: float
    record: Path
    done: bool = False
    needed: bool = True
    blocked: str | None = None
    measured_s: float | None = None
    loop_cost_s: float = 0.0


@dataclass
class LawOutcome:
    """Stage 0's outcome: ``law`` the tasks the study builds on, task C first (None while stage-0 records are
    missing; () when none qualifies): §3.2's law tasks, or a one-family spec's tasks; ``two_family`` §3.2's law
    tasks (the registered outcome, m = its length; equal to ``law`` in a two-family spec); ``missing`` the stage-0
    stages without a current record; ``table`` per task: chance and each base's §3.2 test."""

    law: tuple[str, ...] | None
    missing: list[str] = field(default_factory=list)
    table: dict[str, Any] = field(default_factory=dict)
    two_family: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.two_family is None:
            self.two_family = self.law


@dataclass
class StudyPlan:
    spec: StudySpec
    stages: list[StudyStage]
    outcome: LawOutcome
    law_costed: tuple[str, ...]
    rates: StudyRates
    checks: dict[str, Any]
    train_fps: dict[str, str] = field(default_factory=dict)


# ----- points and their evaluations --------------------------------------------------------------------------


def points(spec: StudySpec) -> list[Point]:
    """Every model point in build order: roots, then per run its final weights and its checkpoints."""
    out = [Point(r.name, r.name) for r in spec.roots]
    for run in spec.runs:
        out.append(Point(run.model, run.root, run))
        out += [Point(f"{run.model}@{k}", run.root, run, k) for k in run.checkpoints]
    return out


def point_evals(spec: StudySpec, p: Point, law: tuple[str, ...]) -> list[EvalSpec]:
    """The evaluations of a point for the law tasks ``law`` (C = ``law[0]``), after §4, §7.1, §8.1–§8.3 and §9.
    A root outside a one-family study has its stage-0 evaluations only."""
    if not law or not spec.studied(p.root):
        return (
            [EvalSpec("0", t.name, "verbatim", "settings") for t in spec.candidates] if p.run is None else []
        )
    c = law[0]
    twin_tasks = law if spec.twins_on == "law" else (c,)
    b_tasks = law if spec.tf_b_on == "law" else (c,)
    law_block = [
        *(
            e
            for t in law
            for e in (EvalSpec("2", t, "G", "tf"), *([EvalSpec("2", t, "B", "tf")] if t in b_tasks else []))
        ),
        *(EvalSpec("3", t, "twins", "settings" if t == c else "accuracy") for t in twin_tasks),
    ]
    if p.run is None:
        return [EvalSpec("0", t.name, "verbatim", "settings") for t in spec.candidates] + law_block
    role = p.run.role
    if role == "law" and p.step is None:
        return [EvalSpec("2", t, "verbatim", "settings") for t in law] + law_block
    if role in ("law", "seed"):
        return [EvalSpec("4", c, "verbatim", "settings")]
    # dose runs: task C verbatim and twins at every kept step; the final also on the other law tasks' twins
    out = [EvalSpec("5", c, "verbatim", "settings"), EvalSpec("5", c, "twins", "settings")]
    if p.step is None:
        out += [EvalSpec("5", t, "twins", "accuracy") for t in twin_tasks[1:]]
    return out


def train_group(run: StudyRun) -> str:
    return {"law": "1", "seed": "4", "dose": "5"}[run.role]


def causal_points(spec: StudySpec) -> list[Point]:
    """§8.5's points: the two bases (the family's base in a one-family study) and the R* finals (seed 0), on task
    C."""
    return [Point(r.name, r.name) for r in spec.roots if spec.studied(r.name)] + [
        Point(spec.run(n).model, spec.run(n).root, spec.run(n)) for n in spec.rstar
    ]


def causal_arms(spec: StudySpec, p: Point) -> list[str]:
    """The causal arms measured at a point: log-prob (a) and accuracy (b) on neurons at P0; the SAE log-prob arm
    at the bases whose root has an SAE bundle (§8.5: SmolLM2 base, shipped bundle)."""
    arms = ["logprob", "accuracy"]
    if p.run is None and spec.sae_bundle(p.root):
        arms.append("sae-logprob")
    return arms


def health_points(spec: StudySpec) -> list[Point]:
    """W10's points: each root with an SAE bundle and the finals of its clean law runs."""
    out = []
    for r in spec.roots:
        if spec.sae_bundle(r.name) and spec.studied(r.name):
            out.append(Point(r.name, r.name))
            out += [Point(x.model, x.root, x) for x in spec.runs if x.root == r.name and x.role == "law"]
    return out


# ----- fingerprints --------------------------------------------------------------------------------------------


def _prompt(spec: StudySpec, root: str, t: ZooTask) -> dict[str, Any]:
    # D1's exemplars when a root's prompts of t carry them; nothing otherwise, so registered fingerprints stay
    x = prompt_identity(spec, root, t)
    return {"prompt": x} if x is not None else {}


def train_fingerprint_v2(spec: StudySpec, run: StudyRun, examples_fp: str) -> str:
    prompts = {t.name: x for t in spec.candidates if (x := prompt_identity(spec, run.root, t)) is not None}
    return digest(
        {
            "v": V2_VERSION,
            "run": asdict(run),
            "root": asdict(spec.root(run.root)),
            "n_pairs": spec.n_pairs,
            "batch_size": spec.batch_size,
            "max_length": spec.max_length,
            "examples": examples_fp,
            **({"prompts": prompts} if prompts else {}),
        }
    )


def bundle_identity(bundle: str | None) -> dict[str, str] | None:
    """An SAE bundle as a fingerprint sees it: its path and the digest of its manifest, which lists every file's
    sha256, so a retrained bundle under the same name re-measures every SAE setting (the path alone would not)."""
    if bundle is None:
        return None
    man = Path(bundle) / "manifest.json"
    if not man.is_absolute() and not man.is_file():
        man = Path(__file__).resolve().parents[2] / man
    return {
        "path": str(bundle),
        "manifest": hashlib.sha256(man.read_bytes()).hexdigest() if man.is_file() else "",
    }


def point_identity(spec: StudySpec, p: Point, train_fps: dict[str, str]) -> dict[str, Any]:
    ident: dict[str, Any] = {"root": asdict(spec.root(p.root))}
    if p.run is not None:
        ident.update(run=asdict(p.run), train=train_fps[p.run.name], step=p.step)
    return ident


def measured_settings(spec: StudySpec, root: str, measure: str) -> list[str]:
    """The setting names a stage measures (``settings`` or ``tf``), dropping those that do not apply to the
    root (SAE settings without a bundle) or to the engine (first-T positions before ``RunConfig.first_tokens``)."""
    if measure == "accuracy":
        return []
    names = spec.settings if measure == "settings" else spec.tf_settings
    return list(setting_configs(names, "chat", spec.sae_bundle(root)))


def eval_fingerprint_v2(
    spec: StudySpec,
    p: Point,
    t: ZooTask,
    e: EvalSpec,
    items_fp: str,
    train_fps: dict[str, str],
    extra: Any = None,
) -> str:
    names = measured_settings(spec, p.root, e.measure)
    return digest(
        {
            "v": V2_VERSION,
            "point": point_identity(spec, p, train_fps),
            "task": asdict(t),
            "set": e.item_set,
            "measure": e.measure,
            "items": items_fp,
            "settings": [asdict(setting(n)) for n in names],
            "sae": bundle_identity(spec.sae_bundle(p.root))
            if any(setting(n).units == "sae" for n in names)
            else None,
            "max_set_entries": spec.max_set_entries,
            "extra": extra,
            **_prompt(spec, p.root, t),
        }
    )


def generation_key_v2(spec: StudySpec, p: Point, t: ZooTask, item_set: str, items_fp: str, train_fps) -> str:
    """Key of a generation cache: weights and prompts only (a changed setting re-measures, never regenerates)."""
    return digest(
        {
            "point": point_identity(spec, p, train_fps),
            "task": asdict(t),
            "set": item_set,
            "items": items_fp,
            **_prompt(spec, p.root, t),
        }
    )


def causal_setting(arm: str) -> str:
    """The §5 setting whose key sets an arm ablates."""
    return "sae-0.9" if arm == "sae-logprob" else "P0"


def causal_fingerprint_v2(
    spec: StudySpec, p: Point, t: ZooTask, arm: str, items_fp: str, train_fps: dict[str, str], gen_key: str
) -> str:
    """A causal arm's inputs: weights, task C and its items, the key-set setting (and bundle), draws and seed; the
    accuracy arm also the generated text its key sets come from (``gen_key``) and the generation batch size."""
    sae = arm == "sae-logprob"
    acc = arm == "accuracy"
    return digest(
        {
            "v": V2_VERSION,
            "kind": "causal",
            "point": point_identity(spec, p, train_fps),
            "task": asdict(t),
            "arm": arm,
            "items": items_fp,
            "setting": asdict(setting(causal_setting(arm))),
            "sae": bundle_identity(spec.sae_bundle(p.root)) if sae else None,
            "draws": spec.causal_acc_draws if acc else spec.causal_draws,
            "seed": spec.causal_seed,
            "texts": gen_key if acc else None,
            "gen_batch_size": spec.gen_batch_size if acc else None,
            **_prompt(spec, p.root, t),
        }
    )


def health_fingerprint_v2(
    spec: StudySpec, p: Point, t: ZooTask, items_fp: str, train_fps: dict[str, str], gen_key: str
) -> str:
    return digest(
        {
            "v": V2_VERSION,
            "kind": "health",
            "point": point_identity(spec, p, train_fps),
            "task": asdict(t),
            "items": items_fp,
            "texts": gen_key,
            "sae": bundle_identity(spec.sae_bundle(p.root)),
            "layers": list(spec.health_layers),
            "ce_samples": spec.health_ce_samples,
            # also FVE / L0 / dead / dense on the gold responses (set G): the same text at every point
            "gold": True,
        }
    )


def eval_items(sets: dict[str, TaskSets], e: EvalSpec) -> tuple:
    """The items an eval reads (its task's twins for the ``twins`` set, else the eval items); a one-line
    SaemuiError when that set is empty (a :data:`~saemui.zoo.data_v2.TWINLESS` candidate has no twins)."""
    s = sets[e.task]
    items = s.twins if e.item_set == "twins" else s.items
    if not items:
        raise SaemuiError(
            f"task {e.task}: stage {e.group} needs its {e.item_set} set and the task has none (no §3.3 twin "
            "rule); log a twin rule or a cut in protocol §11 first"
        )
    return items


def items_fingerprint(spec: StudySpec, s: TaskSets) -> str:
    return digest({"v": V2_VERSION, "task": asdict(s.task), "n": spec.n_items, "sets": s.digest})


# ----- stage 0 ----------------------------------------------------------------------------------------------


def law_outcome(spec: StudySpec, results: Path, sets: dict[str, TaskSets]) -> LawOutcome:
    """The law tasks from the stage-0 records (§3.2), or None while any is missing or stale.

    A record counts when its generation key matches (same base, task options and items): accuracy depends on
    the generated text only, so a record waiting to be re-measured under changed MUI settings still decides.
    """
    missing, table, classes, aboves = [], {}, [], []
    for t in spec.candidates:
        chance = chance_level(list(sets[t.name].items))
        row: dict[str, Any] = {
            "p0": chance.p0,
            "chance_rule": chance.rule,
            "chance_rules": chance.rules,
            "bases": {},
        }
        above = {}
        for r in spec.roots:
            p = Point(r.name, r.name)
            key = generation_key_v2(spec, p, t, "verbatim", sets_digest(sets[t.name].items), {})
            rec = _read_json(record_path(results, r.name, t.name, "verbatim"))
            if not rec or rec.get("generation_key") != key:
                missing.append(f"eval:{r.name}:{t.name}:verbatim")
                continue
            el = eligibility(
                int(rec["n_correct"]),
                int(rec["n"]),
                chance.p0,
                alpha=spec.eligibility_alpha,
                margin=spec.eligibility_margin,
            )
            above[r.name] = el.above_chance
            row["bases"][r.name] = {
                "k": el.k,
                "n": el.n,
                "accuracy": el.accuracy,
                "p_value": el.p_value,
                "above_chance": el.above_chance,
            }
        if len(above) == len(spec.roots):
            row["class"] = classify_task(above)
            classes.append((t.name, row["class"]))
            aboves.append((t.name, above))
        table[t.name] = row
    if missing:
        return LawOutcome(None, missing, table)
    two = tuple(law_tasks(classes, spec.max_law_tasks))
    if spec.family is None:
        return LawOutcome(two, [], table)
    if two:
        raise SaemuiError(
            f"zoo {spec.name!r} is the one-family study of §11's case (3), which applies only when no candidate is "
            f"two-family, but stage 0 gives law tasks {list(two)}: build the two-family spec (family=None)"
        )
    return LawOutcome(tuple(one_family_tasks(aboves, spec.family, spec.max_law_tasks)), [], table, two)


def eligibility_summary(spec: StudySpec, outcome: LawOutcome) -> dict[str, Any]:
    """The content of ``eligibility.json`` (deterministic)."""
    from saemui.zoo.record_v2 import ELIGIBILITY_SCHEMA

    law = list(outcome.two_family or ())
    study = list(outcome.law or ())
    return {
        "schema": ELIGIBILITY_SCHEMA,
        "zoo": spec.name,
        "rule": (
            f"§3.2: a base is above chance iff the exact one-sided binomial p-value < {spec.eligibility_alpha} "
            f"and k/n >= p0 + {spec.eligibility_margin}; law tasks = the first {spec.max_law_tasks} candidates "
            "(priority order) with both bases above chance"
        ),
        "candidates": [t.name for t in spec.candidates],
        "tasks": outcome.table,
        "law_tasks": law,
        "m": len(law),
        "C": law[0] if law else None,
        # §11's case (3): the two-family outcome above stays as registered; what the study builds on is named here
        **(
            {
                "one_family_study": {
                    "family": spec.family,
                    "tasks": study,
                    "C": study[0] if study else None,
                    "rule": "§11 case (3): no two-family task (m = 0); H1/H1b not testable on two families; the "
                    f"study's tasks = the first {spec.max_law_tasks} candidates on which only {spec.family}'s base "
                    "is above chance, C = the first; runs and corollaries within that family",
                }
            }
            if spec.family is not None
            else {}
        ),
        # the registered prompts leave no key; D1 (§11) names itself so its outcome is never read as registered
        **(
            {"deviation": {"D1": {"base_shots": spec.base_shots, "shot_seed": spec.shot_seed}}}
            if spec.base_shots > 1
            else {}
        ),
    }


# ----- the plan ---------------------------------------------------------------------------------------------


def _symbolic(spec: StudySpec) -> tuple[tuple[str, ...], dict[str, str]]:
    """Placeholder law tasks E1.. (unresolved) and the candidates they are costed with."""
    k = min(spec.max_law_tasks, len(spec.candidates))
    names = tuple(f"E{j + 1}" for j in range(k))
    return names, {n: spec.candidates[j].name for j, n in enumerate(names)}


def _eval_cost(spec: StudySpec, rates: StudyRates, p: Point, t: ZooTask, e: EvalSpec, loop: bool) -> float:
    root = spec.root(p.root).base
    fwd, n, prompt = rates.fwd(root), spec.n_items, t.prompt_tokens
    ans = rates.answer(root, p.tuned, t.max_new_tokens)
    names = measured_settings(spec, p.root, e.measure)
    cfgs = setting_configs(names, "chat", spec.sae_bundle(p.root))
    if loop:
        passes = len(cfgs)
    else:
        from saemui.zoo.settings import n_passes

        passes = n_passes(cfgs)
    if e.measure == "tf":
        text = rates.gold_tokens if e.item_set == "G" else rates.answer(root, False, t.max_new_tokens)
        return passes * n * (prompt + text) / fwd
    gen = n * ans / (fwd / rates.gen_factor) + n * prompt / fwd
    return gen + passes * n * (prompt + ans) / fwd


def _causal_cost(spec: StudySpec, rates: StudyRates, p: Point, t: ZooTask, arm: str) -> float:
    """CPU seconds of one causal arm at §9's rates.

    Log-prob arms: one MUI pass over set G for the key sets, then one forward of every G sample (prompt + gold) per
    condition (clean, key, each random draw); the SAE arm adds the pass that finds the active features, and its
    key and random conditions cost ``sae_ablation_factor`` forwards each. Accuracy arm: one P0 pass over the
    point's own text, the clean generation at the point's answer length, and the key and random generations at
    the full ``max_new_tokens`` (an upper bound: key-ablated answers ran to the budget when measured).
    """
    root = spec.root(p.root).base
    fwd, n, prompt = rates.fwd(root), spec.n_items, t.prompt_tokens
    if arm == "logprob":
        return (1 + 2 + spec.causal_draws) * n * (prompt + rates.gold_tokens) / fwd
    if arm == "sae-logprob":
        passes = 3 + (1 + spec.causal_draws) * rates.sae_ablation_factor
        return passes * n * (prompt + rates.gold_tokens) / fwd
    ans = rates.answer(root, p.tuned, t.max_new_tokens)

    def gen(tokens: int) -> float:
        return n * tokens / (fwd / rates.gen_factor) + n * prompt / fwd

    return n * (prompt + ans) / fwd + gen(ans) + (1 + spec.causal_acc_draws) * gen(t.max_new_tokens)


def _health_cost(spec: StudySpec, rates: StudyRates, p: Point, t: ZooTask) -> float:
    """CPU seconds of SAE health: one capture pass over every response for FVE / L0 / dead / dense at all layers
    (costed as a forward), and per CE layer a spliced and a zero-ablated forward of the first CE samples, plus
    their capture and clean forwards; and a capture pass over the gold responses (set G)."""
    root = spec.root(p.root).base
    fwd, n = rates.fwd(root), spec.n_items
    tokens = t.prompt_tokens + rates.answer(root, p.tuned, t.max_new_tokens)
    ce = min(spec.health_ce_samples, n)
    gold = n * (t.prompt_tokens + rates.gold_tokens) / fwd
    return n * tokens / fwd + (2 + 2 * len(spec.health_layers)) * ce * tokens / fwd + gold


def plan_v2(
    spec: StudySpec,
    results: Path,
    cache: Path | None = None,
    rates: StudyRates | None = None,
    only: Sequence[str] | None = None,
) -> StudyPlan:
    """Every stage in execution order with ``done``, ``needed`` and ``blocked`` set, and the stage-0 outcome.

    only: point names or globs (``fnmatch``); trainings are needed only when a pending evaluation needs their
    weights; items files are always planned. Runs the §3.3 check (with the clean runs' training sets once the
    law tasks are known): a failure stops here with a one-line error.
    """
    validate_v2(spec)
    results = Path(results)
    rates = rates or StudyRates()
    root_dir = zoo_cache(spec, cache)
    sets = candidate_sets(spec)
    outcome = law_outcome(spec, results, sets)
    _check_frozen(spec, results, outcome)
    resolved = outcome.law is not None and len(outcome.law) > 0
    if resolved:
        law, cost_as = outcome.law, {t: t for t in outcome.law}
    else:
        law, cost_as = _symbolic(spec)
    examples = (
        {run.name: training_examples(spec, run, outcome.law, sets) for run in spec.runs} if resolved else {}
    )
    clean = {run.model: examples[run.name] for run in spec.runs if run.name in examples and run.dose == 0}
    checks = check_sets(spec, sets, clean)
    train_fps = {
        run.name: train_fingerprint_v2(spec, run, examples_digest(examples[run.name]))
        for run in spec.runs
        if run.name in examples
    }

    stages: list[StudyStage] = []
    for s in sets.values():
        fp = items_fingerprint(spec, s)
        rec = items_path(results, s.task.name)
        old = _read_json(rec)
        # §3.3: the committed file is what the evaluations use; it must hold exactly the generated sets
        done = bool(old and old.get("fingerprint") == fp and _file_digest(old) == s.digest)
        stages.append(
            StudyStage(
                f"items:{s.task.name}",
                "items",
                "items",
                None,
                None,
                s.task.name,
                None,
                None,
                fp,
                0.0,
                rec,
                done,
                not done,
            )
        )

    pts = points(spec)
    if only:
        sel = [p for p in pts if any(fnmatch.fnmatchcase(p.name, pat) for pat in only)]
        if not sel:
            raise SaemuiError(f"--only {','.join(only)}: matches no model point of zoo {spec.name!r}")
    else:
        sel = pts
    pending_runs: set[str] = set()
    evals: list[StudyStage] = []
    base_texts_fp: dict[tuple[str, str], str | None] = {}
    for p in sel:
        # before stage 0 the roots' stage-0 evals are known; everything else is listed blocked
        for e in point_evals(spec, p, law):
            t = spec.candidate(cost_as.get(e.task, e.task))
            sid = f"eval:{p.name}:{e.task}:{e.item_set}"
            rec = record_path(results, p.name, e.task, e.item_set)
            cost = _eval_cost(spec, rates, p, t, e, loop=not rates.one_pass)
            loop_cost = _eval_cost(spec, rates, p, t, e, loop=True)
            st = StudyStage(
                sid, e.group, "eval", p.name, p.root, e.task, e.item_set, e.measure, None, cost, rec
            )
            st.loop_cost_s = loop_cost
            if e.group != "0" and not resolved:
                st.blocked = (
                    "law tasks unknown until stage 0 is complete" if outcome.law is None else "no law task"
                )
                st.needed = False
                evals.append(st)
                continue
            items = eval_items(sets, e)
            extra = None
            if e.item_set == "B":
                key = (p.root, e.task)
                if key not in base_texts_fp:
                    f = texts_path(results, p.root, e.task, "verbatim")
                    base_texts_fp[key] = digest(f.read_text()) if f.is_file() else None
                extra = base_texts_fp[key]
                if extra is None:
                    st.blocked = f"set B needs {p.root}'s stage-0 texts of {e.task}"
            st.fingerprint = eval_fingerprint_v2(spec, p, t, e, sets_digest(items), train_fps, extra)
            old = _read_json(rec)
            st.done = bool(old and old.get("fingerprint") == st.fingerprint)
            if (
                st.done
                and e.item_set in ("verbatim", "twins")
                and not texts_path(results, p.name, e.task, e.item_set).is_file()
            ):
                st.done = False
            st.needed = not st.done and st.blocked is None
            timing = _read_json(root_dir / "stages" / f"{_slug(sid)}.json")
            if st.done and timing and timing.get("fingerprint") == st.fingerprint:
                st.measured_s = timing.get("seconds")
            if st.needed and p.run is not None:
                pending_runs.add(p.run.name)
            evals.append(st)

    extra = _causal_health_stages(
        spec, rates, results, root_dir, sel, law, cost_as, resolved, outcome, sets, train_fps, pending_runs
    )

    trains: list[StudyStage] = []
    for run in spec.runs:
        root = spec.root(run.root).base
        cost = run.steps * rates.step(root) * (rates.full_factor if run.method == "full" else 1.0)
        sid = f"train:{run.model}"
        rec = root_dir / "stages" / f"train__{run.model}.json"
        st = StudyStage(
            sid, train_group(run), "train", run.model, run.root, None, None, None, None, cost, rec
        )
        st.loop_cost_s = cost
        if not resolved:
            st.blocked = (
                "training data needs the law tasks (stage 0)" if outcome.law is None else "no law task"
            )
            st.needed = False
            if not only or any(fnmatch.fnmatchcase(run.model, pat) for pat in only):
                trains.append(st)
            continue
        st.fingerprint = train_fps[run.name]
        old = _read_json(rec)
        st.done = bool(
            old
            and old.get("fingerprint") == st.fingerprint
            and (root_dir / "weights" / run.model / "final").exists()
        )
        if st.done:
            st.measured_s = old.get("seconds")
        st.needed = not st.done and run.name in pending_runs
        if st.needed or st.done or not only or any(fnmatch.fnmatchcase(run.model, pat) for pat in only):
            trains.append(st)
    stages += trains + evals + extra
    costed = law if resolved else tuple(cost_as[x] for x in law)
    return StudyPlan(spec, stages, outcome, costed, rates, checks, train_fps)


def _causal_health_stages(
    spec: StudySpec,
    rates: StudyRates,
    results: Path,
    root_dir: Path,
    sel: list[Point],
    law: tuple[str, ...],
    cost_as: dict[str, str],
    resolved: bool,
    outcome: LawOutcome,
    sets: dict[str, TaskSets],
    train_fps: dict[str, str],
    pending_runs: set[str],
) -> list[StudyStage]:
    """The health (2h) and causal (6) stages of the selected points, on task C; adds the runs they need to
    ``pending_runs``. Blocked, and costed with the first candidate, until stage 0 has fixed C."""
    c = law[0]
    t = spec.candidate(cost_as.get(c, c))
    causal = {p.name for p in causal_points(spec)}
    health = {p.name for p in health_points(spec)}
    out: list[StudyStage] = []
    for p in sel:
        todo: list[tuple[str, str]] = [("health", "sae-health")] if p.name in health else []
        if p.name in causal:
            todo += [("causal", arm) for arm in causal_arms(spec, p)]
        for kind, what in todo:
            if kind == "health":
                sid, group, item_set, rec = (
                    f"health:{p.name}:{c}",
                    "2h",
                    "verbatim",
                    health_path(results, p.name),
                )
                cost = _health_cost(spec, rates, p, t)
            else:
                sid, group, rec = f"causal:{p.name}:{c}:{what}", "6", causal_path(results, p.name, c, what)
                item_set = "verbatim" if what == "accuracy" else "G"
                cost = _causal_cost(spec, rates, p, t, what)
            st = StudyStage(sid, group, kind, p.name, p.root, c, item_set, what, None, cost, rec)
            st.loop_cost_s = st.cost_s
            out.append(st)
            if not resolved:
                st.blocked = (
                    "task C unknown until stage 0 is complete" if outcome.law is None else "no law task"
                )
                st.needed = False
                continue
            items_fp = sets_digest(sets[c].items)
            gen_key = generation_key_v2(spec, p, t, "verbatim", items_fp, train_fps)
            if kind == "health":
                st.fingerprint = health_fingerprint_v2(spec, p, t, items_fp, train_fps, gen_key)
            else:
                st.fingerprint = causal_fingerprint_v2(spec, p, t, what, items_fp, train_fps, gen_key)
            old = _read_json(st.record)
            st.done = bool(old and old.get("fingerprint") == st.fingerprint)
            st.needed = not st.done
            timing = _read_json(root_dir / "stages" / f"{_slug(st.id)}.json")
            if st.done and timing and timing.get("fingerprint") == st.fingerprint:
                st.measured_s = timing.get("seconds")
            if st.needed and p.run is not None:
                pending_runs.add(p.run.name)
    return out


def _check_frozen(spec: StudySpec, results: Path, outcome: LawOutcome) -> None:
    """§3.2: no law task changes once a fine-tuned result exists (e.g. after a re-scored stage 0)."""
    old = _read_json(eligibility_path(results))
    if not old or outcome.law is None:
        return
    fixed = study_tasks(old)[0] if spec.family else None
    if tuple(old.get("law_tasks", ())) == outcome.two_family and (
        fixed is None or tuple(fixed) == outcome.law
    ):
        return
    runs = {r.model for r in spec.runs}
    tuned = [
        f.name for f in Path(results).glob("*__*__*.json") if f.name.split("__")[0].split("@")[0] in runs
    ]
    if tuned:
        raise SaemuiError(
            f"stage 0 now gives tasks {list(outcome.law)}, but eligibility.json fixed "
            f"{fixed if fixed is not None else old['law_tasks']} and "
            f"fine-tuned results exist ({tuned[0]}, ...): §3.2 allows no change; log it in §11 and resolve by hand"
        )


def _file_digest(d: dict) -> str | None:
    from saemui.zoo.record_v2 import item_from_json

    try:
        return sets_digest([item_from_json(x) for x in d["items"]], [item_from_json(x) for x in d["twins"]])
    except (KeyError, TypeError):
        return None


def _slug(stage_id: str) -> str:
    return stage_id.replace(":", "__").replace("/", "_")


# ----- the plan as text -------------------------------------------------------------------------------------


def _loads(spec: StudySpec, stages: list[StudyStage], rates: StudyRates, which) -> tuple[int, float]:
    pts = {s.point for s in stages if s.kind in ("eval", "health", "causal") and which(s)}
    roots = {s.root for s in stages if s.kind in ("eval", "train") and which(s)}
    n = len(pts - roots) + len(roots)
    secs = sum(rates.load(spec.root(r).base) for r in roots)
    secs += sum(
        rates.load(spec.root(next(s.root for s in stages if s.point == pt)).base) for pt in pts - roots
    )
    return n, secs


def format_plan_v2(plan: StudyPlan) -> str:
    """Stages with status and estimated CPU time, then the totals per §9 stage group beside §9's table."""
    spec, stages, rates, out = plan.spec, plan.stages, plan.rates, plan.outcome
    lines = [
        f"zoo {spec.name!r} (Study v2, docs/study/protocol.md §4): 2 roots, {len(spec.runs)} runs"
        f"{f' (all {spec.family})' if spec.family else ''}, "
        f"{len(spec.candidates)} candidate tasks, N={spec.n_items} per item set"
    ]
    if out.law is None:
        lines.append(
            f"law tasks: unknown (stage 0: {len(out.missing)} record(s) missing); later stages are named E1.. and "
            f"costed with {', '.join(plan.law_costed)}"
        )
    elif spec.family is not None:
        lines.append(
            f"law tasks (stage 0, §3.2): none (m = 0): H1/H1b not testable on two families; one-family study "
            f"(§11 case (3)) within {spec.family}: "
            + (
                f"{', '.join(out.law)}; C = {out.law[0]}"
                if out.law
                else "no one-family task; nothing can run"
            )
        )
    elif not out.law:
        lines.append("law tasks: none qualifies (§3.2); nothing after stage 0 can run")
    else:
        note = "" if len(out.law) >= 3 else f" (m = {len(out.law)} < 3: log the shortfall in §11)"
        lines.append(f"law tasks (stage 0, §3.2): {', '.join(out.law)}; C = {out.law[0]}{note}")
    lines.append(f"{'stage':<52} {'grp':<5} {'status':<8} {'est. CPU':>9} {'measured':>9}")
    order = list(GROUPS)
    for s in sorted(stages, key=lambda x: order.index(x.group)):
        status = "done" if s.done else "blocked" if s.blocked else "todo" if s.needed else "not needed"
        took = _fmt_s(s.measured_s) if s.measured_s is not None else "-"
        lines.append(f"{s.id:<52} {s.group:<5} {status:<8} {_fmt_s(s.cost_s):>9} {took:>9}")
    lines.append("")
    lines.append(f"{'stage group':<18} {'stages':>6} {'todo':>5} {'remaining':>10} {'all':>9} {'§9':>7}")
    total_all = total_todo = total_loop = 0.0
    for g, label in GROUPS.items():
        mine = [s for s in stages if s.group == g]
        if not mine:
            continue
        todo = [s for s in mine if s.needed or s.blocked]
        rem = sum(s.cost_s for s in todo)
        allc = sum(s.cost_s for s in mine)
        total_all += allc
        total_todo += rem
        total_loop += sum(s.loop_cost_s for s in mine)
        ref = PROTOCOL_PLAN_H.get(g)
        lines.append(
            f"{label:<18} {len(mine):>6} {len(todo):>5} {_fmt_h(rem):>10} {_fmt_h(allc):>9} "
            f"{(f'{ref:.2f} h' if ref is not None else '-'):>7}"
        )
    n_all, loads_all = _loads(spec, stages, rates, lambda s: True)
    n_todo, loads_todo = _loads(spec, stages, rates, lambda s: s.needed or bool(s.blocked))
    lines.append(
        f"{'model loads':<18} {n_all:>6} {n_todo:>5} {_fmt_h(loads_todo):>10} {_fmt_h(loads_all):>9} "
        f"{PROTOCOL_PLAN_H['loads']:.2f} h"
    )
    total_all += loads_all
    total_todo += loads_todo
    total_loop += loads_all
    lines.append(
        f"{'total':<18} {len(stages):>6} {sum(s.needed or bool(s.blocked) for s in stages):>5} {_fmt_h(total_todo):>10} "
        f"{_fmt_h(total_all):>9} {PROTOCOL_PLAN_H['total']:.2f} h  (§9 has no SAE-health row)"
    )
    lines.append(
        f"one forward per setting instead of one per pass group (today's loop, before compute_mui_many): "
        f"all stages ≈ {_fmt_h(total_loop)}"
    )
    ratio, n_timed = measured_ratio(plan)
    if ratio is not None:
        per = sorted(s.measured_s / s.cost_s for s in plan.stages if s.measured_s and s.cost_s)
        lines.append(
            f"measured / estimated over {n_timed} finished stage(s): {ratio:.2f} (summed seconds; per stage median "
            f"{float(np.median(per)):.2f}, range {per[0]:.2f}–{per[-1]:.2f}: a stage that ran beside other jobs "
            "weighs in the sum as it took)"
        )
    fwd = ", ".join(f"{k} {v:.0f} tok/s" for k, v in rates.fwd_tok_s)
    steps = ", ".join(f"{k} {v:g} s" for k, v in rates.step_s)
    ans = ", ".join(f"{r} {k} {n}" for r, k, n in rates.answer_tokens)
    lines.append(
        f"rates: forward {fwd} (others {rates.default_fwd:.0f}); generation = forward/{rates.gen_factor:g}; "
        f"LoRA step (batch {spec.batch_size}) {steps}, full ×{rates.full_factor:g}; answer tokens per item "
        f"(batch maximum; ablated generations of the causal check at max_new_tokens) {ans}; gold "
        f"{rates.gold_tokens}; SAE-ablated forward ×{rates.sae_ablation_factor:g}; loads "
        + ", ".join(f"{k} {v:g} s" for k, v in rates.load_s)
        + f" per point; {'one forward per pass group' if rates.one_pass else 'one forward per setting'}. "
        "Figures move ±2× with machine load."
    )
    return "\n".join(lines)


def measured_ratio(plan: StudyPlan) -> tuple[float | None, int]:
    """Measured over estimated seconds of the finished stages that kept their time, and how many there are."""
    timed = [s for s in plan.stages if s.measured_s]
    if not timed:
        return None, 0
    return sum(s.measured_s for s in timed) / sum(s.cost_s for s in timed), len(timed)


def remaining_seconds(plan: StudyPlan) -> float:
    """Estimated CPU seconds of every stage still to run (blocked ones included) and their model loads."""
    todo = sum(s.cost_s for s in plan.stages if s.needed or s.blocked)
    return todo + _loads(plan.spec, plan.stages, plan.rates, lambda s: s.needed or bool(s.blocked))[1]


def remaining_by_root(plan: StudyPlan) -> dict[str, float]:
    """:func:`remaining_seconds` split by root: §9's execution runs one root per core (``--only 'smollm2*'``,
    ``--only 'gemma3*'``, one thread each), so the build's wall time is about the larger of the two at 1-thread
    speed (the measured / estimated ratio of 1-thread stages carries that speed)."""
    out: dict[str, float] = {}
    for r in plan.spec.roots:
        mine = [x for x in plan.stages if x.root == r.name]
        todo = sum(x.cost_s for x in mine if x.needed or x.blocked)
        out[r.name] = todo + _loads(plan.spec, mine, plan.rates, lambda x: x.needed or bool(x.blocked))[1]
    return out


def _fmt_h(s: float) -> str:
    return f"{s / 3600:.2f} h"


def write_eligibility(spec: StudySpec, outcome: LawOutcome, results: Path) -> Path | None:
    """``eligibility.json`` once stage 0 is complete (rewritten only when its content changes)."""
    if outcome.law is None:
        return None
    from saemui.io import atomic_write_json

    path = eligibility_path(results)
    content = eligibility_summary(spec, outcome)
    old = _read_json(path)
    if old != json.loads(json.dumps(content)):
        atomic_write_json(path, content)
    return path


__all__ = [
    "EvalSpec",
    "LawOutcome",
    "Point",
    "StudyPlan",
    "StudyRates",
    "StudyStage",
    "V2_VERSION",
    "causal_arms",
    "causal_fingerprint_v2",
    "causal_points",
    "causal_setting",
    "eligibility_summary",
    "eval_fingerprint_v2",
    "eval_items",
    "format_plan_v2",
    "generation_key_v2",
    "health_fingerprint_v2",
    "health_points",
    "items_fingerprint",
    "law_outcome",
    "plan_v2",
    "point_evals",
    "points",
    "train_fingerprint_v2",
    "write_eligibility",
]
