"""§8.4 model-free embeddings: TF-IDF by hand, truncated SVD vs numpy's SVD, k-means and kMQ representatives."""

import itertools
import math

import numpy as np
import pytest

from saemui.analysis.embed import (
    embed,
    kmeans,
    nearest_to_centers,
    tfidf_matrix,
    tfidf_svd_embed,
    tokens,
    truncated_svd,
    word_ngrams,
)
from saemui.errors import SaemuiError


def test_tokens_keep_operators_and_ngrams():
    assert tokens("What is 7 + 5?") == ["what", "is", "7", "+", "5", "?"]
    assert tokens("What is 7 - 5?") != tokens("What is 7 + 5?")
    assert word_ngrams("a b c") == ["a", "b", "c", "a b", "b c"]
    assert word_ngrams("a b c", (2, 2)) == ["a b", "b c"]


def test_tfidf_equals_hand_computation():
    texts = ["a b a", "b c", "", "a"]
    x, vocab = tfidf_matrix(texts, (1, 1))
    assert vocab == ["a", "b", "c"]
    n = 4
    df = {"a": 2, "b": 2, "c": 1}
    counts = [{"a": 2, "b": 1}, {"b": 1, "c": 1}, {}, {"a": 1}]
    dense = x.toarray()
    for i, c in enumerate(counts):
        row = np.array([c.get(t, 0) * (math.log((1 + n) / (1 + df[t])) + 1) for t in vocab])
        norm = np.linalg.norm(row)
        assert dense[i] == pytest.approx(row / norm if norm else row)
    x2, vocab2 = tfidf_matrix(["a b a"], (1, 2))
    assert vocab2 == ["a", "a b", "b", "b a"]


def test_truncated_svd_equals_numpy_svd_up_to_sign():
    rng = np.random.default_rng(0)
    x = rng.random((12, 30)) * (rng.random((12, 30)) < 0.3)
    emb = truncated_svd(x, 5)
    u, s, _ = np.linalg.svd(x, full_matrices=False)
    ref = u[:, :5] * s[:5]
    assert np.linalg.norm(emb, axis=0) == pytest.approx(s[:5])
    for j in range(5):
        sign = np.sign(ref[np.argmax(np.abs(ref[:, j])), j])
        assert emb[:, j] == pytest.approx(sign * ref[:, j], abs=1e-8)
        assert emb[np.argmax(np.abs(emb[:, j])), j] > 0  # the sign rule
    assert truncated_svd(x, 64).shape == (12, 12)  # no more components than texts
    with pytest.raises(SaemuiError, match="dims"):
        truncated_svd(x, 0)


def test_default_embedder_and_pluggable_embedder():
    texts = [f"What is {a} + {b}?" for a in range(4) for b in range(3)]
    e = embed(texts)
    assert e.shape == (12, 12) and np.array_equal(e, tfidf_svd_embed(texts))
    assert embed(texts, lambda t: np.ones((len(t), 3))).shape == (12, 3)
    with pytest.raises(SaemuiError, match="embedder"):
        embed(texts, lambda t: np.ones((2, 3)))


def _blobs():
    rng = np.random.default_rng(1)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    x = np.vstack([c + rng.normal(0, 0.5, (8, 2)) for c in centres])
    return x, np.repeat(np.arange(3), 8)


def test_kmeans_recovers_separated_blobs_and_is_a_fixed_point():
    x, truth = _blobs()
    km = kmeans(x, 3, n_init=5, seed=0)
    # the same partition up to label names
    assert len({(a, b) for a, b in zip(truth, km.labels)}) == 3
    for j in range(3):
        assert km.centers[j] == pytest.approx(x[km.labels == j].mean(axis=0))
    d = ((x[:, None, :] - km.centers[None]) ** 2).sum(-1)
    assert np.array_equal(km.labels, d.argmin(1))
    assert km.inertia == pytest.approx(d.min(1).sum())
    assert km.inertia == pytest.approx(km.inertias.min()) and len(km.inertias) == 5
    again = kmeans(x, 3, n_init=5, seed=0)
    assert np.array_equal(again.labels, km.labels)


def test_kmeans_best_restart_is_optimal_on_a_tiny_set():
    x = np.array([[0.0], [1.0], [2.0], [10.0], [11.0], [30.0]])
    km = kmeans(x, 3, n_init=20, seed=3)
    best = min(
        sum(((x[lab == j] - x[lab == j].mean()) ** 2).sum() for j in range(3))
        for lab in (np.array(p) for p in itertools.product(range(3), repeat=6) if len(set(p)) == 3)
    )
    assert km.inertia == pytest.approx(best)
    with pytest.raises(SaemuiError, match="k:"):
        kmeans(x, 7)
    with pytest.raises(SaemuiError, match="distinct"):
        kmeans(np.zeros((4, 2)), 2)


def test_nearest_to_centers_distinct_with_ties():
    x = np.array([[0.0], [1.0], [2.0], [5.0]])
    # both centres nearest to item 1; the second takes the next nearest (items 0 and 2 tie: the lower index)
    assert nearest_to_centers(x, np.array([[1.0], [1.1]])).tolist() == [1, 2]
    assert nearest_to_centers(x, np.array([[1.0], [1.0]])).tolist() == [1, 0]
    assert nearest_to_centers(x, np.array([[4.0], [0.2]])).tolist() == [3, 0]
