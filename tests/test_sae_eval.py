"""saemui.sae_eval against small hand computations in numpy on fixed data."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from saemui import sae_eval as se
from saemui.errors import SaemuiError
from saemui.records import Sample


class IdentitySAE:
    """Exact identity: features are the positive and negative parts of x, so decode(encode(x)) == x."""

    def __init__(self, d: int, scale: float = 1.0):
        self.d, self.scale = d, scale
        self.b_dec = torch.zeros(d)
        self.W_dec = torch.zeros(2 * d, d)

    def encode(self, x):
        return torch.cat([x.clamp(min=0), (-x).clamp(min=0)], -1)

    def decode(self, f):
        return self.scale * (f[:, : self.d] - f[:, self.d :])


def test_sink_mask_matches_hand_rule():
    # row 0: right-padded, 4 real tokens; row 1: left-padded, 4 real tokens; special id 7.
    ids = torch.tensor([[5, 7, 6, 6, 0], [0, 5, 6, 7, 6]])
    att = torch.tensor([[1, 1, 1, 1, 0], [0, 1, 1, 1, 1]])
    norms = np.array([[100.0, 1.0, 2.0, 3.0, 9.0], [50.0, 4.0, 1000.0, 1.0, 2.5]])
    acts = torch.zeros(2, 5, 3)
    acts[..., 0] = torch.tensor(norms, dtype=torch.float32)  # a one-hot direction: the norm is the entry
    keep, cnt = se.sink_mask(acts, ids, att, special_ids={7}, norm_factor=20.0)
    # hand: first real positions (0,0), (1,1); specials (0,1), (1,3); the candidates' norms are
    # {2, 3} ∪ {1000, 2.5} → median 2.75, threshold 55 → (1,2) is a sink.
    cand = [2.0, 3.0, 1000.0, 2.5]
    assert np.median(cand) == 2.75
    expect = np.zeros((2, 5), bool)
    expect[0, 2] = expect[0, 3] = expect[1, 4] = True
    assert np.array_equal(keep.numpy(), expect)
    assert cnt.n_tokens == 8
    assert cnt.dropped == {"position0": 2, "special": 2, "high_norm": 1}
    assert cnt.shares["total"] == pytest.approx(5 / 8)
    # factor 1000: nothing dropped for its norm; norm rule off: the same
    keep2, cnt2 = se.sink_mask(acts, ids, att, {7}, norm_factor=1000.0)
    assert cnt2.dropped["high_norm"] == 0 and bool(keep2[1, 2])
    _, cnt3 = se.sink_mask(acts, ids, att, {7}, norm_factor=None)
    assert cnt3.dropped["high_norm"] == 0
    # a read mask restricts counts but keeps position 0 / median on the whole sequence
    read = torch.zeros(2, 5, dtype=torch.bool)
    read[1, 2:] = True
    keep4, cnt4 = se.sink_mask(acts, ids, att, {7}, 20.0, read_BT=read)
    assert cnt4.n_tokens == 3 and cnt4.dropped == {"position0": 0, "special": 1, "high_norm": 1}
    assert keep4.sum() == 1 and bool(keep4[1, 4])


def _fixed(n=40, d=6, f=10, seed=3):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)) * rng.uniform(0.5, 3, size=d) + rng.normal(size=d)
    xh = x + rng.normal(scale=0.4, size=(n, d))
    feats = np.where(rng.random((n, f)) < 0.3, rng.random((n, f)), 0.0)
    feats[:, 0] = 0.0  # feature 0 is dead
    feats[:, 1] = 0.5  # feature 1 fires on every token (dense)
    return x, xh, feats


def test_recon_stats_match_numpy():
    x, xh, feats = _fixed()
    c = np.linspace(-1, 1, x.shape[1])
    st = se.ReconStats(x.shape[1], feats.shape[1], center_D=torch.tensor(c))
    st.add(torch.tensor(x, dtype=torch.float32), torch.tensor(xh, dtype=torch.float32), torch.tensor(feats))
    s = st.summary()
    x32, xh32 = x.astype(np.float32).astype(np.float64), xh.astype(np.float32).astype(np.float64)
    err = ((x32 - xh32) ** 2).sum(1)
    assert s["n_tokens"] == 40
    assert s["fve_pooled"] == pytest.approx(1 - err.sum() / ((x32 - x32.mean(0)) ** 2).sum(), rel=1e-10)
    tok = 1 - err / ((x32 - c) ** 2).sum(1)
    assert s["fve_token_median"] == pytest.approx(np.median(tok), rel=1e-10)
    assert s["fve_token_quantiles"]["q0.05"] == pytest.approx(np.quantile(tok, 0.05), rel=1e-10)
    assert s["mse"] == pytest.approx(err.mean() / 6, rel=1e-10)
    cos = (x32 * xh32).sum(1) / np.linalg.norm(x32, axis=1) / np.linalg.norm(xh32, axis=1)
    assert s["cosine"] == pytest.approx(cos.mean(), rel=1e-9)
    assert s["l0"] == pytest.approx((feats != 0).sum(1).mean())
    fires = (feats != 0).sum(0)
    assert s["dead_frac"] == pytest.approx((fires == 0).mean())
    assert s["dense_frac"] == pytest.approx((fires / 40 > 0.1).mean())
    assert s["dead_frac"] >= 0.1 and s["dense_frac"] >= 0.1


def test_recon_stats_merge_equals_one_pass():
    x, xh, feats = _fixed(n=57)
    t = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
    one = se.ReconStats(6, 10)
    one.add(t(x), t(xh), t(feats))
    parts = [se.ReconStats(6, 10) for _ in range(3)]
    for p, sl in zip(parts, (slice(0, 20), slice(20, 21), slice(21, 57)), strict=True):
        p.add(t(x[sl]), t(xh[sl]), t(feats[sl]))
    merged = parts[0].merge(parts[1]).merge(parts[2])
    a, b = one.summary(), merged.summary()
    for k in ("fve_pooled", "fve_token_median", "mse", "cosine", "l0", "dead_frac", "dense_frac"):
        assert a[k] == pytest.approx(b[k], rel=1e-12, abs=1e-15), k
    assert np.array_equal(one.per_token_fve(), merged.per_token_fve())
    # state round trip (resumable evaluations)
    again = se.ReconStats.from_state(merged.state())
    assert again.summary()["fve_pooled"] == pytest.approx(a["fve_pooled"], rel=1e-12)
    with pytest.raises(SaemuiError):
        one.merge(se.ReconStats(6, 10, center_D=torch.ones(6)))


def _log_softmax(logits):
    """log-softmax over the vocabulary in numpy float64."""
    lg = logits.double().numpy()
    lp = (
        lg - np.log(np.exp(lg - lg.max(-1, keepdims=True)).sum(-1, keepdims=True)) - lg.max(-1, keepdims=True)
    )
    return lp


@pytest.mark.parametrize("family", ["llama", "gemma"])
def test_ce_identity_zero_and_hand_splice(tiny_models, family):
    lm = tiny_models[family]
    tok = lm.tokenizer
    texts = [
        "The quick brown fox jumps over the lazy dog.",
        "What is 2 + 3? The answer is 5.",
        "Paris is nice.",
    ]
    seqs = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    batches = se.batches_from_ids(seqs, tok.pad_token_id, max_batch_tokens=10_000)
    assert len(batches) == 1
    layer = 1
    ident = se.ce_eval(lm, {layer: IdentitySAE(lm.d_model)}, batches)[layer].summary()
    assert ident["ce_loss_recovered"] == pytest.approx(1.0, abs=1e-4)
    assert ident["kl_spliced"] == pytest.approx(0.0, abs=1e-5)
    assert ident["kl_zero_ablation"] > 1e-3
    zero = se.ce_eval(lm, {layer: IdentitySAE(lm.d_model, scale=0.0)}, batches)[layer].summary()
    assert zero["ce_loss_recovered"] == pytest.approx(0.0, abs=1e-4)
    assert zero["kl_spliced"] == pytest.approx(zero["kl_zero_ablation"], rel=1e-5)
    # hand splice: x -> 0.5 x at the non-sink positions found by numpy, CE from numpy log-softmax
    b = batches[0]
    got = {}
    h = lm.arch.layers(lm.model)[layer].register_forward_hook(
        lambda m, i, o: got.setdefault("h", se._first(o))
    )
    with torch.no_grad():
        clean = lm.model(input_ids=b.input_ids_BT, attention_mask=b.attention_mask_BT).logits
    h.remove()
    hid = got["h"].double().numpy()
    att = b.attention_mask_BT.numpy().astype(bool)
    ids = b.input_ids_BT.numpy()
    first = att & (np.cumsum(att, 1) - 1 == 0)
    spec = np.isin(ids, sorted(se_specials(tok))) & att & ~first
    cand = att & ~first & ~spec
    norms = np.linalg.norm(hid, axis=-1)
    keep = cand & ~(norms > 20 * np.median(norms[cand]))
    keep_t = torch.tensor(keep)

    def hook(m, i, o):
        x = se._first(o).clone()
        x[keep_t] = 0.5 * x[keep_t]
        return se._replace_first(o, x)

    hh = lm.arch.layers(lm.model)[layer].register_forward_hook(hook)
    with torch.no_grad():
        half = lm.model(input_ids=b.input_ids_BT, attention_mask=b.attention_mask_BT).logits
    hh.remove()
    m = att[:, :-1] & att[:, 1:]
    lpc, lph = _log_softmax(clean), _log_softmax(half)
    tgt = ids[:, 1:][m]
    ce_h = -lph[:, :-1][m][np.arange(m.sum()), tgt].mean()
    ce_c = -lpc[:, :-1][m][np.arange(m.sum()), tgt].mean()
    kl_h = (np.exp(lpc[:, :-1][m]) * (lpc[:, :-1][m] - lph[:, :-1][m])).sum(-1).mean()
    res = se.ce_eval(lm, {layer: IdentitySAE(lm.d_model, scale=0.5)}, batches)[layer].summary()
    assert res["ce_tokens"] == int(m.sum())
    assert res["ce_clean"] == pytest.approx(ce_c, rel=1e-5)
    assert res["ce_spliced"] == pytest.approx(ce_h, rel=1e-5)
    assert res["kl_spliced"] == pytest.approx(kl_h, rel=1e-4, abs=1e-7)


def se_specials(tok):
    from saemui.inputs import special_ids

    return special_ids(tok)


def test_ce_zero_cache_and_merge(tiny_llama):
    lm = tiny_llama
    tok = lm.tokenizer
    seqs = [
        tok(t, add_special_tokens=False)["input_ids"] for t in ["Plants absorb carbon dioxide.", "1 2 3 4 5"]
    ]
    batches = se.batches_from_ids(seqs, tok.pad_token_id, max_batch_tokens=8)  # forces two batches
    assert len(batches) == 2
    cache: dict = {}
    a = se.ce_eval(lm, {2: IdentitySAE(lm.d_model, 0.3)}, batches, zero_cache=cache)[2]
    assert 2 in cache
    b = se.ce_eval(lm, {2: IdentitySAE(lm.d_model, 0.3)}, batches, zero_cache=cache)[2]
    assert a.summary() == pytest.approx(b.summary())
    parts = [se.ce_eval(lm, {2: IdentitySAE(lm.d_model, 0.3)}, [bb])[2] for bb in batches]
    merged = parts[0].merge(parts[1]).summary()
    for k, v in a.summary().items():
        assert merged[k] == pytest.approx(v, rel=1e-9), k


def test_response_tokens_are_the_ones_mui_reads(tiny_llama):
    from saemui.capture import capture, get_backend
    from saemui.inputs import encode_samples

    lm = tiny_llama
    samples = [
        Sample("What is 2 + 3?", "The answer is 5.", id="a"),
        Sample("Name a capital.", "Paris is the capital of France.", id="b"),
    ]
    enc = encode_samples(lm.tokenizer, samples, "response", "auto", 2048)
    batches = se.batches_from_samples(lm.tokenizer, samples, max_batch_tokens=10_000)
    (b,) = batches
    # same ids and read positions as MUI's encoding (rows are length-sorted: match them by ids)
    rows = {tuple(e.ids.tolist()): set(e.score_pos.tolist()) for e in enc}
    for r in range(b.n_sequences):
        n = int(b.attention_mask_BT[r].sum())
        key = tuple(b.input_ids_BT[r, :n].tolist())
        assert set(torch.nonzero(b.read_BT[r])[:, 0].tolist()) == rows[key]
        assert set(torch.nonzero(b.target_BT[r])[:, 0].tolist()) == {p - 1 for p in rows[key]}
    sae = IdentitySAE(lm.d_model, scale=0.8)
    stats, sinks = se.recon_eval(lm, {1: sae}, batches, norm_factor=None)
    s = stats[1].summary()
    n_resp = sum(len(e.score_pos) for e in enc)
    assert sinks[1].n_tokens == n_resp and s["n_tokens"] == n_resp
    acts = capture(get_backend("hf", lm), b.input_ids_BT, b.attention_mask_BT, ["blocks.1.hook_resid_post"])
    x = acts["blocks.1.hook_resid_post"][b.read_BT].double().numpy()
    fve = 1 - ((0.2 * x) ** 2).sum() / ((x - x.mean(0)) ** 2).sum()
    assert s["fve_pooled"] == pytest.approx(fve, rel=1e-5)
    out = se.evaluate(lm, {1: sae}, batches)
    assert out[1]["n_tokens"] == n_resp and np.isfinite(out[1]["ce_loss_recovered"])
    assert "20x" in out[1]["sink_rule"]


@pytest.mark.parametrize("family", ["llama", "gemma"])
def test_ce_head_on_scored_positions_only_equals_full_logits(tiny_models, family, monkeypatch):
    """logits_to_keep (head on the response predictions only) gives the full-logits numbers, with response-only
    targets and padding in the batch."""
    from saemui.records import Sample

    lm = tiny_models[family]
    assert se.accepts_logits_to_keep(lm.model)
    samples = [
        Sample("What is 2 + 3?", "The answer is 5."),
        Sample("Name a city.", "Paris"),
        Sample("Say something long please.", "The quick brown fox jumps over the lazy dog."),
    ]
    batches = se.batches_from_samples(lm.tokenizer, samples, max_batch_tokens=10_000)
    saes = {1: IdentitySAE(lm.d_model, scale=0.5), 2: IdentitySAE(lm.d_model, scale=0.8)}
    fast = {k: v.summary() for k, v in se.ce_eval(lm, saes, batches).items()}
    monkeypatch.setattr(se, "accepts_logits_to_keep", lambda model: False)
    full = {k: v.summary() for k, v in se.ce_eval(lm, saes, batches).items()}
    assert fast.keys() == full.keys()
    for layer in full:
        assert fast[layer]["ce_tokens"] == full[layer]["ce_tokens"] > 0
        for k, v in full[layer].items():
            assert fast[layer][k] == pytest.approx(v, rel=1e-5, abs=1e-7), (layer, k)
