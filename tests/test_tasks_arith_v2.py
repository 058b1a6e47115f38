"""Study v2 item spaces (docs/study/protocol.md §3.1, §3.3): widened arith-1, tasks arith-2d1d and
arith-larger, the distinct-prompt rule, perturbed twins and the distinct-item check."""

from __future__ import annotations

import random
import re

import pytest

from saemui.errors import SaemuiError
from saemui.tasks import get_task
from saemui.tasks.arith import NAMES, TEMPLATES, THINGS, draw_items, generate
from saemui.tasks.base import task_options
from saemui.tasks.itemsets import canonical_problem, check_item_sets, normalize_prompt


# ----- brute-force item spaces, written from the protocol's ranges, not from the generator -------------------
def _space(kind: str) -> set[str]:
    if kind == "1w":
        return {f"What is {a} + {b}?" for a in range(20) for b in range(20)}
    if kind == "1":
        return {f"What is {a} + {b}?" for a in range(10) for b in range(10)}
    if kind == "2":
        sums = {f"What is {a} + {b}?" for a in range(10, 100) for b in range(10, 100)}
        diffs = {f"What is {a} - {b}?" for a in range(10, 100) for b in range(10, 100) if a >= b}
        return sums | diffs
    if kind == "2d1d":
        return {f"What is {a} + {b}?" for a in range(10, 100) for b in range(1, 10)}
    if kind == "larger":
        return {
            f"Which number is larger, {a} or {b}?" for a in range(10, 100) for b in range(10, 100) if a != b
        }
    raise AssertionError(kind)


TASKS = {
    "1w": ("arith-1", {"operand_max": 19}),
    "1": ("arith-1", {}),
    "2": ("arith-2", {}),
    "2d1d": ("arith-2d1d", {}),
    "larger": ("arith-larger", {}),
}


@pytest.mark.parametrize("kind", sorted(TASKS))
def test_item_space_size_matches_brute_force(kind: str) -> None:
    name, opts = TASKS[kind]
    space = _space(kind)
    task = get_task(name, **opts)
    assert task.item_space_size() == len(space)
    # every generated prompt (many seeds, duplicates allowed) lies in the brute-force space
    for seed in range(5):
        for it in draw_items(task.kind, 300, seed, operand_max=opts.get("operand_max")):
            assert it.fields["question"] in space, it.fields["question"]


def test_protocol_table_sizes() -> None:
    # protocol §3.1 table: 400, 12,195, > 1e5, 810, 8,010
    assert get_task("arith-1", operand_max=19).item_space_size() == 400
    assert get_task("arith-2").item_space_size() == 12_195
    assert get_task("arith-3").item_space_size() > 100_000
    assert get_task("arith-2d1d").item_space_size() == 810
    assert get_task("arith-larger").item_space_size() == 8_010


def test_arith3_space_by_brute_force() -> None:
    prompts = set()
    for text, _ in TEMPLATES:
        for name in NAMES:
            for thing in THINGS:
                for a in range(5, 21):
                    for b in range(2, 11):
                        for c in range(1, a + 1):
                            prompts.add(text.format(name=name, thing=thing, a=a, b=b, c=c))
    assert get_task("arith-3").item_space_size() == len(prompts)
    assert all(it.fields["question"] in prompts for it in generate(3, 300, 5))


def test_widened_range_exhausts_exactly_its_space() -> None:
    items = get_task("arith-1", operand_max=19, distinct=True, n=400).load_items()
    assert {it.fields["question"] for it in items} == _space("1w")
    with pytest.raises(SaemuiError, match="arith-1"):
        get_task("arith-1", operand_max=19, distinct=True, n=401).load_items()


def _legacy_generate(level: int, n: int, seed: int) -> list[tuple]:
    # the v1 generator, written out again: default items must stay byte-identical (results/zoo depends on them)
    rng = random.Random(seed)
    out = []
    for i in range(n):
        if level == 1:
            a, b = rng.randint(0, 9), rng.randint(0, 9)
            q, gold, fields = f"What is {a} + {b}?", a + b, {"a": a, "b": b, "op": "+"}
        elif level == 2:
            a, b = rng.randint(10, 99), rng.randint(10, 99)
            op = rng.choice("+-")
            if op == "-" and a < b:
                a, b = b, a
            gold = a + b if op == "+" else a - b
            q, fields = f"What is {a} {op} {b}?", {"a": a, "b": b, "op": op}
        else:
            t = rng.randrange(len(TEMPLATES))
            name, thing = rng.choice(NAMES), rng.choice(THINGS)
            a, b = rng.randint(5, 20), rng.randint(2, 10)
            c = rng.randint(1, a)
            text, expr = TEMPLATES[t]
            q = text.format(name=name, thing=thing, a=a, b=b, c=c)
            gold = {
                "a + b - c": a + b - c,
                "a + b + c": a + b + c,
                "a - c + b": a - c + b,
                "b * a - c": b * a - c,
            }[expr]
            fields = {"a": a, "b": b, "c": c, "template": t, "formula": expr}
        out.append((f"arith-{level}-{seed}-{i}", {"question": q, **fields}, gold))
    return out


@pytest.mark.parametrize("level", [1, 2, 3])
def test_default_items_and_options_unchanged(level: int) -> None:
    for seed in (0, 3):
        new = [
            (it.id, it.fields, it.gold) for it in get_task(f"arith-{level}", seed=seed, n=250).load_items()
        ]
        old = _legacy_generate(level, 250, seed)
        assert new == old
        assert [list(f) for _, f, _ in new] == [list(f) for _, f, _ in old]  # key order too (JSON bytes)
    # generation fingerprints record task_options(): the new options stay out at their defaults
    assert task_options(get_task(f"arith-{level}")) == {
        "max_new_tokens": 128,
        "level": level,
        "seed": 0,
        "n": 200,
    }
    assert task_options(get_task("arith-1", operand_max=9)) == task_options(get_task("arith-1"))
    assert task_options(get_task("arith-1", operand_max=19))["operand_max"] == 19


def test_widened_ids_differ_from_v1_ids() -> None:
    v1 = {it.id: it.fields["question"] for it in get_task("arith-1").load_items()}
    wide = get_task("arith-1", operand_max=19).load_items()
    assert not v1.keys() & {it.id for it in wide}
    with pytest.raises(SaemuiError, match="level 1"):
        get_task("arith-2", operand_max=19)


@pytest.mark.parametrize(
    ("name", "opts"),
    [
        ("arith-1", {"operand_max": 19, "distinct": True}),
        ("arith-2", {"distinct": True}),
        ("arith-3", {"distinct": True}),
        ("arith-2d1d", {}),
        ("arith-larger", {}),
    ],
)
def test_distinct_rule(name: str, opts: dict) -> None:
    task = get_task(name, **opts)
    items = task.load_items()
    keys = [normalize_prompt(it.fields["question"]) for it in items]
    assert len(items) == 200 and len(set(keys)) == 200
    assert len({it.id for it in items}) == 200
    again = get_task(name, **opts).load_items()
    assert [(i.id, i.fields, i.gold) for i in items] == [(i.id, i.fields, i.gold) for i in again]
    other = get_task(name, seed=1, **opts).load_items()
    assert keys != [normalize_prompt(it.fields["question"]) for it in other]
    # the rule is "generator order, skip repeats": the kept items are the first occurrences of the raw stream
    raw = draw_items(task.kind, 5000, 0, operand_max=opts.get("operand_max"))
    first, seen = [], set()
    for it in raw:
        k = normalize_prompt(it.fields["question"])
        if k not in seen:
            seen.add(k)
            first.append((it.id, it.fields["question"]))
    assert [(i.id, i.fields["question"]) for i in items] == first[:200]


def test_v1_arith1_had_duplicates_and_distinct_removes_them() -> None:
    v1 = get_task("arith-1", n=100).load_items()
    assert len({it.fields["question"] for it in v1}) == 58  # the v1 audit's count (protocol preamble)
    with pytest.raises(SaemuiError, match="task arith-1: 42 duplicate"):
        check_item_sets("arith-1", v1, n_expected=100)


def test_new_tasks_gold_prompt_and_scoring() -> None:
    for it in get_task("arith-2d1d").load_items():
        a, b = map(int, re.fullmatch(r"What is (\d\d) \+ (\d)\?", it.fields["question"]).groups())
        assert it.gold == a + b and b >= 1
    larger = get_task("arith-larger")
    for it in larger.load_items():
        a, b = map(
            int, re.fullmatch(r"Which number is larger, (\d\d) or (\d\d)\?", it.fields["question"]).groups()
        )
        assert a != b and it.gold == max(a, b)
    it = larger.load_items(limit=1)[0]
    assert larger.format_prompt(it, "chat") == it.fields["question"]
    base = larger.format_prompt(it, "base")
    assert base.startswith("Question: Which number is larger, 3 or 8?\nAnswer: 8\n\n")
    assert base.endswith("Question: " + it.fields["question"] + "\nAnswer:")
    assert larger.stop_sequences("base") == ["\n\nQuestion:", "\n"]
    assert larger.score(f"The answer is {it.gold}.", it)
    assert not larger.score(f"The answer is {it.gold + 1}.", it)


@pytest.mark.parametrize(
    ("name", "opts"),
    [
        ("arith-1", {"operand_max": 19, "distinct": True}),
        ("arith-2", {"distinct": True}),
        ("arith-3", {"distinct": True}),
        ("arith-2d1d", {}),
        ("arith-larger", {}),
    ],
)
def test_twins(name: str, opts: dict) -> None:
    task = get_task(name, **opts)
    items = task.load_items()
    twins = task.twins(items)
    assert twins == task.twins(items)  # deterministic (seed 1)
    assert [t.id for t in twins] == [f"{i.id}-twin" for i in items]
    report = check_item_sets(name, items, twins=twins)
    assert report["n_twins"] == 200 and report["n_distinct_prompts"] == 200
    num = re.compile(r"\d+")
    for it, tw in zip(items, twins):
        q, tq = it.fields["question"], tw.fields["question"]
        assert q != tq
        # same template and operation: identical text once the numbers are masked
        assert num.sub("#", q) == num.sub("#", tq)
        assert tw.fields.get("op") == it.fields.get("op") and tw.fields.get("template") == it.fields.get(
            "template"
        )
        assert list(tw.fields) == list(it.fields)
        nums = [int(x) for x in num.findall(tq)]
        if name == "arith-3":
            assert tw.gold == eval(it.fields["formula"], {}, dict(zip("abc", (tw.fields[k] for k in "abc"))))
        elif name == "arith-larger":
            assert tw.gold == max(nums)
        else:
            a, b = nums
            assert tw.gold == (a + b if tw.fields["op"] == "+" else a - b) and tw.gold >= 0
        assert isinstance(tw.gold, int) and task.score(f"The answer is {tw.gold}.", tw)
    if name == "arith-1":
        # 400 prompts: 200 eval + 200 twins are the whole widened space
        assert {t.fields["question"] for t in twins} == _space("1w") - {i.fields["question"] for i in items}


def test_twin_ranges_match_generator_ranges() -> None:
    task = get_task("arith-2d1d")
    space = _space("2d1d")
    assert all(t.fields["question"] in space for t in task.twins(task.load_items()))


def test_check_item_sets_failures_name_the_task() -> None:
    task = get_task("arith-2d1d")
    items = task.load_items()
    twins = task.twins(items)
    with pytest.raises(SaemuiError, match="task arith-2d1d: expected 200"):
        check_item_sets("arith-2d1d", items[:150])
    with pytest.raises(SaemuiError, match="task arith-2d1d: .*training set s3"):
        check_item_sets("arith-2d1d", items, train={"s3": [items[5]]})
    with pytest.raises(SaemuiError, match="task arith-2d1d: .*also in task arith-2"):
        check_item_sets(
            "arith-2d1d", items, other_evals={"arith-2": [" what IS  " + items[0].fields["question"][8:]]}
        )
    with pytest.raises(SaemuiError, match="task arith-2d1d: .*twin prompt.* equal eval"):
        check_item_sets("arith-2d1d", items, twins=twins[:-1] + [items[0]])
    with pytest.raises(SaemuiError, match="task arith-2d1d: duplicate twin"):
        check_item_sets("arith-2d1d", items, twins=twins[:-1] + [twins[0]])
    with pytest.raises(SaemuiError, match="task arith-2d1d: .*twin prompt.* training"):
        check_item_sets("arith-2d1d", items, twins=twins, train=[twins[3]])


def test_normalisation_and_canonical_problems() -> None:
    assert normalize_prompt("  What\u00a0IS  ２ + 3? ") == "what is 2 + 3?"
    items = generate(1, 100, 0)
    report = check_item_sets(
        "arith-1",
        [
            it
            for i, it in enumerate(items)
            if it.fields["question"] not in {x.fields["question"] for x in items[:i]}
        ],
        n_expected=None,
    )
    unordered = {tuple(sorted((it.fields["a"], it.fields["b"]))) for it in items}
    assert report["n_canonical"] == len(unordered) < report["n_distinct_prompts"]
    sub = [it for it in generate(2, 500, 0) if it.fields["op"] == "-"]
    assert len({canonical_problem(it) for it in sub}) == len({it.fields["question"] for it in sub})


def test_training_draw_excludes_eval_and_twins() -> None:
    task = get_task("arith-2d1d")
    items = task.load_items()
    twins = task.twins(items)
    banned = {normalize_prompt(x.fields["question"]) for x in items + twins}
    train = draw_items("2d1d", 600, 1000, exclude=banned)
    assert len(train) == 600 and not banned & {normalize_prompt(t.fields["question"]) for t in train}
    check_item_sets("arith-2d1d", items, twins=twins, train={"E1": train})


def test_widened_arith1_leaves_no_training_prompts() -> None:
    # 400 prompts = 200 eval + 200 twins, so §3.3's "training items with eval and twin prompts removed" is
    # empty for the widened arith-1 (reported to the protocol's author, not worked around here)
    task = get_task("arith-1", operand_max=19, distinct=True)
    items = task.load_items()
    banned = {normalize_prompt(x.fields["question"]) for x in items + task.twins(items)}
    assert len(banned) == 400
    with pytest.raises(SaemuiError, match="exhausted"):
        draw_items("1", 1, 1000, operand_max=19, exclude=banned)


def test_exemplars_option_replaces_the_base_exemplar_and_is_checked():
    t = get_task("arith-2d1d", exemplars=(("What is 31 + 4?", 35), ("What is 12 + 9?", 21.0)))
    item = t.load_items(limit=1)[0]
    want = "Question: What is 31 + 4?\nAnswer: 35\n\nQuestion: What is 12 + 9?\nAnswer: 21\n\n"
    assert t.format_prompt(item, "base") == want + "Question: " + item.fields["question"] + "\nAnswer:"
    assert t.format_prompt(item, "chat") == item.fields["question"]
    # left out of the recorded options at its default (generation fingerprints made before it stay valid)
    assert "exemplars" not in task_options(get_task("arith-2d1d")) and "exemplars" in task_options(t)
    assert (
        get_task("arith-1").format_prompt(item, "base").startswith("Question: What is 2 + 5?\nAnswer: 7\n\n")
    )
    with pytest.raises(
        SaemuiError, match=r"arith-larger: option exemplars\[0\] must be \(question, number\)"
    ):
        get_task("arith-larger", exemplars=(("Which?", "8"),))
