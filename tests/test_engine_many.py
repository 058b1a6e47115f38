"""Several settings from one forward pass (compute_mui_many) and MUI over the first T scored positions.

Each setting of a shared pass must give exactly the result of a run with that setting alone; the first-T cut is
checked against an independent route (a causal model's activations at a position do not depend on later tokens,
so cutting the ids with max_length scores the same positions with the same activations).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from saemui import checkpoint
from saemui.capture import HFBackend
from saemui.engine import RunConfig, compute_mui, compute_mui_many
from saemui.errors import SaemuiError
from saemui.inputs import encode_samples, prompt_ids, realign
from saemui.records import Sample
from saemui.testing import save_synthetic_sae
from saemui.units import SAEFeatures

SAMPLES = [
    Sample("What is 2 + 3?", "The answer is 5.", correct=True),
    Sample("Name a capital.", "Paris is the capital of France.", correct=False),
    Sample("Write code.", "def square(x):\n    return x * x"),
    Sample("Say nothing.", ""),
    Sample("Count.", "1 2 3 4 5 6 7 8 9 10 11 12"),
    Sample("Plants?", "Plants absorb carbon dioxide and release oxygen. The quick brown fox."),
    Sample("One word.", "Yes"),
]

NEURON_SETTINGS = [
    dict(threshold="topk:0.25", neuron_site="down_input", alignment="predicting"),
    dict(threshold="topk:0.5", neuron_site="gate_act", alignment="response"),
    dict(threshold="topk:0.25", neuron_site="down_input", alignment="predicting", first_tokens=2),
    dict(threshold="positive"),
    dict(threshold="topscore:0.9", neuron_site="gate_act", alignment="predicting", first_tokens=3),
    dict(threshold="global_topk:7", alignment="response", keep_sets=False),
    dict(preset="paper", threshold="topk:0.25"),
]


@pytest.fixture(scope="module")
def tiny_sae_suite(tiny_llama, tmp_path_factory):
    root = tmp_path_factory.mktemp("sae-suite-many")
    for layer in range(tiny_llama.n_layers):
        save_synthetic_sae(root / f"layer_{layer}", 64, 48, f"blocks.{layer}.hook_resid_post", seed=layer)
    return root


def _assert_same(got, want, what: str) -> None:
    assert sorted(got.arrays) == sorted(want.arrays), what
    for k in want.arrays:
        assert np.array_equal(got.arrays[k], want.arrays[k]), f"{what}: {k}"
    assert got.samples == want.samples, what
    # the summary holds no timing (that is run_info), so it must be equal as a whole
    assert json.dumps(got.summary, sort_keys=True) == json.dumps(want.summary, sort_keys=True), what


def test_neuron_settings_from_one_pass_equal_separate_runs(tiny_llama):
    shared = dict(units="neurons", max_batch_size=3)
    cfgs = [RunConfig(**shared, **s) for s in NEURON_SETTINGS]
    many = compute_mui_many(tiny_llama, SAMPLES, cfgs, progress=False, extra_summary={"tag": "x"})
    assert len(many) == len(cfgs)
    for cfg, got in zip(cfgs, many):
        alone = compute_mui(tiny_llama, SAMPLES, cfg, progress=False, extra_summary={"tag": "x"})
        _assert_same(got, alone, str(cfg.threshold))
    # the settings really differ (else the comparison above proves little)
    assert len({r.mui for r in many}) >= 5
    assert many[2].summary["n_tokens"] < many[0].summary["n_tokens"]


def test_sae_thresholds_share_one_encode_and_equal_separate_runs(tiny_llama, tiny_sae_suite, monkeypatch):
    shared = dict(units="sae", saes=str(tiny_sae_suite), max_batch_size=3, encode_chunk=5)
    settings = [
        dict(threshold="topscore:0.9"),
        dict(threshold="topscore:0.95"),
        dict(threshold="topk:3", alignment="predicting"),
        dict(threshold="topscore:0.9", first_tokens=2),
    ]
    cfgs = [RunConfig(**shared, **s) for s in settings]
    encodes: list[int] = []
    real = SAEFeatures.scores

    def counting(self, acts_ND, target_N, chunk):
        encodes.append(self.layer)
        return real(self, acts_ND, target_N, chunk)

    monkeypatch.setattr(SAEFeatures, "scores", counting)
    many = compute_mui_many(tiny_llama, SAMPLES, cfgs, progress=False)
    n_batches = -(-len(SAMPLES) // 3)
    # η 0.9 and 0.95 read one encode; the predicting and first-T views need their own positions
    assert len(encodes) == 3 * tiny_llama.n_layers * n_batches
    encodes.clear()
    compute_mui_many(tiny_llama, SAMPLES, cfgs[:2], progress=False)
    assert len(encodes) == tiny_llama.n_layers * n_batches
    for cfg, got in zip(cfgs, many):
        alone = compute_mui(tiny_llama, SAMPLES, cfg, progress=False)
        _assert_same(got, alone, str(cfg.threshold))
    assert many[0].mui != many[1].mui  # η 0.95 keeps fewer features than 0.9
    assert many[3].summary["sae_health"] != many[0].summary["sae_health"]  # health of the positions read


@pytest.mark.parametrize("units", ["neurons", "sae"])
def test_one_forward_per_batch_whatever_the_number_of_settings(
    tiny_llama, tiny_sae_suite, monkeypatch, units
):
    calls: list[int] = []
    real = HFBackend.run

    def counting(self, *a, **k):
        calls.append(1)
        return real(self, *a, **k)

    monkeypatch.setattr(HFBackend, "run", counting)
    shared = dict(units=units, saes=str(tiny_sae_suite) if units == "sae" else None, max_batch_size=2)
    n_batches = -(-len(SAMPLES) // 2)
    for settings in (NEURON_SETTINGS[:1], NEURON_SETTINGS):
        if units == "sae":
            settings = [{k: v for k, v in s.items() if k != "preset"} for s in settings]
        calls.clear()
        compute_mui_many(tiny_llama, SAMPLES, [RunConfig(**shared, **s) for s in settings], progress=False)
        assert len(calls) == n_batches, len(settings)


def test_gate_and_down_sites_come_from_the_same_forward(tiny_llama, monkeypatch):
    sites_seen: list[list[str]] = []
    real = HFBackend.run

    def recording(self, ids, mask, sites, *a, **k):
        sites_seen.append(list(sites))
        return real(self, ids, mask, sites, *a, **k)

    monkeypatch.setattr(HFBackend, "run", recording)
    cfgs = [RunConfig(units="neurons", neuron_site=s) for s in ("down_input", "gate_act")]
    compute_mui_many(tiny_llama, SAMPLES[:2], cfgs, progress=False)
    assert len(sites_seen) == 1
    kinds = {s.split(".", 2)[2] for s in sites_seen[0]}
    assert kinds == {"mlp.hook_post", "mlp.hook_gate_act"}


@pytest.mark.parametrize(
    ("other", "field"),
    [
        (dict(max_length=64), "max_length"),
        (dict(layers=[0, 1]), "layers"),
        (dict(max_batch_size=4), "max_batch_size"),
        (dict(prompt_format="raw"), "prompt_format"),
        (dict(units="sae", saes="x"), "units"),
    ],
)
def test_settings_that_cannot_share_a_pass_are_refused(tiny_llama, other, field):
    base = RunConfig(units="neurons", max_batch_size=2)
    with pytest.raises(SaemuiError, match=f"in {field} ") as e:
        compute_mui_many(tiny_llama, SAMPLES, [base, RunConfig(**{**base.__dict__, **other})], progress=False)
    assert "\n" not in str(e.value)


def test_empty_or_single_config_argument_refused(tiny_llama):
    with pytest.raises(SaemuiError, match="no settings"):
        compute_mui_many(tiny_llama, SAMPLES, [], progress=False)
    with pytest.raises(SaemuiError, match="list of RunConfig"):
        compute_mui_many(tiny_llama, SAMPLES, RunConfig(units="neurons"), progress=False)


# ------------------------------------------------------------------------------------------------ first T


@pytest.mark.parametrize("alignment", ["response", "predicting"])
def test_first_tokens_equals_cutting_the_ids(tiny_llama, alignment):
    """One prompt, responses of several lengths: with T scored positions kept, MUI equals a run whose ids are cut
    to prompt + T tokens by max_length (a causal model computes the same activations at those positions)."""
    T = 3
    prompt = "Tell me something."
    responses = ["The answer is 5.", "Paris is the capital of France.", "Yes", "1 2 3 4 5 6 7 8 9 10"]
    samples = [Sample(prompt, r) for r in responses]
    n_prompt = len(prompt_ids(tiny_llama.tokenizer, prompt, "auto"))
    for threshold in ("topk:0.25", "topscore:0.9", "positive"):
        base = dict(units="neurons", threshold=threshold, alignment=alignment)
        cut = compute_mui(tiny_llama, samples, RunConfig(**base, first_tokens=T), progress=False)
        ref = compute_mui(tiny_llama, samples, RunConfig(**base, max_length=n_prompt + T), progress=False)
        assert np.array_equal(cut.arrays["union_LU"], ref.arrays["union_LU"]), threshold
        assert np.array_equal(cut.arrays["set_units"], ref.arrays["set_units"]), threshold
        assert [r["n_scored"] for r in cut.samples] == [r["n_scored"] for r in ref.samples]
    # "Yes" has fewer than T response tokens: it contributes all it has
    n_tok = [len(tiny_llama.tokenizer(r, add_special_tokens=False)["input_ids"]) for r in responses]
    assert [r["n_scored"] for r in cut.samples] == [min(n, T) for n in n_tok]


def test_first_tokens_short_share_and_flag(tiny_llama):
    tok = tiny_llama.tokenizer
    T = 6
    n_tok = [
        len(tok(s.response, add_special_tokens=False)["input_ids"]) if s.response else 0 for s in SAMPLES
    ]
    want_short = sum(n < T for n in n_tok)
    assert 0 < want_short < len(SAMPLES)
    res = compute_mui(tiny_llama, SAMPLES, RunConfig(units="neurons", first_tokens=T), progress=False)
    short = res.summary["short_samples"]
    assert short["n"] == want_short and short["share"] == pytest.approx(want_short / len(SAMPLES))
    assert short["short"] is (want_short / len(SAMPLES) > 0.10) and short["first_tokens"] == T
    assert res.summary["config"]["first_tokens"] == T
    assert [r["n_scored"] for r in res.samples] == [min(n, T) for n in n_tok]
    # a large T flags nothing as cut but everything as short; no T: no short block
    big = compute_mui(tiny_llama, SAMPLES, RunConfig(units="neurons", first_tokens=1000), progress=False)
    assert big.summary["short_samples"]["short"] is True
    full = compute_mui(tiny_llama, SAMPLES, RunConfig(units="neurons"), progress=False)
    assert "short_samples" not in full.summary
    assert np.array_equal(big.arrays["union_LU"], full.arrays["union_LU"])


@pytest.mark.parametrize("bad", [0, -1, True, 2.5, "3"])
def test_first_tokens_validated(bad):
    with pytest.raises(SaemuiError, match="first_tokens") as e:
        RunConfig(units="neurons", first_tokens=bad).resolved()
    assert "\n" not in str(e.value)


def test_realign_keeps_ids_and_matches_a_fresh_encoding(tiny_llama):
    tok = tiny_llama.tokenizer
    base = encode_samples(tok, SAMPLES, "response")
    for alignment, T in (("predicting", None), ("predicting", 2), ("response", 4)):
        fresh = encode_samples(tok, SAMPLES, alignment, first_tokens=T)
        derived = realign(tok, base, alignment, T)
        for a, b, e in zip(fresh, derived, base):
            assert np.array_equal(a.score_pos, b.score_pos) and np.array_equal(a.target, b.target)
            assert b.ids is e.ids  # shared, not copied
            if T is not None:
                assert len(b.score_pos) <= T


# ------------------------------------------------------------------------------------------------ resume


def test_many_settings_resume_identical_and_refuse_other_settings(tiny_llama, tmp_path):
    cfgs = [RunConfig(units="neurons", max_batch_size=2, **s) for s in NEURON_SETTINGS[:4]]
    ref = compute_mui_many(tiny_llama, SAMPLES, cfgs, progress=False)

    class Crash(Exception):
        pass

    calls = {"n": 0}
    real_save = checkpoint.save

    def save_then_crash(d, state):
        real_save(d, state)
        calls["n"] += 1
        if calls["n"] == 2:
            raise Crash

    ck = tmp_path / "ck"
    checkpoint.save = save_then_crash
    try:
        with pytest.raises(Crash):
            compute_mui_many(tiny_llama, SAMPLES, cfgs, progress=False, checkpoint_dir=ck, checkpoint_every=1)
    finally:
        checkpoint.save = real_save
    state = torch.load(ck / checkpoint.CKPT_NAME, weights_only=True)
    assert state["next"] == [0, 2] and len(state["settings"]) == len(cfgs)
    # another list of settings does not resume from it, naming what differs
    with pytest.raises(SaemuiError, match="different settings, threshold"):
        compute_mui_many(tiny_llama, SAMPLES, cfgs[:3], progress=False, checkpoint_dir=ck)
    resumed = compute_mui_many(
        tiny_llama, SAMPLES, cfgs, progress=False, checkpoint_dir=ck, checkpoint_every=1
    )
    for a, b, cfg in zip(resumed, ref, cfgs):
        _assert_same(a, b, str(cfg.threshold))
