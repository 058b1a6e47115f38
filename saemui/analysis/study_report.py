"""Pieces shared by the Study v2 reports (:mod:`saemui.analysis.study_law_report`,
:mod:`saemui.analysis.study_corollaries_report`) and their scripts (``scripts/reproduce_study_law.py``,
``scripts/reproduce_study_corollaries.py``): JSON-safe numbers and tables, the number format of the generated
tables, the versions of the analysis packages recorded in each report, the output options both scripts take and
the step that writes a report's JSON, markdown and figures."""

from __future__ import annotations

import argparse
import math
import platform
from collections.abc import Callable, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from saemui.io import atomic_write_compact_json, atomic_write_text
from saemui.zoo.record_v2 import DEFAULT_RESULTS_V2, NOT_TESTABLE

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from saemui.zoo.spec_v2 import StudySpec

#: where both scripts write their figures by default
DEFAULT_FIGURES = "figures/study"

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


def json_table(df: pd.DataFrame) -> dict[str, Any]:
    """A DataFrame as ``{"columns": [...], "rows": [[...], ...]}`` with :func:`json_num` values (NaN as null)."""
    return {
        "columns": [str(c) for c in df.columns],
        "rows": [[json_num(v) for v in r] for r in df.itertuples(index=False)],
    }


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


def command(script: str, results: Path) -> str:
    """The command line that regenerates a report, as its JSON and markdown name it (``--results`` only when it
    is not the default)."""
    return f"python scripts/{script}" + (
        "" if str(results) == DEFAULT_RESULTS_V2 else f" --results {results}"
    )


# ----- the scripts' output options and writing step -------------------------------------------------------


def deviation_line(deviation: Mapping[str, Any] | None) -> list[str]:
    """The generated tables' warning when stage 0 ran under a logged deviation (``eligibility.json``'s
    ``deviation``, e.g. D1 of protocol §11): its results are not the registered design's; empty otherwise."""
    if not deviation:
        return []
    what = "; ".join(f"{k} ({', '.join(f'{a} {b}' for a, b in v.items())})" for k, v in deviation.items())
    return [
        f"- **Deviation {what}**, decided after stage 0 of the bases (protocol §11): every result below depends "
        "on it and is labelled so; the registered design gave m = 0 law tasks.",
    ]


def one_family_line(study: Mapping[str, Any] | None) -> list[str]:
    """The generated tables' statement when the study is §11's case (3) (``eligibility.json``'s
    ``one_family_study``): H1/H1b are not testable on two families; empty for a two-family study."""
    if not study:
        return []
    return [
        f"- **H1 / H1b: {NOT_TESTABLE}.** No candidate has both bases above chance (§3.2, registered prompts and "
        f"D1), so there is no primary test. As §11 fixed before the fine-tuned runs (case (3)), the study runs "
        f"within {study['family']} on its one-family tasks {', '.join(study['tasks']) or 'none'} (task C = "
        f"{study['C']}); every fit below is a secondary one-family fit, and no overall verdict on the law is "
        "drawn from it.",
    ]


def add_output_options(ap: argparse.ArgumentParser, *, json_name: str, md_default: str) -> None:
    """The options every report script takes: ``--results``, ``--json``, ``--md``, ``--figures``,
    ``--no-figures`` (read back by :func:`write_outputs`)."""
    ap.add_argument("--results", default=DEFAULT_RESULTS_V2, help="zoo-v2 records (default %(default)s)")
    ap.add_argument("--json", default=None, help=f"output JSON (default <results>/{json_name})")
    ap.add_argument("--md", default=md_default, help="generated tables (default %(default)s)")
    ap.add_argument("--figures", default=DEFAULT_FIGURES, help="figure directory (default %(default)s)")
    ap.add_argument("--no-figures", action="store_true", help="write no figure")


def write_outputs(
    args: argparse.Namespace,
    json_name: str,
    data: Mapping[str, Any],
    md: str,
    draw: Callable[[], Mapping[str, Figure]],
) -> tuple[Path, list[Path]]:
    """Write a report as the options of :func:`add_output_options` say: ``data`` to ``--json`` (default
    ``<results>/<json_name>``), ``md`` to ``--md``, each atomically, then unless ``--no-figures`` the figures
    ``draw()`` returns as ``<figures>/<name>.png`` and ``.pdf``. Returns (the JSON path, the figure files)."""
    out_json = Path(args.json) if args.json else Path(args.results) / json_name
    atomic_write_compact_json(out_json, data)
    atomic_write_text(Path(args.md), md)
    if args.no_figures:
        return out_json, []
    from saemui.plots import save_figure

    written: list[Path] = []
    for name, fig in draw().items():
        written += save_figure(fig, Path(args.figures) / name)
    return out_json, written


def id_head(ids: Sequence[str], n_show: int = 4) -> str:
    """The first ``n_show`` stage ids, comma-separated, with ", …" when there are more (missing-record lines)."""
    return ", ".join(ids[:n_show]) + (", …" if len(ids) > n_show else "")


def spec_for(zoo: str | None) -> StudySpec | None:
    """The zoo spec named in ``eligibility.json`` (None for an unknown name: missing stages are then not
    listed). The reports list what a partial build still lacks from it."""
    from saemui.zoo.spec_v2 import tiny_zoo_v2, zoo_v2

    if zoo == "v2":
        return zoo_v2()
    if zoo == "tiny-v2":
        # the model paths are never opened: the spec only names the stages
        return tiny_zoo_v2("tiny-llama", "tiny-gemma", "tiny-saes")
    return None


__all__ = [
    "id_head",
    "spec_for",
    "ANALYSIS_PACKAGES",
    "DEFAULT_FIGURES",
    "add_output_options",
    "analysis_versions",
    "command",
    "deviation_line",
    "one_family_line",
    "fmt",
    "json_num",
    "json_table",
    "write_outputs",
]
