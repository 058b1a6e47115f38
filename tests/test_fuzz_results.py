"""Fuzz: result directories (``load_result``), checkpoints, ``contexts.npz``, zoo records and items files, and
GGUF headers. See tests/fuzz_support.py for the property. A result that loads must also be usable: its MUI,
per-layer values and per-sample subsets compute without error."""

from __future__ import annotations

import io
import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from fuzz_support import JSON_VALUES, dumps, expect_ok_or_error, fuzz, mutated
from hypothesis import given
from hypothesis import strategies as st

from saemui import MUIResult, load_result

# -- result directories --------------------------------------------------------------------------------------


def _valid_result() -> Path:
    sets = [[0, 2], [1], [], [3, 0]]  # 2 samples × 2 layers
    ip = np.concatenate([[0], np.cumsum([len(s) for s in sets])]).astype(np.int64)
    arrays = {
        "union_LU": np.array([[1, 0, 1, 0], [1, 1, 0, 1]], bool),
        "set_indptr": ip,
        "set_units": np.array([u for s in sets for u in s], np.int32),
        "n_tokens_L": np.array([5, 5], np.int64),
    }
    summary = {"schema_version": 1, "mui": 0.625, "per_layer": [0.5, 0.75], "layers": [0, 1],
               "units": {"n_units": 4, "kind": "neurons"}, "config": {"threshold": "topk:2"}}  # fmt: skip
    rows = [
        {"index": i, "id": f"s{i}", "correct": c, "n_response_tokens": 3, "n_scored": 3, "truncated": 0}
        for i, c in enumerate([True, None])
    ]
    out = Path(tempfile.mkdtemp(prefix="saemui-fuzz-res-")) / "run"
    MUIResult(summary, arrays, rows, {"created": "x"}).save(out)
    return out


def _use(res: MUIResult) -> None:
    assert 0 <= len(res.layers) == len(res.per_layer)
    float(res.mui), res.n_units
    if "set_indptr" in res.arrays and res.arrays["set_indptr"].size:
        n = len(res.samples)
        res.subset_mui(list(range(n)))
        for i in range(n):
            res.sample_sets(i)


def _load_and_use(p: Path) -> None:
    _use(load_result(p))


def test_valid_result_loads_exactly():
    p = _valid_result()
    res = load_result(p)
    assert res.mui == 0.625 and res.layers == [0, 1] and res.samples[0]["correct"] is True
    assert [list(x) for x in res.sample_sets(1)] == [[], [3, 0]]


@fuzz()
@given(st.data(), st.sampled_from(["summary.json", "arrays.npz", "samples.csv", "run.json"]))
def test_result_file_bytes(data, fname):
    p = _valid_result()
    f = p / fname
    f.write_bytes(data.draw(mutated(f.read_bytes())))
    expect_ok_or_error(lambda: _load_and_use(p), str(p))


SUMMARY_KEYS = ["schema_version", "complete", "mui", "per_layer", "layers", "units", "units.n_units"]


@fuzz()
@given(st.sampled_from(SUMMARY_KEYS), JSON_VALUES | st.sampled_from([[0], [0, 1, 2], -1, 10**6, 1e400]),
       st.booleans())  # fmt: skip
def test_result_summary_fields(key, value, delete):
    p = _valid_result()
    s = json.loads((p / "summary.json").read_text())
    obj, k = (s["units"], "n_units") if key == "units.n_units" else (s, key)
    if delete:
        obj.pop(k, None)
    else:
        obj[k] = value
    (p / "summary.json").write_text(dumps(s).replace("Infinity", "1e400"))
    expect_ok_or_error(lambda: _load_and_use(p), str(p))


ARRAY_VALUES = st.sampled_from([
    np.zeros(0, np.int64), np.array([0, 1, 2, 3, 4, 5], np.int64), np.array([5, 0, 0, 0, 0, 5], np.int64),
    np.array([0, 1, 1, 1, 1, 9], np.int64), np.array([0.5, 1.0]), np.array([[1, 2]], np.int64),
    np.array([-1, 99, 3], np.int32), np.array(["a", "b"]), np.array([True]), np.zeros((2, 4), np.float16),
])  # fmt: skip


@fuzz()
@given(st.sampled_from(["union_LU", "set_indptr", "set_units", "n_tokens_L", "extra"]), ARRAY_VALUES,
       st.booleans())  # fmt: skip
def test_result_arrays(name, value, delete):
    from saemui.result import npz_bytes

    p = _valid_result()
    with np.load(p / "arrays.npz") as z:
        a = {k: z[k] for k in z.files}
    if delete:
        a.pop(name, None)
    else:
        a[name] = value
    (p / "arrays.npz").write_bytes(npz_bytes(a))
    expect_ok_or_error(lambda: _load_and_use(p), str(p))


@fuzz()
@given(st.lists(st.lists(st.sampled_from(["0", "1", "-1", "x", "", "True", "1e3", "\x00", '"', "\r"]),
                         min_size=0, max_size=7), max_size=4), st.booleans())  # fmt: skip
def test_result_samples_csv(rows, keep_header):
    p = _valid_result()
    header = "index,id,correct,n_response_tokens,n_scored,truncated\r\n" if keep_header else ""
    (p / "samples.csv").write_text(header + "".join(",".join(r) + "\r\n" for r in rows))
    expect_ok_or_error(lambda: _load_and_use(p), str(p))


# -- checkpoints ---------------------------------------------------------------------------------------------


@fuzz()
@given(st.data(), st.sampled_from(["bytes", "object"]))
def test_checkpoints(data, kind):
    from saemui import checkpoint

    d = Path(tempfile.mkdtemp(prefix="saemui-fuzz-ckpt-"))
    fp = {"data": "a", "model": "b"}
    checkpoint.save(d, {"fingerprint": fp, "next": [0, 1], "counter": torch.zeros(3)})
    f = d / checkpoint.CKPT_NAME
    if kind == "bytes":
        f.write_bytes(data.draw(mutated(f.read_bytes())))
    else:
        obj = data.draw(st.sampled_from([[1, 2], "x", {"version": 1, "fingerprint": [1]}, {"version": "1"},
                                         {"version": 1, "fingerprint": {"data": 1}}, torch.ones(2)]))  # fmt: skip
        buf = io.BytesIO()
        torch.save(obj, buf)
        f.write_bytes(buf.getvalue())
    out = expect_ok_or_error(lambda: checkpoint.load(d, fp), str(f))
    assert out is None or isinstance(out, dict)


# -- contexts.npz --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def contexts_file(tmp_path_factory) -> Path:
    from test_explore import fake_batches, feed

    from saemui.explore import ContextCollector

    rng = np.random.default_rng(0)
    coll = ContextCollector(3, units={2: [1, 4, 6]})
    feed(coll, list(fake_batches(rng, 4, 9)), layer=2, rng=rng)
    feed(coll, list(fake_batches(rng, 4, 9)), layer=5, rng=rng)
    p = tmp_path_factory.mktemp("ctx") / "contexts.npz"
    coll.save(p)
    return p


def _load_contexts(p: Path) -> None:
    from saemui.explore import ContextCollector

    c = ContextCollector.load(p)
    for layer in c.layers:
        for u in range(c.state[layer].n_units):
            if c.state[layer].row(u) is not None:
                c.top(layer, u)


@fuzz()
@given(st.data())
def test_contexts_bytes(contexts_file, data):
    p = Path(tempfile.mkdtemp(prefix="saemui-fuzz-ctx-")) / "contexts.npz"
    p.write_bytes(data.draw(mutated(contexts_file.read_bytes())))
    expect_ok_or_error(lambda: _load_contexts(p), str(p))


CTX_NAMES = ["meta_json", "layers", "n_units", "tracked_all", "tracked_indptr", "tracked_units", "row_indptr",
             "row_units", "values", "sample", "pos", "hist", "tok_samples", "tok_indptr", "tok_ids", "first_scored",
             "vocab_ids", "vocab_str", "lens_layer", "lens_top_ids"]  # fmt: skip
CTX_VALUES = st.sampled_from([
    np.zeros(0, np.int64), np.array([0, 1, 2], np.int64), np.array([3, 1, 0], np.int64), np.array([-5, 10**9]),
    np.zeros((2, 3), np.float32), np.full((1, 3), np.nan, np.float32), np.array([True, False]),
    np.array("not json"), np.array('{"format": "saemui-contexts/1", "n_contexts": 0}'),
    np.array('{"format": "saemui-contexts/1", "n_contexts": 1e9}'), np.array(["a"]), np.array(2**62),
])  # fmt: skip


@fuzz()
@given(st.sampled_from(CTX_NAMES), CTX_VALUES, st.booleans())
def test_contexts_arrays(contexts_file, name, value, delete):
    with np.load(contexts_file) as z:
        a = {k: z[k] for k in z.files}
    if delete:
        a.pop(name)
    else:
        a[name] = value
    p = Path(tempfile.mkdtemp(prefix="saemui-fuzz-ctx-")) / "contexts.npz"
    np.savez(p, **a)
    expect_ok_or_error(lambda: _load_contexts(p), str(p))


def test_contexts_valid_file_loads(contexts_file):
    _load_contexts(contexts_file)


# -- zoo records and items -----------------------------------------------------------------------------------

ZOO_REC = {"schema": "saemui-zoo-result/1", "model": "m1", "root": "m", "derivation": "base", "parent": None,
           "step": None, "train_steps": None, "task": "arc", "n": 10, "n_correct": 3, "accuracy": 0.3,
           "mui": 0.01, "mui_correct": 0.005, "selection": "topk:0.001", "basis": "neurons", "in_domain": [],
           "contaminated": [], "ids": ["a", "b"], "sets": [[1], [2]], "correct": [1, 0]}  # fmt: skip


def _zoo_dir(rec_bytes: bytes, items: bytes | None = None) -> Path:
    d = Path(tempfile.mkdtemp(prefix="saemui-fuzz-zoo-"))
    (d / "m1__arc.json").write_bytes(rec_bytes)
    if items is not None:
        (d / "items").mkdir()
        (d / "items" / "arc.json").write_bytes(items)
    return d


@fuzz()
@given(st.sampled_from(sorted(ZOO_REC)), JSON_VALUES, st.booleans())
def test_zoo_record_fields(key, value, delete):
    from saemui.analysis.zoo import load_zoo

    rec = dict(ZOO_REC)
    if delete:
        rec.pop(key)
    else:
        rec[key] = value
    d = _zoo_dir(dumps(rec).encode("utf-8", "surrogatepass"))
    df = expect_ok_or_error(lambda: load_zoo(d), str(d))
    assert df is None or len(df) == 1


@fuzz()
@given(st.data())
def test_zoo_files_bytes(data):
    from saemui.analysis.zoo import load_items, load_zoo

    items = json.dumps({"ids": ["a", "b"], "prompts": ["p", "q"], "gold": [1, 2]}).encode()
    d = _zoo_dir(data.draw(mutated(json.dumps(ZOO_REC).encode())), data.draw(mutated(items)))
    expect_ok_or_error(lambda: load_zoo(d), str(d))
    expect_ok_or_error(lambda: load_items("arc", d), str(d))


# -- GGUF headers --------------------------------------------------------------------------------------------


def _gguf(version: int, n_tensors: int, n_kv: int, tail: bytes) -> bytes:
    return (
        b"GGUF"
        + version.to_bytes(4, "little")
        + n_tensors.to_bytes(8, "little")
        + n_kv.to_bytes(8, "little")
        + tail
    )


@fuzz(0.4)
@given(st.sampled_from([1, 2, 3, 4, 2**31]), st.sampled_from([0, 1, 3, 2**40, 2**64 - 1]),
       st.sampled_from([0, 1, 2, 2**33, 2**64 - 1]), st.binary(max_size=64), st.data())  # fmt: skip
def test_gguf_headers(version, n_tensors, n_kv, tail, data):
    from saemui.models import load_model

    p = Path(tempfile.mkdtemp(prefix="saemui-fuzz-gguf-")) / "m.gguf"
    raw = _gguf(version, n_tensors, n_kv, tail)
    if data.draw(st.booleans()):
        raw = data.draw(mutated(raw))
    p.write_bytes(raw)
    expect_ok_or_error(lambda: load_model(str(p), use_cache=False), str(p))
