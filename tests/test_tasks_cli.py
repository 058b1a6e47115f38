"""``saemui run --task``, ``saemui score`` and ``saemui tasks`` (tiny llama model directory, offline)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from saemui.cli import main
from saemui.records import read_samples
from saemui.result import load_result
from saemui.tasks.arith import Arith
from saemui.testing import save_tiny_model


@pytest.fixture(scope="module")
def tiny_dir_llama(tiny_dir) -> str:
    return str(save_tiny_model(tiny_dir, "llama"))


def _run_task(model: str, out: Path, *extra: str) -> list[str]:
    return ["run", "--task", "arith-1", "--limit", "4", "--model", model, "--neurons", "--max-new-tokens", "4",
            "--out", str(out), "--quiet", *extra]  # fmt: skip


def test_run_task_end_to_end(tiny_dir_llama, tmp_path: Path, monkeypatch, capsys) -> None:
    # the random model never answers right; mark items 0 and 2 correct so the correct-only MUI is exercised
    monkeypatch.setattr(Arith, "is_correct", lambda self, pred, item: item.id.endswith(("-0", "-2")))
    out = tmp_path / "run"
    assert main(_run_task(tiny_dir_llama, out)) == 0
    printed = capsys.readouterr().out
    assert "task       arith-1 (chat style), 4 items" in printed and "accuracy   50.0 %" in printed
    res = load_result(out)
    s = res.summary
    assert s["accuracy"] == 0.5 and s["n_labelled"] == 4 and s["n_correct"] == 2
    assert 0 < s["mui"] < 1 and 0 < s["mui_correct"] <= s["mui"]
    assert s["mui_correct"] == pytest.approx(res.subset_mui([0, 2]))
    t = s["task"]
    assert (t["name"], t["n_items"], t["style"], t["prompt_format"]) == ("arith-1", 4, "chat", "chat")
    assert t["options"]["level"] == 1 and t["options"]["max_new_tokens"] == 4
    assert (
        t["source"] == "generated (offline)" and load_result(out).run_info["generation"]["n_generated"] == 4
    )
    assert s["config"]["prompt_format"] == "chat"
    records = read_samples(out / "responses.jsonl")
    assert [r.correct for r in records] == [True, False, True, False]
    with open(out / "samples.csv") as f:
        assert [row["id"] for row in csv.DictReader(f)] == [r.id for r in records]

    # rerun: every response comes from the default cache beside the output directory
    assert main(_run_task(tiny_dir_llama, out)) == 0
    assert "(0 generated" in capsys.readouterr().out
    assert load_result(out).run_info["generation"]["n_cached"] == 4
    assert len(list((tmp_path / "generations").glob("*-arith-1-chat-*.jsonl"))) == 1


def test_run_without_task_is_unchanged(tiny_dir_llama, tmp_path: Path, capsys) -> None:
    samples = tmp_path / "s.jsonl"
    samples.write_text(json.dumps({"prompt": "What is 2 + 3?", "response": "5", "correct": True}) + "\n")
    out = tmp_path / "plain"
    argv = [
        "run",
        "--samples",
        str(samples),
        "--model",
        tiny_dir_llama,
        "--neurons",
        "--out",
        str(out),
        "--quiet",
    ]
    assert main(argv) == 0
    s = load_result(out).summary
    assert "task" not in s and s["accuracy"] == 1.0 and s["config"]["prompt_format"] == "auto"
    assert not (out / "responses.jsonl").exists()


def test_score_paper_lm_eval_and_jsonl_files(tmp_path: Path, capsys) -> None:
    paper = tmp_path / "arith_model.jsonl"
    rows = [
        {"id": "a", "question": "What is 2 + 3?", "answer": 5, "sys_input": "", "question_input": "What is 2 + 3?",
         "response": "2 + 3 = 5"},
        {"id": "b", "question": "What is 4 + 4?", "answer": 8, "sys_input": "", "question_input": "What is 4 + 4?",
         "response": "The answer is 9."},
        {"id": "c", "question": "What is 1 + 6?", "answer": 7, "response": "<think>1 + 6 = 8? no</think> 7"},
    ]  # fmt: skip
    paper.write_text(json.dumps(rows))  # the official result files are often one JSON array
    assert main(["score", "--task", "arith-1", "--responses", str(paper)]) == 0
    printed = capsys.readouterr().out
    assert "(paper file" in printed and "accuracy   66.7 % (2/3 correct)" in printed
    scored = read_samples(tmp_path / "arith_model.scored.jsonl")
    assert [(s.id, s.correct) for s in scored] == [("a", True), ("b", False), ("c", True)]
    assert scored[0].prompt == "What is 2 + 3?" and scored[1].meta["pred"] == 9

    doc = {"question": "Janet has 3 eggs and buys 4. How many?", "answer": "3 + 4 = 7\n#### 7"}
    base = {"doc_id": 0, "doc": doc, "target": doc["answer"], "filter": "strict-match", "filtered_resps": ["7"],
            "arguments": {"gen_args_0": {"arg_0": "Question: " + doc["question"] + "\nAnswer:", "arg_1": {}}},
            "resps": [["She has 3 + 4 = 7 eggs.\n#### 7"]], "exact_match": 1.0}  # fmt: skip
    lines = [base, dict(base, filter="flexible-extract"), dict(base, doc_id=1, resps=[["It is 8."]])]
    lm_eval = tmp_path / "samples_gsm8k_2025.jsonl"
    lm_eval.write_text("".join(json.dumps(x) + "\n" for x in lines))
    out = tmp_path / "gsm.jsonl"
    assert (
        main(
            [
                "score",
                "--task",
                "gsm8k",
                "--responses",
                str(lm_eval),
                "--format",
                "lm-eval",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert "accuracy   50.0 % (1/2 correct)" in capsys.readouterr().out
    scored = read_samples(out)
    assert [(s.id, s.correct) for s in scored] == [("0", True), ("1", False)]
    assert scored[0].prompt.startswith("Question: Janet")

    # saemui's own records (a run's responses.jsonl): ids are matched to the task's items and rescored
    own = tmp_path / "responses.jsonl"
    recs = [{"id": "arith-1-0-0", "prompt": "What is 6 + 6?", "response": "12"},
            {"id": "arith-1-0-1", "prompt": "What is 0 + 4?", "response": "5", "correct": True}]  # fmt: skip
    own.write_text("".join(json.dumps(r) + "\n" for r in recs))
    assert main(["score", "--task", "arith-1", "--responses", str(own)]) == 0
    assert "(jsonl file" in capsys.readouterr().out
    assert [s.correct for s in read_samples(tmp_path / "responses.scored.jsonl")] == [True, False]


def test_tasks_lists_one_line_per_task(capsys) -> None:
    assert main(["tasks"]) == 0
    lines = capsys.readouterr().out.splitlines()
    names = [ln.split()[0] for ln in lines]
    assert {"arith-1", "arith-2", "gsm8k", "arc"} <= set(names) and len(names) == len(set(names))
    assert any(ln.startswith("arith-1 ") and "level=1" in ln and "generated" in ln for ln in lines)


def _error(argv: list[str], capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    # stderr may also hold transformers' weight-loading bar; ours is exactly one line
    ours = [ln for ln in err.splitlines() if ln.startswith("saemui:")]
    assert len(ours) == 1 and ours[0].startswith("saemui: error: "), err
    return ours[0]


def test_cli_errors_are_one_line_exit_2(tiny_dir_llama, tmp_path: Path, capsys) -> None:
    m = ["--model", tiny_dir_llama, "--neurons", "--quiet", "--out", str(tmp_path / "o")]
    assert "unknown task 'nope'" in _error(["run", "--task", "nope", *m], capsys)
    assert "expected KEY=VALUE" in _error(["run", "--task", "arith-1", "--task-option", "level", *m], capsys)
    assert "unknown option(s) bogus" in _error(
        ["run", "--task", "arith", "--task-option", "bogus=1", *m], capsys
    )
    assert "level must be 1, 2 or 3" in _error(
        ["run", "--task", "arith", "--task-option", "level=7", *m], capsys
    )
    samples = tmp_path / "s.jsonl"
    samples.write_text('{"prompt": "p", "response": "r"}\n')
    assert "exclude each other" in _error(["run", "--task", "arith-1", "--samples", str(samples), *m], capsys)
    assert "--limit 0" in _error(["run", "--task", "arith-1", "--limit", "0", *m], capsys)
    assert "--max-new-tokens 0" in _error(["run", "--task", "arith-1", "--max-new-tokens", "0", *m], capsys)
    assert "contradicts style 'chat'" in _error(
        ["run", "--task", "arith-1", "--limit", "1", "--prompt-format", "raw", *m], capsys
    )

    cache = tmp_path / "cache.jsonl"
    assert main(_run_task(tiny_dir_llama, tmp_path / "a", "--cache", str(cache), "--limit", "1")) == 0
    capsys.readouterr()
    other = _run_task(
        tiny_dir_llama, tmp_path / "b", "--cache", str(cache), "--limit", "1", "--max-new-tokens", "5"
    )
    assert "different configuration" in _error(other, capsys)

    assert "no such file" in _error(
        ["score", "--task", "arith-1", "--responses", str(tmp_path / "x.jsonl")], capsys
    )
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "What is 1 + 1?", "answer": 2}\n')
    assert "unknown response-file format" in _error(
        ["score", "--task", "arith-1", "--responses", str(bad)], capsys
    )
    stray = tmp_path / "stray.jsonl"
    stray.write_text('{"id": "zz", "prompt": "p", "response": "1"}\n')
    assert "not an item of task arith" in _error(
        ["score", "--task", "arith-1", "--responses", str(stray)], capsys
    )


@pytest.mark.real_model
def test_run_task_on_smollm2(smollm2, tmp_path: Path, monkeypatch, capsys) -> None:
    import saemui.models

    # reuse the session's loaded model instead of loading SmolLM2 a second time
    monkeypatch.setattr(saemui.models, "load_model", lambda *a, **k: smollm2)
    out = tmp_path / "smol"
    assert main(["run", "--task", "arith-1", "--limit", "8", "--neurons", "--out", str(out), "--quiet"]) == 0
    s = load_result(out).summary
    assert s["task"]["style"] == "chat" and s["task"]["n_items"] == 8 and s["n_labelled"] == 8
    assert s["accuracy"] is not None and s["accuracy"] > 0
    assert 0 < s["mui"] < 1 and s["mui_correct"] is not None and s["mui_correct"] <= s["mui"]
    assert len(read_samples(out / "responses.jsonl")) == 8
