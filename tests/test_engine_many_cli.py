"""``saemui run --also`` and ``--first-tokens``: several settings from one pass on the command line, each written
as a result identical to the one a separate run with that setting writes."""

from __future__ import annotations

import json

import pytest

from saemui.cli import main
from saemui.cli.args import parse_also
from saemui.errors import SaemuiError
from saemui.result import load_result
from saemui.testing import save_tiny_model


@pytest.fixture(scope="module")
def tiny_path(tiny_dir):
    return str(save_tiny_model(tiny_dir, "llama"))


@pytest.fixture
def samples_file(tmp_path):
    f = tmp_path / "s.jsonl"
    f.write_text(
        '{"prompt": "Hi", "response": "Paris is nice and the capital of France.", "correct": true}\n'
        '{"prompt": "Code", "response": "def f(x): return x", "correct": false}\n'
        '{"prompt": "Yes?", "response": "Yes"}\n'
    )
    return f


def _base(tiny_path, samples_file, out):
    return [
        "run",
        "--model",
        tiny_path,
        "--samples",
        str(samples_file),
        "--neurons",
        "--quiet",
        "--out",
        str(out),
    ]


def _same_files(a, b, drop_also: bool) -> None:
    for f in ("arrays.npz", "samples.csv"):
        assert (a / f).read_bytes() == (b / f).read_bytes(), f
    sa, sb = (json.loads((d / "summary.json").read_text()) for d in (a, b))
    if drop_also:
        assert sa["provenance"].pop("also") == a.name
    assert sa == sb


def test_also_writes_each_setting_like_a_separate_run(tiny_path, samples_file, tmp_path, capsys):
    out = tmp_path / "out"
    args = _base(tiny_path, samples_file, out) + ["--threshold", "topk:0.25"]
    args += ["--also", "gate=neuron_site=gate_act,alignment=response", "--also", "first2=first-tokens=2"]
    args += ["--also", "pos=threshold=positive"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "also gate" in printed and "also first2" in printed and "first 2 positions" in printed
    separate = {
        "gate": ["--threshold", "topk:0.25", "--neuron-site", "gate_act", "--alignment", "response"],
        "first2": ["--threshold", "topk:0.25", "--first-tokens", "2"],
        "pos": ["--threshold", "positive"],
    }
    for name, flags in separate.items():
        ref = tmp_path / f"ref-{name}"
        assert main(_base(tiny_path, samples_file, ref) + flags) == 0
        _same_files(out / "also" / name, ref, drop_also=True)
    main_ref = tmp_path / "ref-main"
    assert main(_base(tiny_path, samples_file, main_ref) + ["--threshold", "topk:0.25"]) == 0
    _same_files(out, main_ref, drop_also=False)
    first2 = load_result(out / "also" / "first2")
    full = load_result(main_ref).samples
    assert first2.summary["short_samples"]["n"] == sum(r["n_scored"] < 2 for r in full)
    assert [r["n_scored"] for r in first2.samples] == [min(r["n_scored"], 2) for r in full]
    assert first2.summary["config"]["first_tokens"] == 2


@pytest.mark.parametrize(
    ("also", "match"),
    [
        ("x=layers=0", "unknown field 'layers'"),
        ("x=alignment=both", "--also x: alignment 'both' unknown"),
        ("x=first_tokens=0", "first_tokens='0'"),
        ("x", "expected NAME=FIELD=VALUE"),
        ("../x=threshold=positive", "expected NAME=FIELD=VALUE"),
        ("x=threshold=", "has no value"),
    ],
)
def test_bad_also_exit_2_one_line_and_no_result(tiny_path, samples_file, tmp_path, capsys, also, match):
    out = tmp_path / "o"
    rc = main(_base(tiny_path, samples_file, out) + ["--also", also])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and err[0].startswith("saemui: error:") and match in err[0], err
    assert not out.exists()


def test_also_refused_with_explore_and_twice_the_same_name(tiny_path, samples_file, tmp_path, capsys):
    out = tmp_path / "o"
    assert main(_base(tiny_path, samples_file, out) + ["--also", "a=threshold=positive", "--explore"]) == 2
    assert "--explore" in capsys.readouterr().err
    with pytest.raises(SaemuiError, match="given twice"):
        parse_also(["a=threshold=positive", "a=threshold=topk:2"])
    assert parse_also(["g=neuron-site=gate_act,first_tokens=all"]) == [
        ("g", {"neuron_site": "gate_act", "first_tokens": None})
    ]


def test_first_tokens_flag_bad_value(tiny_path, samples_file, tmp_path, capsys):
    rc = main(_base(tiny_path, samples_file, tmp_path / "o") + ["--first-tokens", "0"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "--first-tokens 0" in err[0]


def test_help_lists_the_new_flags_in_their_groups(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = capsys.readouterr().out
    data, output = text.index("\ndata:"), text.index("\noutput:")
    assert data < text.index("\n  --first-tokens") < text.index("\ntask:")
    assert output < text.index("\n  --also") < text.index("\nperformance:")


def test_bench_many_runs_and_its_results_agree(tmp_path):
    """scripts/bench_many.py end to end on the tiny model (only that it runs and its cross-check holds)."""
    from zoo_fixtures import load_script

    out = tmp_path / "bench.json"
    bench = load_script("bench_many")
    import torch

    # the script sets torch's thread count for the process: keep this process's own
    threads = str(torch.get_num_threads())
    assert bench.main(["--model", "tiny", "--limit", "4", "--threads", threads, "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["tiny"] is True and set(res["cases"]) == {"neurons", "sae"}
    for case in res["cases"].values():
        assert case["results_equal"] is True and case["ratio_separate_over_many"] > 0
        assert len(case["seconds_separate"]) == case["k"]


def test_first_tokens_short_count_survives_the_distributed_merge(tiny_dir, tiny_llama, tmp_path):
    """Two gloo ranks with --first-tokens: the merged summary's short-sample block counts every rank's samples
    (a rank's own block would be stale) and equals a single process's."""
    import os
    import socket
    import subprocess
    import sys
    from pathlib import Path

    import numpy as np

    from saemui.engine import RunConfig, compute_mui
    from saemui.records import Sample, write_samples

    repo = Path(__file__).resolve().parents[1]
    words = "the quick brown fox jumps over lazy dog paris capital".split()
    # long and short answers in every batch region: each rank gets some with fewer than T positions
    samples = [Sample(f"Q{i}?", " ".join(words[: 1 + (i * 7) % 10] * (1 + i % 5))) for i in range(24)]
    samples += [Sample(f"Short {i}?", "Yes") for i in range(6)]
    f = tmp_path / "s.jsonl"
    write_samples(f, samples)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, HF_HUB_OFFLINE="1", MASTER_ADDR="127.0.0.1")
    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        env.pop(k, None)
    env["PYTHONPATH"] = os.pathsep.join([str(repo), env.get("PYTHONPATH", "")])
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
    ]
    cmd += ["--master_port", str(port), str(repo / "scripts" / "mui_distributed.py"), "--model"]
    cmd += [str(save_tiny_model(tiny_dir, "llama")), "--samples", str(f), "--neurons", "--first-tokens", "3"]
    cmd += ["--batch-tokens", "128", "--threads", "1", "--out", str(tmp_path / "two")]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    merged = load_result(tmp_path / "two")
    per_rank = merged.run_info["timing"]["per_rank"]
    assert all(t["n_samples"] > 0 for t in per_rank)
    single = compute_mui(
        tiny_llama, samples, RunConfig(units="neurons", first_tokens=3, max_batch_tokens=128), progress=False
    )
    assert merged.summary["short_samples"] == single.summary["short_samples"]
    assert merged.summary["short_samples"]["n"] == sum(r["n_scored"] < 3 for r in single.samples) > 0
    assert np.array_equal(merged.arrays["union_LU"], single.arrays["union_LU"])


def test_also_with_a_task_keeps_the_task_entries_and_the_generation_prompt_format(
    tiny_path, tmp_path, capsys
):
    out = tmp_path / "task-out"
    args = ["run", "--task", "arith-1", "--limit", "3", "--model", tiny_path, "--neurons"]
    args += ["--max-new-tokens", "4", "--out", str(out), "--quiet", "--also", "pos=threshold=positive"]
    assert main(args) == 0
    assert "also pos" in capsys.readouterr().out
    main_res, pos = load_result(out), load_result(out / "also" / "pos")
    assert (out / "responses.jsonl").is_file()  # written after the results: not lost by the main save
    assert pos.summary["task"] == main_res.summary["task"]
    assert pos.summary["config"]["prompt_format"] == main_res.summary["config"]["prompt_format"] != "auto"
    assert pos.summary["selection"] == "positive" and pos.mui > main_res.mui
    assert pos.summary["provenance"]["run_key"] != main_res.summary["provenance"]["run_key"]
    assert [r["correct"] for r in pos.samples] == [r["correct"] for r in main_res.samples]
