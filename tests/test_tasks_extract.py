"""Hand-written edge cases for every answer extractor."""

from __future__ import annotations

import pytest

from saemui.tasks import Item, get_task
from saemui.tasks.bbh import bbh_equal, extract_bbh
from saemui.tasks.extract import extract_choice, last_number
from saemui.tasks.math_task import answer_clean, last_boxed, math_equal, strip_string


@pytest.mark.parametrize(
    "text, expected",
    [
        ("The answer is 42.", 42.0),
        ("It drops to -7 degrees", -7.0),
        ("Total: 1,234,567 apples", 1234567.0),
        ("She pays $1,000.50 in total", 1000.5),
        ("0.25 of the pie", 0.25),
        ("first 3, then 4, finally +12", 12.0),
        ("takes 5-10 minutes", 10.0),  # a hyphen between numbers is not a minus sign
        ("in 2023-2024", 2024.0),
        ("no digits here", None),
        ("value .5", 0.5),
        ("answer 007", 7.0),  # the official eval("007") raises
        ("7.", 7.0),
    ],
)
def test_last_number(text: str, expected: float | None) -> None:
    assert last_number(text) == expected


def _gsm(gold: str) -> Item:
    return get_task("gsm8k").item_from_record({"question": "q", "answer": f"work\n#### {gold}"}, 0)


@pytest.mark.parametrize(
    "response, gold, ok",
    [
        ("So she earns $18 a day.", "18", True),
        ("The loss is -3 dollars.", "-3", True),
        ("In total 1,200 km", "1,200", True),
        ("Each costs 2.50", "2.5", True),
        ("2.50001", "2.5", True),  # abs_tol 1e-4
        ("2.6", "2.5", False),
        ("18 eggs, so 20", "18", False),
        ("", "18", False),
    ],
)
def test_gsm8k_score(response: str, gold: str, ok: bool) -> None:
    task = get_task("gsm8k")
    assert task.score(response, _gsm(gold)) is ok


ABCD = ["A", "B", "C", "D"]
OPTS = ["a ruler", "a balance", "a thermometer", "a graduated cylinder"]


@pytest.mark.parametrize(
    "response, expected",
    [
        ("The answer is (B)", "B"),
        ("The answer is B.", "B"),
        ("Answer: C", "C"),
        ("I choose D because it fits.", "D"),
        ("The answer is not A; it is C.", "C"),  # step 1 is negation-guarded; step 4 skips "not A"
        ("C is correct since balances compare masses.", "C"),
        ("B. a balance", "B"),
        ("D", "D"),
        ("B) a balance", "B"),
        ("A planet has mass, so we need a balance: option B.", "B"),  # sentence-initial article "A"
        ("Mass is measured with a balance. A balance compares masses. B is right.", "B"),
        ("We should use a thermometer here.", "C"),  # fuzzy fallback: the option text is quoted
        ("zzz", None),  # nothing similar: no forced guess
        ("The letters in prose: so we pick D over the others.", "D"),
    ],
)
def test_extract_choice_letters(response: str, expected: str | None) -> None:
    assert extract_choice(response, ABCD, OPTS) == expected


def test_extract_choice_numeric_labels_and_five_options() -> None:
    labels, opts = ["1", "2", "3", "4"], ["rises", "falls", "stays", "doubles"]
    assert extract_choice("The answer is 2.", labels, opts) == "2"
    assert extract_choice("2. falls", labels, opts) == "2"
    assert extract_choice("It takes 12.5 seconds, so 3 is correct", labels, opts) == "3"
    assert extract_choice("After 10 s and 1.5 m it stays", labels, opts) == "3"  # 10 and 1.5 are not labels
    five = ["A", "B", "C", "D", "E"]
    assert extract_choice("The answer is E", five, ["p", "q", "r", "s", "t"]) == "E"


def test_arc_task_numeric_item() -> None:
    task = get_task("arc")
    rec = {
        "id": "x",
        "question": "Q?",
        "answer": "2",
        "label": ["1", "2", "3", "4"],
        "1": "a",
        "2": "b",
        "3": "c",
        "4": "d",
    }
    item = task.item_from_record(rec, 0)
    assert task.format_prompt(item, "chat") == "Q?\n1. a\n2. b\n3. c\n4. d\n"
    assert task.score("The answer is 2", item)
    assert not task.score("The answer is 3", item)


def _bbh(target: str, subtask: str, inp: str = "question") -> Item:
    return Item(id="x", fields={"input": inp, "subtask": subtask}, gold=target)


MC_INPUT = "Which?\nOptions:\n(A) red\n(B) blue\n(C) green"


@pytest.mark.parametrize(
    "response, target, subtask, ok",
    [
        ("So the answer is (B).", "(B)", "date_understanding", True),
        ("So the answer is B.", "(B)", "date_understanding", True),  # official: "(b)" not in "b" -> wrong
        ("So the answer is (C).", "(B)", "date_understanding", False),
        ("So the answer is blue.", "(B)", "date_understanding", True),  # option text mapped to its letter
        ("So the answer is no.", "no", "sports_understanding", True),
        (
            "So the answer is not plausible.",
            "no",
            "sports_understanding",
            False,
        ),  # official: "no" in "not ..."
        ("So the answer is yes.", "no", "sports_understanding", False),
        ("So the answer is True.", "True", "boolean_expressions", True),
        ("So the answer is invalid.", "valid", "formal_fallacies", False),
        ("So the answer is -37.", "-37", "multistep_arithmetic_two", True),
        ("So the answer is 6.", "6", "object_counting", True),
        ("So the answer is ] ) }.", "] ) }", "dyck_languages", True),
        ("So the answer is ])}", "] ) }", "dyck_languages", True),
        ("So the answer is ] }.", "] ) }", "dyck_languages", False),
        ("So the answer is apple banana cherry.", "apple banana cherry", "word_sorting", True),
        (
            "So the answer is apple, banana, cherry.",
            "apple banana cherry",
            "word_sorting",
            True,
        ),  # no comma cut
        ("So the answer is banana apple cherry.", "apple banana cherry", "word_sorting", False),
        ("I am not sure.", "(A)", "date_understanding", False),
    ],
)
def test_bbh(response: str, target: str, subtask: str, ok: bool) -> None:
    inp = MC_INPUT if target.startswith("(") else "question"
    item = _bbh(target, subtask, inp)
    assert bbh_equal(extract_bbh(response, item), item) is ok


def test_bbh_letter_patterns_only_on_multiple_choice() -> None:
    # official letter patterns are case-insensitive: "the answer is a" would read as option A on a yes/no item
    item = _bbh("No", "navigate")
    assert extract_bbh("Hmm, the answer is a No.", item) == "a No"
    assert extract_bbh("the answer is a", _bbh("(A)", "snarks", MC_INPUT)) == "A"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("so $\\boxed{5}$", "5"),
        ("$\\boxed{\\frac{1}{2}}$", "\\frac{1}{2}"),
        ("earlier \\boxed{3}, finally $\\boxed{\\sqrt{x^{2}+1}}$", "\\sqrt{x^{2}+1}"),
        ("\\boxed{a} then \\boxed{\\{1,2\\}}", "\\{1,2\\}"),
        ("\\boxed 7$", "7"),
        ("no box", None),
        ("\\boxed{unclosed", None),
    ],
)
def test_last_boxed(text: str, expected: str | None) -> None:
    assert last_boxed(text) == expected


@pytest.mark.parametrize(
    "response, gold, ok",
    [
        ("Thus $\\boxed{\\frac{1}{2}}$.", "\\frac{1}{2}", True),
        ("Thus $\\boxed{\\dfrac12}$.", "\\frac{1}{2}", True),
        ("Thus $\\boxed{0.5}$.", "\\frac{1}{2}", True),
        ("Thus $\\boxed{1/2}$.", "\\frac12", True),
        ("Thus $\\boxed{-\\frac{3}{4}}$.", "-0.75", True),
        ("The answer is 12", "12", True),
        ("The answer is x = 12", "12", True),
        ("We get 3 and then 7", "7", True),  # last number when nothing else
        ("\\boxed{2.4}", "2", False),  # no official round() leniency
        ("\\boxed{\\left( 1, -2 \\right)}", "(1,-2)", True),
        ("\\boxed{(2, 1)}", "(1,2)", False),
        ("\\boxed{10\\%}", "10", True),
        ("\\boxed{90^\\circ}", "90", True),
        ("\\boxed{\\text{(B)}}", "\\text{(B)}", True),
        ("\\boxed{1,000}", "1000", True),
        ("\\boxed{__import__('os')}", "0", False),  # never evaluated
    ],
)
def test_math(response: str, gold: str, ok: bool) -> None:
    assert math_equal(answer_clean(response), gold) is ok
    task = get_task("math")
    item = task.item_from_record({"question": "q", "answer": [gold, None]}, 0)
    assert task.score(response, item) is ok


def test_strip_string() -> None:
    assert strip_string("\\dfrac{1}{2}") == "\\frac{1}{2}"
    assert strip_string("x = 5") == "5"
    assert strip_string("\\sqrt3") == "\\sqrt{3}"
    assert strip_string("5 \\text{ cm}") == "5"


def test_reasoning_trace_is_ignored() -> None:
    task = get_task("gsm8k")
    assert task.score("<think>maybe 3? or 99</think> The answer is 18", _gsm("18"))
