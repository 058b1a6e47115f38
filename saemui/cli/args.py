"""The command-line flags, declared once as argument groups: ``saemui run --help`` reads in these sections, and
scripts that measure MUI (``scripts/mui_distributed.py``) add the same groups instead of redeclaring flags.

Defaults of MUI settings come from :class:`~saemui.engine.RunConfig`, and :func:`run_config_fields` maps the
parsed flags back onto its fields, so a setting, its default and its flag exist in one place each.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from typing import Any

from saemui.config import PRESETS, RunConfig
from saemui.errors import SaemuiError
from saemui.tasks.base import STYLES

#: the RunConfig defaults every flag below starts from
DEFAULTS = RunConfig()
STYLE_CHOICES = ("auto", *STYLES)
DEFAULT_MODEL = "smollm2-135m-instruct"


def parse_layers(text: str | None) -> list[int] | None:
    """``"0,3,5"`` or ``"0-29"`` or ``"0-9,20"`` → sorted layer list."""
    if not text:
        return None
    out: set[int] = set()
    try:
        for part in text.split(","):
            a, _, b = part.partition("-")
            lo, hi = int(a), int(b) if b else int(a)
            if hi < lo:
                raise SaemuiError(f"--layers {text!r}: range {part!r} runs backwards (write {hi}-{lo})")
            out.update(range(lo, hi + 1))
    except ValueError:
        raise SaemuiError(f"--layers {text!r}: expected comma-separated layers or ranges like 0-29") from None
    return sorted(out)


def _positive(flag: str) -> Callable[[int], int]:
    def check(value: int) -> int:
        if value < 1:
            raise SaemuiError(f"{flag} {value}: expected a positive number")
        return value

    return check


def _optional(check: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda value: None if value is None else check(value)


def _negate(value: bool) -> bool:
    return not value


def _first_tokens(text: str) -> int | None:
    if text in ("all", "none", "None"):
        return None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise SaemuiError(f"first_tokens={text!r}: expected a number of positions >= 1 or 'all'")
    return value


#: the settings ``--also`` may change (RunConfig field → parser of its text); the others are shared by the pass
ALSO_FIELDS: dict[str, Callable[[str], Any]] = {
    "threshold": str,
    "neuron_site": str,
    "alignment": str,
    "first_tokens": _first_tokens,
}
_ALSO_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def parse_also(specs: list[str]) -> list[tuple[str, dict[str, Any]]]:
    """``--also`` values → [(name, RunConfig fields)], e.g. ``"gate=neuron_site=gate_act,alignment=response"``
    → ``("gate", {"neuron_site": "gate_act", "alignment": "response"})``. Values are checked when the settings
    are resolved (:func:`saemui.cli.run.also_configs`)."""
    out: list[tuple[str, dict[str, Any]]] = []
    for spec in specs:
        name, _, rest = spec.partition("=")
        if not _ALSO_NAME.match(name) or not rest:
            raise SaemuiError(
                f"--also {spec!r}: expected NAME=FIELD=VALUE[,FIELD=VALUE...] with NAME of letters, digits, "
                "'.', '_' or '-'"
            )
        if name in (n for n, _ in out):
            raise SaemuiError(f"--also {spec!r}: the name {name!r} is given twice")
        fields: dict[str, Any] = {}
        for part in rest.split(","):
            key, eq, value = part.partition("=")
            key = key.strip().replace("-", "_")
            if key not in ALSO_FIELDS:
                raise SaemuiError(
                    f"--also {spec!r}: unknown field {key!r} (expected one of {', '.join(ALSO_FIELDS)})"
                )
            if not eq or not value.strip():
                raise SaemuiError(f"--also {spec!r}: field {key!r} has no value (write {key}=VALUE)")
            if key in fields:
                raise SaemuiError(f"--also {spec!r}: field {key!r} is given twice")
            fields[key] = ALSO_FIELDS[key](value.strip())
        out.append((name, fields))
    return out


# argparse dest → (RunConfig field, conversion). Only flags a parser declares are mapped, so a script that adds
# some of the groups gets RunConfig's defaults for the rest.
_FIELDS: dict[str, tuple[str, Callable[[Any], Any] | None]] = {
    "preset": ("preset", None),
    "threshold": ("threshold", None),
    "alignment": ("alignment", None),
    "neuron_site": ("neuron_site", None),
    "layers": ("layers", parse_layers),
    "target_l0": ("target_l0", None),
    "prompt_format": ("prompt_format", None),
    "max_length": ("max_length", None),
    "first_tokens": ("first_tokens", _optional(_positive("--first-tokens"))),
    "batch_tokens": ("max_batch_tokens", None),
    "max_batch_size": ("max_batch_size", _positive("--max-batch-size")),
    "padding_side": ("padding_side", None),
    "backend": ("backend", None),
    "sae_group_size": ("sae_group_size", None),
    "sae_dtype": ("sae_dtype", None),
    "encode_chunk": ("encode_chunk", _positive("--encode-chunk")),
    "no_health": ("health", _negate),
    "no_sets": ("keep_sets", _negate),
}


def run_config_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The RunConfig fields set by the parsed flags (``units`` and ``saes`` are left to the caller: choosing
    them may need an SAE bundle lookup)."""
    out = {}
    for dest, value in vars(args).items():
        if dest in _FIELDS:
            field, convert = _FIELDS[dest]
            out[field] = convert(value) if convert is not None else value
    return out


def add_model_args(p: argparse.ArgumentParser, device_help: str | None = None) -> None:
    g = p.add_argument_group("model")
    g.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help="registry name (smollm2-135m-instruct, gemma3-270m), a .gguf file, a local HF directory or an HF id",
    )
    g.add_argument(
        "--device", default=None, help=device_help or "cpu, cuda, cuda:N (default: cuda if available)"
    )
    g.add_argument("--dtype", default=None, help="model dtype (default: float32 on CPU, bfloat16 on CUDA)")


def add_units_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("units and threshold")
    g.add_argument(
        "--preset",
        default=DEFAULTS.preset,
        choices=list(PRESETS),
        help="settings bundle: corrected (default: neuron site down_input, alignment predicting for neurons) or "
        "paper (the official code: neuron site gate_act, alignment response); explicit flags override it",
    )
    g.add_argument(
        "--saes", help="SAE bundle dir, sae-lens dir, or sae-lens RELEASE[:ID] (default: shipped bundle)"
    )
    g.add_argument("--neurons", action="store_true", help="MLP-neuron MUI instead of SAE features")
    g.add_argument(
        "--threshold",
        help="key-unit rule: topscore:ETA | topk:K | global_topk:K | positive "
        "(default: topscore:0.9 for SAEs, topk:0.001 for neurons)",
    )
    g.add_argument(
        "--alignment",
        choices=["response", "predicting"],
        help="scored positions: response (paper) or predicting (corrected); default: the preset's, per unit type",
    )
    g.add_argument(
        "--neuron-site",
        choices=["down_input", "gate_act"],
        help="neuron coefficient: down_input (act(gate)·up) or gate_act (act(gate), the paper's code); "
        "default: the preset's",
    )
    g.add_argument("--layers", help="layers to include, e.g. 0-29 or 0,5,10 (default: all)")
    g.add_argument(
        "--target-l0",
        type=float,
        default=DEFAULTS.target_l0,
        help="for a bare sae-lens release: per layer the SAE whose average L0 is closest to this "
        f"(default {DEFAULTS.target_l0:g})",
    )


def add_data_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument(
        "--samples", help="JSONL file of {prompt, response[, id, correct]} records (default: built-in set)"
    )
    g.add_argument("--limit", type=int, help="use only the first N records")
    g.add_argument(
        "--max-length",
        type=int,
        default=DEFAULTS.max_length,
        help=f"tokens of prompt+response kept (default {DEFAULTS.max_length})",
    )
    g.add_argument(
        "--first-tokens",
        type=int,
        metavar="T",
        help="MUI over the first T scored positions of each sample (a sample with fewer contributes all it "
        "has; default: all)",
    )
    g.add_argument("--prompt-format", default=DEFAULTS.prompt_format, choices=["auto", "chat", "raw"])


def add_task_option_arg(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    p.add_argument(
        "--task-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="task option (repeatable), e.g. level=2; values are parsed as JSON when possible",
    )


def add_code_execution_arg(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    p.add_argument(
        "--allow-code-execution",
        action="store_true",
        help="let code tasks (humaneval, mbpp) run model-written code to score it (sandboxed: bubblewrap where "
        "available, else an in-process guard)",
    )


def add_extraction_arg(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    p.add_argument(
        "--extraction",
        default="corrected",
        choices=["corrected", "official"],
        help="answer scoring: corrected (default; saemui's fixed rules) or official (MUI-Eval's own, quirks "
        "included; arc, bbh, gsm8k, math, mmlu; docs/method.md §6.1)",
    )


def add_task_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("task", "generate the model's responses to a task, score them, then measure MUI")
    g.add_argument("--task", help="registered task (see `saemui tasks`); replaces --samples")
    add_task_option_arg(g)
    g.add_argument(
        "--style",
        default="auto",
        choices=STYLE_CHOICES,
        help="prompt style: chat (chat template), base (few-shot text) or auto (chat if the model has a template)",
    )
    g.add_argument("--max-new-tokens", type=int, help="generation budget (default: the task's own)")
    g.add_argument(
        "--source", help="task data: a JSON/JSONL file, a data wheel, or hf[:PATH[:CONFIG]] (online)"
    )
    g.add_argument(
        "--cache", help="generation cache JSONL (default: <out parent>/generations/<model>-<task>-...jsonl)"
    )
    g.add_argument("--gen-batch-size", type=int, default=16, help="prompts generated together (default 16)")
    add_code_execution_arg(g)
    add_extraction_arg(g)


def add_output_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("output")
    g.add_argument("--out", help="result directory (default: runs/<model>-<basis>)")
    g.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a finished run of another configuration in --out (the same configuration re-runs anyway)",
    )
    g.add_argument("--no-sets", action="store_true", help="do not keep per-sample key sets")
    g.add_argument(
        "--also",
        action="append",
        default=[],
        metavar="NAME=FIELD=VALUE[,FIELD=VALUE...]",
        help="another setting measured in the same forward pass, written to <out>/also/NAME (repeatable); "
        f"FIELD is one of {', '.join(ALSO_FIELDS)} (first_tokens=all: no cut), the rest as the main "
        "setting, e.g. --also gate=neuron_site=gate_act,alignment=response",
    )
    g.add_argument(
        "--checkpoint-every",
        type=int,
        default=20,
        help="save resumable progress every N batches beside --out (default 20; 0 = never)",
    )
    g.add_argument("--quiet", action="store_true", help="no progress bars")
    g.add_argument(
        "--explore",
        action="store_true",
        help="also keep max-activating contexts, histograms and logit-lens tokens (contexts.npz, for saemui report)",
    )


def add_performance_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("performance")
    g.add_argument(
        "--batch-tokens",
        type=int,
        default=DEFAULTS.max_batch_tokens,
        help=f"padded tokens per batch (default {DEFAULTS.max_batch_tokens})",
    )
    g.add_argument(
        "--max-batch-size",
        type=int,
        default=DEFAULTS.max_batch_size,
        help=f"rows per batch (default {DEFAULTS.max_batch_size})",
    )
    g.add_argument(
        "--padding-side",
        default=DEFAULTS.padding_side,
        choices=["right", "left"],
        help=f"batch padding side; MUI does not depend on it (default {DEFAULTS.padding_side})",
    )
    g.add_argument(
        "--backend",
        default=DEFAULTS.backend,
        choices=["hf", "tl"],
        help=f"capture backend (default {DEFAULTS.backend})",
    )
    g.add_argument("--sae-group-size", type=int, help="SAEs held in memory at once (default: all)")
    g.add_argument(
        "--sae-dtype",
        choices=["float32", "bfloat16", "float16"],
        help="dtype SAEs encode in (default: float32; residuals are cast to it)",
    )
    g.add_argument(
        "--encode-chunk",
        type=int,
        default=DEFAULTS.encode_chunk,
        help=f"scored tokens encoded at once; bounds memory for wide SAEs (default {DEFAULTS.encode_chunk})",
    )
    g.add_argument("--no-health", action="store_true", help="skip SAE health metrics (encoder-only loading)")


#: every group of ``saemui run``, in the order its help lists them
RUN_GROUPS: tuple[Callable[[argparse.ArgumentParser], None], ...] = (
    add_model_args,
    add_units_args,
    add_data_args,
    add_task_args,
    add_output_args,
    add_performance_args,
)

__all__ = [
    "DEFAULTS",
    "RUN_GROUPS",
    "STYLE_CHOICES",
    "add_data_args",
    "add_model_args",
    "add_output_args",
    "add_performance_args",
    "add_task_args",
    "add_task_option_arg",
    "add_units_args",
    "ALSO_FIELDS",
    "parse_also",
    "parse_layers",
    "run_config_fields",
]
