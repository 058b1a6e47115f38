"""Regression tests for reader defects of issue 19 (each failed before its fix)."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

import saemui
from saemui import SaemuiError, open_suite, read_samples
from saemui.testing import save_synthetic_sae

HOOK = "blocks.0.hook_resid_post"


def _one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_sae_cfg_not_json_is_one_line_error(tmp_path):
    d = save_synthetic_sae(tmp_path / "sae", 16, 8, HOOK)
    (d / "cfg.json").write_text('{"d_in": 16, "metadata": {')
    with pytest.raises(SaemuiError) as e:
        open_suite(d)
    assert "cfg.json" in _one_line(e) and "malformed JSON" in str(e.value)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("encoder_only", [False, True])
def test_sae_non_finite_weights_refused_at_load(tmp_path, bad, encoder_only):
    d = save_synthetic_sae(tmp_path / "sae", 16, 8, HOOK)
    w = d / "sae_weights.safetensors"
    state = load_file(w)
    state["W_enc"][3, 2] = bad
    save_file(state, w)
    entry = open_suite(d).entries[0]
    with pytest.raises(SaemuiError) as e:
        entry.load("cpu", "float32", encoder_only)
    msg = _one_line(e)
    assert "'W_enc'" in msg and "sae_weights.safetensors" in msg and "non-finite" in msg


def test_sae_finite_weights_still_load(tmp_path):
    d = save_synthetic_sae(tmp_path / "sae", 16, 8, HOOK)
    sae = open_suite(d).entries[0].load("cpu", "float32", False)
    assert torch.isfinite(sae.W_enc).all()


REC = {"prompt": "Q?", "response": "A."}


def test_records_jsonl_with_bom(tmp_path):
    p = tmp_path / "s.jsonl"
    p.write_bytes(b"\xef\xbb\xbf" + (json.dumps(REC) + "\r\n").encode() * 2 + b"\r\n")
    got = read_samples(p)
    assert [(s.prompt, s.response, s.id) for s in got] == [("Q?", "A.", "0"), ("Q?", "A.", "1")]


def test_records_line_separator_inside_string(tmp_path):
    # U+2028 and U+0085 are legal raw inside JSON strings; str.splitlines() cut such a record in two.
    rec = {"prompt": "a\u2028b\x85c", "response": "d\u2029e"}
    p = tmp_path / "s.jsonl"
    p.write_text(json.dumps(rec, ensure_ascii=False) + "\n", encoding="utf-8")
    (s,) = read_samples(p)
    assert (s.prompt, s.response) == (rec["prompt"], rec["response"])


def test_task_data_and_response_files_with_bom(tmp_path):
    from saemui.tasks.responses import import_paper_responses
    from saemui.tasks.sources import read_records

    recs = [{"question": "1+1?", "answer": "#### 2", "response": "The answer is 2."}]
    p = tmp_path / "g.jsonl"
    p.write_bytes(b"\xef\xbb\xbf" + "\n".join(json.dumps(r) for r in recs).encode() + b"\n")
    assert read_records(p) == recs
    (s,) = import_paper_responses(p, "gsm8k")
    assert s.correct is True


def test_duplicate_id_error_names_the_file(tmp_path):
    p = tmp_path / "s.jsonl"
    p.write_text((json.dumps(dict(REC, id="x")) + "\n") * 2)
    with pytest.raises(SaemuiError, match="s.jsonl: record 1: duplicate id"):
        saemui.read_samples(p)


@pytest.mark.parametrize(
    "line, fragment",
    [
        ("[" * 100_000 + "]" * 100_000, "malformed JSON"),
        ('{"prompt": "a", "response": "b", "n": ' + "9" * 5000 + "}", "more than 4300 digits"),
        ('{"prompt": "a", "response": "b", "meta": [1, 2]}', "field 'meta' must be a JSON object"),
        ('{"prompt": "\\ud800", "response": "b"}', "unpaired surrogate"),
    ],
)
def test_records_odd_json_is_one_line_error(tmp_path, line, fragment):
    p = tmp_path / "s.jsonl"
    p.write_text(line + "\n")
    with pytest.raises(SaemuiError, match=fragment) as e:
        read_samples(p)
    assert "s.jsonl" in _one_line(e)


def test_lm_eval_doc_id_of_non_ascii_digits(tmp_path):
    from saemui.tasks.responses import import_lm_eval_samples

    rec = {
        "doc_id": "²",
        "doc": {"question": "1+1?", "answer": "#### 2"},
        "arguments": [["Q"]],
        "resps": [["2"]],
    }
    p = tmp_path / "samples.jsonl"
    p.write_text(json.dumps(rec) + "\n")
    (s,) = import_lm_eval_samples(p, "gsm8k")
    assert s.id == "²"


def test_manifest_file_names_stay_inside_the_sae(tmp_path):
    d = save_synthetic_sae(tmp_path / "b" / "layer_00", 16, 8, "blocks.0.hook_resid_post")
    man = {"format": "saemui-sae-bundle/1", "saes": [{"layer": 0, "hook_name": "blocks.0.hook_resid_post",
           "path": "layer_00", "files": {"../../../etc/passwd": "0"}}]}  # fmt: skip
    (d.parent / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(SaemuiError, match="points outside its SAE directory"):
        open_suite(d.parent)


def test_read_json_schema_check(tmp_path):
    from saemui.readers import read_json

    p = tmp_path / "r.json"
    p.write_text('{"schema": "other/1", "x": 1}')
    assert read_json(p, dict, "zoo record", schema="other/1") == {"schema": "other/1", "x": 1}
    with pytest.raises(SaemuiError) as e:
        read_json(p, dict, "zoo record", schema="mine/2", kind="v2 zoo record")
    assert str(e.value) == f"{p}: not a v2 zoo record (schema 'other/1', expected mine/2)"
    with pytest.raises(SaemuiError, match=r"not a zoo record \(schema 'other/1'"):
        read_json(p, dict, "zoo record", schema="mine/2")
