"""Activation capture: one forward per batch, every requested site handed to a callback as it is produced.

Sites use TransformerLens names so SAEs keyed by ``hook_name`` apply directly:
- ``blocks.L.hook_resid_post``: the residual stream after block L (what residual SAEs encode);
- ``blocks.L.mlp.hook_post``: the input of the MLP down projection, i.e. ``act(gate) * up`` for gated MLPs
  (the true per-neuron output coefficient);
- ``blocks.L.mlp.hook_gate_act``: ``act(gate)`` alone, the site the paper's code hooked (saemui's name: no
  TransformerLens hook equals it).

Backends live in a registry. ``hf`` hooks transformers modules directly, stops the forward after the last
requested block and never computes logits; ``tl`` runs the same through TransformerLens' TransformerBridge.
Tensors reach the callback while the forward is running, so nothing of all layers is held at once.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

import torch

from saemui.errors import SaemuiError
from saemui.models import LoadedModel

SITE_KINDS = {
    "hook_resid_post": "resid_post",
    "mlp.hook_post": "mlp_post",
    "mlp.hook_gate_act": "gate_act",
}
_SITE_RE = re.compile(r"^blocks\.(\d+)\.(hook_resid_post|mlp\.hook_post|mlp\.hook_gate_act)$")

OnActivation = Callable[[str, torch.Tensor], None]


def site_name(layer: int, kind: str) -> str:
    suffix = {v: k for k, v in SITE_KINDS.items()}[kind]
    return f"blocks.{layer}.{suffix}"


def parse_site(name: str) -> tuple[int, str]:
    """``blocks.3.hook_resid_post`` → (3, 'resid_post'); refuses hooks saemui cannot produce."""
    m = _SITE_RE.match(name or "")
    if not m:
        raise SaemuiError(
            f"hook {name!r} is not produced by saemui's capture (supported: blocks.L.hook_resid_post, "
            "blocks.L.mlp.hook_post, blocks.L.mlp.hook_gate_act)"
        )
    return int(m.group(1)), SITE_KINDS[m.group(2)]


def check_sites(lm: LoadedModel, sites: Iterable[str]) -> None:
    for s in sites:
        layer, _ = parse_site(s)
        if not 0 <= layer < lm.n_layers:
            raise SaemuiError(f"hook {s!r}: layer {layer} does not exist (model has {lm.n_layers} layers)")


class _StopForward(Exception):
    """Raised after the last requested block: later blocks and the LM head are never computed."""


class CaptureBackend:
    name = "base"

    def __init__(self, lm: LoadedModel):
        self.lm = lm

    def run(
        self,
        input_ids_BT: torch.Tensor,
        attention_mask_BT: torch.Tensor,
        sites: list[str],
        on_activation: OnActivation,
        position_ids_BT: torch.Tensor | None = None,
    ) -> None:
        """Forward once; call ``on_activation(site, tensor_BT*)`` for every requested site."""
        raise NotImplementedError


BACKENDS: dict[str, type[CaptureBackend]] = {}


def register_backend(cls: type[CaptureBackend]) -> type[CaptureBackend]:
    BACKENDS[cls.name] = cls
    return cls


def get_backend(name: str, lm: LoadedModel) -> CaptureBackend:
    if name not in BACKENDS:
        raise SaemuiError(f"capture backend {name!r} unknown (expected one of {', '.join(sorted(BACKENDS))})")
    return BACKENDS[name](lm)


def block_output(out: object) -> torch.Tensor:
    """The hidden states a decoder layer's forward returned (its ``out`` in a forward hook)."""
    # transformers 5 decoder layers return a Tensor; older ones a tuple. `out[0]` on a Tensor is batch row 0.
    return out[0] if isinstance(out, tuple) else out


@register_backend
class HFBackend(CaptureBackend):
    name = "hf"

    def run(self, input_ids_BT, attention_mask_BT, sites, on_activation, position_ids_BT=None):
        check_sites(self.lm, sites)
        arch, model = self.lm.arch, self.lm.model
        blocks = arch.layers(model)
        handles = []
        last = max(parse_site(s)[0] for s in sites)

        def emit(site: str, t: torch.Tensor) -> None:
            on_activation(site, t)

        try:
            for s in sites:
                layer, kind = parse_site(s)
                block = blocks[layer]
                if kind == "resid_post":
                    handles.append(block.register_forward_hook(lambda m, i, o, s=s: emit(s, block_output(o))))
                elif kind == "mlp_post":
                    handles.append(
                        arch.down_proj(block).register_forward_pre_hook(lambda m, i, s=s: emit(s, i[0]))
                    )
                else:
                    handles.append(arch.act_fn(block).register_forward_hook(lambda m, i, o, s=s: emit(s, o)))

            def stop(m, i, o):
                raise _StopForward

            handles.append(blocks[last].register_forward_hook(stop))
            with torch.inference_mode():
                try:
                    arch.base(model)(
                        input_ids=input_ids_BT,
                        attention_mask=attention_mask_BT,
                        position_ids=position_ids_BT,
                        use_cache=False,
                    )
                except _StopForward:
                    pass
        finally:
            for h in handles:
                h.remove()


@register_backend
class TLBackend(CaptureBackend):
    """TransformerLens 3.x TransformerBridge over the same HF model (raw weights, no folding or centring)."""

    name = "tl"

    def __init__(self, lm: LoadedModel):
        super().__init__(lm)
        try:
            from transformer_lens.model_bridge import TransformerBridge
        except ImportError as e:  # TransformerLens 4 or missing
            raise SaemuiError(
                f"the 'tl' backend needs transformer-lens>=3,<4 ({e}); use --backend hf"
            ) from None
        self.bridge = TransformerBridge.boot_transformers(
            lm.hf_id, hf_model=lm.model, tokenizer=lm.tokenizer, device=lm.device, dtype=lm.dtype
        )

    def run(self, input_ids_BT, attention_mask_BT, sites, on_activation, position_ids_BT=None):
        # The bridge derives position ids from the attention mask itself.
        check_sites(self.lm, sites)
        blocks = self.lm.arch.layers(self.lm.model)
        hooks = []
        for s in sites:
            layer, kind = parse_site(s)
            if kind == "gate_act":
                act = self.lm.arch.act_fn(blocks[layer])
                hooks.append(
                    (f"blocks.{layer}.mlp.hook_pre", lambda t, hook, s=s, act=act: on_activation(s, act(t)))
                )
            else:
                hooks.append((s, lambda t, hook, s=s: on_activation(s, t)))
        last = max(parse_site(s)[0] for s in sites)
        with torch.inference_mode():
            self.bridge.run_with_hooks(
                input_ids_BT,
                attention_mask=attention_mask_BT,
                fwd_hooks=hooks,
                stop_at_layer=last + 1,
                return_type=None,
            )


def capture(
    backend: CaptureBackend,
    input_ids_BT: torch.Tensor,
    attention_mask_BT: torch.Tensor,
    sites: list[str],
    position_ids_BT: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    backend.run(
        input_ids_BT,
        attention_mask_BT,
        sites,
        lambda s, t: out.__setitem__(s, t.detach().clone()),
        position_ids_BT=position_ids_BT,
    )
    missing = [s for s in sites if s not in out]
    if missing:
        raise SaemuiError(f"capture produced no activation for {missing} (architecture adapter out of date?)")
    return out
