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
"""

from __future__ import annotations

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
    exclude = excluded_prompts(sets)
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


def styled_pairs(spec: StudySpec, examples: list[Example], style: str) -> list[tuple[str, str]]:
    """(prompt, response) pairs in a root's style (chat: the user turn; base: the task's few-shot text)."""
    out = []
    for ex in examples:
        if ex.item is not None and ex.task is not None:
            prompt = task_of(spec.candidate(ex.task)).format_prompt(ex.item, style)
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


def gold_samples(t: ZooTask, items: tuple[Item, ...] | list[Item], style: str) -> list[Sample]:
    """Set G (§7.1): each eval item with its gold answer in the zoo's template, prompt in the family's style."""
    task = task_of(t)
    out = []
    for it in items:
        p, r = styled_pair(task.format_prompt(it, style), template_answer(it), style)
        out.append(Sample(p, r, id=str(it.id)))
    return out


def base_samples(t: ZooTask, items: tuple[Item, ...] | list[Item], texts: dict, style: str) -> list[Sample]:
    """Set B (§7.1): the family base's own free-generated responses to the eval items (from its texts file)."""
    task = task_of(t)
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
    "gold_samples",
    "is_choice",
    "prompt_key",
    "sets_digest",
    "styled_pairs",
    "task_of",
    "template_answer",
    "training_examples",
]
