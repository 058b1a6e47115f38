"""Engine behaviours the fast path must keep: non-finite activations are still refused."""

from __future__ import annotations

import pytest

from saemui.engine import RunConfig, compute_mui
from saemui.errors import SaemuiError
from saemui.records import Sample
from saemui.testing import save_synthetic_sae


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_activation_is_refused(tiny_llama, tmp_path, bad):
    save_synthetic_sae(tmp_path / "l1", 64, 128, "blocks.1.hook_resid_post")
    block = tiny_llama.arch.layers(tiny_llama.model)[1]

    def poison(module, inputs, output):
        out = output[0] if isinstance(output, tuple) else output
        out = out.clone()
        out[0, -1, 3] = bad  # one element of one scored position
        return (out, *output[1:]) if isinstance(output, tuple) else out

    h = block.register_forward_hook(poison)
    try:
        with pytest.raises(SaemuiError, match="non-finite"):
            compute_mui(
                tiny_llama,
                [Sample("Hi?", "The answer is 5.")],
                RunConfig(saes=str(tmp_path), health=False),
                progress=False,
            )
    finally:
        h.remove()


def test_reduce_scores_per_sample_max_matches_naive():
    import torch

    from saemui.selection import reduce_scores

    g = torch.Generator().manual_seed(0)
    counts = [3, 0, 5, 1]
    seg = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts))
    s = torch.randn(int(sum(counts)), 17, generator=g)
    max_SU, fire_U, _ = reduce_scores(s, seg, len(counts), None)
    off = 0
    for b, c in enumerate(counts):
        want = s[off : off + c].amax(0) if c else torch.full((17,), float("-inf"))
        assert torch.equal(max_SU[b], want)
        off += c
    assert torch.equal(fire_U, (s > 0).sum(0))
