"""Settings of one MUI run: :class:`RunConfig`, the presets and the per-unit-kind defaults.

Importable without the engine (no torch, model, capture or SAE code), so command lines and drivers can build and
validate a configuration before anything heavy loads. Every field is recorded in the result's summary
(``summary["config"]``, in field order).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from saemui.errors import SaemuiError
from saemui.rules import KeyRule

#: preset → unit kind → the fields it sets (docs/method.md §7–§8). A field set explicitly wins over the preset.
PRESETS: dict[str, dict[str, dict[str, str]]] = {
    # saemui's default: the paper's rules (Q3, Q7) with the paper's equation for neurons (Q1, Q2 fixed)
    "corrected": {
        "sae": {"threshold": "topscore:0.9", "alignment": "response"},
        "neurons": {"threshold": "topk:0.001", "alignment": "predicting", "neuron_site": "down_input"},
    },
    # the official code's measurement: neuron site act_fn (Q2), current-token target on the response tokens' own
    # positions (Q1), its thresholds. Its prompt handling (Q13, Q24) is not available (fixed); its answer scoring
    # (Q27–Q30) is not a preset field but `--extraction official` (saemui score, saemui run --task).
    "paper": {
        "sae": {"threshold": "topscore:0.9", "alignment": "response"},
        "neurons": {"threshold": "topk:0.001", "alignment": "response", "neuron_site": "gate_act"},
    },
}
DEFAULT_PRESET = "corrected"
#: the default preset's settings per unit kind
UNIT_DEFAULTS = PRESETS[DEFAULT_PRESET]
#: the model whose shipped SAE bundle ``RunConfig()`` uses when no SAE spec is given (= models.DEFAULT_MODEL)
DEFAULT_MODEL_NAMES = ("smollm2-135m-instruct", "HuggingFaceTB/SmolLM2-135M-Instruct")


@dataclass
class RunConfig:
    """Settings of one MUI run (all recorded in the result); :meth:`resolved` fills defaults and validates."""

    preset: str = DEFAULT_PRESET
    """Settings bundle: "corrected" (default) or "paper" (the official code's neuron site and alignment); it fills
    ``threshold``, ``alignment`` and ``neuron_site`` where they are None (see PRESETS, docs/method.md §8)."""

    units: str = "sae"
    """Unit basis: "sae" (SAE features) or "neurons" (MLP neurons)."""

    saes: str | None = None
    """SAE spec for units="sae" (bundle dir, sae-lens dir, or sae-lens RELEASE[:ID]); None → the shipped bundle
    of the model (see :meth:`resolved`)."""

    threshold: str | KeyRule | None = None
    """Key-unit rule: a :class:`KeyRule` or its text (``topscore:0.9``, ``topk:0.001``, ``topk:5``,
    ``global_topk:10``, ``positive``); None → the preset's rule for the unit type. Resolved to the text."""

    alignment: str | None = None
    """Scored positions: "response" (paper: the response tokens' own positions, neuron target = that token) or "predicting"
    (corrected: positions predicting a response token, neuron target = the next token); None → the default."""

    neuron_site: str | None = None
    """Neuron coefficient: "down_input" (act(gate)·up, the true coefficient) or "gate_act" (act(gate), the paper's
    code); None → the preset's."""

    first_tokens: int | None = None
    """MUI over the first T scored positions of each sample; a sample with fewer contributes all it has; None =
    all. Applies to either unit kind and alignment (the first T positions *of that alignment*)."""

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

    @classmethod
    def from_preset(cls, preset: str, **fields) -> RunConfig:
        """``RunConfig.from_preset("paper", units="neurons")``: a preset, with ``fields`` overriding its settings."""
        return cls(preset=preset, **fields)

    def resolved(self, model: str | Iterable[str] | None = None) -> RunConfig:
        """A copy with the preset's settings filled in, validated before any model is loaded.

        With units="sae" and no ``saes``, the shipped bundle of ``model`` (registry name or HF id; several names
        are all tried; None → the default model) becomes the SAE spec.
        """
        if self.preset not in PRESETS:
            raise SaemuiError(f"preset {self.preset!r} unknown (expected one of {', '.join(PRESETS)})")
        if self.units not in UNIT_DEFAULTS:
            raise SaemuiError(f"units {self.units!r} unknown (expected 'sae' or 'neurons')")
        d = PRESETS[self.preset][self.units]
        out = dataclasses.replace(self, layers=None if self.layers is None else list(self.layers))
        threshold = self.threshold
        if isinstance(threshold, KeyRule):
            threshold = threshold.spec()
        elif threshold is not None and not isinstance(threshold, str):
            raise SaemuiError(
                f"threshold {threshold!r}: expected a KeyRule or its text (e.g. 'topscore:0.9', 'topk:5')"
            )
        out.threshold = threshold or d["threshold"]
        out.alignment = self.alignment or d["alignment"]
        out.neuron_site = (
            self.neuron_site or d.get("neuron_site") or PRESETS[DEFAULT_PRESET]["neurons"]["neuron_site"]
        )
        if self.units == "sae" and not self.saes:
            from saemui.bundles import find_bundles

            names = DEFAULT_MODEL_NAMES if model is None else model
            found = find_bundles(names)
            if not found:
                which = ", ".join([names] if isinstance(names, str) else list(names))
                raise SaemuiError(
                    f"units='sae' needs an SAE spec and no shipped SAE bundle names the model ({which}): pass "
                    "saes=PATH|RELEASE[:ID] (--saes), set SAEMUI_SAES to a directory of bundles, or use "
                    "units='neurons' (--neurons)"
                )
            out.saes = str(found[0])
        ft = self.first_tokens
        if ft is not None and (not isinstance(ft, int) or isinstance(ft, bool) or ft < 1):
            raise SaemuiError(f"first_tokens={ft!r}: expected a number of scored positions >= 1 (None = all)")
        if self.max_length < 2:
            raise SaemuiError(f"max_length={self.max_length} too small")
        KeyRule.parse(out.threshold)  # validate now, before any model is loaded
        if out.alignment not in ("response", "predicting"):
            raise SaemuiError(f"alignment {out.alignment!r} unknown (expected 'response' or 'predicting')")
        if out.neuron_site not in ("down_input", "gate_act"):
            raise SaemuiError(
                f"neuron site {out.neuron_site!r} unknown (expected 'down_input' or 'gate_act')"
            )
        if out.padding_side not in ("right", "left"):
            raise SaemuiError(f"padding side {out.padding_side!r} unknown (expected right or left)")
        if out.layers is not None:
            bad = [x for x in out.layers if not isinstance(x, int) or isinstance(x, bool) or x < 0]
            if bad or not out.layers:
                raise SaemuiError(f"layers {out.layers}: expected a non-empty list of layer indices >= 0")
        return out


#: the fields that may differ between the settings of one pass (:func:`saemui.engine.compute_mui_many`): they
#: change which positions are scored, how units are scored or kept, never the forward itself
PER_SETTING_FIELDS = ("preset", "threshold", "alignment", "neuron_site", "first_tokens", "keep_sets")


def check_one_pass(configs: Sequence[RunConfig]) -> None:
    """Refuse settings that cannot share one forward pass: every field outside :data:`PER_SETTING_FIELDS` must be
    equal (compare resolved configs, so that a preset's defaults are filled in)."""
    if not configs:
        raise SaemuiError("no settings to measure (expected at least one RunConfig)")
    first = configs[0]
    for i, cfg in enumerate(configs[1:], start=1):
        for f in dataclasses.fields(RunConfig):
            if f.name not in PER_SETTING_FIELDS and getattr(cfg, f.name) != getattr(first, f.name):
                raise SaemuiError(
                    f"setting {i} differs from setting 0 in {f.name} ({getattr(cfg, f.name)!r} vs "
                    f"{getattr(first, f.name)!r}): one pass shares everything but "
                    f"{', '.join(PER_SETTING_FIELDS)}"
                )


__all__ = ["DEFAULT_PRESET", "PER_SETTING_FIELDS", "PRESETS", "UNIT_DEFAULTS", "RunConfig", "check_one_pass"]
