"""saemui: the Model Utility Index (MUI) of language models from SAE features or MLP neurons.

Public API (a notebook and the ``saemui`` CLI call the same functions)::

    from saemui import load_model, read_samples, compute_mui, RunConfig, load_result
    lm = load_model()                                   # embedded SmolLM2-135M-Instruct, offline
    res = compute_mui(lm, read_samples("items.jsonl"), RunConfig(units="neurons"))
    res.save("runs/demo"); print(res.mui, res.per_layer)
"""

from __future__ import annotations

__version__ = "0.1.0"

from saemui.config import RunConfig
from saemui.engine import compute_mui
from saemui.errors import SaemuiError
from saemui.models import load_model
from saemui.records import Sample, read_samples, write_samples
from saemui.result import MUIResult, load_result
from saemui.saes import open_suite
from saemui.selection import KeyRule

__all__ = [
    "KeyRule",
    "MUIResult",
    "RunConfig",
    "Sample",
    "SaemuiError",
    "compute_mui",
    "load_model",
    "load_result",
    "open_suite",
    "read_samples",
    "write_samples",
    "__version__",
]
