"""Fuzz: response/records JSONL, task data files (every task, JSON and JSONL layouts) and imported response
files (lm-eval ``--log_samples``, the paper's files). See tests/fuzz_support.py for the property."""

from __future__ import annotations

import gzip
import json
import tempfile
from pathlib import Path

from fuzz_support import JSON_VALUES, TEXT, dumps, expect_ok_or_error, fuzz, mutated
from hypothesis import given
from hypothesis import strategies as st

import saemui
from saemui.tasks import get_task
from saemui.tasks.base import list_tasks
from saemui.tasks.responses import detect_format, import_lm_eval_samples, import_paper_responses
from saemui.tasks.sources import read_records

RECORD = st.fixed_dictionaries(
    {"prompt": TEXT, "response": TEXT},
    optional={
        "correct": st.sampled_from([True, False, None]),
        "meta": st.dictionaries(TEXT, TEXT, max_size=2),
    },
)
LAYOUT = st.fixed_dictionaries(
    {"bom": st.booleans(), "crlf": st.booleans(), "blank": st.booleans(), "ascii": st.booleans()}
)


def _jsonl(recs: list, layout: dict) -> bytes:
    nl = "\r\n" if layout["crlf"] else "\n"
    lines = [json.dumps(r, ensure_ascii=layout["ascii"]) for r in recs]
    text = (nl + nl if layout["blank"] else nl).join(lines) + nl
    return (b"\xef\xbb\xbf" if layout["bom"] else b"") + text.encode("utf-8")


def _file(data: bytes, name: str = "f.jsonl") -> Path:
    d = Path(tempfile.mkdtemp(prefix="saemui-fuzz-"))
    p = d / name
    p.write_bytes(data)
    return p


@fuzz()
@given(st.lists(RECORD, min_size=1, max_size=4), LAYOUT)
def test_valid_records_round_trip(recs, layout):
    p = _file(_jsonl(recs, layout))
    got = saemui.read_samples(p)
    assert [(s.prompt, s.response, s.correct) for s in got] == [
        (r["prompt"], r["response"], r.get("correct")) for r in recs
    ]


@fuzz()
@given(st.data(), st.lists(RECORD, min_size=1, max_size=3), LAYOUT)
def test_corrupt_records(data, recs, layout):
    p = _file(data.draw(mutated(_jsonl(recs, layout))))
    expect_ok_or_error(lambda: saemui.read_samples(p), str(p))


@fuzz()
@given(
    st.lists(
        JSON_VALUES
        | st.dictionaries(st.sampled_from(["prompt", "response", "id", "correct", "meta"]), JSON_VALUES),
        min_size=1,
        max_size=3,
    )
)
def test_records_of_any_json(objs):
    p = _file(("\n".join(dumps(o) for o in objs) + "\n").encode("utf-8", "surrogatepass"))
    out = expect_ok_or_error(lambda: saemui.read_samples(p), str(p))
    if out is not None:
        assert all(isinstance(s.prompt, str) and isinstance(s.id, str) for s in out)


# -- task data files ---------------------------------------------------------------------------------------

TASK_KEYS = [
    "question", "answer", "choices", "options", "label", "answerKey", "target", "input", "problem", "solution",
    "prompt", "test", "entry_point", "task_id", "subject", "text", "id", "level", "type",
]  # fmt: skip
TASK_RECORD = st.dictionaries(st.sampled_from(TASK_KEYS), JSON_VALUES, max_size=6)
FILE_TASKS = sorted(t for t in list_tasks() if not t.startswith("arith"))  # arith items are generated
FILE_LAYOUT = st.sampled_from(["jsonl", "array", "object", "gzip"])


def _task_file(recs: list, layout: str) -> bytes:
    if layout == "array":
        return dumps(recs).encode("utf-8", "surrogatepass")
    if layout == "object":
        return dumps({"examples": recs}).encode("utf-8", "surrogatepass")
    body = ("\n".join(dumps(r) for r in recs) + "\n").encode("utf-8", "surrogatepass")
    return gzip.compress(body, mtime=0) if layout == "gzip" else body


@fuzz()
@given(st.sampled_from(FILE_TASKS), st.lists(TASK_RECORD, min_size=1, max_size=3), FILE_LAYOUT)
def test_task_data_files(name, recs, layout):
    p = _file(_task_file(recs, layout), "data.json")
    task = get_task(name)
    expect_ok_or_error(lambda: task.load_items(p), str(p))


@fuzz()
@given(st.data(), st.sampled_from(["gsm8k", "arc", "mmlu", "bbh", "math", "humaneval"]), FILE_LAYOUT)
def test_task_data_bytes(data, name, layout):
    recs = [{"question": "1+1?", "answer": "#### 2", "choices": {"text": ["a", "b"], "label": ["A", "B"]},
             "answerKey": "A", "input": "x", "target": "y", "problem": "p", "solution": "\\boxed{2}",
             "prompt": "def f():\n", "test": "def check(c): pass", "entry_point": "f"}]  # fmt: skip
    p = _file(data.draw(mutated(_task_file(recs, layout))), "data.jsonl")
    expect_ok_or_error(lambda: get_task(name).load_items(p), str(p))
    expect_ok_or_error(lambda: read_records(p), str(p))


# -- response files ----------------------------------------------------------------------------------------

GSM_DOC = {"question": "What is 1+1?", "answer": "1+1=2\n#### 2"}


def _lm_eval_line(doc, resp, doc_id):
    return {"doc_id": doc_id, "doc": doc, "target": "2", "arguments": {"gen_args_0": {"arg_0": "Q", "arg_1": {}}},
            "resps": [[resp]], "filtered_resps": [resp], "filter": "none", "exact_match": 1.0}  # fmt: skip


@fuzz()
@given(
    st.lists(st.tuples(st.one_of(st.just(GSM_DOC), TASK_RECORD), TEXT, JSON_VALUES), min_size=1, max_size=3),
    st.data(),
    st.booleans(),
)
def test_lm_eval_log_samples(lines, data, corrupt):
    body = ("\n".join(dumps(_lm_eval_line(d, r, i)) for d, r, i in lines) + "\n").encode(
        "utf-8", "surrogatepass"
    )
    if corrupt:
        body = data.draw(mutated(body))
    p = _file(body, "samples_gsm8k.jsonl")
    expect_ok_or_error(lambda: import_lm_eval_samples(p, "gsm8k"), str(p))
    expect_ok_or_error(lambda: detect_format(p), str(p))


@fuzz()
@given(
    st.lists(st.fixed_dictionaries({"response": JSON_VALUES}, optional={"question_input": JSON_VALUES,
             "sys_input": JSON_VALUES, "question": TEXT, "answer": TEXT}), min_size=1, max_size=3),
    st.data(),
    st.booleans(),
)  # fmt: skip
def test_paper_response_files(recs, data, corrupt):
    body = ("\n".join(dumps(dict(GSM_DOC, **r)) for r in recs) + "\n").encode("utf-8", "surrogatepass")
    if corrupt:
        body = data.draw(mutated(body))
    p = _file(body, "gsm8k_responses.jsonl")
    expect_ok_or_error(lambda: import_paper_responses(p, "gsm8k"), str(p))
