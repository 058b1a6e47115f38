"""scripts/train_saes.py: the plan, recipe hand-over from sae_recipes, and the whole bundle run on a tiny Gemma-3
model with a BOS token and a fake evals wheel (no network)."""

from __future__ import annotations

import json
import statistics

import pytest
import torch
from test_sae_data import make_fake_wheel
from test_sae_recipes import load_script, run_workers, tiny_args

from saemui import sae_data as sd
from saemui import sae_train
from saemui.testing import save_tiny_model


def _load():
    return load_script("train_saes")


def test_plan_per_model_and_recipe_handover(capsys):
    mod = _load()
    assert mod.main(["--plan"]) == 0
    out = capsys.readouterr().out
    assert "× 30 layers" in out and '"name": "batchtopk-k64-b256-e2"' in out and "limit 80 MB" in out
    assert mod.main(["--plan", "--model", "gemma3-270m"]) == 0
    out = capsys.readouterr().out
    assert "× 18 layers" in out and "limit 60 MB" in out
    # a recipe of the comparison is passed through unchanged (same checkpoint key)
    cfg, only_plan = mod.parse_args(["--recipe", "batchtopk-k64-b256-e2", "--plan"])
    assert only_plan and cfg.recipe == sae_train.recipe_named("batchtopk-k64-b256-e2")
    # the same fields given one by one give the same SAEs (the key ignores the name)
    cfg2, _ = mod.parse_args(["--arch", "batchtopk", "--k", "64"])
    assert cfg2.recipe.key() == cfg.recipe.key()
    cfg3, _ = mod.parse_args(["--epochs", "3"])
    assert cfg3.recipe.key() != sae_train.DEFAULT_RECIPE.key() and cfg3.recipe.epochs == 3
    rows, sizes = mod.plan(cfg)
    train = next(s for n, s in rows if n.startswith("train "))
    assert train == pytest.approx(30 * cfg.recipe.train_seconds(cfg.train_tokens))
    # w1024 fp16 encoder + decoder per layer: 30 × 2 × 576 × 1024 × 2 bytes plus biases
    assert sizes["bundle_bytes"] == 30 * (2 * 576 * 1024 + 1024 + 576) * 2
    with pytest.raises(SystemExit):
        mod.parse_args(["--arch", "jumprelu"])


def test_targets_margins():
    mod = _load()
    rows = [
        {"fve_response": 0.7, "ce_loss_recovered": 0.95, "dead_frac": 0.0},
        {"fve_response": 0.8, "ce_loss_recovered": 0.85, "dead_frac": 0.07},
        {"fve_response": 0.55, "ce_loss_recovered": 0.92, "dead_frac": 0.01},
    ]
    t = mod.targets(rows, 81.0, 80.0)
    fve_med, fve_min, ce, dead, size = t.values()
    assert fve_med["value"] == 0.7 and not fve_med["met"] and fve_med["margin"] == pytest.approx(-0.02)
    assert fve_min["value"] == 0.55 and fve_min["margin"] == pytest.approx(-0.05)
    assert ce["met"] and ce["margin"] == pytest.approx(0.02)
    assert not dead["met"] and dead["margin"] == pytest.approx(-0.02)
    assert not size["met"] and size["margin"] == pytest.approx(-1.0)


def test_bundle_run_tiny_gemma_and_resume(tmp_path, monkeypatch, tiny_dir):
    mod = _load()
    wheel, shared = make_fake_wheel(tmp_path, monkeypatch, n=60)
    from saemui.models import sha256_file

    monkeypatch.setattr(sd, "EVALS_WHEEL_SHA256", sha256_file(wheel))
    monkeypatch.setattr(mod, "SHARED_DATA", shared)
    model = save_tiny_model(tiny_dir, "gemma", bos=True)
    out = tmp_path / "bundle"
    args = tiny_args(tmp_path, wheel, model) + [
        "--layers", "0,2",
        "--arch", "batchtopk",
        "--eval-tokens", "300",
        "--size-limit-mb", "1",
        "--out", str(out),
    ]  # fmt: skip
    assert mod.main(args) == 0
    man = json.loads((out / "manifest.json").read_text())
    assert [s["layer"] for s in man["saes"]] == [0, 2]
    # BatchTopK trains, JumpReLU (its learned thresholds) is what sae-lens loads: the manifest names both
    assert {(s["architecture"], s["training_architecture"]) for s in man["saes"]} == {
        ("jumprelu", "batchtopk")
    }
    assert all(
        json.loads((out / s["path"] / "cfg.json").read_text())["architecture"] == "jumprelu"
        for s in man["saes"]
    )
    card = json.loads((out / "card.json").read_text())
    md = (out / "card.md").read_text()
    assert "median over layers" in md and "20x the median norm" in md and "Training text:" in md
    assert card["text_mix"]["manifest"]["wheel"] == sd.EVALS_WHEEL
    assert "--workdir" not in card["training"]["command"]
    # Gemma's tokenizer adds BOS: the SAE metadata says so, and BOS (position 0) is dropped by the sink rule
    cfg = json.loads((out / "layer_00" / "cfg.json").read_text())
    assert cfg["metadata"]["prepend_bos"] is True
    rows = card["layers"]
    for r in rows:
        for k in (
            "fve_response",
            "fve_token_median_response",
            "ce_loss_recovered",
            "kl_spliced",
            "dead_frac",
        ):
            assert r[k] is not None, k
        assert r["sink_share_general"] > 0  # position 0 of every held-out text
        assert "fve_general" in r and "fve_token_median_code" in r and r["train_steps"] >= 1
    # the targets follow from the rows (independent median / min / max)
    t = card["targets"]
    fve = [r["fve_response"] for r in rows]
    assert t["median response-token FVE ≥ 0.72"]["value"] == pytest.approx(statistics.median(fve))
    assert t["no layer's response-token FVE < 0.6"]["value"] == pytest.approx(min(fve))
    assert t["dead features ≤ 5 % (worst layer)"]["value"] == pytest.approx(max(r["dead_frac"] for r in rows))
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 1e6
    assert t["bundle ≤ 1 MB"]["value"] <= size and t["bundle ≤ 1 MB"]["met"] == (
        t["bundle ≤ 1 MB"]["value"] <= 1
    )
    # the shipped weights are the fp16 rounding of the trained checkpoint
    from safetensors.torch import load_file

    ck = next((tmp_path / "wd").glob("run-*/saes/*/L02"))
    full, shipped = (
        load_file(str(ck / "sae_weights.safetensors")),
        load_file(str(out / "layer_02" / "sae_weights.safetensors")),
    )
    assert all(torch.equal(full[k].half(), shipped[k]) for k in full)
    # the bundle opens through saemui's reader (hashes verified)
    from saemui.saes import open_suite

    assert [e.layer for e in open_suite(out).entries] == [0, 2]
    # resume: nothing is retrained; the rows are identical
    mtime = (ck / "sae_weights.safetensors").stat().st_mtime_ns
    assert mod.main(args) == 0
    assert (ck / "sae_weights.safetensors").stat().st_mtime_ns == mtime
    card2 = json.loads((out / "card.json").read_text())
    assert card2["layers"] == rows


def test_workers_share_a_run_and_give_the_single_process_bundle(tmp_path, monkeypatch, tiny_dir):
    """Two forked copies with --workers 2 split data, capture, training, recon and CE through lock files; the
    bundle's rows equal a one-process run's (training time aside), and every unit was done once."""
    mod = _load()
    wheel, shared = make_fake_wheel(tmp_path, monkeypatch, n=60)
    from saemui.models import sha256_file

    monkeypatch.setattr(sd, "EVALS_WHEEL_SHA256", sha256_file(wheel))
    monkeypatch.setattr(mod, "SHARED_DATA", shared)
    monkeypatch.setattr(sae_train, "POLL_SECONDS", 0.05)
    model = save_tiny_model(tiny_dir, "gemma", bos=True)

    def args(name: str) -> list[str]:
        a = tiny_args(tmp_path / name, wheel, model)
        out = str(tmp_path / name / "bundle")
        return a + ["--layers", "0-2", "--eval-tokens", "300", "--ce-group", "1", "--out", out]

    assert mod.main(args("one")) == 0
    assert run_workers(mod.main, args("two") + ["--threads", "1"]) == [0, 0]

    def rows(name: str) -> list[dict]:
        card = json.loads((tmp_path / name / "bundle" / "card.json").read_text())
        return [{k: v for k, v in r.items() if k != "train_seconds"} for r in card["layers"]]

    assert rows("two") == rows("one")
    wd = next((tmp_path / "two" / "wd").glob("run-*"))
    assert not list((wd / "locks").glob("*"))  # every claim released
    times = [json.loads(p.read_text()) for p in wd.glob("times-*-w*.json")]
    assert len(times) == 2 and sum("train" in t for t in times) >= 1
    assert sum("capture" in t for t in times) == 2  # both time the stage; one did it, the other waited


def test_capture_dtype_registry_and_overflow_guards(tmp_path):
    """Gemma-3's residuals exceed float16 (|x| up to ≈ 65k from layer 8): its capture is float32 by default; a
    float16 capture of such values, a training input with inf and an SAE that overflows float16 on export each
    stop with one line instead of shipping inf/NaN."""
    from safetensors.torch import save_file

    from saemui.errors import SaemuiError

    assert sae_train.capture_dtype("gemma3-270m") == "float32"
    assert sae_train.capture_dtype("smollm2-135m-instruct") == "float16"
    assert sae_train.capture_dtype("gemma3-270m", "float16") == "float16"
    with pytest.raises(SaemuiError, match="capture dtype must be one of"):
        sae_train.capture_dtype("gemma3-270m", "bfloat16")
    x = torch.tensor([[1.0, -70000.0], [2.0, 3.0]])
    with pytest.raises(
        SaemuiError, match=r"layer 9 has activations beyond the float16 range \(max \|x\| = 70,000\)"
    ):
        sae_train._stored(x, "float16", 9)
    kept = sae_train._stored(x, "float32", 9)
    assert kept.dtype.name == "float32" and (kept == x.numpy()).all()
    assert sae_train._stored(x[1:], "float16", 9).dtype.name == "float16"
    with pytest.raises(SaemuiError, match="training activations hold inf/NaN"):
        sae_train.train_sae(
            torch.tensor([[1.0, float("inf")]]),
            sae_train.Recipe("r"),
            "blocks.9.hook_resid_post",
            0,
            tmp_path / "s",
        )
    ck = tmp_path / "ck"
    ck.mkdir()
    save_file(
        {"b_dec": torch.tensor([1.0, 1e5]), "W_dec": torch.ones(2, 2)}, str(ck / "sae_weights.safetensors")
    )
    (ck / "cfg.json").write_text(json.dumps({"metadata": {}}))
    with pytest.raises(SaemuiError, match="b_dec overflow float16"):
        sae_train.export_fp16(ck, tmp_path / "out")
    assert not (tmp_path / "out").exists()
