"""``--extraction official``: the official MUI-Eval scoring with its quirks (Q27–Q30), beside the corrected rules.

Every quirk gets a hand-written response scored both ways. The official file test needs the official repository's
shipped response files: set SAEMUI_OFFICIAL_DIR to a checkout of ALEX-nlp/MUI-Eval (it is skipped otherwise;
nothing is downloaded).
"""

from __future__ import annotations

import ast
import json
import os
from pathlib import Path

import pytest

from saemui.cli import main
from saemui.errors import SaemuiError
from saemui.records import read_samples
from saemui.tasks import get_task, score_responses
from saemui.tasks.base import Item
from saemui.tasks.official import (
    _eval_number_literal,
    _eval_numeric_expression,
    _EvalError,
    _lcs_length,
    _partial_ratio,
    _ratio,
    _wratio,
    fuzzy_extract_one,
    official_bbh_answer,
    official_bbh_correct,
    official_choice,
    official_gsm8k_correct,
    official_last_number,
    official_math_answer,
    official_math_correct,
    official_verdict,
)


def _arc_item(labels, options, gold) -> Item:
    return Item(id="x", fields={"question": "q", "labels": list(labels), "options": list(options)}, gold=gold)


def _both(task_name: str, item: Item, response: str, record: dict | None = None) -> tuple[bool, bool]:
    task = get_task(task_name)
    corrected = task.score(response, item)
    return official_verdict(task_name, item, response, record).correct, corrected


# ----- Q27 multiple choice -----------------------------------------------------------------------------------


def test_article_a_is_a_choice_officially() -> None:
    item = _arc_item("ABCD", ["a ruler", "a balance", "a thermometer", "a cylinder"], "B")
    response = "A balance compares the rock with known masses."
    assert official_choice(response, item.fields["options"], item.fields["labels"]) == "A"
    assert _both("arc", item, response) == (False, True)


def test_numeric_labels_only_letters_officially() -> None:
    item = _arc_item("1234", ["fish", "whale", "shark", "eel"], "2")
    response = "The answer is 2. A whale is a mammal."
    # the official patterns know A-D only: the article "A" is returned, not a label of this item
    assert official_verdict("arc", item, response).pred == "A"
    assert _both("arc", item, response) == (False, True)


def test_fuzzy_fallback_always_guesses() -> None:
    item = _arc_item("ABCD", ["red", "blue", "green", "yellow"], "C")
    response = "no idea"
    official = official_verdict("arc", item, response)
    assert official.pred in item.fields["labels"]  # never "no answer"
    assert get_task("arc").extract_answer(response, item) is None
    # with a word of one option in the text, that option wins (token overlap scores 100 * 0.95 * 0.9)
    assert official_choice("it is surely green to me", item.fields["options"], item.fields["labels"]) == "C"


def test_mmlu_article_and_agreement() -> None:
    item = Item(id="m", fields={"labels": list("ABCD"), "options": ["w", "x", "y", "z"]}, gold="C")
    assert _both("mmlu", item, "I choose C") == (True, True)
    assert _both("mmlu", item, "Definitely C") == (True, True)  # "D" inside a word is no choice
    assert _both("mmlu", item, "A good guess is option C.") == (False, True)


def _lcs_dp(a: str, b: str) -> int:
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


@pytest.mark.parametrize(
    "a,b",
    [("", "abc"), ("abc", "abd"), ("kitten", "sitting"), ("abcabcabc", "cbacba"), ("x" * 70, "x" * 65 + "y")],
)
def test_lcs_against_dynamic_programming(a: str, b: str) -> None:
    assert _lcs_length(a, b) == _lcs_dp(a, b) == _lcs_length(b, a)


def test_ratio_values_by_hand() -> None:
    # Indel similarity: 1 - (len1 + len2 - 2 LCS) / (len1 + len2), in percent
    assert _ratio("this is a test", "this is a test!") == pytest.approx(100 * (1 - 1 / 29))
    assert _ratio("abc", "abd") == pytest.approx(100 * 4 / 6)
    assert _partial_ratio("this is a test", "this is a test!") == 100
    # partial ratio: the best window of the longer string ("bcd" in "abcde" is exact)
    assert _partial_ratio("bcd", "abcde") == 100
    assert _partial_ratio("bxd", "abcde") == pytest.approx(100 * 4 / 6)
    # WRatio: same tokens in another order → token_sort 100, scaled by 0.95
    assert _wratio("fuzzy wuzzy was a bear", "wuzzy fuzzy was a bear") == pytest.approx(95)
    assert _wratio("", "abc") == 0


def test_fuzzy_matches_rapidfuzz_when_installed() -> None:
    process = pytest.importorskip("thefuzz.process")
    cases = [
        (
            "I cannot decide between these.",
            ["The planet will move faster.", "Its tilt will change.", "None", "x"],
        ),
        ("mass of a rock", ["a ruler", "a balance", "a thermometer", "a graduated cylinder"]),
        ("???", ["one", "two"]),
        ("fuzzy_wuzzy bear", ["fuzzy wuzzy", "bear", "fuzzy_wuzzy bear"]),
    ]
    for query, options in cases:
        best = process.extractOne(query, options)[0]
        assert fuzzy_extract_one(query, options) == options.index(best)


# ----- Q30 GSM8K -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text", ["7", "007", "00", "0", "-0", "-007", "5.", ".5", "-.5", "007.5", "1" * 30, "120"]
)
def test_number_literal_like_python(text: str) -> None:
    # ast.literal_eval on hand-written literals is the independent reference for what eval() does with them
    try:
        expected = ast.literal_eval(text)
    except SyntaxError:
        with pytest.raises(_EvalError):
            _eval_number_literal(text)
    else:
        got = _eval_number_literal(text)
        assert got == expected and type(got) is type(expected)


def test_gsm8k_quirks() -> None:
    def item(gold: str) -> Item:
        return get_task("gsm8k").item_from_record({"question": "q", "answer": f"work\n#### {gold}"}, 0)

    # "007" makes eval raise: wrong officially, 7 after the fix
    assert _both("gsm8k", item("7"), "The code is 007") == (False, True)
    # "5-10": the official pattern reads -10
    assert official_last_number("between 5-10") == "-10"
    assert _both("gsm8k", item("10"), "between 5-10") == (False, True)
    assert _both("gsm8k", item("-10"), "between 5-10") == (True, False)
    # agreements: "00" is a valid literal, commas are dropped, abs_tol 1e-4
    assert _both("gsm8k", item("0"), "score 00") == (True, True)
    assert _both("gsm8k", item("1,234"), "so 1,234.00004 in all") == (True, True)
    assert official_gsm8k_correct("no number here", "#### 3") is False


# ----- Q29 MATH ------------------------------------------------------------------------------------------------


def _math(gold_str: str, gold_num, response: str) -> tuple[bool, bool]:
    record = {"question": "q", "answer": [gold_str, gold_num]}
    item = get_task("math").item_from_record(record, 0)
    return _both("math", item, response, record)


def test_math_quirks() -> None:
    # a float gold never matches numerically (within_eps is undefined) and the gold string is not normalised
    assert _math("0.25", 0.25, "$\\boxed{\\frac{1}{4}}$") == (False, True)
    assert _math("\\dfrac{1}{2}", 0.5, "$\\boxed{\\dfrac{1}{2}}$") == (False, True)
    # a tuple gold: eval() of the prediction, then round(p) == gt accepts 2.4 for 2 and reads ^ as xor
    assert _math("(2,3)", [2, 3], "$\\boxed{(2.4, 3)}$") == (True, False)
    assert _math("(1,4)", [1, 4], "$\\boxed{3^2, 4}$") == (True, False)
    # agreements: whole decimals and "x = 12" become the integer gold
    assert _math("12", 12, "$\\boxed{12.0}$") == (True, True)
    assert _math("12", 12, "$\\boxed{x = 12}$") == (True, True)
    # a decimal reaches latex2sympy as a Rational, which floatify cannot read: no rounding for scalars
    assert official_math_correct("2.4", "2", 2) is False


def test_math_answer_clean_and_crash() -> None:
    assert official_math_answer("so $\\boxed{\\frac14}$.") == "\\frac{1}{4}"
    assert official_math_answer("x = 3 and y = 4. The answer is 7 apples") == "7"
    assert official_math_answer("first 2.6 then 3.0") == "3.0"
    record = {"question": "q", "answer": ["2", 2]}
    item = get_task("math").item_from_record(record, 0)
    verdict = official_verdict("math", item, "$\\boxed{\\sqrt}$", record)
    assert verdict.correct is False and "IndexError" in verdict.error
    with pytest.raises(SaemuiError, match="answer = \\[string, number\\]"):
        official_verdict("math", item, "2", {"question": "q", "answer": "2"})


def test_eval_emulation_refuses_names_and_huge_powers() -> None:
    assert _eval_numeric_expression("(1, -2.5, 3^2)") == (1, -2.5, 1)
    for text in ("pi", "__import__('os')", "'12'", "2**99999999", "1 <<  99999999", "f(1)"):
        with pytest.raises(_EvalError):
            _eval_numeric_expression(text)


# ----- Q28 BBH -------------------------------------------------------------------------------------------------


def _bbh(target: str, response: str, subtask: str = "sports_understanding") -> tuple[bool, bool]:
    item = Item(id=f"{subtask}/0", fields={"input": "Q?", "subtask": subtask}, gold=target)
    return _both("bbh", item, response)


def test_bbh_quirks() -> None:
    # substring check: the target "no" is inside the prediction "not sure"
    assert official_bbh_answer("So the answer is not sure.") == "not sure"
    assert _bbh("no", "So the answer is not sure.") == (True, False)
    # a bare letter never contains "(a)"
    mc = "Which?\nOptions:\n(A) up\n(B) down"
    item = Item(id="date_understanding/0", fields={"input": mc, "subtask": "date_understanding"}, gold="(A)")
    assert official_bbh_answer("So the answer is A.") == "A"
    assert (
        official_verdict("bbh", item, "So the answer is A.").correct,
        get_task("bbh").score("So the answer is A.", item),
    ) == (False, True)
    assert official_bbh_correct("(A)", "(A)") and not official_bbh_correct(None, "(A)")


# ----- dispatch, files and the command line ---------------------------------------------------------------------


def test_unsupported_task_and_unknown_mode() -> None:
    item = Item(id="a", fields={}, gold=1)
    with pytest.raises(SaemuiError, match="no official extraction"):
        official_verdict("arith-1", item, "1")
    with pytest.raises(SaemuiError, match="extraction 'strict' is unknown"):
        score_responses("arc", "unused.jsonl", extraction="strict")


def _arc_record(i: int, response: str, gold: str = "B", labels: str = "ABCD") -> dict:
    rec = {"id": f"q{i}", "question": "Which tool measures mass?", "answer": gold, "label": list(labels)}
    rec.update(dict(zip(labels, ["a ruler", "a balance", "a thermometer", "a cylinder"])))
    rec.update({"sys_input": "", "question_input": "Which tool measures mass?\n", "response": response})
    return rec


def test_score_paper_file_both_ways(tmp_path: Path, capsys) -> None:
    rows = [
        _arc_record(0, "The answer is B."),  # both right
        _arc_record(1, "A balance, of course."),  # article: official reads A
        _arc_record(
            2, "The answer is 2. A balance.", gold="2", labels="1234"
        ),  # official: "A" for a 1-4 item
        _arc_record(3, "Option C is correct."),  # both wrong
    ]
    path = tmp_path / "arc_model.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    acc_c, samples_c, _ = score_responses("arc", path, "paper")
    acc_o, samples_o, _ = score_responses("arc", path, "paper", extraction="official")
    assert [s.correct for s in samples_c] == [True, True, True, False]
    assert [s.correct for s in samples_o] == [True, False, False, False]
    assert (acc_c, acc_o) == (0.75, 0.25)
    assert all(s.meta["extraction"] == "official" for s in samples_o)
    assert all("extraction" not in s.meta for s in samples_c)  # default output unchanged

    out = tmp_path / "official.scored.jsonl"
    argv = ["score", "--task", "arc", "--format", "paper", "--responses", str(path), "--out", str(out)]
    assert main([*argv, "--extraction", "official"]) == 0
    printed = capsys.readouterr().out
    assert "extraction official" in printed and "25.0 % (1/4 correct)" in printed
    assert [s.meta["pred"] for s in read_samples(out)] == ["B", "A", "A", "C"]


def test_score_records_official_math_uses_the_source_record(tmp_path: Path) -> None:
    source = tmp_path / "math.json"
    source.write_text(
        json.dumps([{"question": "q0", "answer": ["(2,3)", [2, 3]]}, {"question": "q1", "answer": ["5", 5]}])
    )
    own = tmp_path / "responses.jsonl"
    own.write_text(
        json.dumps({"prompt": "p0", "response": "$\\boxed{(2.4, 3)}$", "id": "0"})
        + "\n"
        + json.dumps({"prompt": "p1", "response": "$\\boxed{5}$", "id": "1"})
        + "\n"
    )
    _, official, fmt = score_responses("math", own, "auto", source=str(source), extraction="official")
    _, corrected, _ = score_responses("math", own, "auto", source=str(source))
    assert fmt == "jsonl"
    assert [s.correct for s in official] == [True, True]
    assert [s.correct for s in corrected] == [False, True]


# The official repository ships three response files; their accuracies under the official code's own scoring
# functions (run on the files, outside saemui) are the expected counts.
OFFICIAL_FILES = {
    "neuron_and_sae/result/arc/llama3.1/llama3.1.jsonl": ("arc", 960, 1172),
    "neuron_and_sae/result/arc/qwen2.5/qwen2.5.jsonl": ("arc", 1017, 1172),
    "neuron_and_sae/result/gsm8k/gemma2-base/gemma2-base.jsonl": ("gsm8k", 869, 1319),
}


def test_official_files_reproduce_the_official_accuracy() -> None:
    root = os.environ.get("SAEMUI_OFFICIAL_DIR")
    if not root:
        pytest.skip("SAEMUI_OFFICIAL_DIR is not set (a checkout of ALEX-nlp/MUI-Eval)")
    found = {rel: spec for rel, spec in OFFICIAL_FILES.items() if (Path(root) / rel).is_file()}
    if not found:
        pytest.skip(f"no shipped response file under {root}")
    for rel, (task, n_correct, n) in found.items():
        _, samples, _ = score_responses(task, Path(root) / rel, "paper", extraction="official")
        assert (sum(bool(s.correct) for s in samples), len(samples)) == (n_correct, n), rel


def test_run_task_scores_generated_text_officially(tiny_dir, tmp_path: Path, capsys) -> None:
    from saemui.result import load_result
    from saemui.testing import save_tiny_model

    model = str(save_tiny_model(tiny_dir, "llama"))
    source = tmp_path / "gsm8k.json"
    golds = ["#### 7", "#### 12"]
    source.write_text(
        json.dumps([{"question": f"What is {i} + {i}?", "answer": g} for i, g in enumerate(golds)])
    )
    out = tmp_path / "run"
    argv = ["run", "--task", "gsm8k", "--source", str(source), "--model", model, "--neurons", "--max-new-tokens", "6",
            "--out", str(out), "--quiet", "--extraction", "official"]  # fmt: skip
    assert main(argv) == 0
    records = read_samples(out / "responses.jsonl")
    assert [r.meta["extraction"] for r in records] == ["official", "official"]
    assert [r.correct for r in records] == [
        official_gsm8k_correct(r.response, g) for r, g in zip(records, golds)
    ]
    assert load_result(out).summary["task"]["extraction"] == "official"

    assert (
        main(["run", "--model", model, "--neurons", "--extraction", "official", "--out", str(tmp_path / "x")])
        == 2
    )
    assert "--extraction only apply with --task" in capsys.readouterr().err
