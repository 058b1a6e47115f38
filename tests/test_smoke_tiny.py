from saemui.engine import RunConfig, compute_mui
from saemui.records import Sample

SAMPLES = [
    Sample("What is 2 + 3?", "The answer is 5."),
    Sample("Name a capital.", "Paris is the capital of France."),
]


def test_tiny_models_run(tiny_models):
    for fam, lm in tiny_models.items():
        r = compute_mui(lm, SAMPLES, RunConfig(units="neurons", threshold="topk:2"), progress=False)
        assert 0 < r.mui < 1, fam
        assert r.summary["n_tokens"] > 0
