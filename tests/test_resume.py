"""Crash safety: kill -9 a real `saemui run` at random points, re-run the same command, get identical files."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from saemui import checkpoint
from saemui.engine import RunConfig, compute_mui
from saemui.errors import SaemuiError
from saemui.records import Sample, write_samples
from saemui.testing import save_tiny_model

DETERMINISTIC = ("summary.json", "arrays.npz", "samples.csv")


def _samples(n=48):
    rng = random.Random(0)
    words = "the quick brown fox jumps over lazy dog paris capital france plants absorb carbon".split()
    return [
        Sample(f"Question {i}?", " ".join(rng.choice(words) for _ in range(rng.randint(3, 20))))
        for i in range(n)
    ]


@pytest.fixture(scope="module")
def setup(tiny_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    model = str(save_tiny_model(tiny_dir, "llama"))
    write_samples(root / "s.jsonl", _samples())
    return model, root


def _cmd(model, root, out):
    return [
        sys.executable,
        "-m",
        "saemui.cli",
        "-v",
        "run",
        "--model",
        model,
        "--samples",
        str(root / "s.jsonl"),
        "--neurons",
        "--threshold",
        "topk:2",
        "--batch-tokens",
        "64",
        "--checkpoint-every",
        "1",
        "--quiet",
        "--out",
        str(out),
    ]


def _files(out: Path) -> dict[str, bytes]:
    return {f: (out / f).read_bytes() for f in DETERMINISTIC}


def _kill_and_resume(model, root, ref, trial):
    rng = random.Random(trial)
    out = root / f"out-{trial}"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(_cmd(model, root, out), stderr=subprocess.PIPE, text=True, env=env)
    target, seen = rng.randint(0, 20), 0
    for line in proc.stderr:
        if "checkpoint:" in line:
            seen += 1
            if seen >= target:
                time.sleep(rng.random() * 0.05)  # land anywhere, including inside the next checkpoint write
                break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "summary.json").exists() or proc.returncode == 0
    done = subprocess.run(_cmd(model, root, out), capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert _files(out) == ref, f"trial {trial}: resumed result differs"
    assert not checkpoint.checkpoint_dir_for(out).exists()


@pytest.fixture(scope="module")
def reference(setup):
    # The uninterrupted run, in-process through the same command (its summary carries the CLI's provenance:
    # input path and sha256, run key).
    from saemui.cli import main

    model, root = setup
    assert main(_cmd(model, root, root / "ref")[3:]) == 0
    return _files(root / "ref")


def test_kill_and_resume_quick(setup, reference):
    _kill_and_resume(*setup, reference, 0)


@pytest.mark.slow
def test_kill_and_resume_20_trials(setup, reference):
    for trial in range(100, 120):
        _kill_and_resume(*setup, reference, trial)


def test_resume_in_process_identical_and_grouped(tiny_llama, tmp_path):
    samples = _samples(12)
    cfg = RunConfig(units="neurons", threshold="topk:2", max_batch_tokens=64)
    ref = compute_mui(tiny_llama, samples, cfg, progress=False)

    class Crash(Exception):
        pass

    calls = {"n": 0}
    real_save = checkpoint.save

    def save_then_crash(d, state):
        real_save(d, state)
        calls["n"] += 1
        if calls["n"] == 3:
            raise Crash

    ck = tmp_path / "ck"
    checkpoint.save = save_then_crash
    try:
        with pytest.raises(Crash):
            compute_mui(tiny_llama, samples, cfg, progress=False, checkpoint_dir=ck, checkpoint_every=1)
    finally:
        checkpoint.save = real_save
    state = torch.load(ck / checkpoint.CKPT_NAME, weights_only=True)
    assert state["next"] == [0, 3]
    resumed = compute_mui(tiny_llama, samples, cfg, progress=False, checkpoint_dir=ck, checkpoint_every=1)
    for k in ref.arrays:
        assert (ref.arrays[k] == resumed.arrays[k]).all(), k
    assert json.dumps(ref.summary, sort_keys=True) == json.dumps(resumed.summary, sort_keys=True)


def test_resume_with_different_settings_refused(tiny_llama, tmp_path):
    samples = _samples(6)
    ck = tmp_path / "ck"
    cfg = RunConfig(units="neurons", threshold="topk:2", max_batch_tokens=64)
    fp = checkpoint.fingerprint({"x": 1})
    checkpoint.save(ck, {"fingerprint": fp, "next": [0, 1]})
    with pytest.raises(SaemuiError, match="different"):
        compute_mui(tiny_llama, samples, cfg, progress=False, checkpoint_dir=ck)
    # A checkpoint made with another threshold names the threshold.
    from saemui.engine import _fingerprint_components
    from saemui.records import assign_ids

    other = RunConfig(units="neurons", threshold="topk:3", max_batch_tokens=64).resolved()
    with_ids = assign_ids([Sample(x.prompt, x.response) for x in samples])
    checkpoint.save(
        ck,
        {
            "fingerprint": checkpoint.fingerprint(_fingerprint_components(tiny_llama, with_ids, other, None)),
            "next": [0, 1],
        },
    )
    with pytest.raises(SaemuiError, match="different threshold"):
        compute_mui(tiny_llama, samples, cfg, progress=False, checkpoint_dir=ck)


def test_deterministic_across_runs_and_batch_sizes(tiny_llama, tmp_path):
    samples = _samples(10)
    outs = []
    for i, bt in enumerate((64, 64, 4096)):
        r = compute_mui(
            tiny_llama,
            samples,
            RunConfig(units="neurons", threshold="topk:2", max_batch_tokens=bt),
            progress=False,
        )
        r.save(tmp_path / f"r{i}")
        outs.append(tmp_path / f"r{i}")
    assert _files(outs[0]) == _files(outs[1])
    for f in ("arrays.npz", "samples.csv"):
        assert (outs[0] / f).read_bytes() == (outs[2] / f).read_bytes()
    a, c = (json.loads((o / "summary.json").read_text()) for o in (outs[0], outs[2]))
    a["config"].pop("max_batch_tokens"), c["config"].pop("max_batch_tokens")
    assert a == c
