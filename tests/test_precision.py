"""Reduced-precision SAE encode: key sets vs fp32, and the encoder-only loader the streaming path relies on."""

from __future__ import annotations

import pytest
import torch
from helpers import save_synthetic_sae

from saemui.engine import RunConfig, compute_mui
from saemui.precision import selection_agreement
from saemui.records import Sample
from saemui.saes import load_sae_dir

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
