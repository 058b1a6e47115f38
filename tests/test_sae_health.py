"""`saemui sae-health` / sae_eval.suite_health: an SAE suite's health on a model's own residuals."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from saemui import sae_eval as se
from saemui.cli import main
from saemui.records import Sample, write_samples
from saemui.testing import save_synthetic_sae

SAMPLES = [
    Sample("What is 2 + 3?", "The answer is 5.", id="a"),
    Sample("Name a capital.", "Paris is the capital of France.", id="b"),
    Sample("Count.", "1 2 3 4 5 6 7 8 9 10 11 12", id="c"),
]


@pytest.fixture(scope="module")
def suite(tmp_path_factory, tiny_llama):
    root = tmp_path_factory.mktemp("health-saes")
    for layer in (0, 2):
        save_synthetic_sae(
            root / f"l{layer}", tiny_llama.d_model, 96, f"blocks.{layer}.hook_resid_post", seed=layer
        )
    return root


def test_suite_health_matches_hand_fve_and_medians(tiny_llama, suite):
    from sae_lens import SAE

    from saemui.capture import capture, get_backend

    lm = tiny_llama
    rep = se.suite_health(lm, str(suite), SAMPLES, ce_samples=2, norm_factor=None)
    assert sorted(rep["per_layer"]) == ["0", "2"]
    assert rep["n_samples"] == 3 and rep["n_ce_samples"] == 2
    (b,) = se.batches_from_samples(lm.tokenizer, SAMPLES, max_batch_tokens=10_000)
    for layer in (0, 2):
        sae = SAE.load_from_disk(str(suite / f"l{layer}"), device="cpu")
        acts = capture(
            get_backend("hf", lm), b.input_ids_BT, b.attention_mask_BT, [f"blocks.{layer}.hook_resid_post"]
        )
        x = acts[f"blocks.{layer}.hook_resid_post"][b.read_BT].float()
        with torch.no_grad():
            xh = sae.decode(sae.encode(x)).double().numpy()
        x = x.double().numpy()
        fve = 1 - ((x - xh) ** 2).sum() / ((x - x.mean(0)) ** 2).sum()
        row = rep["per_layer"][str(layer)]
        assert row["n_tokens"] == x.shape[0]
        assert row["fve_pooled"] == pytest.approx(fve, rel=1e-5)
    vals = [rep["per_layer"][k]["fve_pooled"] for k in ("0", "2")]
    assert rep["medians"]["fve_pooled"] == pytest.approx(float(np.median(vals)))
    assert rep["min_fve_pooled"] == pytest.approx(min(vals))
    # CE over the first two records only: fewer predictions than the reconstruction tokens of all three
    assert 0 < rep["per_layer"]["0"]["ce_tokens"] < rep["per_layer"]["0"]["n_tokens"]


def test_suite_health_layer_subset_and_missing_layer(tiny_llama, suite):
    rep = se.suite_health(tiny_llama, str(suite), SAMPLES, layers=[2], ce_samples=None)
    assert list(rep["per_layer"]) == ["2"]
    with pytest.raises(se.SaemuiError, match=r"no SAE for layer\(s\) \[1\]"):
        se.suite_health(tiny_llama, str(suite), SAMPLES, layers=[1])
    with pytest.raises(se.SaemuiError, match="no samples"):
        se.suite_health(tiny_llama, str(suite), [])


def test_cli_sae_health_writes_json_and_rejects_bad_input(tiny_llama, suite, tmp_path, capsys):
    model_dir = tiny_llama.provenance["path_or_id"]
    data = tmp_path / "s.jsonl"
    write_samples(data, SAMPLES)
    out = tmp_path / "h.json"
    args = [
        "sae-health",
        "--model",
        model_dir,
        "--saes",
        str(suite),
        "--samples",
        str(data),
        "--out",
        str(out),
    ]
    assert main(args + ["--ce-samples", "2"]) == 0
    rep = json.loads(out.read_text())
    assert rep["schema"] == se.HEALTH_SCHEMA and rep["config"]["ce_samples"] == 2
    assert "torch" in rep["versions"] and sorted(rep["per_layer"]) == ["0", "2"]
    assert "median FVE" in capsys.readouterr().out
    assert main(args + ["--ce-samples", "-1"]) == 2
    assert "--ce-samples -1" in capsys.readouterr().err
