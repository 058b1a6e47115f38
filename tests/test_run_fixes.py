"""Regressions of issue 20: run options that lost files or provenance, validation gaps, presets, lazy imports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from saemui.cli import main
from saemui.result import load_result
from saemui.testing import save_tiny_model


@pytest.fixture(scope="module")
def tiny_path(tiny_dir) -> str:
    return str(save_tiny_model(tiny_dir, "llama"))


def _task_argv(model: str, out: Path, *extra: str) -> list[str]:
    return ["run", "--task", "arith-1", "--limit", "3", "--model", model, "--neurons", "--max-new-tokens", "3",
            "--out", str(out), "--quiet", *extra]  # fmt: skip


def test_task_run_with_explore_keeps_contexts(tiny_path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert main(_task_argv(tiny_path, out, "--explore")) == 0
    assert (out / "contexts.npz").is_file()
    s = load_result(out).summary
    assert s["task"]["name"] == "arith-1" and s["n_samples"] == 3


# --- Python API: the shipped bundle, KeyRule thresholds, presets ---------------------------------------------


def test_runconfig_default_finds_the_shipped_bundle(monkeypatch, tmp_path: Path) -> None:
    from saemui import RunConfig
    from saemui.errors import SaemuiError

    monkeypatch.setenv("SAEMUI_SAES", str(tmp_path))  # an empty extra directory changes nothing
    manifest = json.loads((Path(RunConfig().resolved().saes) / "manifest.json").read_text())
    assert manifest["model"]["hf_id"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    with pytest.raises(SaemuiError, match="no shipped SAE bundle"):
        RunConfig().resolved(model="some-other-model")


def test_runconfig_accepts_a_keyrule() -> None:
    from saemui import KeyRule, RunConfig

    cfg = RunConfig(units="neurons", threshold=KeyRule("topk", k=5)).resolved()
    assert cfg.threshold == "topk:5" and KeyRule.parse(cfg.threshold) == KeyRule("topk", k=5)
    sae_rule = KeyRule("topscore", eta=0.8, positive_only=True)
    assert RunConfig(threshold=sae_rule).resolved().threshold == "topscore:0.8"


def test_presets_fill_fields_and_explicit_fields_win() -> None:
    from saemui import RunConfig

    paper = RunConfig.from_preset("paper", units="neurons").resolved()
    assert (paper.preset, paper.neuron_site, paper.alignment, paper.threshold) == (
        "paper",
        "gate_act",
        "response",
        "topk:0.001",
    )
    plain = RunConfig(units="neurons").resolved()
    assert (plain.preset, plain.neuron_site, plain.alignment) == ("corrected", "down_input", "predicting")
    mixed = RunConfig.from_preset("paper", units="neurons", alignment="predicting").resolved()
    assert (mixed.neuron_site, mixed.alignment) == ("gate_act", "predicting")


def test_cli_preset_paper_is_recorded_and_printed(tiny_path, samples_file, tmp_path, capsys) -> None:
    out = tmp_path / "paper"
    argv = ["run", "--model", tiny_path, "--samples", str(samples_file), "--neurons", "--threshold", "topk:2",
            "--preset", "paper", "--out", str(out), "--quiet"]  # fmt: skip
    assert main(argv) == 0
    assert "preset paper" in capsys.readouterr().out
    s = load_result(out).summary
    assert (s["config"]["preset"], s["config"]["neuron_site"], s["config"]["alignment"]) == (
        "paper",
        "gate_act",
        "response",
    )
    assert s["units"]["basis"] == "neurons:gate_act"
    # an explicit flag overrides the preset's field
    out2 = tmp_path / "paper-predicting"
    assert main([*argv[:-3], "--alignment", "predicting", "--out", str(out2), "--quiet"]) == 0
    c = load_result(out2).summary["config"]
    assert (c["preset"], c["neuron_site"], c["alignment"]) == ("paper", "gate_act", "predicting")


# --- records, provenance and --out ------------------------------------------------------------------------------


@pytest.fixture
def samples_file(tmp_path: Path) -> Path:
    f = tmp_path / "s.jsonl"
    f.write_text(
        '{"prompt": "Hi, there", "response": "Paris is nice.\\nYes.", "correct": true, "source": "q1", "n": 3}\n'
        '{"prompt": "Code", "response": "def f(x): return x", "correct": false, "meta": {"level": 2}}\n'
    )
    return f


def test_samples_csv_keeps_text_and_meta_and_old_files_still_load(tiny_path, samples_file, tmp_path) -> None:
    import csv

    from saemui.records import read_samples

    out = tmp_path / "run"
    assert main(["run", "--model", tiny_path, "--samples", str(samples_file), "--neurons", "--threshold",
                 "topk:2", "--out", str(out), "--quiet"]) == 0  # fmt: skip
    rows = load_result(out).samples
    records = read_samples(samples_file)
    assert [(r["prompt"], r["response"], r["meta"]) for r in rows] == [
        (s.prompt, s.response, s.meta) for s in records
    ]
    assert rows[0]["meta"] == {"source": "q1", "n": 3} and rows[1]["meta"] == {"level": 2}
    # a samples.csv of an older version (no text, no meta) still loads
    with open(out / "samples.csv", newline="", encoding="utf-8") as f:
        old_rows = list(csv.DictReader(f))
    cols = ["index", "id", "correct", "n_response_tokens", "n_scored", "truncated"]
    with open(out / "samples.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        w.writerows(old_rows)
    old = load_result(out).samples
    assert [r["id"] for r in old] == [s.id for s in records] and "prompt" not in old[0]


def test_samples_run_records_input_path_and_sha256(tiny_path, samples_file, tmp_path) -> None:
    import hashlib

    out = tmp_path / "run"
    assert main(["run", "--model", tiny_path, "--samples", str(samples_file), "--neurons", "--threshold",
                 "topk:2", "--limit", "1", "--out", str(out), "--quiet"]) == 0  # fmt: skip
    prov = load_result(out).summary["provenance"]["samples"]
    assert prov["path"] == str(samples_file) and prov["limit"] == 1
    assert prov["sha256"] == hashlib.sha256(samples_file.read_bytes()).hexdigest()


def test_out_refuses_another_configuration_unless_overwrite(
    tiny_path, samples_file, tmp_path, capsys
) -> None:
    out = tmp_path / "run"
    base = [
        "run",
        "--model",
        tiny_path,
        "--samples",
        str(samples_file),
        "--neurons",
        "--out",
        str(out),
        "--quiet",
    ]
    assert main([*base, "--threshold", "topk:2"]) == 0
    # the same configuration re-runs in place (batch settings do not change the result)
    assert main([*base, "--threshold", "topk:2", "--batch-tokens", "64"]) == 0
    first = (out / "summary.json").read_text()
    capsys.readouterr()
    assert main([*base, "--threshold", "topk:3"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "another configuration" in err and "--overwrite" in err
    assert (out / "summary.json").read_text() == first
    other = tmp_path / "other.jsonl"
    other.write_text('{"prompt": "Hi", "response": "Other text."}\n')
    assert main([*base[:4], str(other), *base[5:], "--threshold", "topk:2"]) == 2
    assert main([*base, "--threshold", "topk:3", "--overwrite"]) == 0
    assert load_result(out).summary["selection"] == "topk:3"


# --- validation ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "extra,match",
    [
        (["--layers", "5-2"], "runs backwards"),
        (["--task-option", "level=2"], "only apply with --task"),
        (["--threshold", "topk"], "needs K"),
        (["--threshold", "global_topk"], "needs K"),
    ],
)
def test_bad_flags_exit_2_one_line(tiny_path, samples_file, tmp_path, capsys, extra, match) -> None:
    argv = ["run", "--model", tiny_path, "--samples", str(samples_file), "--neurons", "--out", str(tmp_path / "o"),
            "--quiet", *extra]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and match in err
    assert not (tmp_path / "o").exists()


def test_registry_release_for_another_model_is_refused_before_download(tiny_llama, monkeypatch) -> None:
    import dataclasses

    import sae_lens
    from sae_lens.loading import pretrained_saes_directory as psd

    from saemui import RunConfig, Sample, compute_mui
    from saemui.errors import SaemuiError

    def lookup(model: str, ids: list[str]):
        return psd.PretrainedSAELookup(
            release="fake", repo_id="nobody/fake", model=model, conversion_func=None,
            saes_map={i: i for i in ids}, expected_var_explained={}, expected_l0={i: 50.0 for i in ids},
            neuronpedia_id={},
            norm_scaling_factor={}, config_overrides=None,
        )  # fmt: skip

    registry = {
        "fake-deep": lookup("gemma-2-2b", ["layer_0/width_16k/canonical", "layer_20/width_16k/canonical"]),
        "fake-gemma": lookup("gemma-2-2b", ["layer_1/width_16k/canonical"]),
        "fake-smollm": lookup("HuggingFaceTB/SmolLM2-135M", ["layer_1/width_16k/canonical"]),
    }
    monkeypatch.setattr(psd, "get_pretrained_saes_directory", lambda: registry)

    def no_download(*a, **k):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(sae_lens.SAE, "from_pretrained", no_download)
    samples = [Sample("Hi", "Hello there.")]
    with pytest.raises(SaemuiError, match="another model"):  # layer 20 of a 3-layer model
        compute_mui(tiny_llama, samples, RunConfig(saes="fake-deep"), progress=False)
    hub_llama = dataclasses.replace(tiny_llama, hf_id="HuggingFaceTB/SmolLM2-135M-Instruct")
    with pytest.raises(SaemuiError, match="trained on gemma-2-2b"):
        compute_mui(hub_llama, samples, RunConfig(saes="fake-gemma"), progress=False)
    # the same family (base SAEs on an instruct model) passes the registry check and reaches the loader
    with pytest.raises(SaemuiError, match="could not download"):
        compute_mui(hub_llama, samples, RunConfig(saes="fake-smollm"), progress=False)


# --- warnings -----------------------------------------------------------------------------------------------------


def test_warns_when_a_rule_keeps_one_unit_per_layer(tiny_llama, caplog) -> None:
    from saemui import RunConfig, Sample, compute_mui

    samples = [Sample("Hi", "Hello there.")]
    with caplog.at_level("WARNING", logger="saemui"):
        compute_mui(tiny_llama, samples, RunConfig(units="neurons", threshold="topk:0.001"), progress=False)
    assert "keeps k = 1 unit per (sample, layer) of 96 units" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="saemui"):
        compute_mui(tiny_llama, samples, RunConfig(units="neurons", threshold="topk:4"), progress=False)
    assert "keeps k" not in caplog.text


def test_warns_when_records_were_generated_with_another_prompt_format(tiny_llama, caplog) -> None:
    from saemui import RunConfig, Sample, compute_mui

    cfg = RunConfig(units="neurons", threshold="topk:4")
    base_style = [Sample("Q: 1+1\nA:", " 2", meta={"style": "base"})]
    with caplog.at_level("WARNING", logger="saemui"):
        compute_mui(tiny_llama, base_style, cfg, progress=False)  # auto → chat template on this tokenizer
    assert (
        "generated with base-style prompts (raw format) but are scored with prompt format chat" in caplog.text
    )
    caplog.clear()
    with caplog.at_level("WARNING", logger="saemui"):
        compute_mui(
            tiny_llama, base_style, RunConfig(**{**cfg.__dict__, "prompt_format": "raw"}), progress=False
        )
    assert "generated with" not in caplog.text


# --- imports ------------------------------------------------------------------------------------------------------

HEAVY = ("torch", "transformers", "scipy", "matplotlib", "pandas", "sae_lens")


def test_import_and_parser_load_no_heavy_library() -> None:
    import subprocess
    import sys

    code = (
        "import sys, saemui, saemui.cli; saemui.cli.build_parser(); "
        f"print([m for m in {HEAVY!r} if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_public_names_stay_importable() -> None:
    import saemui
    from saemui import RunConfig, Sample, compute_mui, load_model, load_result, run_task  # noqa: F401
    from saemui.tasks.pipeline import run_task as pipeline_run_task

    assert run_task is pipeline_run_task
    assert set(saemui.__all__) >= {"KeyRule", "MUIResult", "open_suite", "read_samples", "write_samples"}
    for name in saemui.__all__:
        assert getattr(saemui, name) is not None
    with pytest.raises(AttributeError):
        saemui.not_a_name  # noqa: B018


def test_out_of_an_older_saemui_and_new_optional_fields(tiny_path, samples_file, tmp_path, capsys) -> None:
    import dataclasses

    from saemui.cli.run import run_key
    from saemui.config import RunConfig

    out = tmp_path / "run"
    base = [
        "run",
        "--model",
        tiny_path,
        "--samples",
        str(samples_file),
        "--neurons",
        "--out",
        str(out),
        "--quiet",
    ]
    assert main(base) == 0
    summary = json.loads((out / "summary.json").read_text())
    del summary["provenance"]["run_key"]  # as written before run keys existed
    (out / "summary.json").write_text(json.dumps(summary))
    capsys.readouterr()
    assert main(base) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "older saemui" in err and "--overwrite" in err
    assert main([*base, "--overwrite"]) == 0
    # an unset optional field does not enter the key; a set one does
    cfg = RunConfig(units="neurons").resolved()

    @dataclasses.dataclass
    class Later(RunConfig):
        future_option: int | None = None

    assert run_key("m", Later(**dataclasses.asdict(cfg)), {}) == run_key("m", cfg, {})
    assert run_key("m", Later(**dataclasses.asdict(cfg), future_option=3), {}) != run_key("m", cfg, {})
    assert run_key("m", dataclasses.replace(cfg, layers=[0]), {}) != run_key("m", cfg, {})
