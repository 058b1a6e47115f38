"""Item-set hygiene for Study v2 (``docs/study/protocol.md`` §3.3): prompt normalisation, canonical problems
and the build-time distinct-item check.

The check works on any task's items (arith-style or multiple choice): it only needs each item's question text,
and, for the canonical count, the operand fields the arith generators store.
"""

from __future__ import annotations

import random
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from saemui.errors import SaemuiError
from saemui.tasks.base import Item


def normalize_prompt(text: str) -> str:
    """The protocol's normalised prompt (§3.3): NFKC, whitespace runs collapsed to one space, case-folded."""
    return " ".join(unicodedata.normalize("NFKC", text).split()).casefold()


def _question(item: Item | str) -> str:
    if isinstance(item, str):
        return item
    q = item.fields.get("question")
    if not isinstance(q, str):
        raise SaemuiError(f"item {item.id}: no question text to compare")
    return q


def canonical_problem(item: Item | str) -> tuple[Any, ...]:
    """The problem an item poses, up to surface form (§3.3 (ii)).

    Sums and "larger of" are unordered in their operands (``{a, b}``); differences are ordered; a word problem
    is its formula and numbers (names and things are surface). An item without operand fields (e.g. multiple
    choice) is its normalised question.
    """
    q = _question(item)
    f: Mapping[str, Any] = {} if isinstance(item, str) else item.fields
    if "formula" in f:
        return ("word", f["formula"], f["a"], f["b"], f["c"])
    op = f.get("op")
    if op in ("+", "max"):
        return (op, *sorted((f["a"], f["b"])))
    if op == "-":
        return ("-", f["a"], f["b"])
    return ("text", normalize_prompt(q))


def _duplicates(keys: Sequence[str]) -> list[str]:
    seen: set[str] = set()
    dup: list[str] = []
    for k in keys:
        if k in seen and k not in dup:
            dup.append(k)
        seen.add(k)
    return dup


def check_item_sets(
    task: str,
    items: Sequence[Item | str],
    *,
    n_expected: int | None = 200,
    twins: Sequence[Item | str] | None = None,
    train: Iterable[Item | str] | Mapping[str, Iterable[Item | str]] = (),
    other_evals: Mapping[str, Iterable[Item | str]] | None = None,
) -> dict[str, Any]:
    """The §3.3 check of one task's item sets; raises SaemuiError naming ``task`` on the first failure.

    (i) ``items`` has ``n_expected`` distinct normalised prompts (None: any count, still all distinct);
    (ii) the number of distinct canonical problems is reported; (iii) no eval prompt appears in any training
    set, in the twins or in another task's eval set; (iv) the twins are distinct and disjoint from eval and
    training items.

    train: training items, or a mapping run/set name -> items (the name is used in the message).
    other_evals: task name -> that task's eval items.
    Returns ``{"task", "n_items", "n_distinct_prompts", "n_canonical", "n_twins"}``.
    """
    keys = [normalize_prompt(_question(it)) for it in items]
    dup = _duplicates(keys)
    if dup:
        raise SaemuiError(
            f"task {task}: {len(keys) - len(set(keys))} duplicate eval prompt(s), e.g. {dup[0]!r} "
            f"({len(set(keys))} distinct of {len(keys)})"
        )
    if n_expected is not None and len(keys) != n_expected:
        raise SaemuiError(f"task {task}: expected {n_expected} eval items, got {len(keys)}")
    eval_set = set(keys)
    train_sets = train if isinstance(train, Mapping) else {"training": train}
    train_keys: set[str] = set()
    for name, tr in train_sets.items():
        tk = {normalize_prompt(_question(it)) for it in tr}
        hit = eval_set & tk
        if hit:
            raise SaemuiError(
                f"task {task}: {len(hit)} eval prompt(s) appear in training set {name}, e.g. {min(hit)!r}"
            )
        train_keys |= tk
    for other, oitems in (other_evals or {}).items():
        if other == task:
            continue
        hit = eval_set & {normalize_prompt(_question(it)) for it in oitems}
        if hit:
            raise SaemuiError(
                f"task {task}: {len(hit)} eval prompt(s) also in task {other}, e.g. {min(hit)!r}"
            )
    n_twins = None
    if twins is not None:
        tkeys = [normalize_prompt(_question(it)) for it in twins]
        tdup = _duplicates(tkeys)
        if tdup:
            raise SaemuiError(f"task {task}: duplicate twin prompt(s), e.g. {tdup[0]!r}")
        hit = eval_set & set(tkeys)
        if hit:
            raise SaemuiError(f"task {task}: {len(hit)} twin prompt(s) equal eval prompts, e.g. {min(hit)!r}")
        hit = train_keys & set(tkeys)
        if hit:
            raise SaemuiError(
                f"task {task}: {len(hit)} twin prompt(s) appear in a training set, e.g. {min(hit)!r}"
            )
        n_twins = len(tkeys)
    return {
        "task": task,
        "n_items": len(keys),
        "n_distinct_prompts": len(eval_set),
        "n_canonical": len({canonical_problem(it) for it in items}),
        "n_twins": n_twins,
    }


def shuffled_option_twins(items: Sequence[Item], seed: int = 1) -> list[Item]:
    """Perturbed twins of multiple-choice items (protocol §3.3): options shuffled, labels reassigned (seeded).

    One ``random.Random(seed)`` stream shuffles each item's options in item order; the labels keep their order,
    so the gold label becomes the one now in front of the gold option. A shuffle that leaves the option list
    unchanged is redrawn (an item with fewer than two distinct options has no twin: error). Twin ``j`` has id
    ``<item id>-twin``.
    """
    rng = random.Random(seed)
    twins = []
    for it in items:
        labels, options = list(it.fields["labels"]), list(it.fields["options"])
        if len(set(options)) < 2:
            raise SaemuiError(f"item {it.id}: fewer than two distinct options, no shuffled twin")
        gold_text = options[labels.index(str(it.gold))]
        while True:
            new = options[:]
            rng.shuffle(new)
            if new != options:
                break
        # with repeated option texts the first match is the gold: such items are rare and the label stays valid
        gold = labels[new.index(gold_text)]
        twins.append(Item(id=f"{it.id}-twin", fields={**it.fields, "options": new}, gold=gold))
    return twins
