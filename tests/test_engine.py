"""End-to-end MUI on tiny models against an independent computation, and the invariances MUI must have."""

import random

import numpy as np
import pytest
import torch
from reference import ref_keys, ref_mui

from saemui.engine import RunConfig, compute_mui
from saemui.errors import SaemuiError
from saemui.inputs import encode_samples, special_ids
from saemui.records import Sample
from saemui.testing import save_synthetic_sae

SAMPLES = [
    Sample("What is 2 + 3?", "The answer is 5."),
    Sample("Name a capital.", "Paris is the capital of France."),
    Sample("Write code.", "def square(x):\n    return x * x"),
    Sample("Say nothing.", ""),
    Sample("Count.", "1 2 3 4 5 6 7 8 9 10 11 12"),
    Sample("Plants?", "Plants absorb carbon dioxide and release oxygen. The quick brown fox."),
]


def _independent_acts(lm, ids, layer):
    """Residual and MLP down-input of one sequence via plain torch hooks (no saemui capture).

    The block output is hooked directly: transformers 5 replaces hidden_states[-1] by the final-normed state.
    """
    got = {}
    block = lm.model.model.layers[layer]
    h1 = block.mlp.down_proj.register_forward_pre_hook(lambda m, i: got.__setitem__("down", i[0][0].clone()))
    h2 = block.register_forward_hook(
        lambda m, i, o: got.__setitem__("resid", (o[0] if isinstance(o, tuple) else o)[0].clone())
    )
    try:
        lm.model(torch.tensor([ids]))
    finally:
        h1.remove()
        h2.remove()
    return got["resid"].double().numpy(), got["down"].double().numpy()


@pytest.mark.parametrize("alignment", ["predicting", "response"])
@pytest.mark.parametrize("threshold", ["topk:2", "topscore:0.9", "positive"])
def test_neuron_mui_matches_hand_computation(tiny_llama, alignment, threshold):
    lm = tiny_llama
    cfg = RunConfig(units="neurons", threshold=threshold, alignment=alignment, max_batch_size=3)
    res = compute_mui(lm, SAMPLES, cfg, progress=False)
    enc = encode_samples(lm.tokenizer, SAMPLES, alignment)
    W_U = lm.model.lm_head.weight.detach().double().numpy()
    mode, _, arg = threshold.partition(":")
    eta, k = (float(arg), 1) if mode == "topscore" else (0.9, int(arg or 1))
    keys = []
    for e in enc:
        per_layer = []
        for layer in range(lm.n_layers):
            _, down = _independent_acts(lm, e.ids, layer)
            W_down = lm.model.model.layers[layer].mlp.down_proj.weight.detach().double().numpy()  # [D, I]
            # score[p, i] = a[p, i] * (W_down[:, i] . W_U[target_p])
            S = (
                np.stack([down[p] * (W_down.T @ W_U[t]) for p, t in zip(e.score_pos, e.target)])
                if len(e.score_pos)
                else np.zeros((0, W_down.shape[1]))
            )
            per_layer.append(ref_keys(S, mode, eta=eta, k=k))
        keys.append(per_layer)
    mui, per_layer = ref_mui(keys, lm.d_mlp)
    assert res.mui == pytest.approx(mui, abs=1e-12)
    assert res.per_layer == pytest.approx(per_layer, abs=1e-12)
    for s, per in enumerate(keys):
        assert [set(a.tolist()) for a in res.sample_sets(s)] == per


def test_corrected_alignment_targets_next_token(tiny_llama):
    e = encode_samples(tiny_llama.tokenizer, SAMPLES[:1], "predicting")[0]
    assert e.score_pos[0] == e.response_start - 1
    assert all(e.ids[p + 1] == t for p, t in zip(e.score_pos, e.target))
    p = encode_samples(tiny_llama.tokenizer, SAMPLES[:1], "response")[0]
    assert p.score_pos[0] == p.response_start and all(p.ids[q] == t for q, t in zip(p.score_pos, p.target))


@pytest.fixture(scope="module")
def tiny_sae_suite(tiny_llama, tmp_path_factory):
    root = tmp_path_factory.mktemp("sae-suite")
    for layer in range(tiny_llama.n_layers):
        save_synthetic_sae(root / f"layer_{layer}", 64, 48, f"blocks.{layer}.hook_resid_post", seed=layer)
    return root


@pytest.mark.parametrize("threshold", ["topscore:0.9", "topk:3", "positive"])
def test_sae_mui_matches_encode_of_clean_residuals(tiny_llama, tiny_sae_suite, threshold):
    from saemui.saes import load_sae_dir

    lm = tiny_llama
    res = compute_mui(
        lm,
        SAMPLES,
        RunConfig(units="sae", saes=str(tiny_sae_suite), threshold=threshold, encode_chunk=5),
        progress=False,
    )
    enc = encode_samples(lm.tokenizer, SAMPLES, "response")
    saes = [load_sae_dir(tiny_sae_suite / f"layer_{layer}") for layer in range(lm.n_layers)]
    mode, _, arg = threshold.partition(":")
    eta, k = (float(arg), 1) if mode == "topscore" else (0.9, int(arg or 1))
    keys = []
    for e in enc:
        per = []
        for layer in range(lm.n_layers):
            resid, _ = _independent_acts(lm, e.ids, layer)
            with torch.no_grad():
                feats = (
                    saes[layer].encode(torch.tensor(resid[e.score_pos], dtype=torch.float32)).double().numpy()
                )
            per.append(ref_keys(feats, mode, eta=eta, k=k, positive_only=True))
        keys.append(per)
    mui, _ = ref_mui(keys, 48)
    assert res.mui == pytest.approx(mui, abs=1e-12)
    assert res.summary["units"]["kind"] == "sae"
    h = res.summary["sae_health"][0]
    assert 0 <= h["dead_fraction"] <= 1 and h["l0"] > 0 and h["explained_variance"] is not None


def _sets_by_id(res):
    return {row["id"]: [a.tolist() for a in res.sample_sets(i)] for i, row in enumerate(res.samples)}


@pytest.mark.parametrize("units", ["neurons", "sae"])
def test_mui_invariant_to_batch_size_padding_and_order(tiny_llama, tiny_sae_suite, units):
    base = dict(units=units, saes=str(tiny_sae_suite) if units == "sae" else None, threshold="topk:2")
    ref = compute_mui(tiny_llama, SAMPLES, RunConfig(**base, max_batch_size=1), progress=False)
    shuffled = SAMPLES[:]
    random.Random(0).shuffle(shuffled)
    shuffled = [Sample(s.prompt, s.response, id=str(SAMPLES.index(s))) for s in shuffled]
    variants = [
        (SAMPLES, RunConfig(**base, max_batch_size=4)),
        (SAMPLES, RunConfig(**base, max_batch_size=32, padding_side="left")),
        (SAMPLES, RunConfig(**base, max_batch_size=3, padding_side="right")),
        (shuffled, RunConfig(**base, max_batch_size=4)),
    ]
    for samples, cfg in variants:
        got = compute_mui(tiny_llama, samples, cfg, progress=False)
        assert got.mui == ref.mui
        assert np.array_equal(got.arrays["union_LU"], ref.arrays["union_LU"])
        assert np.array_equal(got.arrays["fire_LU"], ref.arrays["fire_LU"])
        assert _sets_by_id(got) == _sets_by_id(ref)


def test_mui_grows_with_samples_and_subset_matches_rerun(tiny_llama):
    cfg = RunConfig(units="neurons", threshold="topk:2")
    full = compute_mui(tiny_llama, SAMPLES, cfg, progress=False)
    part = compute_mui(tiny_llama, SAMPLES[:3], cfg, progress=False)
    assert part.mui <= full.mui
    assert full.subset_mui([0, 1, 2]) == part.mui


def test_correct_only_mui(tiny_llama):
    samples = [Sample(s.prompt, s.response, correct=(i % 2 == 0)) for i, s in enumerate(SAMPLES)]
    res = compute_mui(tiny_llama, samples, RunConfig(units="neurons", threshold="topk:2"), progress=False)
    sub = compute_mui(
        tiny_llama,
        [s for s in samples if s.correct],
        RunConfig(units="neurons", threshold="topk:2"),
        progress=False,
    )
    assert res.summary["mui_correct"] == sub.mui
    assert res.summary["accuracy"] == pytest.approx(0.5)


def test_other_families_run(tiny_models):
    for fam in ("gemma", "gpt2"):
        lm = tiny_models[fam]
        res = compute_mui(lm, SAMPLES, RunConfig(units="neurons", threshold="topk:2"), progress=False)
        assert 0 < res.mui < 1
        assert res.summary["n_tokens"] == sum(
            len(e.score_pos) for e in encode_samples(lm.tokenizer, SAMPLES, "predicting")
        )


def test_special_tokens_never_scored(tiny_llama):
    tok = tiny_llama.tokenizer
    specials = special_ids(tok)
    s = [Sample("Hi", "Paris is nice.<|im_end|>")]
    for alignment in ("response", "predicting"):
        e = encode_samples(tok, s, alignment)[0]
        assert all(t not in specials for t in e.target)
        if alignment == "response":
            assert all(e.ids[p] not in specials for p in e.score_pos)
    # A trailing EOS changes no key set.
    a = compute_mui(
        tiny_llama,
        [Sample("Hi", "Paris is nice.")],
        RunConfig(units="neurons", alignment="response"),
        progress=False,
    )
    b = compute_mui(tiny_llama, s, RunConfig(units="neurons", alignment="response"), progress=False)
    assert np.array_equal(a.arrays["union_LU"], b.arrays["union_LU"])


def test_truncation_is_recorded(tiny_llama):
    long = Sample("Count.", " ".join(str(i) for i in range(200)))
    res = compute_mui(tiny_llama, [long], RunConfig(units="neurons", max_length=40), progress=False)
    assert res.summary["n_truncated_samples"] == 1 and res.samples[0]["truncated"] > 0


def test_finished_sae_groups_are_freed_before_the_next_loads(tiny_llama, tmp_path, monkeypatch):
    """SAEs with input normalisation hold self-referencing closures (a cycle): without a collection per group,
    finished groups stay resident until Python's cyclic GC happens to run. With the GC off, at most one group
    (size 1) may be alive while a layer is scored, and none after the run."""
    import gc
    import weakref

    from saemui import engine
    from saemui.engine import Observer

    for layer in range(3):
        save_synthetic_sae(
            tmp_path / f"l{layer}",
            64,
            96,
            f"blocks.{layer}.hook_resid_post",
            arch="jumprelu",
            seed=layer,
            normalize_activations="layer_norm",
        )
    loaded: list = []
    real = engine._load_sae_group

    def tracking(lm, entries, cfg):
        group = real(lm, entries, cfg)
        loaded.extend(weakref.ref(s.sae) for s in group.scorers)
        return group

    monkeypatch.setattr(engine, "_load_sae_group", tracking)
    alive_during: list[int] = []

    class Count(Observer):
        def observe(self, layer, batch, off, scores_nU):
            alive_during.append(sum(r() is not None for r in loaded))

    gc.collect()
    gc.disable()
    try:
        cfg = RunConfig(saes=str(tmp_path), sae_group_size=1, health=False)
        compute_mui(tiny_llama, SAMPLES[:3], cfg, progress=False, observers=[Count()])
        alive_after = sum(r() is not None for r in loaded)
    finally:
        gc.enable()
    assert len(loaded) == 3 and max(alive_during) == 1 and alive_after == 0


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [("padding_side", "middle", "padding side 'middle'"), ("alignment", "both", "alignment 'both'")],
)
def test_config_fields_refused_before_any_model_work(field, value, match):
    with pytest.raises(SaemuiError, match=match):
        RunConfig(units="neurons", **{field: value}).resolved()


def test_heap_is_trimmed_after_every_batch(tiny_llama, monkeypatch):
    """Peak RSS crept up with the number of batches from glibc heap fragmentation (docs/performance.md): the
    engine returns free pages after each batch of each group."""
    import platform
    import sys

    from saemui import engine, heap

    calls: list[int] = []
    monkeypatch.setattr(engine, "trim_heap", lambda: calls.append(1) or True)
    cfg = RunConfig(units="neurons", max_batch_size=2)
    compute_mui(tiny_llama, SAMPLES[:5], cfg, progress=False)
    assert len(calls) == 3  # ceil(5 / 2) batches, one group
    # the real call: found and run on Linux with glibc (CI), a clean no-op anywhere else
    glibc = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"
    assert heap.trim_heap() is glibc
