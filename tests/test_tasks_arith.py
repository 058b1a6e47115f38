"""The built-in arith family: determinism, gold answers, prompts and scoring."""

from __future__ import annotations

import re

import pytest

from saemui.errors import SaemuiError
from saemui.tasks import get_task, list_tasks
from saemui.tasks.arith import NAMES, THINGS, generate


def test_registered_names() -> None:
    assert {"arith", "arith-1", "arith-2", "arith-3"} <= set(list_tasks())
    assert get_task("arith-2").level == 2
    assert get_task("arith", level=3).level == 3
    with pytest.raises(SaemuiError):
        get_task("arith", level=4)


@pytest.mark.parametrize("level", [1, 2, 3])
def test_same_seed_same_items_and_different_seeds_differ(level: int) -> None:
    a = get_task("arith", level=level, seed=0).load_items()
    b = get_task("arith", level=level, seed=0).load_items()
    c = get_task("arith", level=level, seed=1).load_items()
    assert [(x.id, x.fields, x.gold) for x in a] == [(x.id, x.fields, x.gold) for x in b]
    assert [x.fields["question"] for x in a] != [x.fields["question"] for x in c]
    assert len(a) == 200 and len({x.id for x in a}) == 200
    assert [x.fields for x in get_task("arith", level=level).load_items(limit=5)] == [x.fields for x in a[:5]]


def test_known_first_items_for_seed_0() -> None:
    # pins the generator: a change of draw order would silently change every published arith number
    assert [it.fields["question"] for it in generate(1, 3, 0)] == [
        "What is 6 + 6?",
        "What is 0 + 4?",
        "What is 8 + 7?",
    ]


def _recompute(question: str) -> int:
    m = re.fullmatch(r"What is (\d+) ([+-]) (\d+)\?", question)
    if m:
        a, op, b = int(m.group(1)), m.group(2), int(m.group(3))
        return a + b if op == "+" else a - b
    nums = [int(x) for x in re.findall(r"\d+", question)]
    if "boxes with" in question:
        boxes, each, taken = nums
        return boxes * each - taken
    if "buys" in question:
        has, bought, given = nums
        return has + bought - given
    if "gives away" in question and "finds" in question:
        has, given, found = nums
        return has - given + found
    has, got, more = nums
    return has + got + more


@pytest.mark.parametrize("level", [1, 2, 3])
def test_gold_answers_are_right(level: int) -> None:
    for item in generate(level, 300, seed=7):
        q = item.fields["question"]
        assert item.gold == _recompute(q), q
        assert item.gold >= 0
        if level == 1:
            assert re.fullmatch(r"What is \d \+ \d\?", q)
        if level == 2:
            assert re.fullmatch(r"What is \d\d [+-] \d\d\?", q)
        if level == 3:
            assert any(n in q for n in NAMES) and any(t in q for t in THINGS)


def test_prompt_and_scoring() -> None:
    task = get_task("arith-1")
    item = task.load_items(limit=1)[0]
    assert task.format_prompt(item, "chat") == item.fields["question"]
    assert task.format_prompt(item, "base").endswith("Question: " + item.fields["question"] + "\nAnswer:")
    assert task.stop_sequences("base") == ["\n\nQuestion:", "\n"] and task.stop_sequences("chat") == []
    assert task.max_new_tokens == 128
    assert task.score(f"6 + 6 = {item.gold}", item)
    assert not task.score(f"{item.gold} + 1 = {item.gold + 1}", item)
    with pytest.raises(SaemuiError):
        task.load_items(source="x.jsonl")
