"""saemui: the Model Utility Index (MUI) of language models from SAE features or MLP neurons.

Public API (a notebook and the ``saemui`` CLI call the same functions)::

    from saemui import load_model, read_samples, compute_mui, RunConfig, load_result
    lm = load_model()                                   # embedded SmolLM2-135M-Instruct, offline
    res = compute_mui(lm, read_samples("items.jsonl"), RunConfig(units="neurons"))
    res.save("runs/demo"); print(res.mui, res.per_layer)

The names are loaded on first use (module ``__getattr__``): ``import saemui`` and ``saemui --help`` import no
torch, transformers, scipy, matplotlib or pandas.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

#: public name → the module defining it
_EXPORTS = {
    "KeyRule": "saemui.rules",
    "MUIResult": "saemui.result",
    "RunConfig": "saemui.config",
    "Sample": "saemui.records",
    "SaemuiError": "saemui.errors",
    "compare_runs": "saemui.compare",
    "compute_mui": "saemui.engine",
    "compute_mui_many": "saemui.engine",
    "coverage_curve": "saemui.analysis.diversity",
    "equalize_n": "saemui.runs",
    "fit_law_runs": "saemui.runs",
    "format_law": "saemui.runs",
    "load_model": "saemui.models",
    "load_result": "saemui.result",
    "load_runs": "saemui.runs",
    "open_suite": "saemui.saes",
    "read_samples": "saemui.records",
    "run_task": "saemui.tasks.pipeline",
    "top_features": "saemui.explore.views",
    "wilson_interval": "saemui.result",
    "write_samples": "saemui.records",
}

if TYPE_CHECKING:  # static analysers and IDEs see the eager imports
    from saemui.analysis.diversity import coverage_curve
    from saemui.compare import compare_runs
    from saemui.config import RunConfig
    from saemui.engine import compute_mui, compute_mui_many
    from saemui.errors import SaemuiError
    from saemui.explore.views import top_features
    from saemui.models import load_model
    from saemui.records import Sample, read_samples, write_samples
    from saemui.result import MUIResult, load_result, wilson_interval
    from saemui.rules import KeyRule
    from saemui.runs import equalize_n, fit_law_runs, format_law, load_runs
    from saemui.saes import open_suite
    from saemui.tasks.pipeline import run_task


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value  # later lookups skip __getattr__
        return value
    raise AttributeError(f"module 'saemui' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


__all__ = [
    "KeyRule",
    "MUIResult",
    "RunConfig",
    "SaemuiError",
    "Sample",
    "compare_runs",
    "compute_mui",
    "compute_mui_many",
    "coverage_curve",
    "equalize_n",
    "fit_law_runs",
    "format_law",
    "load_model",
    "load_result",
    "load_runs",
    "open_suite",
    "read_samples",
    "run_task",
    "top_features",
    "wilson_interval",
    "write_samples",
    "__version__",
]
