"""The measurement settings of Study v2 (``docs/study/protocol.md`` §5) as data, and the zoo's measurement.

:data:`SETTINGS` is the one place that names every MUI setting a v2 point is measured under; each name is the key
of that setting in a v2 zoo record (``record["settings"][name]``). :func:`measure_settings` measures one set of
samples under several settings; :func:`setting_configs` turns setting names into engine configs for a root.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from saemui.config import PER_SETTING_FIELDS
from saemui.engine import RunConfig, compute_mui_many
from saemui.errors import SaemuiError
from saemui.models import LoadedModel
from saemui.records import Sample
from saemui.result import MUIResult

#: P0's key-unit rule: 1/512 of each layer's neurons per (sample, layer), k = 3 of 1536 (SmolLM2), 4 of 2048 (Gemma)
P0_RULE = "topk:0.001953125"
#: §7.2: MUI-vs-tokens curve positions
TOKEN_CURVE: tuple[int, ...] = (1, 2, 4, 8, 16, 32)
#: §7.2: T of MUI_T per task kind (arith-style tasks 4, multiple choice and word-problem benchmarks 8)
MUI_T_TOKENS: dict[str, int] = {"arith": 4, "arc": 8, "gsm8k": 8}


@dataclass(frozen=True)
class Setting:
    """One MUI setting of protocol §5.

    name: the record key. units: ``"neurons"`` or ``"sae"`` (SAE settings run only for roots with an SAE bundle
    in the spec, on each point's own residuals). threshold, neuron_site, alignment: the engine settings.
    first_tokens: MUI over the first T scored positions of each sample (§7.2), None for all positions.
    role: ``"primary"`` (P0), ``"sae-primary"`` or ``"secondary"`` (§5). note: why it is measured.
    """

    name: str
    units: str = "neurons"
    threshold: str = P0_RULE
    neuron_site: str | None = "down_input"
    alignment: str = "predicting"
    first_tokens: int | None = None
    role: str = "secondary"
    note: str = ""


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "P0", role="primary", note="§5 primary: 1/512 of each layer's neurons, corrected site and alignment"
    ),
    Setting("share-1/256", threshold="topk:0.00390625", note="§5 share sweep: 2× P0 (k = 6 / 8)"),
    Setting("share-1/128", threshold="topk:0.0078125", note="§5 share sweep: 4× P0 (k = 12 / 16)"),
    Setting(
        "paper-1/512",
        neuron_site="gate_act",
        alignment="response",
        note="§5 paper-compatible site and alignment at P0's share",
    ),
    Setting(
        "paper-1/1000",
        threshold="topk:0.001",
        neuron_site="gate_act",
        alignment="response",
        note="§5 paper-compatible at the paper's literal 1 ‰ (k = 1 / 2: unequal shares)",
    ),
    Setting(
        "sae-0.9",
        units="sae",
        threshold="topscore:0.9",
        neuron_site=None,
        alignment="response",
        role="sae-primary",
        note="§5 SAE features, η = 0.9, SAE health on",
    ),
    Setting(
        "sae-0.95",
        units="sae",
        threshold="topscore:0.95",
        neuron_site=None,
        alignment="response",
        note="§5 SAE features, η = 0.95, SAE health on",
    ),
    *(
        Setting(f"P0-first{t}", first_tokens=t, note="§7.2 MUI over the first T scored positions (P0)")
        for t in TOKEN_CURVE
    ),
)

SETTING_NAMES: tuple[str, ...] = tuple(s.name for s in SETTINGS)
#: §7.1: teacher-forced sets G and B are read at P0
TF_SETTINGS: tuple[str, ...] = ("P0",)


def setting(name: str) -> Setting:
    """The setting called ``name`` (one-line error naming the known ones otherwise)."""
    for s in SETTINGS:
        if s.name == name:
            return s
    raise SaemuiError(f"measurement setting {name!r} unknown (expected one of {', '.join(SETTING_NAMES)})")


def mui_t_setting(task: str) -> str:
    """The name of task ``task``'s MUI_T setting (§7.2): ``P0-first4`` for arith-style tasks, ``P0-first8`` for
    arc and gsm8k."""
    kind = "arith" if task.startswith("arith") else task
    if kind not in MUI_T_TOKENS:
        raise SaemuiError(f"MUI_T: no T registered for task {task!r} (known: {', '.join(MUI_T_TOKENS)})")
    return f"P0-first{MUI_T_TOKENS[kind]}"


def setting_config(s: Setting, prompt_format: str, sae_bundle: str | None = None) -> RunConfig | None:
    """The engine config of setting ``s`` for samples in ``prompt_format``; None when it does not apply.

    It does not apply when it is an SAE setting and the root has no bundle.
    """
    if s.units == "sae":
        if not sae_bundle:
            return None
        return RunConfig(
            units="sae",
            saes=sae_bundle,
            threshold=s.threshold,
            alignment=s.alignment,
            prompt_format=prompt_format,
            health=True,
        )
    fields: dict[str, Any] = {}
    if s.first_tokens is not None:
        fields["first_tokens"] = s.first_tokens
    return RunConfig(
        units="neurons",
        threshold=s.threshold,
        neuron_site=s.neuron_site,
        alignment=s.alignment,
        prompt_format=prompt_format,
        health=False,
        **fields,
    )


def setting_configs(
    names: Iterable[str], prompt_format: str, sae_bundle: str | None = None
) -> dict[str, RunConfig]:
    """Setting name → engine config, in the given order, for the settings that apply (see
    :func:`setting_config`)."""
    out = {}
    for name in names:
        cfg = setting_config(setting(name), prompt_format, sae_bundle)
        if cfg is not None:
            out[name] = cfg
    return out


def _pass_key(cfg: RunConfig) -> tuple:
    # settings that differ only in the engine's per-setting fields share one forward pass (compute_mui_many)
    return tuple(
        (f.name, repr(getattr(cfg, f.name)))
        for f in dataclasses.fields(cfg)
        if f.name not in PER_SETTING_FIELDS
    )


def measure_settings(
    lm: LoadedModel, samples: Sequence[Sample], configs: Mapping[str, RunConfig], progress: bool = False
) -> dict[str, MUIResult]:
    """MUI of ``samples`` under every config: setting name → result (same order as ``configs``).

    Configs are grouped by everything but the engine's per-setting fields (rule, site, alignment, first-T
    positions): each group is one :func:`saemui.engine.compute_mui_many` pass.
    """
    groups: dict[tuple, list[str]] = {}
    for name, cfg in configs.items():
        groups.setdefault(_pass_key(cfg), []).append(name)
    out: dict[str, MUIResult] = {}
    for names in groups.values():
        for name, res in zip(
            names, compute_mui_many(lm, samples, [configs[n] for n in names], progress=progress)
        ):
            out[name] = res
    return {name: out[name] for name in configs}


def n_passes(configs: Mapping[str, RunConfig]) -> int:
    """Forward passes :func:`measure_settings` makes (one ``compute_mui_many`` call per group)."""
    return len({_pass_key(c) for c in configs.values()})


def check_setting_names(names: Sequence[str], where: str) -> None:
    """Every name is a known setting and appears once."""
    for n in names:
        setting(n)
    if len(set(names)) != len(names):
        raise SaemuiError(f"{where}: a measurement setting appears twice")


__all__ = [
    "MUI_T_TOKENS",
    "P0_RULE",
    "SETTINGS",
    "SETTING_NAMES",
    "Setting",
    "TF_SETTINGS",
    "TOKEN_CURVE",
    "check_setting_names",
    "measure_settings",
    "mui_t_setting",
    "n_passes",
    "setting",
    "setting_config",
    "setting_configs",
]
