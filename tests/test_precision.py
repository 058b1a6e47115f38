"""Reduced-precision SAE encode: key sets vs fp32, and the encoder-only loader the streaming path relies on."""

from __future__ import annotations

import pytest
import torch

from saemui.engine import RunConfig, compute_mui
from saemui.precision import selection_agreement
from saemui.records import Sample
from saemui.saes import load_sae_dir
from saemui.testing import save_synthetic_sae

SAMPLES = [
    Sample("What is 2 + 3?", "The answer is 5."),
    Sample("Name a capital.", "Paris is the capital of France. Berlin is the capital of Germany."),
    Sample("Write code.", "def square(x):\n    return x * x"),
    Sample("Say something.", "Soft rain on the roof, whispers of the grey morning."),
    Sample("Biology?", "Plants absorb carbon dioxide and release oxygen."),
]


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    root = tmp_path_factory.mktemp("prec-saes")
    for layer in range(3):
        save_synthetic_sae(root / f"l{layer}", 64, 256, f"blocks.{layer}.hook_resid_post", seed=layer)
    return root


@pytest.mark.parametrize("arch", ["standard", "topk", "jumprelu"])
def test_encoder_only_load_encodes_like_full_load_without_decoder_memory(tmp_path, arch):
    d = save_synthetic_sae(tmp_path / arch, 32, 512, "blocks.0.hook_resid_post", arch=arch)
    enc, full = load_sae_dir(d, encoder_only=True), load_sae_dir(d)
    x = torch.randn(7, 32)
    assert torch.equal(enc.encode(x), full.encode(x))
    assert enc.W_dec.shape == full.W_dec.shape
    assert enc.W_dec.untyped_storage().nbytes() <= 4  # a zero-stride view, not 512 × 32 floats


def test_identical_runs_agree_fully(tiny_llama, suite):
    r = compute_mui(tiny_llama, SAMPLES, RunConfig(saes=str(suite), health=False), progress=False)
    a = selection_agreement(r, r)
    assert a["union_jaccard"] == 1.0 and a["sets_identical"] == 1.0 and a["mui_diff_points"] == 0.0


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_half_precision_encode_selects_nearly_the_same_sets(tiny_llama, suite, dtype):
    cfg = dict(saes=str(suite), health=False)
    ref = compute_mui(tiny_llama, SAMPLES, RunConfig(**cfg), progress=False)
    low = compute_mui(tiny_llama, SAMPLES, RunConfig(**cfg, sae_dtype=dtype), progress=False)
    a = selection_agreement(ref, low)
    print(f"\n{dtype} vs float32 on tiny data: {a}")
    assert low.summary["dtypes"]["sae"] == dtype
    # Rounding of residuals and weights to 8 (bf16) / 11 (fp16) mantissa bits only flips features that sit
    # within a rounding step of η·max; on these few tokens that is a small minority of sets.
    assert a["union_jaccard"] >= 0.9
    assert a["mean_set_jaccard"] >= 0.9
    assert abs(a["mui_diff_points"]) < 1.0


def _result(sets_per_sample, n_units=6):
    """A MUIResult over 2 layers from per-sample [layer0 units, layer1 units] lists."""
    import numpy as np

    from saemui.result import MUIResult

    L = 2
    lengths = [len(u) for s in sets_per_sample for u in s]
    units = np.array([x for s in sets_per_sample for u in s for x in u], dtype=np.int32)
    union = np.zeros((L, n_units), dtype=bool)
    for s in sets_per_sample:
        for r, u in enumerate(s):
            union[r, u] = True
    summary = {
        "mui": union.sum() / union.size,
        "per_layer": [],
        "layers": [0, 1],
        "n_samples": len(sets_per_sample),
        "units": {"n_units": n_units},
    }
    arrays = {"union_LU": union, "set_indptr": np.r_[0, np.cumsum(lengths)], "set_units": units}
    return MUIResult(summary, arrays)


def test_selection_agreement_against_hand_computation():
    a = _result([[[0, 1], [2]], [[3], []]])
    b = _result([[[0, 1], [2, 4]], [[5], []]])
    got = selection_agreement(a, b)
    # unions: a = {0:0,1,3; 1:2}, b = {0:0,1,5; 1:2,4} → ∩ 3, ∪ 6; only-a {0:3}, only-b {0:5, 1:4}
    assert got["union_jaccard"] == pytest.approx(3 / 6)
    assert (got["union_only_a"], got["union_only_b"]) == (1, 2)
    # four (sample, layer) sets: J = 1, 1/2, 0, 1 (both empty)
    assert got["n_sets"] == 4 and got["sets_identical"] == pytest.approx(2 / 4)
    assert got["mean_set_jaccard"] == pytest.approx((1 + 0.5 + 0 + 1) / 4) and got["min_set_jaccard"] == 0
    assert got["mui_diff_points"] == pytest.approx(100 * (5 / 12 - 4 / 12))
