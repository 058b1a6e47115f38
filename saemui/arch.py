"""Architecture adapters: where each HF model family keeps its blocks, MLPs and unembedding.

A registry keyed by ``config.model_type`` (sae-lens style) instead of if-chains on names. Each adapter answers the
few questions the capture backends ask; canonical site names follow TransformerLens (``blocks.L.hook_resid_post``,
``blocks.L.mlp.hook_post``) so SAEs trained on TransformerLens hook names apply unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from saemui.errors import SaemuiError


@dataclass(frozen=True)
class ArchAdapter:
    """How to reach the parts of one model family.

    name: registry key (the HF ``model_type``).
    gated: whether the MLP is gated (SwiGLU/GeGLU); then ``gate_act`` and ``down_input`` differ.
    base: the decoder stack without the LM head (called with ``input_ids``/``attention_mask``).
    layers: the list of decoder blocks.
    down_proj: the module whose *input* is the MLP's true output coefficient (TL ``mlp.hook_post``).
    act_fn: the module whose *output* is the activation function alone (what the paper's code hooked).
    w_down_DI: the down projection as a [d_model, d_mlp] matrix (column i = neuron i's output direction).
    """

    name: str
    gated: bool
    base: Callable[[nn.Module], nn.Module]
    layers: Callable[[nn.Module], nn.ModuleList]
    down_proj: Callable[[nn.Module], nn.Module]
    act_fn: Callable[[nn.Module], nn.Module]
    w_down_DI: Callable[[nn.Module], torch.Tensor]


ARCHITECTURES: dict[str, ArchAdapter] = {}


def register_arch(adapter: ArchAdapter, *aliases: str) -> ArchAdapter:
    for key in (adapter.name, *aliases):
        ARCHITECTURES[key] = adapter
    return adapter


def _base(m: nn.Module) -> nn.Module:
    return m.get_decoder() if hasattr(m, "get_decoder") else m.base_model


_llama_like = ArchAdapter(
    name="llama",
    gated=True,
    base=_base,
    layers=lambda m: _base(m).layers,
    down_proj=lambda block: block.mlp.down_proj,
    act_fn=lambda block: block.mlp.act_fn,
    w_down_DI=lambda block: block.mlp.down_proj.weight,
)
register_arch(
    _llama_like, "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text", "olmo2", "olmo", "granite"
)

register_arch(
    ArchAdapter(
        name="gpt2",
        gated=False,
        base=lambda m: m.transformer,
        layers=lambda m: m.transformer.h,
        down_proj=lambda block: block.mlp.c_proj,
        act_fn=lambda block: block.mlp.act,
        # transformers' Conv1D stores [in, out]; transpose to [d_model, d_mlp].
        w_down_DI=lambda block: block.mlp.c_proj.weight.T,
    )
)


def get_arch(model: nn.Module) -> ArchAdapter:
    model_type = getattr(model.config, "model_type", None)
    if model_type not in ARCHITECTURES:
        known = ", ".join(sorted(ARCHITECTURES))
        raise SaemuiError(f"model_type {model_type!r} has no saemui architecture adapter (known: {known})")
    return ARCHITECTURES[model_type]
