"""Logit lens: which vocabulary tokens a unit's output direction promotes and suppresses (needs the model)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from saemui.capture import parse_site
from saemui.errors import SaemuiError
from saemui.explore.collector import ContextCollector
from saemui.models import LoadedModel


def unit_directions(
    lm: LoadedModel, layer: int, units: Sequence[int], sae=None, hook_name: str | None = None
):
    """Output directions in the residual stream, [R, d_model] float32.

    Neurons (``sae`` None): the down-projection columns ``W_down[:, i]``, the same vectors neuron scores use.
    SAE features: decoder rows ``W_dec[i]``; for SAEs on the MLP hidden layer (``mlp.hook_post`` /
    ``gate_act``), mapped through ``W_down`` into the residual stream.
    """
    idx = torch.as_tensor(list(units), dtype=torch.long)
    block = lm.arch.layers(lm.model)[layer]
    W_down_DI = lm.arch.w_down_DI(block).float().cpu()
    if sae is None:
        return W_down_DI[:, idx].T.contiguous()
    W_dec = sae.W_dec.detach().float().cpu()
    if W_dec.shape[0] == 0:
        raise SaemuiError(f"layer {layer}: SAE was loaded without its decoder")
    d = W_dec[idx]
    if hook_name and parse_site(hook_name)[1] in ("mlp_post", "gate_act"):
        d = d @ W_down_DI.T
    return d


def lens_ids(dirs_RD: torch.Tensor, W_U_VD: torch.Tensor, n: int = 10):
    """Top / bottom ``n`` vocabulary entries of ``W_U @ d`` per direction: (top_ids, top_vals, bot_ids, bot_vals)."""
    W = W_U_VD.detach().float().cpu()
    logits_RV = torch.as_tensor(dirs_RD).detach().float().cpu() @ W.T
    n = min(n, W.shape[0])
    top = torch.topk(logits_RV, n, dim=1)
    bot = torch.topk(-logits_RV, n, dim=1)
    return top.indices.numpy(), top.values.numpy(), bot.indices.numpy(), (-bot.values).numpy()


def logit_lens(direction: torch.Tensor, W_U: torch.Tensor, tokenizer, n: int = 10) -> pd.DataFrame:
    """Tokens whose unembedding aligns most (top) and least (bottom) with one unit's output direction.

    direction: [d_model] (a decoder row or a down-projection column, see :func:`unit_directions`);
    W_U: [vocab, d_model] unembedding (``LoadedModel.W_U_VD``). Plain ``W_U @ d``, no final norm, as in
    sae_vis and Neuronpedia. Columns: rank, top_token, top_logit, bottom_token, bottom_logit.
    """
    ti, tv, bi, bv = lens_ids(torch.as_tensor(direction).reshape(1, -1), W_U, n)
    return _lens_frame(ti[0], tv[0], bi[0], bv[0], lambda i: tokenizer.decode([int(i)]))


def _lens_frame(ti, tv, bi, bv, text) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "rank": np.arange(1, len(ti) + 1),
            "top_token": [text(i) for i in ti],
            "top_logit": np.asarray(tv, float),
            "bottom_token": [text(i) for i in bi],
            "bottom_logit": np.asarray(bv, float),
        }
    )


def stored_logit_lens(ctx: ContextCollector, layer: int, unit: int) -> pd.DataFrame | None:
    """The logit-lens table saved with the contexts for this unit (None if it was not computed)."""
    t = ctx.lens.get((layer, unit))
    return None if t is None else _lens_frame(*t, ctx.token_text)
