"""Pieces shared by the Study v2 report scripts (``scripts/reproduce_study_law.py``,
``scripts/reproduce_study_corollaries.py``): JSON-safe numbers, the number format of the generated tables, and the
versions of the analysis packages recorded in each report."""

from __future__ import annotations

import math
import platform
from importlib import metadata
from typing import Any

import numpy as np
import pandas as pd

#: the packages an offline report depends on (no model is loaded), recorded with every result file
ANALYSIS_PACKAGES = ("saemui", "numpy", "pandas", "scipy", "matplotlib")


def json_num(x: Any) -> Any:
    """``x`` with numpy scalars and arrays as Python numbers and lists, non-finite floats and missing values as
    None (JSON has no NaN), recursively through lists, tuples and dicts (keys as strings)."""
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(float(x)) else None
    if x is None or x is pd.NA:
        return None
    if isinstance(x, np.ndarray):
        return [json_num(v) for v in x.tolist()]
    if isinstance(x, (list, tuple)):
        return [json_num(v) for v in x]
    if isinstance(x, dict):
        return {str(k): json_num(v) for k, v in x.items()}
    return x


def fmt(x: Any, nd: int = 3) -> str:
    """A number in a generated table: ``nd`` significant digits, "–" when missing or not finite."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    if isinstance(x, float):
        return f"{x:.{nd}g}" if abs(x) < 1e4 else f"{x:.3e}"
    return str(x)


def analysis_versions() -> dict[str, Any]:
    """Python and :data:`ANALYSIS_PACKAGES` versions (None for a package that is not installed)."""
    out: dict[str, Any] = {"python": platform.python_version()}
    for name in ANALYSIS_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


__all__ = ["ANALYSIS_PACKAGES", "analysis_versions", "fmt", "json_num"]
