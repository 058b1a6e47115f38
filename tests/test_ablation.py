"""saemui.ablation on the tiny models: hook ablations against hand computations (zeroed weight columns, residual
minus activation × decoder row), per-sample masks against one-at-a-time runs, padding, log-probabilities against a
manual log_softmax gather, controls, and the two §8.5 arms end to end."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch

from saemui.ablation import (
    Ablation,
    ablated,
    accuracy_arm,
    active_features,
    generate_ablated,
    gold_logprobs,
    key_sets,
    load_logprob_arm,
    load_saes,
    logprob_arm,
    random_control_sets,
    result_samples,
)
from saemui.capture import capture, get_backend
from saemui.engine import RunConfig, compute_mui
from saemui.errors import SaemuiError
from saemui.inputs import prompt_ids
from saemui.records import Sample
from saemui.testing import save_synthetic_sae

SAMPLES = [
    Sample("What is 2 + 3?", "The answer is 5.", "a"),
    Sample("Paris is the capital of", "France. Berlin is the capital of Germany.", "b"),
    Sample("def square(x):", "return x * x", "c"),
]
SETS = [{0: [1, 5, 7], 2: [3, 90]}, {1: [0, 2, 4, 6]}, {0: [95], 1: [10], 2: [11, 12]}]


def _ids(lm, s: Sample, fmt: str = "auto") -> list[int]:
    return prompt_ids(lm.tokenizer, s.prompt, fmt) + list(
        lm.tokenizer(s.response, add_special_tokens=False)["input_ids"]
    )


def _zeroed_copy(lm, sets):
    """A LoadedModel whose down_proj columns of ``sets`` are 0 in a copy of the weights: the hand computation."""
    model = copy.deepcopy(lm.model)
    blocks = lm.arch.layers(model)
    with torch.no_grad():
        for layer, units in sets.items():
            lm.arch.down_proj(blocks[layer]).weight[:, list(units)] = 0.0
    return dataclasses.replace(lm, model=model)


def _logits(lm, ids: list[int]) -> torch.Tensor:
    with torch.inference_mode():
        return lm.model(input_ids=torch.tensor([ids]), use_cache=False).logits[0]


@pytest.mark.parametrize("family", ["llama", "gemma"])
def test_neuron_ablation_equals_zeroed_down_proj_columns(tiny_models, family) -> None:
    lm = tiny_models[family]
    ids = _ids(lm, SAMPLES[0])
    ref = _logits(_zeroed_copy(lm, SETS[0]), ids)
    with ablated(lm, neurons=[SETS[0]]):
        got = _logits(lm, ids)
    clean = _logits(lm, ids)
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-5)
    assert (got - clean).abs().max() > 1e-3  # the ablation does something, and the hooks are gone afterwards
    torch.testing.assert_close(_logits(lm, ids), clean, rtol=0, atol=0)


def _manual_logprob(lm, s: Sample) -> float:
    p = prompt_ids(lm.tokenizer, s.prompt, "auto")
    ids = _ids(lm, s)
    lp = torch.log_softmax(_logits(lm, ids).double(), dim=-1)
    return float(sum(lp[t - 1, ids[t]] for t in range(len(p), len(ids))))


def test_logprob_equals_manual_log_softmax_gather(tiny_llama) -> None:
    got = gold_logprobs(tiny_llama, SAMPLES)
    want = [_manual_logprob(tiny_llama, s) for s in SAMPLES]
    np.testing.assert_allclose(got[0], want, rtol=1e-5)
    # ablated: the same gather on the zeroed-weight copy, one sample at a time
    abl = gold_logprobs(tiny_llama, SAMPLES, [Ablation("k", neurons=SETS)])
    want_abl = [_manual_logprob(_zeroed_copy(tiny_llama, st), s) for s, st in zip(SAMPLES, SETS)]
    np.testing.assert_allclose(abl[0], want_abl, rtol=1e-5)
    assert not np.allclose(abl[0], got[0])


def test_per_sample_masks_in_a_batch_equal_one_at_a_time(tiny_models) -> None:
    lm = tiny_models["gemma"]
    key = Ablation("key", neurons=SETS)
    batched = gold_logprobs(lm, SAMPLES, [None, key], max_batch_size=3)
    alone = np.array(
        [gold_logprobs(lm, [s], [None, Ablation("k", neurons=[st])])[:, 0] for s, st in zip(SAMPLES, SETS)]
    ).T
    np.testing.assert_allclose(batched, alone, rtol=1e-5)
    # every row got its own set: swapping the sets between samples changes the values
    swapped = gold_logprobs(
        lm, SAMPLES, [Ablation("s", neurons=[SETS[1], SETS[2], SETS[0]])], max_batch_size=3
    )
    assert not np.allclose(swapped[0], batched[1])


@pytest.mark.parametrize("family", ["llama", "gemma"])
def test_padding_side_does_not_change_logprobs(tiny_models, family) -> None:
    lm = tiny_models[family]
    conds = [None, Ablation("key", neurons=SETS)]
    right = gold_logprobs(lm, SAMPLES, conds, max_batch_size=3, padding_side="right")
    left = gold_logprobs(lm, SAMPLES, conds, max_batch_size=3, padding_side="left")
    np.testing.assert_allclose(left, right, rtol=1e-5)


@pytest.fixture(scope="module")
def tiny_sae_dir(tmp_path_factory, tiny_llama):
    root = tmp_path_factory.mktemp("sae-suite")
    for layer in range(tiny_llama.n_layers):
        save_synthetic_sae(root / f"layer_{layer}", 64, 48, f"blocks.{layer}.hook_resid_post", seed=layer)
    return root


def test_empty_sets_change_nothing(tiny_llama, tiny_sae_dir) -> None:
    saes = load_saes(tiny_llama, tiny_sae_dir)
    none = [{}, {0: []}, {2: np.zeros(0, dtype=np.int64)}]
    got = gold_logprobs(tiny_llama, SAMPLES, [None, Ablation("empty", neurons=none, features=none)], saes)
    np.testing.assert_array_equal(got[1], got[0])


def _hand_sae_delta(sae, x_TD: torch.Tensor, feats: list[int]) -> torch.Tensor:
    """activation × decoder row, summed over ``feats``, computed from the SAE's weights by hand (numpy)."""
    W_enc, b_enc = sae.W_enc.detach().double().numpy(), sae.b_enc.detach().double().numpy()
    W_dec, b_dec = sae.W_dec.detach().double().numpy(), sae.b_dec.detach().double().numpy()
    x = x_TD.double().numpy()
    pre = (x - b_dec if sae.cfg.apply_b_dec_to_input else x) @ W_enc + b_enc
    norms = np.linalg.norm(W_dec, axis=1)
    if getattr(sae.cfg, "rescale_acts_by_decoder_norm", False):
        pre = pre * norms
    if sae.cfg.architecture() == "topk":
        keep = np.zeros_like(pre, dtype=bool)
        np.put_along_axis(keep, np.argsort(-pre, axis=1)[:, : sae.cfg.k], True, axis=1)
        acts = np.where(keep, np.maximum(pre, 0), 0.0)
    else:
        acts = np.maximum(pre, 0)
    rows = W_dec / norms[:, None] if getattr(sae.cfg, "rescale_acts_by_decoder_norm", False) else W_dec
    return torch.from_numpy(acts[:, feats] @ rows[feats]).float()


@pytest.mark.parametrize("arch", ["standard", "topk"])
def test_sae_feature_ablation_equals_residual_minus_act_times_decoder_row(tiny_llama, tmp_path, arch) -> None:
    lm, layer = tiny_llama, 1
    kw = {"rescale_acts_by_decoder_norm": True} if arch == "topk" else {}
    save_synthetic_sae(tmp_path / "sae", 64, 48, f"blocks.{layer}.hook_resid_post", arch=arch, seed=3, **kw)
    sae = load_saes(lm, tmp_path / "sae")[layer]
    with torch.no_grad():  # decoder rows of unequal norms, so a missing rescale would show
        sae.W_dec.mul_(torch.linspace(0.5, 2.0, sae.W_dec.shape[0])[:, None])
    ids = _ids(lm, SAMPLES[1])
    x = capture(
        get_backend("hf", lm),
        torch.tensor([ids]),
        torch.ones(1, len(ids), dtype=torch.long),
        [f"blocks.{layer}.hook_resid_post"],
    )
    resid = x[f"blocks.{layer}.hook_resid_post"][0]
    fired = torch.nonzero((sae.encode(resid) > 0).any(0)).flatten().tolist()
    feats = fired[:3]
    assert len(feats) == 3
    delta = _hand_sae_delta(sae, resid, feats)
    assert delta.abs().max() > 1e-2
    block = lm.arch.layers(lm.model)[layer]
    h = block.register_forward_hook(
        lambda m, i, o: o - delta if torch.is_tensor(o) else (o[0] - delta, *o[1:])
    )
    try:
        want = _logits(lm, ids)
    finally:
        h.remove()
    with ablated(lm, features=[{layer: feats}], saes={layer: sae}):
        got = _logits(lm, ids)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-4)


def test_sae_per_sample_batch_equals_alone_and_mixed_units(tiny_llama, tiny_sae_dir) -> None:
    saes = load_saes(tiny_llama, tiny_sae_dir)
    feats = [{0: [1, 2], 2: [5]}, {1: [7, 8, 9]}, {}]
    cond = Ablation("both", neurons=SETS, features=feats)
    batched = gold_logprobs(tiny_llama, SAMPLES, [cond], saes, max_batch_size=3)[0]
    alone = [
        gold_logprobs(tiny_llama, [s], [Ablation("x", neurons=[n], features=[f])], saes)[0, 0]
        for s, n, f in zip(SAMPLES, SETS, feats)
    ]
    np.testing.assert_allclose(batched, alone, rtol=1e-5)


def test_bad_sets_are_refused(tiny_llama) -> None:
    with pytest.raises(SaemuiError, match="outside"):
        gold_logprobs(tiny_llama, SAMPLES[:1], [Ablation("x", neurons=[{0: [tiny_llama.d_mlp]}])])
    with pytest.raises(SaemuiError, match="does not exist"):
        gold_logprobs(tiny_llama, SAMPLES[:1], [Ablation("x", neurons=[{9: [0]}])])
    with pytest.raises(SaemuiError, match="no SAE"):
        gold_logprobs(tiny_llama, SAMPLES[:1], [Ablation("x", features=[{0: [0]}])])
    with pytest.raises(SaemuiError, match="entries for"):
        gold_logprobs(tiny_llama, SAMPLES, [Ablation("x", neurons=SETS[:2])])
    with pytest.raises(SaemuiError, match="rows"), ablated(tiny_llama, neurons=SETS[:2]):
        _logits(tiny_llama, _ids(tiny_llama, SAMPLES[0]))


def test_random_controls_match_sizes_avoid_keys_and_are_seeded() -> None:
    keys = [{0: [0, 1], 1: [5]}, {0: [], 1: [1, 2, 3]}]
    draws, short = random_control_sets(keys, 8, n_draws=5, seed=0)
    assert len(draws) == 5 and short.shape == (2, 5) and not short.any()
    for d in draws:
        for ks, rs in zip(keys, d):
            for layer, units in ks.items():
                got = rs.get(layer, np.zeros(0))
                assert len(got) == len(units) and len(set(got.tolist())) == len(got)
                assert not set(got.tolist()) & set(units)
                assert all(0 <= u < 8 for u in got)
    again, _ = random_control_sets(keys, 8, n_draws=5, seed=0)
    other, _ = random_control_sets(keys, 8, n_draws=5, seed=1)
    flat = lambda ds: [u for d in ds for s in d for layer in sorted(s) for u in s[layer].tolist()]  # noqa: E731
    assert flat(again) == flat(draws) and flat(other) != flat(draws)
    # candidates (SAE arm): drawn among them minus the key; too few → shortfall recorded
    cand = [{0: [0, 1, 6], 1: [5, 7]}, {1: [1, 4]}]
    d2, short2 = random_control_sets(keys, 8, n_draws=3, seed=0, candidates=cand)
    assert all(set(d[0][0].tolist()) <= {6} and set(d[1][1].tolist()) <= {4} for d in d2)
    assert short2.tolist() == [[1, 1, 1], [2, 2, 2]]


def test_random_controls_are_uniform_over_non_key_units() -> None:
    # 2 key units of 5: the control draws 2 of the 3 others, so each comes up in 2/3 of 3,000 (sample, draw) pairs
    keys = [{0: [0, 1]}] * 300
    draws, _ = random_control_sets(keys, 5, n_draws=10, seed=0)
    counts = np.bincount([int(u) for d in draws for s in d for u in s[0]], minlength=5)
    assert counts[:2].sum() == 0 and counts.sum() == 6000
    assert np.all(np.abs(counts[2:] - 2000) < 4 * np.sqrt(3000 * (2 / 3) * (1 / 3)))


@pytest.fixture(scope="module")
def neuron_run(tiny_llama):
    cfg = RunConfig(units="neurons", threshold="topk:3", alignment="predicting")
    return compute_mui(tiny_llama, SAMPLES, cfg, progress=False)


def test_key_sets_are_the_runs_sets(neuron_run) -> None:
    ks = key_sets(neuron_run)
    assert len(ks) == len(SAMPLES)
    for i, k in enumerate(ks):
        for r, layer in enumerate(neuron_run.layers):
            np.testing.assert_array_equal(k[layer], neuron_run.sample_sets(i)[r])
    assert all(len(v) == 3 for v in ks[0].values())


def test_logprob_arm_neurons_end_to_end(tiny_llama, neuron_run, tmp_path) -> None:
    arm = logprob_arm(tiny_llama, neuron_run, n_draws=3, seed=0)
    assert arm.basis == "neurons" and arm.ids == [s.id for s in SAMPLES]
    assert arm.random.shape == (3, 3) and not arm.shortfall.any()
    n_key = [sum(len(u) for u in neuron_run.sample_sets(i)) for i in range(3)]
    np.testing.assert_array_equal(arm.n_key, n_key)
    assert min(n_key) > 0
    np.testing.assert_allclose(arm.clean, [_manual_logprob(tiny_llama, s) for s in SAMPLES], rtol=1e-5)
    keys = key_sets(neuron_run)
    want_key = [_manual_logprob(_zeroed_copy(tiny_llama, k), s) for s, k in zip(SAMPLES, keys)]
    np.testing.assert_allclose(arm.key, want_key, rtol=1e-5)
    draws, _ = random_control_sets(keys, tiny_llama.d_mlp, 3, 0)
    want_r = [_manual_logprob(_zeroed_copy(tiny_llama, draws[2][1]), SAMPLES[1])]
    np.testing.assert_allclose(arm.random[1, 2], want_r[0], rtol=1e-5)
    np.testing.assert_allclose(arm.delta_random, arm.clean[:, None] - arm.random)
    back = load_logprob_arm(arm.save(tmp_path / "arm.json"))
    assert back.ids == arm.ids and back.basis == arm.basis
    for k in ("clean", "key", "random", "n_key", "n_tokens", "shortfall"):
        np.testing.assert_array_equal(getattr(back, k), getattr(arm, k))


def test_logprob_arm_sae_controls_among_active_features(tiny_llama, tiny_sae_dir) -> None:
    cfg = RunConfig(units="sae", saes=str(tiny_sae_dir), threshold="topscore:0.9", alignment="response")
    run = compute_mui(tiny_llama, SAMPLES, cfg, progress=False)
    saes = load_saes(tiny_llama, tiny_sae_dir)
    pool = active_features(tiny_llama, result_samples(run), saes, "response")
    keys = key_sets(run)
    for k, p in zip(keys, pool):
        for layer, units in k.items():
            assert set(units.tolist()) <= set(p[layer].tolist())  # key features fired on the scored positions
    arm = logprob_arm(tiny_llama, run, saes=saes, n_draws=2)
    draws, short = random_control_sets(keys, run.n_units, 2, 0, candidates=pool)
    np.testing.assert_array_equal(arm.shortfall, short)
    manual = gold_logprobs(tiny_llama, SAMPLES, [Ablation("r", features=draws[1])], saes)[0]
    np.testing.assert_allclose(arm.random[:, 1], manual, rtol=1e-6)
    assert arm.basis == "sae" and np.isfinite(arm.key).all()


def test_generate_ablated_clean_equals_generate_and_ablated_equals_zeroed_copy(tiny_llama) -> None:
    from saemui.tasks.generation import generate

    prompts = [s.prompt for s in SAMPLES]
    clean = generate(tiny_llama, prompts, max_new_tokens=6, batch_size=2, progress=False)
    out = generate_ablated(
        tiny_llama, prompts, [None, Ablation("k", neurons=SETS)], max_new_tokens=6, batch_size=2
    )
    assert out[0] == clean
    for i, st in enumerate(SETS):
        ref = generate(_zeroed_copy(tiny_llama, st), [prompts[i]], max_new_tokens=6, progress=False)
        assert out[1][i] == ref[0]
    assert out[1] != out[0]


def test_accuracy_arm_end_to_end(tiny_llama) -> None:
    from saemui.tasks import get_task
    from saemui.tasks.pipeline import run_task

    task = get_task("arith-1", max_new_tokens=4)
    items = task.load_items(limit=3)
    run = run_task(
        tiny_llama, task, items, RunConfig(units="neurons", threshold="topk:2"), style="chat", progress=False
    ).result
    arm = accuracy_arm(tiny_llama, task, items, run, n_draws=2)
    assert arm.ids == [str(it.id) for it in items]
    assert arm.random.shape == (3, 2) and arm.key.dtype == bool
    # the clean arm regenerates the run's own responses
    assert arm.responses["clean"] == [r["response"] for r in run.samples]
    np.testing.assert_array_equal(arm.clean, [bool(r["correct"]) for r in run.samples])
    prompts = [task.format_prompt(it, "chat") for it in items]
    want = generate_ablated(tiny_llama, prompts, [Ablation("key", neurons=key_sets(run))], max_new_tokens=4)[
        0
    ]
    assert arm.responses["key"] == want


def test_cli_ablate_writes_the_arm(tiny_llama, neuron_run, tmp_path, capsys) -> None:
    from saemui.cli import main

    run_dir = neuron_run.save(tmp_path / "run")
    out = tmp_path / "arm.json"
    assert main(["ablate", "--run", str(run_dir), "--out", str(out), "--draws", "2", "--n-boot", "200"]) == 0
    got = load_logprob_arm(out)
    want = logprob_arm(tiny_llama, neuron_run, n_draws=2)
    np.testing.assert_allclose(got.key, want.key, rtol=1e-6)
    np.testing.assert_allclose(got.random, want.random, rtol=1e-6)
    assert "E " in capsys.readouterr().out
    assert main(["ablate", "--run", str(run_dir), "--out", str(out), "--draws", "0"]) == 2
