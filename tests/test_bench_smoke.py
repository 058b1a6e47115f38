"""scripts/bench_mui.py runs end to end (tiny model, synthetic SAEs): the benchmark itself cannot rot.

Only that it runs and that its cross-checks hold is asserted here; speed targets live in the benchmark's JSON,
never in a timed test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from saemui.testing import save_synthetic_sae, save_tiny_model

REPO = Path(__file__).resolve().parents[1]


def test_bench_smoke_main_and_paper_cases(tmp_path):
    model = save_tiny_model(tmp_path / "models", "llama")
    saes = tmp_path / "saes"
    for layer in range(3):
        save_synthetic_sae(saes / f"l{layer}", 64, 128, f"blocks.{layer}.hook_resid_post", seed=layer)
    from saemui.records import Sample, write_samples

    text = tmp_path / "samples.jsonl"
    write_samples(
        text,
        [Sample(f"What is {i} + {i}?", f"The sum of {i} and {i} is {2 * i}.", id=str(i)) for i in range(8)],
    )
    out = tmp_path / "bench.json"
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO))
    cmd = [sys.executable, str(REPO / "scripts" / "bench_mui.py"), "--smoke", "--cases", "main,paper"]
    cmd += [
        "--model",
        str(model),
        "--saes",
        str(saes),
        "--out",
        str(out),
        "--threads",
        "1",
        "--samples",
        str(text),
    ]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]
    res = json.loads(out.read_text())
    assert res["log"] == []
    s = res["summary"]
    assert s["ratio_2_over_1_cpu"] > 0
    paper = res["cases"]["paper"]
    # the paper re-implementation and saemui must agree on the union of the same samples
    assert paper["same_union_as_saemui"] is True and s["paper_same_union_as_saemui"] is True
    assert 0 < s["sets_over_paper_json"] < 1
    assert "2/1 CPU" in p.stdout
