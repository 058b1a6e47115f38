"""Context collector against brute force, merging, histograms, saved files and the DataFrame views."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import false_discovery_control, fisher_exact

from saemui.engine import RunConfig, compute_mui
from saemui.errors import SaemuiError
from saemui.explore import (
    HIST_INNER,
    N_BINS,
    ContextCollector,
    compare_runs,
    correct_vs_incorrect,
    explore_run,
    feature_contexts,
    lens_ids,
    logit_lens,
    neuronpedia_ids,
    plot_histogram,
    plot_layer_mui,
    stored_logit_lens,
    top_features,
    unique_features,
    unit_directions,
)
from saemui.inputs import Batch
from saemui.records import Sample
from saemui.result import MUIResult

SAMPLES = [
    Sample("What is 2 + 3?", "The answer is 5.", correct=True),
    Sample("Name a capital.", "Paris is the capital of France.", correct=False),
    Sample("Count to ten.", "1 2 3 4 5 6 7 8 9 10", correct=True),
    Sample("Describe a fox.", "The quick brown fox jumps over the lazy dog.", correct=False),
]


def fake_batches(rng: np.random.Generator, n_batches: int, U: int, first_sample: int = 0):
    """Random right-padded batches with scored tokens and tie-heavy scores; yields (batch, scores [N, U])."""
    s_next = first_sample
    for _ in range(n_batches):
        B = int(rng.integers(1, 5))
        lens = rng.integers(3, 12, size=B)
        T = int(lens.max())
        ids = torch.zeros(B, T, dtype=torch.long)
        mask = torch.zeros(B, T, dtype=torch.long)
        flat, seg = [], []
        for b, n in enumerate(lens):
            ids[b, :n] = torch.as_tensor(rng.integers(3, 50, size=n))
            mask[b, :n] = 1
            pos = sorted(rng.choice(np.arange(1, n), size=int(rng.integers(1, n)), replace=False).tolist())
            flat += [b * T + p for p in pos]
            seg += [b] * len(pos)
        # sample indices are not in row order (batches are length-sorted in the engine)
        sample_index = [s_next + int(i) for i in rng.permutation(B)]
        s_next += B
        batch = Batch(
            ids,
            mask,
            (mask.cumsum(1) - 1).clamp(min=0),
            torch.as_tensor(flat),
            torch.as_tensor(seg),
            torch.zeros(len(flat), dtype=torch.long),
            sample_index,
        )
        # few distinct values → many exact ties, including at 0 and below (never kept)
        scores = torch.as_tensor(rng.integers(-3, 6, size=(len(flat), U)) / 2.0, dtype=torch.float32)
        yield batch, scores


def feed(coll: ContextCollector, stream, layer: int, rng: np.random.Generator) -> None:
    for batch, scores in stream:
        off = 0
        while off < scores.shape[0]:  # chunks of random size, as encode_chunk makes them
            n = int(rng.integers(1, 6))
            coll.observe(layer, batch, off, scores[off : off + n])
            off += n


def brute_force(stream, U: int, N: int, units=None):
    entries = {u: [] for u in range(U)}
    hist = np.zeros((U, N_BINS), np.int64)
    for batch, scores in stream:
        T = batch.input_ids_BT.shape[1]
        for i in range(scores.shape[0]):
            s = batch.sample_index[int(batch.seg_N[i])]
            p = int(batch.flat_N[i]) % T
            for u in range(U):
                v = float(scores[i, u])
                if v > 0:
                    entries[u].append((v, s, p))
                    hist[u, np.searchsorted(HIST_INNER, v, side="right")] += 1
    tracked = range(U) if units is None else units
    return {u: sorted(entries[u], key=lambda t: (-t[0], t[1], t[2]))[:N] for u in tracked}, hist


@pytest.mark.parametrize("N", [1, 3, 7])
def test_collector_equals_brute_force(N):
    rng = np.random.default_rng(N)
    U = 9
    stream = list(fake_batches(rng, 6, U))
    coll = ContextCollector(N)
    feed(coll, stream, layer=4, rng=rng)
    want, hist = brute_force(stream, U, N)
    assert coll.layers == [4]
    for u in range(U):
        assert coll.top(4, u) == want[u], u
        assert np.array_equal(coll.histogram(4, u)[0], hist[u])
    # histograms sum to the firing counts (score > 0)
    total = sum(int((sc > 0).sum()) for _, sc in stream)
    assert coll.hist_LU(4).sum() == total


def test_collector_restricted_units_and_untracked_layers():
    rng = np.random.default_rng(1)
    stream = list(fake_batches(rng, 4, 8))
    coll = ContextCollector(4, units={2: [6, 1, 6]})
    feed(coll, stream, layer=2, rng=np.random.default_rng(0))
    feed(coll, stream[:1], layer=3, rng=np.random.default_rng(0))
    want, hist = brute_force(stream, 8, 4, units=[1, 6])
    assert coll.layers == [2]
    assert coll.state[2].vals_RN.shape == (2, 4)
    assert coll.top(2, 1) == want[1] and coll.top(2, 6) == want[6]
    assert np.array_equal(coll.histogram(2, 6)[0], hist[6])
    assert not coll.has(2, 0)
    with pytest.raises(SaemuiError, match="no contexts"):
        coll.top(2, 0)


def test_merge_equals_single_pass_and_save_load(tmp_path):
    rng = np.random.default_rng(7)
    stream = list(fake_batches(rng, 8, 6))
    single = ContextCollector(5)
    feed(single, stream, 0, np.random.default_rng(1))
    a, b = ContextCollector(5), ContextCollector(5)
    feed(a, stream[:3], 0, np.random.default_rng(2))
    feed(b, stream[3:], 0, np.random.default_rng(3))
    # b goes through a file, so load restores a mergeable state
    b.save(tmp_path / "b.npz")
    merged = a.merge(ContextCollector.load(tmp_path / "b.npz"))
    for u in range(6):
        assert merged.top(0, u) == single.top(0, u)
        assert np.array_equal(merged.histogram(0, u)[0], single.histogram(0, u)[0])
    assert merged.tokens.keys() == single.tokens.keys()
    for s in single.tokens:
        assert np.array_equal(merged.tokens[s], single.tokens[s])
    with pytest.raises(SaemuiError, match="share samples"):
        merged.merge(ContextCollector.load(tmp_path / "b.npz"))
    with pytest.raises(SaemuiError, match="contexts"):
        ContextCollector(5).merge(ContextCollector(4))


def test_collector_in_engine_matches_fire_counts(tiny_llama):
    coll = ContextCollector(3)
    res = compute_mui(tiny_llama, SAMPLES, RunConfig(units="neurons", threshold="topk:2"), False, [coll])
    assert coll.layers == res.layers
    for r, layer in enumerate(res.layers):
        assert np.array_equal(coll.hist_LU(layer).sum(1), res.arrays["fire_LU"][r])
    # every context points at a scored token whose recorded id is real
    for layer in res.layers:
        for u in range(0, res.n_units, 17):
            for v, s, p in coll.top(layer, u):
                assert v > 0 and 0 <= p < len(coll.tokens[s])
                assert coll.first_scored[s] <= p


def test_explore_run_neurons_saves_contexts_and_lens(tiny_llama, tmp_path):
    out = tmp_path / "run"
    res, coll = explore_run(
        tiny_llama, SAMPLES, RunConfig(units="neurons", threshold="topk:2"), out, n_contexts=4, progress=False
    )
    assert (out / "contexts.npz").is_file() and (out / "summary.json").is_file()
    back = ContextCollector.load(out)
    assert back.meta["alignment"] == "predicting" and back.meta["units_kind"] == "neurons"
    layer = res.layers[1]
    top = top_features(res, layer, "keyfreq", 3)
    u = int(top["unit"].iloc[0])
    assert back.top(layer, u) == coll.top(layer, u)
    df = feature_contexts(back, layer, u, window=3, result=res)
    assert list(df["rank"]) == list(range(1, len(df) + 1))
    assert (df["value"].diff().dropna() <= 0).all()
    assert set(df["sample_id"]) <= {s.id for s in SAMPLES} | {"0", "1", "2", "3"}
    assert all("[[" in t for t in df["text"])
    # the stored logit lens is W_U · W_down[:, u]
    lens = stored_logit_lens(back, layer, u)
    d = unit_directions(tiny_llama, layer, [u])[0]
    direct = logit_lens(d, tiny_llama.W_U_VD, tiny_llama.tokenizer, 10)
    pd.testing.assert_frame_equal(lens, direct, check_dtype=False, atol=1e-5)
    # plots for notebooks
    assert plot_histogram(back, layer, u).axes and plot_layer_mui([res, res], ["a", "b"]).axes


def test_explore_run_sae_lens_uses_decoder(tiny_llama, tmp_path):
    from saemui.testing import save_synthetic_sae

    saes = tmp_path / "saes"
    for layer in range(3):
        save_synthetic_sae(saes / f"l{layer}", 64, 128, f"blocks.{layer}.hook_resid_post", seed=layer)
    res, coll = explore_run(
        tiny_llama, SAMPLES, RunConfig(units="sae", saes=str(saes)), tmp_path / "run", progress=False
    )
    assert coll.meta["neuronpedia"] == {}
    from saemui.saes import load_sae_dir

    sae = load_sae_dir(saes / "l2")
    u = int(np.nonzero(res.arrays["union_LU"][2])[0][0])
    ti, tv, _, _ = lens_ids(sae.W_dec[[u]].float(), tiny_llama.W_U_VD, 5)
    assert np.array_equal(coll.lens[(2, u)][0][:5], ti[0])
    logits = (tiny_llama.W_U_VD.float() @ sae.W_dec[u].float()).detach()
    assert np.allclose(coll.lens[(2, u)][1][:5], torch.topk(logits, 5).values.numpy(), atol=1e-5)


def _result(union, fire, keyfreq, sets, correct, n_tokens=100) -> MUIResult:
    """A hand-made result: ``sets[s][r]`` are sample s's key units on layer row r."""
    L = len(union)
    chunks = [np.asarray(sets[s][r], np.int32) for s in range(len(sets)) for r in range(L)]
    indptr = np.concatenate([[0], np.cumsum([len(c) for c in chunks])])
    arrays = {
        "union_LU": np.asarray(union, bool),
        "fire_LU": np.asarray(fire, np.int64),
        "keyfreq_LU": np.asarray(keyfreq, np.int64),
        "n_tokens_L": np.full(L, n_tokens),
        "set_indptr": indptr,
        "set_units": np.concatenate(chunks) if chunks else np.zeros(0, np.int32),
    }
    summary = {
        "layers": list(range(L)),
        "n_samples": len(sets),
        "units": {"kind": "sae", "n_units": len(union[0]), "sae_source": {}},
    }
    samples = [{"index": i, "id": str(i), "correct": c} for i, c in enumerate(correct)]
    return MUIResult(summary, arrays, samples)


def test_top_features_orders_and_rates():
    r = _result(
        [[1, 1, 0, 1], [0, 0, 0, 0]],
        [[5, 9, 9, 0], [0, 0, 0, 0]],
        [[2, 1, 0, 3], [0, 0, 0, 0]],
        [[[0, 3], []]] * 2 + [[[1, 3], []]] + [[[3], []]],
        [None] * 4,
    )
    df = top_features(r, 0, "fire", 10)
    assert df["unit"].tolist() == [1, 2, 0]  # 9 (keyfreq 1) before 9 (keyfreq 0), then 5; unit 3 never fires
    assert df["fire_rate"].tolist() == [0.09, 0.09, 0.05]
    df = top_features(r, 0, "keyfreq", 2)
    assert df["unit"].tolist() == [3, 0] and df["key_rate"].tolist() == [0.75, 0.5]
    assert top_features(r, 1, "fire").empty
    with pytest.raises(SaemuiError):
        top_features(r, 0, "nope")
    with pytest.raises(SaemuiError, match="layer 5"):
        top_features(r, 5)


def test_compare_and_unique_features():
    z = [0] * 6
    a = _result([[1, 1, 0, 0, 1, 0], [1, 0, 0, 0, 0, 0]], [z, z], [[3, 1, 0, 0, 2, 0], [1] + z[1:]], [], [])
    b = _result([[0, 1, 1, 0, 0, 0], [0] * 6], [[4, 0, 0, 0, 7, 0], z], [[0, 2, 1, 0, 0, 0], z], [], [])
    a.summary["n_samples"] = b.summary["n_samples"] = 4
    df = compare_runs(a, b)
    assert df["layer"].tolist() == [0, 1, "all"]
    assert df.iloc[0][["n_a", "n_b", "shared", "only_a", "only_b"]].tolist() == [3, 2, 1, 2, 1]
    assert df.iloc[0]["jaccard"] == pytest.approx(1 / 4)
    assert df.iloc[1]["jaccard"] == 0.0 and df.iloc[2]["jaccard"] == pytest.approx(1 / 5)
    uq = unique_features(a, b, 10)
    ua = uq[uq["side"] == "a"]
    assert list(zip(ua["layer"], ua["unit"])) == [(0, 0), (0, 4), (1, 0)]
    assert ua["fire_rate_other"].tolist() == [0.04, 0.07, 0.0]
    assert uq[uq["side"] == "b"][["layer", "unit"]].values.tolist() == [[0, 2]]
    c = _result([[1] * 5], [[0] * 5], [[0] * 5], [], [])
    with pytest.raises(SaemuiError, match="units"):
        compare_runs(a, c)


def test_correct_vs_incorrect_matches_scipy():
    rng = np.random.default_rng(3)
    S, U = 40, 12
    correct = [bool(x) for x in rng.integers(0, 2, S)]
    sets = []
    for s in range(S):
        p = np.full(U, 0.2)
        p[2] = 0.9 if correct[s] else 0.1  # unit 2 separates the groups
        sets.append([np.nonzero(rng.random(U) < p)[0], []])
    union = [np.zeros(U, bool), np.zeros(U, bool)]
    for s in sets:
        union[0][s[0]] = True
    r = _result(union, [[0] * U] * 2, [[0] * U] * 2, sets, correct)
    df = correct_vs_incorrect(r)
    assert df.iloc[0]["unit"] == 2 and df.iloc[0]["diff"] > 0.5 and df.iloc[0]["q"] < 1e-4
    nc, ni = sum(correct), S - sum(correct)
    for row in df.itertuples():
        a = sum(row.unit in sets[s][0] for s in range(S) if correct[s])
        b = sum(row.unit in sets[s][0] for s in range(S) if not correct[s])
        assert (row.n_correct_key, row.n_incorrect_key) == (a, b)
        assert row.p == pytest.approx(fisher_exact([[a, nc - a], [b, ni - b]])[1])
    assert np.allclose(df["q"], false_discovery_control(df["p"].to_numpy()))
    assert (df["layer"] == 0).all()  # nothing is key on layer 1: nothing tested there
    with pytest.raises(SaemuiError, match="incorrect"):
        correct_vs_incorrect(_result(union, [[0] * U] * 2, [[0] * U] * 2, sets, [True] * S))


def test_neuronpedia_ids_from_registry():
    r = _result([[1]], [[1]], [[1]], [], [])
    assert neuronpedia_ids(r) == {}
    r.summary["units"]["sae_source"] = {
        "kind": "sae-lens-registry",
        "release": "gpt2-small-res-jb",
        "ids": {"0": "blocks.0.hook_resid_pre", "1": "blocks.1.hook_resid_pre"},
    }
    assert neuronpedia_ids(r) == {0: "gpt2-small/0-res-jb", 1: "gpt2-small/1-res-jb"}


def test_token_score_recorder_one_context_per_sample_top_and_quantiles():
    """Shown contexts against a brute-force reading of the same stream: the top samples are those with the
    highest peak (ties by sample index), quantile contexts come from the pool, no sample twice, and each
    window holds the unit's scores around the peak (random chunk sizes split samples across chunks)."""
    from saemui.explore import TokenScoreRecorder

    rng = np.random.default_rng(3)
    U = 6
    stream = list(fake_batches(rng, 8, U))
    pool = list(range(0, 48, 2))
    rec = TokenScoreRecorder({4: [1, 3, 5]}, pool, n_top=2, n_quantile=3, window=3)
    feed(rec, stream, layer=4, rng=rng)
    shown = rec.shown()
    # brute force: per (unit, sample) the token scores by position
    per: dict[tuple[int, int], dict[int, float]] = {}
    for batch, scores in stream:
        T = batch.input_ids_BT.shape[1]
        for i in range(scores.shape[0]):
            s, p = batch.sample_index[int(batch.seg_N[i])], int(batch.flat_N[i]) % T
            for u in (1, 3, 5):
                per.setdefault((u, s), {})[p] = float(scores[i, u])
    assert set(shown) <= {(4, 1), (4, 3), (4, 5)} and shown
    for (_layer, u), ctxs in shown.items():
        peaks = {s: max(d.values()) for (uu, s), d in per.items() if uu == u and max(d.values()) > 0}
        # the first position reaching the peak, as np.argmax over positions in order
        where = {s: min(p for p, v in per[(u, s)].items() if v == peaks[s]) for s in peaks}
        top = sorted(peaks, key=lambda s: (-peaks[s], s))[:2]
        assert [c.sample for c in ctxs if c.kind == "top"] == top
        q = [c for c in ctxs if c.kind == "quantile"]
        assert all(c.sample in pool and c.sample not in top for c in q)
        assert len(q) == min(3, len([s for s in peaks if s in pool and s not in top]))
        assert len({c.sample for c in ctxs}) == len(ctxs)  # one context per sample
        for c in ctxs:
            assert c.value == peaks[c.sample] and c.pos == where[c.sample]
            for j, v in enumerate(c.scores):
                want = per[(u, c.sample)].get(c.pos0 + j)
                assert (np.isnan(v) and want is None) or v == want
        if q:  # quantile contexts run from higher to lower peaks
            assert [c.value for c in q] == sorted((c.value for c in q), reverse=True)


def test_explore_run_keeps_shown_contexts(tiny_llama, tmp_path):
    out = tmp_path / "run"
    res, coll = explore_run(
        tiny_llama, SAMPLES, RunConfig(units="neurons", threshold="topk:2"), out, n_top=3, progress=False
    )
    assert coll.shown
    back = ContextCollector.load(out)
    assert set(back.shown) == set(coll.shown)
    k = next(iter(coll.shown))
    a, b = coll.shown[k][0], back.shown[k][0]
    assert (a.kind, a.sample, a.pos) == (b.kind, b.sample, b.pos)
    assert np.allclose(a.scores, b.scores, rtol=1e-2, equal_nan=True)  # stored as float16
    # the peak of a shown context is a real kept score: the unit's overall best sample matches the top list
    layer, u = k
    assert coll.shown[k][0].value == pytest.approx(coll.top(layer, u)[0][0], rel=1e-5)
