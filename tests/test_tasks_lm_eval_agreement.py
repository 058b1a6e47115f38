"""Agreement of our scoring with lm-eval's extraction rules on hand-written responses.

lm-eval's rules are reimplemented here from its task YAML and source (EleutherAI/lm-evaluation-harness,
``lm_eval/filters/extraction.py`` RegexFilter, ``lm_eval/api/metrics.py`` exact_match_hf_evaluate):

- ``gsm8k`` (gsm8k.yaml): filter "strict-match" = regex ``#### (\\-?[0-9\\.\\,]+)``, first match;
  "flexible-extract" = regex ``(-?[$0-9.,]{2,})|(-?[0-9]+)``, last match (``group_select: -1``), first non-empty
  group; metric exact_match against the full gold solution with ``regexes_to_ignore`` ``,`` ``\\$``
  ``(?s).*#### `` ``\\.$`` and ``ignore_case``.
- ``arc_challenge_chat``: generation after the prefix "The best answer is", stopped at "\\n\\n" or "."; filter
  strip; exact_match with ignore_case and ignore_punctuation against the letter (numeric answer keys become
  ``"ABCD"[key - 1]``).
- ``mmlu`` generative (mmlu/generative): stopped at "\\n"; first line, strip, exact_match with ignore_case and
  ignore_punctuation against the letter.

Every item states the expected verdict of both sides; where they differ the reason is given. Run with ``-s`` to
print the table.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass

import pytest

from saemui.tasks import get_task


def lm_regex(pattern: str, resp: str, group_select: int = 0, fallback: str = "[invalid]") -> str:
    match = re.findall(pattern, resp)
    if not match:
        return fallback
    m = match[group_select]
    if isinstance(m, tuple):
        parts = [x for x in m if x]
        m = parts[0] if parts else fallback
    return m.strip()


def lm_exact_match(
    pred: str, ref: str, ignore: tuple[str, ...] = (), case: bool = False, punct: bool = False
) -> bool:
    for s in ignore:
        pred, ref = re.sub(s, "", pred), re.sub(s, "", ref)
    if case:
        pred, ref = pred.lower(), ref.lower()
    if punct:
        table = str.maketrans("", "", string.punctuation)
        pred, ref = pred.translate(table), ref.translate(table)
    return pred == ref


GSM_IGNORE = (",", "\\$", "(?s).*#### ", "\\.$")


def lm_gsm8k(resp: str, gold_solution: str) -> dict[str, bool]:
    strict = lm_regex(r"#### (\-?[0-9\.\,]+)", resp)
    flex = lm_regex(r"(-?[$0-9.,]{2,})|(-?[0-9]+)", resp, group_select=-1)
    return {
        "strict-match": lm_exact_match(strict, gold_solution, GSM_IGNORE, case=True),
        "flexible-extract": lm_exact_match(flex, gold_solution, GSM_IGNORE, case=True),
    }


def lm_arc_chat(resp: str, answer_key: str) -> dict[str, bool]:
    target = "ABCD"[int(answer_key) - 1] if answer_key in "1234" else answer_key
    for stop in ("\n\n", "."):
        resp = resp.split(stop)[0]
    return {"remove_whitespace": lm_exact_match(resp.strip(), target, case=True, punct=True)}


def lm_mmlu_generative(resp: str, letter: str) -> dict[str, bool]:
    first = lm_regex(r"^(.*?)(?=\n|$)", resp).strip()
    first = lm_regex(r"^(.*?)\s*$", first)
    return {"get_response": lm_exact_match(first, letter, case=True, punct=True)}


@dataclass
class Case:
    task: str
    gold: str
    response: str
    ours: bool
    lm: dict[str, bool]
    why: str = ""  # required when ours differs from any lm-eval filter


def gsm(gold: str, resp: str, ours: bool, strict: bool, flex: bool, why: str = "") -> Case:
    return Case("gsm8k", gold, resp, ours, {"strict-match": strict, "flexible-extract": flex}, why)


NO_HASH = "lm-eval strict-match needs '#### n'; the instruct-style answer has none"
CASES = [
    gsm("7", "3 + 4 = 7 eggs.\n#### 7", True, True, True),
    gsm("7", "She has 7 eggs.", True, False, True, NO_HASH),
    gsm("1000", "The answer is $1,000.", True, False, True, NO_HASH),
    gsm("-5", "The temperature is -5", True, False, True, NO_HASH),
    gsm(
        "18",
        "It costs 18.00 dollars",
        True,
        False,
        False,
        "we compare numbers (18.00 == 18); lm-eval compares strings after removing ',', '$' and a final '.'",
    ),
    gsm(
        "18",
        "#### 18\nWait, that is wrong: 20",
        False,
        True,
        False,
        "strict-match takes the first '#### n'; we "
        "(like the official MUI code and flexible-extract) take the last number",
    ),
    gsm("24", "She sold 12 eggs, so 12 * 2 = 24 dollars", True, False, True, NO_HASH),
    gsm(
        "10",
        "It takes 5-10 minutes",
        True,
        False,
        False,
        "flexible-extract reads '-10' (hyphen as minus); our sign guard ignores a hyphen right after a digit",
    ),
    gsm("0.5", "Answer: 0.5 of the cake", True, False, True, NO_HASH),
    gsm("1234", "#### 1,234", True, True, True),
    gsm("5", "I don't know.", False, False, False),
    gsm("7", "She has 7 apples left.\n", True, False, True, NO_HASH),
    Case("arc", "B", " B", True, {"remove_whitespace": True}),
    Case("arc", "B", " (B)", True, {"remove_whitespace": True}),
    Case(
        "arc",
        "B",
        " B because plants need light",
        True,
        {"remove_whitespace": False},
        "lm-eval wants the bare letter; we read the first standalone label",
    ),
    Case(
        "arc",
        "B",
        " b",
        False,
        {"remove_whitespace": True},
        "lm-eval ignores case; extract_choice (official) only reads capital labels, 'b' is an ordinary word",
    ),
    Case(
        "arc-num",
        "2",
        " B",
        False,
        {"remove_whitespace": True},
        "lm-eval relabels numeric items A-D; we keep the official numeric labels, so a letter is not a label",
    ),
    Case(
        "arc-num",
        "2",
        " 2",
        True,
        {"remove_whitespace": False},
        "the other side of the relabelling: '2' is the label we show, lm-eval expects 'B'",
    ),
    Case("arc", "B", " C", False, {"remove_whitespace": False}),
    Case("mmlu", "B", "B", True, {"get_response": True}),
    Case(
        "mmlu",
        "B",
        "B. Oxygen\nBecause oxygen is needed",
        True,
        {"get_response": False},
        "lm-eval compares the whole first line with the letter; we read the label",
    ),
    Case(
        "mmlu",
        "C",
        "Nitrogen",
        True,
        {"get_response": False},
        "our fallback maps a quoted option text to its label; lm-eval has no fallback",
    ),
    Case(
        "mmlu",
        "C",
        "The answer is C",
        True,
        {"get_response": False},
        "lm-eval expects the bare letter; we read 'answer is X'",
    ),
    Case("mmlu", "C", " C ", True, {"get_response": True}),
    Case("mmlu", "C", "A", False, {"get_response": False}),
    Case(
        "mmlu",
        "C",
        "\nC",
        True,
        {"get_response": False},
        "lm-eval reads only the first line, which is empty here",
    ),
]

MMLU_OPTIONS = ["Argon", "Oxygen", "Nitrogen", "Carbon dioxide"]
ARC_OPTIONS = ["soil", "light", "wind", "sand"]


def ours(case: Case) -> bool:
    if case.task == "gsm8k":
        task = get_task("gsm8k")
        item = task.item_from_record({"question": "q", "answer": f"work\n#### {case.gold}"}, 0)
    elif case.task in ("arc", "arc-num"):
        task = get_task("arc")
        labels = ["1", "2", "3", "4"] if case.task == "arc-num" else ["A", "B", "C", "D"]
        rec = {
            "question": "What do plants need?",
            "answer": case.gold,
            "label": labels,
            **dict(zip(labels, ARC_OPTIONS)),
        }
        item = task.item_from_record(rec, 0)
    else:
        task = get_task("mmlu")
        item = task.item_from_record(
            {"question": "q", "choices": MMLU_OPTIONS, "answer": "ABCD".index(case.gold)}, 0
        )
    return task.score(case.response, item)


def lm_eval(case: Case) -> dict[str, bool]:
    if case.task == "gsm8k":
        return lm_gsm8k(case.response, f"work\n#### {case.gold}")
    if case.task in ("arc", "arc-num"):
        return lm_arc_chat(case.response, case.gold)
    return lm_mmlu_generative(case.response, case.gold)


@pytest.mark.parametrize("case", CASES, ids=[f"{c.task}-{i}" for i, c in enumerate(CASES)])
def test_item(case: Case) -> None:
    assert ours(case) is case.ours, "our scorer"
    assert lm_eval(case) == case.lm, "lm-eval rules as reimplemented"
    if any(v != case.ours for v in case.lm.values()):
        assert case.why, "a difference must be explained"
    else:
        assert not case.why


def test_report_differences() -> None:
    rows = []
    for i, c in enumerate(CASES):
        diff = {k: v for k, v in c.lm.items() if v != c.ours}
        if diff:
            rows.append(
                f"{c.task:8s} #{i:2d} ours={c.ours!s:5s} lm-eval={diff} response={c.response!r}: {c.why}"
            )
    print("\n" + "\n".join(rows))
    assert len(CASES) >= 20
    # 17 of 26 items differ on at least one lm-eval filter (9 of them only on strict-match); 9 agree everywhere
    assert len(rows) == 17
