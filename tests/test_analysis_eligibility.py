"""Chance level and eligibility (docs/study/protocol.md §3.2) against hand computations."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest

from saemui.analysis.eligibility import (
    chance_level,
    classify_task,
    eligibility,
    first_number,
    law_tasks,
    training_moves,
)
from saemui.errors import SaemuiError
from saemui.tasks import get_task
from saemui.tasks.base import Item


def _upper_tail(k: int, n: int, p: Fraction) -> float:
    # exact P(X >= k), X ~ Bin(n, p), in rationals
    return float(sum(math.comb(n, j) * p**j * (1 - p) ** (n - j) for j in range(k, n + 1)))


def test_protocol_chance_values_for_seed0_items() -> None:
    # §3.2: "with the present generator and 200 distinct seed-0 items: arith-2 2.5 %, arith-3 6.0 %"
    for name, expected in (("arith-2", 0.025), ("arith-3", 0.060)):
        items = get_task(name, distinct=True).load_items()
        golds = [it.gold for it in items]
        mode_count = max(golds.count(g) for g in set(golds))
        assert mode_count / 200 == pytest.approx(expected)
        assert chance_level(items).p0 == pytest.approx(expected)


def test_chance_rules_on_hand_built_items() -> None:
    def it(q: str, gold: int) -> Item:
        return Item(id=q, fields={"question": q}, gold=gold)

    items = [
        it("Which number is larger, 12 or 30?", 30),  # last
        it("Which number is larger, 44 or 17?", 44),  # first
        it("Which number is larger, 50 or 61?", 61),  # last
        it("Which number is larger, 61 or 20?", 61),  # first; 61 twice: constant 2/4
    ]
    c = chance_level(items)
    assert c.rules == {"constant": 0.5, "first_number": 0.5, "last_number": 0.5}
    assert c.p0 == 0.5 and c.rule == "constant"
    items.append(it("Which number is larger, 3 or 9?", 9))
    c = chance_level(items)
    assert c.rules["last_number"] == 3 / 5 and c.p0 == 3 / 5 and c.rule == "last_number"
    assert first_number("What is 47 - 8?") == 47 and first_number("no digits") is None


def test_chance_multiple_choice() -> None:
    items = [
        Item(
            "a", {"question": "q1 has 4 legs", "labels": ["A", "B", "C", "D"], "options": list("wxyz")}, "A"
        ),
        Item("b", {"question": "q2", "labels": ["A", "B", "C"], "options": list("xyz")}, "B"),
        Item("c", {"question": "q3", "labels": ["A", "B", "C", "D"], "options": list("wxyz")}, "B"),
    ]
    c = chance_level(items)
    assert c.rules == {
        "constant": pytest.approx(2 / 3),
        "options": pytest.approx((1 / 4 + 1 / 3 + 1 / 4) / 3),
    }
    assert c.rule == "constant"


@pytest.mark.parametrize(
    ("k", "p0", "above"),
    [
        (10, 0.025, False),  # p < 0.05 but 5 % < p0 + 5 % = 7.5 %
        (15, 0.025, True),  # 7.5 % meets the margin exactly; p tiny
        (14, 0.025, False),
        (20, 0.05, True),  # 10 % = 5 % + 5 % (float boundary)
        (116, 0.52, False),  # 58 %: margin met, but the exact tail is 0.0515 > 0.05
        (117, 0.52, True),  # tail 0.038
        (0, 0.0, False),
    ],
)
def test_eligibility_against_exact_tail(k: int, p0: float, above: bool) -> None:
    e = eligibility(k, 200, p0)
    assert e.p_value == pytest.approx(_upper_tail(k, 200, Fraction(p0).limit_denominator(10_000)), rel=1e-9)
    assert e.above_chance is above
    assert e.above_chance is (_upper_tail(k, 200, Fraction(p0).limit_denominator(10_000)) < 0.05 and above)
    assert e.accuracy == k / 200


def test_eligibility_rejects_bad_input() -> None:
    with pytest.raises(SaemuiError):
        eligibility(201, 200, 0.1)
    with pytest.raises(SaemuiError):
        eligibility(5, 200, 1.5)
    with pytest.raises(SaemuiError):
        eligibility(5.0, 200, 0.1)  # type: ignore[arg-type]


def test_task_classes_and_law_tasks() -> None:
    assert classify_task({"smollm2": True, "gemma": True}) == "two-family"
    assert classify_task({"smollm2": True, "gemma": False}) == "one-family"
    assert classify_task({"smollm2": False, "gemma": False}) == "out"
    order = [
        ("arith-1", "two-family"),
        ("arith-2", "out"),
        ("arith-3", "one-family"),
        ("arith-2d1d", "two-family"),
        ("arith-larger", "two-family"),
        ("arc", "two-family"),
    ]
    assert law_tasks(order) == ["arith-1", "arith-2d1d", "arith-larger"]


def test_training_moves_uses_sample_sd() -> None:
    # values 0, 0, 10: population SD 4.71 (< 5), sample SD 5.77 (>= 5)
    assert training_moves([0.0, 0.0, 10.0])
    assert not training_moves([0.0, 0.0, 8.0])  # sample SD 4.62


def test_one_family_tasks_by_hand():
    """§11 case (3): the family's one-family candidates in priority order, capped; two-family and other-family
    tasks are skipped; a candidate without the family's result is refused."""
    from saemui.analysis.eligibility import one_family_tasks

    above = [
        ("a", {"s": True, "g": False}),
        ("b", {"s": True, "g": True}),  # two-family: not one-family
        ("c", {"s": False, "g": True}),  # the other family's
        ("d", {"s": True, "g": False}),
        ("e", {"s": False, "g": False}),
        ("f", {"s": True, "g": False}),
    ]
    assert one_family_tasks(above, "s") == ["a", "d", "f"]
    assert one_family_tasks(above, "s", 2) == ["a", "d"]
    assert one_family_tasks(above, "g") == ["c"]
    with pytest.raises(SaemuiError, match="no stage-0 result for 'x'"):
        one_family_tasks(above, "x")
