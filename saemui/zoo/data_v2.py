"""Item sets and training data of the v2 zoo (protocol §3.3, §4, §7.1, §8.2).

- Eval items: per candidate task, in priority order, the first N items of the seed-0 generator (or the data
  file) whose normalised prompt was not drawn before, by this task or an earlier candidate: the tasks' eval sets
  are disjoint by construction (arith-1 at 0–29 shares 180 prompts with arith-2d1d, 400 with arith-2).
- Twins: arith-style tasks redraw operands (seed 1), multiple choice shuffles options; a twin's prompt is new
  among every candidate's eval items and the earlier twins. :data:`TWINLESS` candidates (gsm8k) have none.
- Training examples: each task's generator with seed ``train_seed + run seed``, every eval and twin prompt of
  every candidate removed; distinct prompts when the remaining space allows, i.i.d. draws otherwise (§11);
  ``arc-train`` is a seeded sample of the shared ARC train split with its worked answers (a format change).
  Answers are in the zoo's template ("The answer is N." / "The answer is {label}.").
- Dose runs: the first ``dose · N`` eval items of task C with gold answers in that template replace as many
  clean pairs, taken from the end of C's share.
- Teacher-forced sets: G = gold answers in the template, B = the family base's own responses.
- Base-style exemplars (deviation D1 of §11, only when ``spec.base_shots`` > 1): the base root's arith prompts
  show that many items of the task's own generator (seed ``shot_seed``), outside every eval and twin prompt and
  kept out of training; :func:`root_task` is a candidate as a root prompts it.
"""

from __future__ import annotations

import dataclasses
import json
import random
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from saemui.errors import SaemuiError
from saemui.records import Sample
from saemui.tasks import get_task
from saemui.tasks.arith import _ArithMethods, draw_items
from saemui.tasks.base import Item, Task
from saemui.tasks.itemsets import check_item_sets, normalize_prompt, shuffled_option_twins
from saemui.tasks.sources import find_data_file
from saemui.zoo.spec import ZooTask
from saemui.zoo.spec_v2 import StudyRun, StudySpec, allocate, resolve_sources
from saemui.zoo.stages import digest

ARC_TRAIN = "arc/train.jsonl"


def task_of(t: ZooTask) -> Task:
    return get_task(t.name, **dict(t.options), max_new_tokens=t.max_new_tokens)


def is_choice(item: Item) -> bool:
    return "labels" in item.fields and "options" in item.fields


def prompt_key(task: Task, item: Item) -> str:
    """The §3.3 normalised prompt of an item (its chat-style prompt: question, and options for multiple choice)."""
    return normalize_prompt(task.format_prompt(item, "chat"))


def template_answer(item: Item) -> str:
    """The zoo's answer template: "The answer is N." (numbers) or "The answer is {label}." (multiple choice)."""
    g = item.gold
    if isinstance(g, float) and g.is_integer():
        g = int(g)
    return f"The answer is {g}."


def styled_pair(prompt_styled: str, response: str, style: str) -> tuple[str, str]:
    # base prompts end in "Answer:" and prompt/response are tokenized separately: the answer needs its space
    if style == "base" and not prompt_styled[-1:].isspace():
        response = " " + response
    return prompt_styled, response


# ----- eval items and twins -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TaskSets:
    """A candidate's fixed item sets: ``items`` (N eval items) and ``twins`` (N perturbed twins; none for a
    :data:`TWINLESS` candidate)."""

    task: ZooTask
    items: tuple[Item, ...]
    twins: tuple[Item, ...]

    @property
    def digest(self) -> str:
        return sets_digest(self.items, self.twins)


def sets_digest(items, twins=()) -> str:
    return digest([[str(i.id), i.fields, i.gold] for i in (*items, *twins)])


def _draw_eval(task: Task, n: int, exclude: set[str]) -> list[Item]:
    if isinstance(task, _ArithMethods):
        return draw_items(
            task.kind, n, task.seed, operand_max=task._operand_max, distinct=True, exclude=frozenset(exclude)
        )
    out, seen = [], set(exclude)
    for it in task.load_items():
        k = prompt_key(task, it)
        if k in seen:
            continue
        seen.add(k)
        out.append(it)
        if len(out) == n:
            return out
    raise SaemuiError(f"task {task.name}: only {len(out)} items with distinct new prompts, the zoo needs {n}")


#: candidates without a §3.3 twin rule (§11): piloted for eligibility only; a twin evaluation of one is an error
TWINLESS: frozenset[str] = frozenset({"gsm8k"})


def _twins(task: Task, items: list[Item], seed: int, exclude: set[str]) -> list[Item]:
    if task.name in TWINLESS:
        return []
    if isinstance(task, _ArithMethods):
        return task.twins(items, seed=seed, exclude=frozenset(exclude))
    if items and all(is_choice(it) for it in items):
        tw = shuffled_option_twins(items, seed)
        hit = [t.id for t in tw if prompt_key(task, t) in exclude]
        if hit:
            raise SaemuiError(f"task {task.name}: twin {hit[0]} repeats an eval prompt")
        return tw
    raise SaemuiError(f"task {task.name}: no twin rule (§3.3 defines arith-style and multiple-choice twins)")


def candidate_sets(spec: StudySpec) -> dict[str, TaskSets]:
    """Eval items and twins of every candidate (deterministic; see the module docstring)."""
    return _candidate_sets(spec.candidates, spec.n_items, spec.twin_seed)


@lru_cache(maxsize=8)
def _candidate_sets(cands: tuple[ZooTask, ...], n: int, twin_seed: int) -> dict[str, TaskSets]:
    seen: set[str] = set()
    evals: dict[str, list[Item]] = {}
    for t in cands:
        task = task_of(t)
        items = _draw_eval(task, n, seen)
        seen |= {prompt_key(task, it) for it in items}
        evals[t.name] = items
    out = {}
    for t in cands:
        task = task_of(t)
        tw = _twins(task, evals[t.name], twin_seed, seen)
        seen |= {prompt_key(task, it) for it in tw}
        out[t.name] = TaskSets(t, tuple(evals[t.name]), tuple(tw))
    return out


# ----- base-style exemplars (deviation D1 of §11) --------------------------------------------------------------


def exemplar_items(spec: StudySpec, t: ZooTask) -> tuple[Item, ...]:
    """D1's exemplars of an arith-style candidate: ``spec.base_shots`` distinct items of its own generator at
    ``spec.shot_seed``, every candidate's eval and twin prompts excluded; () under the registered design
    (``base_shots`` 1) and for other tasks."""
    if spec.base_shots == 1 or not isinstance(task_of(t), _ArithMethods):
        return ()
    return _exemplar_items(
        spec.candidates, spec.n_items, spec.twin_seed, t.name, spec.base_shots, spec.shot_seed
    )


@lru_cache(maxsize=32)
def _exemplar_items(
    cands: tuple[ZooTask, ...], n: int, twin_seed: int, name: str, shots: int, seed: int
) -> tuple[Item, ...]:
    task = task_of(next(t for t in cands if t.name == name))
    assert isinstance(task, _ArithMethods)
    exclude = excluded_prompts(_candidate_sets(cands, n, twin_seed))
    return tuple(
        draw_items(task.kind, shots, seed, operand_max=task._operand_max, distinct=True, exclude=exclude)
    )


def exemplar_prompts(spec: StudySpec) -> frozenset[str]:
    """Every candidate's D1 exemplar prompts (normalised): no training example may be one."""
    return frozenset(prompt_key(task_of(t), it) for t in spec.candidates for it in exemplar_items(spec, t))


def root_task(spec: StudySpec, root: str, t: ZooTask) -> Task:
    """Candidate ``t`` as root ``root`` is prompted: base-style roots get D1's exemplars when the spec has them
    (:func:`exemplar_items`); otherwise :func:`task_of`."""
    task = task_of(t)
    ex = exemplar_items(spec, t) if spec.root(root).style == "base" else ()
    if not ex:
        return task
    return dataclasses.replace(task, exemplars=tuple((str(it.fields["question"]), it.gold) for it in ex))


def prompt_identity(spec: StudySpec, root: str, t: ZooTask) -> list | None:
    """What a fingerprint adds for a root's prompts of ``t``: D1's exemplars, or None (the registered prompt,
    whose fingerprints stay as they were)."""
    task = root_task(spec, root, t)
    ex = getattr(task, "exemplars", ())
    return [list(e) for e in ex] if ex else None


def excluded_prompts(sets: dict[str, TaskSets]) -> frozenset[str]:
    """Every candidate's eval and twin prompts (normalised): what no training example may be."""
    out: set[str] = set()
    for s in sets.values():
        task = task_of(s.task)
        out |= {prompt_key(task, it) for it in (*s.items, *s.twins)}
    return frozenset(out)


# ----- training examples --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Example:
    """One training pair before styling: its source (a task, ``arc-train``, or ``<task>:eval`` for the
    contaminating eval items of a dose run), id, chat prompt, and the task and item (or ARC record) it formats."""

    source: str
    id: str
    prompt: str
    response: str
    task: str | None
    item: Item | None


@lru_cache(maxsize=1)
def _arc_train_records() -> tuple[dict, ...]:
    path = find_data_file(ARC_TRAIN)
    if path is None:
        raise SaemuiError(f"arc-train data: {ARC_TRAIN} not found in the shared data (../shared/data)")
    return tuple(json.loads(Path(path).read_text()))


_LABEL = re.compile(r"([A-E1-5])\. ")


def _arc_examples(n: int, seed: int, exclude: frozenset[str], templated: bool) -> list[Example]:
    recs = [
        (i, r) for i, r in enumerate(_arc_train_records()) if normalize_prompt(r["question"]) not in exclude
    ]
    if templated:
        # arc as a law task: answers in the zoo template, like every other law task; the 9 % of worked answers
        # that do not open with their label ("C. ...") give no label and are left out
        recs = [(i, {**r, "label": m.group(1)}) for i, r in recs if (m := _LABEL.match(r["answer"]))]
    rng = random.Random(seed)
    idx = rng.sample(range(len(recs)), n) if n <= len(recs) else [rng.randrange(len(recs)) for _ in range(n)]
    out = []
    for j in idx:
        i, r = recs[j]
        resp = f"The answer is {r['label']}." if templated else r["answer"]
        out.append(
            Example("arc" if templated else "arc-train", f"arc-train-{i}", r["question"], resp, None, None)
        )
    return out


def _task_examples(t: ZooTask, n: int, seed: int, exclude: frozenset[str]) -> list[Example]:
    task = task_of(t)
    if not isinstance(task, _ArithMethods):
        if t.name == "arc":
            return _arc_examples(n, seed, exclude, templated=True)
        raise SaemuiError(f"task {t.name}: no training generator (arith-style tasks and arc have one)")
    items = _arith_train_items(task.kind, task._operand_max, n, seed, exclude)
    return [
        Example(t.name, str(it.id), task.format_prompt(it, "chat"), template_answer(it), t.name, it)
        for it in items
    ]


@lru_cache(maxsize=256)
def _arith_train_items(
    kind: str, hi: int | None, n: int, seed: int, exclude: frozenset[str]
) -> tuple[Item, ...]:
    try:
        return tuple(draw_items(kind, n, seed, operand_max=hi, distinct=True, exclude=exclude))
    except SaemuiError:
        # the space left after the eval and twin prompts is smaller than n: i.i.d. draws (§11)
        return tuple(draw_items(kind, n, seed, operand_max=hi, distinct=False, exclude=exclude))


def training_examples(
    spec: StudySpec, run: StudyRun, law: tuple[str, ...], sets: dict[str, TaskSets] | None = None
) -> list[Example]:
    """A run's ``n_pairs`` training examples for the given law tasks (see the module docstring)."""
    sets = sets if sets is not None else candidate_sets(spec)
    exclude = excluded_prompts(sets) | exemplar_prompts(spec)
    seed = spec.train_seed + run.seed
    parts = allocate(spec.n_pairs, resolve_sources(run.data, law))
    by_part: list[list[Example]] = []
    for src, n in parts:
        if n == 0:
            by_part.append([])
        elif src == "arc-train":
            by_part.append(_arc_examples(n, seed, exclude, templated=False))
        else:
            by_part.append(_task_examples(spec.candidate(src), n, seed, exclude))
    if run.dose:
        c = law[0]
        k = round(run.dose * spec.n_items)
        srcs = [s for s, _ in parts]
        if c not in srcs or len(by_part[srcs.index(c)]) < k:
            raise SaemuiError(
                f"run {run.name}: dose {run.dose} replaces {k} clean pairs of task {c}, which has fewer in the mix"
            )
        j = srcs.index(c)
        task = task_of(spec.candidate(c))
        contam = [
            Example(f"{c}:eval", str(it.id), task.format_prompt(it, "chat"), template_answer(it), c, it)
            for it in sets[c].items[:k]
        ]
        by_part[j] = by_part[j][: len(by_part[j]) - k] + contam
    return [ex for part in by_part for ex in part]


def styled_pairs(
    spec: StudySpec, examples: list[Example], style: str, root: str | None = None
) -> list[tuple[str, str]]:
    """(prompt, response) pairs in a root's style (chat: the user turn; base: the task's few-shot text, with D1's
    exemplars when ``root`` is given and the spec has them)."""
    out = []
    for ex in examples:
        if ex.item is not None and ex.task is not None:
            cand = spec.candidate(ex.task)
            task = root_task(spec, root, cand) if root is not None else task_of(cand)
            prompt = task.format_prompt(ex.item, style)
        else:
            prompt = ex.prompt if style == "chat" else "Question: " + ex.prompt + "\nAnswer: "
        out.append(styled_pair(prompt, ex.response, style))
    return out


def examples_digest(examples: list[Example]) -> str:
    return digest([[e.source, e.id, e.prompt, e.response] for e in examples])


# ----- §3.3 check ---------------------------------------------------------------------------------------------


def check_sets(
    spec: StudySpec,
    sets: dict[str, TaskSets],
    training: dict[str, list[Example]] | None = None,
) -> dict[str, dict[str, Any]]:
    """The §3.3 check of every candidate (i)–(iv), with the clean runs' training examples when known.

    Multiple-choice tasks are compared on their chat prompt (a shuffled twin keeps the question text).
    Returns task → the check's counts; raises SaemuiError on the first failure (the build stops).
    """

    def reps(task: Task, items) -> list:
        return [task.format_prompt(it, "chat") if is_choice(it) else it for it in items]

    evals = {name: reps(task_of(s.task), s.items) for name, s in sets.items()}
    train = {run: [e.prompt for e in exs] for run, exs in (training or {}).items()}
    shots = [task_of(t).format_prompt(it, "chat") for t in spec.candidates for it in exemplar_items(spec, t)]
    if shots:
        train["D1 exemplars"] = shots
    out = {}
    for name, s in sets.items():
        task = task_of(s.task)
        out[name] = check_item_sets(
            name,
            evals[name],
            n_expected=spec.n_items,
            twins=reps(task, s.twins),
            train=train,
            other_evals=evals,
        )
    return out


# ----- teacher-forced sets ------------------------------------------------------------------------------------


def _as_task(t: ZooTask | Task) -> Task:
    return t if isinstance(t, Task) else task_of(t)


def gold_samples(t: ZooTask | Task, items: tuple[Item, ...] | list[Item], style: str) -> list[Sample]:
    """Set G (§7.1): each eval item with its gold answer in the zoo's template, prompt in the family's style
    (pass :func:`root_task` for a root's own prompts)."""
    task = _as_task(t)
    out = []
    for it in items:
        p, r = styled_pair(task.format_prompt(it, style), template_answer(it), style)
        out.append(Sample(p, r, id=str(it.id)))
    return out


def base_samples(
    t: ZooTask | Task, items: tuple[Item, ...] | list[Item], texts: dict, style: str
) -> list[Sample]:
    """Set B (§7.1): the family base's own free-generated responses to the eval items (from its texts file)."""
    task = _as_task(t)
    by_id = dict(zip(texts["ids"], texts["responses"]))
    missing = [str(it.id) for it in items if str(it.id) not in by_id]
    if missing:
        raise SaemuiError(f"set B of {t.name}: the base's texts file lacks item {missing[0]}")
    return [Sample(task.format_prompt(it, style), by_id[str(it.id)], id=str(it.id)) for it in items]


__all__ = [
    "Example",
    "TWINLESS",
    "TaskSets",
    "base_samples",
    "candidate_sets",
    "check_sets",
    "examples_digest",
    "excluded_prompts",
    "exemplar_items",
    "exemplar_prompts",
    "gold_samples",
    "is_choice",
    "prompt_identity",
    "prompt_key",
    "root_task",
    "sets_digest",
    "styled_pairs",
    "task_of",
    "template_answer",
    "training_examples",
]
