"""Data parallelism: 2 gloo processes (torchrun) give exactly the single-process MUI, union and sets."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from saemui.distributed import counter_from_result, shard_samples
from saemui.engine import RunConfig, compute_mui
from saemui.records import Sample, write_samples
from saemui.result import load_result
from saemui.testing import save_synthetic_sae, save_tiny_model

REPO = Path(__file__).resolve().parents[1]

SAMPLES = [
    Sample("What is 2 + 3?", "The answer is 5.", correct=True),
    Sample("Name a capital.", "Paris is the capital of France.", correct=True),
    Sample("Write code.", "def square(x):\n    return x * x", correct=False),
    Sample("Say something.", "Soft rain on the roof, whispers of the grey morning."),
    Sample("Count.", "1 2 3 4 5 6 7 8 9 10 11 12", correct=False),
    Sample("Biology?", "Plants absorb carbon dioxide and release oxygen.", correct=True),
    Sample("Fox?", "The quick brown fox jumps over the lazy dog."),
]


@pytest.fixture(scope="module")
def sae_suite(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("dist-saes")
    for layer in range(3):
        save_synthetic_sae(root / f"l{layer}", 64, 128, f"blocks.{layer}.hook_resid_post", seed=layer)
    return root


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_shard_samples_is_a_disjoint_cover_with_global_ids():
    parts = [shard_samples(SAMPLES, r, 3) for r in range(3)]
    index = sorted(i for idx, _ in parts for i in idx)
    assert index == list(range(len(SAMPLES)))
    ids = [s.id for _, part in parts for s in part]
    assert sorted(ids, key=int) == [str(i) for i in range(len(SAMPLES))]
    assert SAMPLES[0].id is None  # the caller's records are not modified
    with pytest.raises(Exception, match="invalid"):
        shard_samples(SAMPLES, 2, 2)


def test_counter_from_result_roundtrip(tiny_llama, sae_suite):
    res = compute_mui(tiny_llama, SAMPLES, RunConfig(saes=str(sae_suite)), progress=False)
    c = counter_from_result(res)
    assert c.mui() == res.mui
    ip, units = c.sets_csr(len(SAMPLES))
    assert np.array_equal(ip, res.arrays["set_indptr"]) and np.array_equal(units, res.arrays["set_units"])


def test_two_gloo_ranks_equal_one_process(tiny_dir, tiny_llama, sae_suite, tmp_path):
    model_dir = save_tiny_model(tiny_dir, "llama")
    samples_file = tmp_path / "s.jsonl"
    write_samples(samples_file, SAMPLES)
    single = compute_mui(tiny_llama, SAMPLES, RunConfig(saes=str(sae_suite)), progress=False)

    out = tmp_path / "merged"
    env = dict(os.environ, HF_HUB_OFFLINE="1", MASTER_ADDR="127.0.0.1")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(_free_port()),
        str(REPO / "scripts" / "mui_distributed.py"),
        "--model",
        str(model_dir),
        "--samples",
        str(samples_file),
        "--saes",
        str(sae_suite),
        "--threads",
        "1",
        "--out",
        str(out),
    ]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    merged = load_result(out)

    assert merged.summary["distributed"]["world_size"] == 2
    # wall-clock per rank goes to run.json; the summary stays deterministic
    assert "timing" not in merged.summary
    assert [t["n_samples"] for t in merged.run_info["timing"]["per_rank"]] == [4, 3]
    assert merged.mui == single.mui
    for k in ("union_LU", "fire_LU", "keyfreq_LU", "n_tokens_L", "set_indptr", "set_units"):
        assert np.array_equal(merged.arrays[k], single.arrays[k]), k
    assert merged.summary["n_samples"] == len(SAMPLES)
    assert merged.summary["mui_correct"] == single.summary["mui_correct"]
    assert [r["id"] for r in merged.samples] == [r["id"] for r in single.samples]
    for a, b in zip(merged.summary["sae_health"], single.summary["sae_health"]):
        assert a["l0"] == pytest.approx(b["l0"])
        assert a["dead_fraction"] == b["dead_fraction"]
