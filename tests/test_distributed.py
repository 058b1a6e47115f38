"""Data parallelism: 2 gloo processes (torchrun) write exactly the single-process result, SAE health included."""

from __future__ import annotations

import json
import math
import os
import random
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from saemui.distributed import counter_from_result, shard_batches, shard_samples
from saemui.engine import RunConfig, compute_mui
from saemui.health import ExactSum, HealthAccumulator, health_rows
from saemui.inputs import encode_samples, plan_batches
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


def _many_samples() -> list[Sample]:
    """40 samples from a few to ~200 tokens: several batches under the default 4096-token budget."""
    out = []
    for i in range(40):
        base = SAMPLES[i % len(SAMPLES)]
        out.append(
            Sample(f"{base.prompt} ({i})", " ".join([base.response] * (1 + i % 9)), correct=base.correct)
        )
    return out


def test_shard_batches_gives_each_rank_whole_batches_of_the_single_plan(tiny_llama):
    cfg = RunConfig(units="neurons", max_batch_size=3).resolved()
    samples = _many_samples()
    enc = encode_samples(tiny_llama.tokenizer, samples, cfg.alignment, cfg.prompt_format, cfg.max_length)
    plan = [sorted(b) for b in plan_batches(enc, cfg.max_batch_tokens, cfg.max_batch_size)]
    parts = [shard_batches(tiny_llama, samples, cfg, r, 3) for r in range(3)]
    assert sorted(i for idx, _ in parts for i in idx) == list(range(len(samples)))
    for idx, shard in parts:
        assert idx == sorted(idx) and [s.id for s in shard] == [str(i) for i in idx]
        sub = encode_samples(tiny_llama.tokenizer, shard, cfg.alignment, cfg.prompt_format, cfg.max_length)
        local = plan_batches(sub, cfg.max_batch_tokens, cfg.max_batch_size)
        # what the engine will run on this rank, in global positions: batches of the single-process plan
        assert all(sorted(idx[j] for j in b) in plan for b in local)
    assert all(idx for idx, _ in parts)  # 14 batches over 3 ranks: nobody idle
    # one batch, two ranks: the second is idle
    assert shard_batches(tiny_llama, SAMPLES, RunConfig(units="neurons"), 1, 2) == ([], [])


def test_exact_sums_are_order_independent_and_correctly_rounded():
    rng = random.Random(0)
    rows = [[rng.uniform(-1, 1) * 10.0 ** rng.randint(-8, 8) for _ in range(4)] for _ in range(60)]
    rows.append([5e-324, -5e-324, 1e300, -1e-310])  # subnormals and extremes
    one = ExactSum(4)
    for r in rows:
        one.add(torch.tensor(r, dtype=torch.float64))
    order = list(range(len(rows)))
    rng.shuffle(order)
    parts = [ExactSum(4) for _ in range(3)]
    for j, i in enumerate(order):
        parts[j % 3].add(torch.tensor(rows[i], dtype=torch.float64))
    parts[2].merge(parts[0])
    parts[2].merge(parts[1])
    exact = [math.fsum(r[c] for r in rows) for c in range(4)]
    assert one.values() == exact == parts[2].values()
    # the naive running float sum is not exact here: the test can tell the two apart
    assert [sum(r[c] for r in rows) for c in range(4)] != exact


def test_health_of_shards_merges_to_the_single_process_figures(tiny_llama, sae_suite):
    """In one process: compute_mui per shard of whole batches, merge the health sums, compare with one run."""
    cfg = RunConfig(saes=str(sae_suite), max_batch_size=3, encode_chunk=5)
    samples = _many_samples()
    single = compute_mui(tiny_llama, samples, cfg, progress=False)
    merged: dict = {}
    for r in range(3):
        idx, shard = shard_batches(tiny_llama, samples, cfg, r, 3)
        part = compute_mui(tiny_llama, shard, cfg, progress=False)
        for layer, h in part.health_sums.items():
            # through state(), as the sums travel between processes and checkpoints
            merged.setdefault(layer, HealthAccumulator()).merge(HealthAccumulator(**h.state()))
    a = single.arrays
    rows = health_rows(single.layers, a["fire_LU"], a["n_tokens_L"], merged)
    assert json.dumps(rows) == json.dumps(single.summary["sae_health"])


@pytest.mark.parametrize("crash_at", [2, 5])
def test_health_sums_survive_a_checkpoint_and_resume(tiny_llama, sae_suite, tmp_path, crash_at):
    """The exact sums go through torch.save / weights_only load: inside the first SAE group (2), inside the second
    with the first finished (5)."""
    from saemui import checkpoint

    cfg = RunConfig(saes=str(sae_suite), sae_group_size=1, max_batch_size=3, encode_chunk=5)
    samples = _many_samples()[:12]
    ref = compute_mui(tiny_llama, samples, cfg, progress=False)

    class Crash(Exception):
        pass

    calls = {"n": 0}
    real_save = checkpoint.save

    def save_then_crash(d, state):
        real_save(d, state)
        calls["n"] += 1
        if calls["n"] == crash_at:
            raise Crash

    ck = tmp_path / "ck"
    checkpoint.save = save_then_crash
    try:
        with pytest.raises(Crash):
            compute_mui(tiny_llama, samples, cfg, progress=False, checkpoint_dir=ck, checkpoint_every=1)
    finally:
        checkpoint.save = real_save
    resumed = compute_mui(tiny_llama, samples, cfg, progress=False, checkpoint_dir=ck, checkpoint_every=1)
    assert json.dumps(resumed.summary["sae_health"]) == json.dumps(ref.summary["sae_health"])


def _run_script(model_dir: Path, samples_file: Path, saes: Path, out: Path, nproc: int) -> None:
    """``scripts/mui_distributed.py`` under torchrun with ``nproc`` ranks, or as a plain process when 1."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", MASTER_ADDR="127.0.0.1")
    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        env.pop(k, None)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    launcher = [sys.executable]
    if nproc > 1:
        launcher += ["-m", "torch.distributed.run", "--nproc_per_node", str(nproc)]
        launcher += ["--master_addr", "127.0.0.1", "--master_port", str(_free_port())]
    cmd = [
        *launcher,
        str(REPO / "scripts" / "mui_distributed.py"),
        "--model",
        str(model_dir),
        "--samples",
        str(samples_file),
        "--saes",
        str(saes),
        "--threads",
        "1",
        "--out",
        str(out),
    ]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]


def test_two_gloo_ranks_equal_one_process_with_an_idle_rank(tiny_dir, tiny_llama, sae_suite, tmp_path):
    """Seven short samples make one batch: rank 1 has nothing to measure and still joins the merge."""
    model_dir = save_tiny_model(tiny_dir, "llama")
    samples_file = tmp_path / "s.jsonl"
    write_samples(samples_file, SAMPLES)
    single = compute_mui(tiny_llama, SAMPLES, RunConfig(saes=str(sae_suite)), progress=False)

    out = tmp_path / "merged"
    _run_script(model_dir, samples_file, sae_suite, out, 2)
    merged = load_result(out)

    # how the run was split is provenance, like timing: run.json, so summary.json equals a single run's
    assert merged.run_info["distributed"]["world_size"] == 2
    assert "distributed" not in merged.summary
    assert "timing" not in merged.summary
    assert [t["n_samples"] for t in merged.run_info["timing"]["per_rank"]] == [7, 0]
    assert merged.mui == single.mui
    for k in ("union_LU", "fire_LU", "keyfreq_LU", "n_tokens_L", "set_indptr", "set_units"):
        assert np.array_equal(merged.arrays[k], single.arrays[k]), k
    assert merged.summary["n_samples"] == len(SAMPLES)
    assert merged.summary["mui_correct"] == single.summary["mui_correct"]
    assert [r["id"] for r in merged.samples] == [r["id"] for r in single.samples]
    assert merged.summary["sae_health"] == single.summary["sae_health"]


def test_two_gloo_ranks_write_the_single_process_files_byte_for_byte(tiny_dir, sae_suite, tmp_path):
    """SAE health included: the ranks' exact health sums merge to the single run's figures, bit for bit.

    Forty samples of varied lengths make several batches, split between the two ranks.
    """
    model_dir = save_tiny_model(tiny_dir, "llama")
    samples_file = tmp_path / "s.jsonl"
    write_samples(samples_file, _many_samples())
    _run_script(model_dir, samples_file, sae_suite, tmp_path / "one", 1)
    _run_script(model_dir, samples_file, sae_suite, tmp_path / "two", 2)

    one = json.loads((tmp_path / "one" / "summary.json").read_text())
    assert one["n_samples"] == 40 and len(one["sae_health"]) == 3
    assert all(h["explained_variance"] is not None for h in one["sae_health"])
    per_rank = json.loads((tmp_path / "two" / "run.json").read_text())["timing"]["per_rank"]
    assert all(t["n_samples"] > 0 for t in per_rank)
    for name in ("summary.json", "arrays.npz", "samples.csv"):
        a = (tmp_path / "one" / name).read_bytes()
        b = (tmp_path / "two" / name).read_bytes()
        assert a == b, f"{name} differs between 1 and 2 processes"
