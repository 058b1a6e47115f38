"""Settings of one MUI run: :class:`RunConfig` and the per-unit-kind defaults.

Importable without the engine (no model, capture or SAE code), so command lines and drivers can build and
validate a configuration before anything heavy loads. Every field is recorded in the result's summary
(``summary["config"]``, in field order).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from saemui.errors import SaemuiError
from saemui.selection import KeyRule

UNIT_DEFAULTS = {
    # SAE: the paper's topscore η=0.9 on the response tokens' own positions.
    "sae": {"threshold": "topscore:0.9", "alignment": "response"},
    # Neurons: the paper's top-1‰ entries, scored with the corrected next-token alignment.
    "neurons": {"threshold": "topk:0.001", "alignment": "predicting"},
}


@dataclass
class RunConfig:
    """Settings of one MUI run (all recorded in the result); :meth:`resolved` fills defaults and validates."""

    units: str = "sae"
    """Unit basis: "sae" (SAE features) or "neurons" (MLP neurons)."""

    saes: str | None = None
    """SAE spec for units="sae" (bundle dir, sae-lens dir, or sae-lens RELEASE[:ID])."""

    threshold: str | None = None
    """Key-unit rule (``topscore:0.9``, ``topk:0.001``, ``topk:5``, ``global_topk:10``, ``positive``);
    None → the unit type's default (see UNIT_DEFAULTS)."""

    alignment: str | None = None
    """Scored positions: "response" (paper: the response tokens' own positions, neuron target = that token) or "predicting"
    (corrected: positions predicting a response token, neuron target = the next token); None → the default."""

    neuron_site: str = "down_input"
    """Neuron coefficient: "down_input" (act(gate)·up, the true coefficient) or "gate_act" (act(gate), the paper's code)."""

    layers: list[int] | None = None
    """Model layers to include (None: all layers of the model / SAE suite)."""

    prompt_format: str = "auto"
    """Prompt rendering: "auto" (chat template when the tokenizer has one), "chat" or "raw"."""

    max_length: int = 2048
    """Prompt+response tokens kept; longer responses lose their tail (warned, recorded per sample)."""

    max_batch_tokens: int = 4096
    """Batch budget in padded tokens."""

    max_batch_size: int = 32
    """Batch budget in rows."""

    padding_side: str = "right"
    """Padding: "right" (default) or "left" (explicit position ids); MUI does not depend on it."""

    backend: str = "hf"
    """Capture backend ("hf" = transformers hooks, "tl" = TransformerLens TransformerBridge)."""

    sae_group_size: int | None = None
    """SAEs held in memory at once (None: all); each group costs one forward over the data."""

    sae_dtype: str | None = None
    """Dtype SAEs encode in (None: float32; residuals are cast to it)."""

    health: bool = True
    """Measure SAE L0 / dead / dense / explained variance on the same tokens (needs decoders)."""

    keep_sets: bool = True
    """Keep every sample's key set (subset MUI, coverage, diversity); small, on by default."""

    encode_chunk: int = 2048
    """Scored tokens encoded at once (bounds memory for wide SAEs)."""

    target_l0: float = 50.0
    """For a bare sae-lens release, per layer the SAE with average L0 closest to this."""

    allow_processing_mismatch: bool = False
    """Encode even if the SAE expects TransformerLens-processed activations."""

    def resolved(self) -> RunConfig:
        """A copy with the unit kind's defaults filled in, validated before any model is loaded."""
        if self.units not in UNIT_DEFAULTS:
            raise SaemuiError(f"units {self.units!r} unknown (expected 'sae' or 'neurons')")
        d = UNIT_DEFAULTS[self.units]
        out = RunConfig(**asdict(self))
        out.threshold = self.threshold or d["threshold"]
        out.alignment = self.alignment or d["alignment"]
        if self.units == "sae" and not self.saes:
            raise SaemuiError("units='sae' needs an SAE spec (--saes PATH|RELEASE[:ID]); or use --neurons")
        if self.max_length < 2:
            raise SaemuiError(f"max_length={self.max_length} too small")
        KeyRule.parse(out.threshold)  # validate now, before any model is loaded
        if out.alignment not in ("response", "predicting"):
            raise SaemuiError(f"alignment {out.alignment!r} unknown (expected 'response' or 'predicting')")
        if out.padding_side not in ("right", "left"):
            raise SaemuiError(f"padding side {out.padding_side!r} unknown (expected right or left)")
        return out
