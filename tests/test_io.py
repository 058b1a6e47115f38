"""Records, result files and atomic writes: clear errors, round trips, nothing half-written."""

import json
import os

import numpy as np
import pytest

from saemui.engine import RunConfig, compute_mui
from saemui.errors import SaemuiError
from saemui.records import Sample, read_samples, write_samples
from saemui.result import load_result


@pytest.mark.parametrize(
    "content,match",
    [
        (b'{"prompt": "a", "response": "b"}\n{"prompt": "a"\n', r":2: malformed JSON"),
        (b'{"prompt": "a", "response": "b"}\n{"prompt": "a"}\n', r":2: missing field 'response'"),
        (b'{"prompt": 3, "response": "b"}\n', r":1: field 'prompt' must be a string"),
        (b'{"prompt": "a", "response": "b", "correct": "yes"}\n', r"'correct' must be true, false or null"),
        (b'["prompt"]\n', r":1: expected a JSON object"),
        (b"\n\n", r"no records"),
        (b'{"prompt": "caf\xe9", "response": "b"}\n', r":1: not valid UTF-8"),
        (
            b'{"prompt": "a", "response": "b", "id": 1}\n{"prompt": "a", "response": "b", "id": 1}\n',
            r"duplicate id",
        ),
    ],
)
def test_bad_jsonl_is_one_line_error(tmp_path, content, match):
    f = tmp_path / "in.jsonl"
    f.write_bytes(content)
    with pytest.raises(SaemuiError, match=match) as e:
        read_samples(f)
    assert "\n" not in str(e.value)


def test_records_roundtrip(tmp_path):
    s = [Sample("p", "r", id="a", correct=True, meta={"x": 1}), Sample("q", "s")]
    write_samples(tmp_path / "o.jsonl", s)
    back = read_samples(tmp_path / "o.jsonl")
    assert back[0] == s[0] and back[1].id == "1" and back[0].meta == {"x": 1}


def test_result_roundtrip_and_subset(tiny_llama, tmp_path):
    samples = [
        Sample("Hi", "Paris is nice.", correct=True),
        Sample("Code", "def f(x): return x", correct=False),
    ]
    res = compute_mui(tiny_llama, samples, RunConfig(units="neurons", threshold="topk:2"), progress=False)
    res.save(tmp_path / "r")
    back = load_result(tmp_path / "r")
    assert back.mui == res.mui and back.per_layer == res.per_layer
    for k, v in res.arrays.items():
        assert np.array_equal(back.arrays[k], v), k
    assert back.samples[0]["correct"] is True and back.samples[1]["correct"] is False
    assert back.subset_mui([0]) == res.summary["mui_correct"]
    assert back.subset_mui([0, 1]) == back.mui
    s = json.loads((tmp_path / "r/summary.json").read_text())
    for key in (
        "schema_version",
        "config",
        "versions",
        "dtypes",
        "model",
        "units",
        "mui",
        "per_layer",
        "n_samples",
        "n_tokens",
    ):
        assert key in s, key
    assert back.run_info["machine"]["cpu_count"] and "created" in back.run_info
    assert s["versions"]["torch"] and s["dtypes"]["scores"] == "float32"
    res.save(tmp_path / "r")  # overwriting an existing result works and leaves no temp dirs
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == [
        "arrays.npz",
        "run.json",
        "samples.csv",
        "summary.json",
    ]


def test_failed_save_leaves_nothing_complete(tiny_llama, tmp_path, monkeypatch):
    res = compute_mui(tiny_llama, [Sample("Hi", "Paris.")], RunConfig(units="neurons"), progress=False)
    import saemui.result as rmod

    def boom(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(rmod, "npz_bytes", boom)
    with pytest.raises(SaemuiError, match="No space left"):
        res.save(tmp_path / "r")
    assert not (tmp_path / "r").exists() and list(tmp_path.iterdir()) == []


def test_incomplete_result_refused(tmp_path):
    (tmp_path / "r").mkdir()
    (tmp_path / "r/summary.json").write_text(json.dumps({"schema_version": 1, "mui": 0.1}))
    with pytest.raises(SaemuiError, match="not marked complete"):
        load_result(tmp_path / "r")
    with pytest.raises(SaemuiError, match="no summary.json"):
        load_result(tmp_path / "nothing")


def test_written_files_get_normal_permissions(tmp_path):
    import os
    import stat

    from saemui.io import atomic_write_text

    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
        assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o644
    finally:
        os.umask(old)


def test_compact_json_roundtrips_and_keeps_scalar_lists_on_one_line():
    import json

    from saemui.io import compact_json

    obj = {
        "a": [1, 2, 3],
        "nested": {"sets": [[4, 5], [], [6]], "empty": {}, "none": None, "s": 'é"x'},
        "rows": [{"k": 1.5, "flags": [True, False]}],
        "t": [],
    }
    text = compact_json(obj)
    assert json.loads(text) == obj
    assert '"a": [1, 2, 3]' in text and "[4, 5]" in text and '"flags": [true, false]' in text
    assert text.count("\n") < json.dumps(obj, indent=2).count("\n")


def test_machine_summary_is_read_off_the_machine(monkeypatch):
    """Cards and result files name the machine they ran on: core count and CPU from the OS, GPU or not."""
    import os

    import torch

    from saemui import provenance

    monkeypatch.setattr(provenance, "cpu_model", lambda: "Test CPU 9000")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert provenance.machine_summary() == f"{os.cpu_count()}-core Test CPU 9000, no GPU"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i: "Fake GPU")
    assert provenance.machine_summary().endswith(", GPU Fake GPU")
    assert provenance.machine_info()["cpu"] == "Test CPU 9000"


def test_claim_is_exclusive_released_and_taken_over_from_a_dead_process(tmp_path):
    import subprocess
    import sys

    from saemui.io import claim, pid_alive, release

    lock = tmp_path / "locks" / "unit"
    assert claim(lock) and lock.read_text() == str(os.getpid())
    assert not claim(lock)  # held by a live process (this one)
    release(lock)
    assert not lock.exists() and claim(lock)
    release(lock)
    # held by another live process: not taken, and release() by a non-holder leaves it
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        lock.write_text(str(other.pid))
        assert pid_alive(other.pid) and not claim(lock)
        release(lock)
        assert lock.read_text() == str(other.pid)
    finally:
        other.kill()
        other.wait()
    # its process is gone (killed, or the machine restarted): the next claim takes it over
    assert not pid_alive(other.pid) and claim(lock) and lock.read_text() == str(os.getpid())
