"""Your own runs as one table, and the Utility Law over them.

:func:`load_runs` turns ``saemui run`` result directories (``summary.json`` + ``arrays.npz`` + ``samples.csv``,
with or without ``--task``) and zoo record files into one tidy table, one row per run, with the columns the
analyses take (:data:`saemui.analysis.zoo.TABLE_COLUMNS`), so the law and the corollaries read user runs and the
zoo alike. :func:`equalize_n` brings every run to one sample count (MUI is a union over samples and grows with
N), :func:`fit_law_runs` fits both law forms on the equalized runs and :func:`format_law` prints it
(``saemui law RUN ...``).

Table conventions (shared with the zoo table): ``mui`` and ``mui_correct`` in percent, ``accuracy`` in [0, 1]
with its 95 % Wilson interval ``acc_lo``/``acc_hi``, ``perf`` the add-half smoothed accuracy in percent that the
log fits use (:func:`saemui.analysis.zoo.smoothed_perf`).
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from saemui.analysis.law import LawBootstrap, LawFit, SlopeTest, slope_test
from saemui.analysis.zoo import (
    TABLE_COLUMNS,
    check_points,
    check_table,
    law_analysis,
    layers_text,
    model_points,
    smoothed_perf,
    zoo_row,
)
from saemui.errors import SaemuiError
from saemui.readers import check_zoo_record, read_json
from saemui.result import MUIResult, SubsampledMUI, load_result, subsample_union
from saemui.zoo.record import RESULT_SCHEMA

PathLike = str | os.PathLike


def run_row(result: MUIResult, path: PathLike | None = None) -> dict[str, Any]:
    """The table row (:data:`~saemui.analysis.zoo.TABLE_COLUMNS`) of one ``saemui run`` result.

    A run is its own root model (derivation ``none``, never marked contaminated): the zoo's lineage columns
    only mean something for models the zoo built. ``task`` is None for a ``--samples`` run; accuracy, perf
    and the interval are None / NaN when no sample carries ``correct``.
    """
    s = result.summary
    model = s.get("model") or {}
    units = s.get("units") or {}
    cfg = s.get("config") or {}
    acc = result.accuracy_interval()
    labelled = acc.n > 0
    n = int(s["n_samples"])
    mc = s.get("mui_correct")
    name = str(model.get("name"))
    return {
        "model": name,
        "task": (s.get("task") or {}).get("name"),
        "root": name,
        "derivation": "none",
        "parent": None,
        "step": None,
        "train_steps": None,
        "n": n,
        "n_labelled": acc.n,
        "n_correct": acc.k if labelled else None,
        "accuracy": acc.accuracy if labelled else None,
        "acc_lo": acc.lo,
        "acc_hi": acc.hi,
        "perf": float(smoothed_perf(acc.k, acc.n)) if labelled else float("nan"),
        "mui": 100.0 * result.mui,
        "mui_correct": None if mc is None else 100.0 * float(mc),
        "units": units.get("kind"),
        "basis": units.get("basis"),
        "selection": s.get("selection"),
        "threshold": cfg.get("threshold"),
        "layers": tuple(result.layers),
        "layer_selection": _layer_selection(result),
        "alignment": cfg.get("alignment"),
        "neuron_site": cfg.get("neuron_site") if units.get("kind") == "neurons" else None,
        "first_tokens": cfg.get("first_tokens"),
        "prompt_format": cfg.get("prompt_format"),
        "n_tokens": s.get("n_tokens"),
        "tokens_per_item": s["n_tokens"] / n if n and isinstance(s.get("n_tokens"), int) else None,
        "model_id": model.get("hf_id") or name,
        "model_sha256": (model.get("provenance") or {}).get("sha256"),
        "sae_ids": json.dumps(units["sae_ids"], sort_keys=True) if units.get("sae_ids") else None,
        "saemui_version": (s.get("versions") or {}).get("saemui"),
        "in_domain": False,
        "contaminated": False,
        "contaminated_model": False,
        "source": "run",
        "path": None if path is None else str(path),
    }


def _layer_selection(result: MUIResult) -> str:
    """``all`` when the run measured every layer its basis has (no --layers), else the layers measured."""
    cfg = result.summary.get("config") or {}
    if "layers" in cfg:
        return "all" if cfg["layers"] is None else layers_text(cfg["layers"])
    # results without the config entry: all layers iff the rows are every layer of the model
    depth = (result.summary.get("model") or {}).get("n_layers")
    return "all" if result.layers == list(range(depth or -1)) else layers_text(result.layers)


def _zoo_file(path: Path) -> dict:
    rec = read_json(path, dict, "zoo result")
    if rec.get("schema") != RESULT_SCHEMA:
        raise SaemuiError(
            f"{path}: neither a saemui run directory nor a zoo record (schema {rec.get('schema')!r}, "
            f"expected {RESULT_SCHEMA})"
        )
    check_zoo_record(rec, str(path))
    return rec


def _rows_of(path: Path) -> list[dict[str, Any]]:
    if path.is_dir():
        if (path / "summary.json").is_file():
            return [run_row(load_result(path), path)]
        zoo = sorted(path.glob("*__*.json"))
        if zoo:
            return [zoo_row(_zoo_file(f), f) for f in zoo]
        inner = sorted(p.name for p in path.iterdir() if (p / "summary.json").is_file())
        shown = ", ".join(inner[:3]) + ("…" if len(inner) > 3 else "")
        hint = f"; it holds run directories ({shown}): pass them, e.g. {path}/*" if inner else ""
        raise SaemuiError(f"{path}: not a saemui run directory (no summary.json){hint}")
    if path.is_file():
        if path.name == "summary.json":
            return [run_row(load_result(path.parent), path.parent)]
        if path.suffix == ".json":
            return [zoo_row(_zoo_file(path), path)]
        raise SaemuiError(f"{path}: not a saemui run directory or a zoo record (*.json)")
    raise SaemuiError(f"{path}: no such run directory")


def _short_names(df: pd.DataFrame) -> pd.DataFrame:
    """Display a model given as a directory by its last path component, unless two different models would
    then share a name."""
    short = {m: Path(m).name if (os.sep in m or "/" in m) else m for m in df["model"].unique()}
    taken: dict[str, set[str]] = {}
    for full, s in short.items():
        taken.setdefault(s, set()).add(full)
    names = {full: (s if len(taken[s]) == 1 else full) for full, s in short.items()}
    out = df.copy()
    out["model"] = out["model"].map(names)
    out["root"] = out["root"].map(lambda r: names.get(r, r))
    return out


def load_runs(paths: PathLike | Iterable[PathLike]) -> pd.DataFrame:
    """One row per run: ``saemui run`` result directories, zoo record files (``<model>__<task>.json``) or zoo
    results directories, in the order given, with the columns of
    :data:`~saemui.analysis.zoo.TABLE_COLUMNS` (MUI in %, accuracy in [0, 1]; see the module docstring).

    Columns: model (a model directory is shown by its name), task (None for ``--samples`` runs), n (samples),
    n_labelled, n_correct, accuracy with acc_lo/acc_hi (95 % Wilson), perf, mui, mui_correct, units (sae or
    neurons), basis, selection, threshold, layers, alignment, neuron_site, first_tokens, prompt_format, n_tokens,
    tokens_per_item, provenance (model_id, model_sha256, sae_ids, saemui_version), the zoo's lineage columns,
    source ("run" or "zoo") and path. Anything else is refused with a one-line error naming the path.
    """
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    given = [Path(p) for p in paths]
    # `saemui run --task` keeps its answer cache in <out parent>/generations, so `saemui law runs/*` would pass it
    caches = [
        p for p in given if p.name == "generations" and p.is_dir() and not (p / "summary.json").exists()
    ]
    if caches and len(caches) < len(given):
        warnings.warn(
            f"load_runs: skipped {', '.join(map(str, caches))} (a generation cache, not a run)", stacklevel=2
        )
        given = [p for p in given if p not in caches]
    rows = [r for p in given for r in _rows_of(p)]
    if not rows:
        raise SaemuiError("load_runs: no run directories given")
    return _short_names(pd.DataFrame(rows, columns=list(TABLE_COLUMNS)))


# ----- equal N -----------------------------------------------------------------------------------------------


def _subsample_row(row: pd.Series, n: int, n_sub: int, seed: int, level: float) -> SubsampledMUI:
    where = row["path"] or row["model"]
    if row["path"] is None:
        raise SaemuiError(f"{where}: N = {row['n']} > {n}, and without its file the run cannot be subsampled")
    if row["source"] == "run":
        return load_result(row["path"]).mui_at(n, n_sub, seed, level)
    rec = _zoo_file(Path(row["path"]))
    sets = rec.get("sets")
    if sets is None:
        raise SaemuiError(f"{where}: kept no per-sample key sets, so its MUI cannot be subsampled to N = {n}")
    lens = np.array([len(x) for x in sets], dtype=np.int64)
    flat = np.array([u for x in sets for u in x], dtype=np.int64)
    denom = int(rec["n_units"]) * int(rec["n_layers"])
    return subsample_union(np.r_[0, np.cumsum(lens)], flat, denom, n, n_sub, seed, level)


def equalize_n(
    df: pd.DataFrame, n: int | None = None, *, n_sub: int = 1000, seed: int = 0, level: float = 0.95
) -> pd.DataFrame:
    """Every run's MUI at one sample count ``n`` (default: the smallest run's N), from its kept key sets.

    A run with more samples gets ``mui`` = the mean union MUI over ``n_sub`` random ``n``-sample subsets
    (:meth:`~saemui.result.MUIResult.mui_at`, same ``seed`` for every run); a run at exactly ``n`` keeps its
    own value (exact). Added columns: n_mui (= n), mui_full (the MUI over all N samples), mui_lo/mui_hi (the
    subsets' percentile interval at ``level``, %), mui_exact, mui_subsets. Accuracy, perf and n stay those of
    all N samples (a proportion does not grow with N). ``df.attrs["note"]`` says what was done.
    """
    if df.empty:
        raise SaemuiError("equalize_n: no runs")
    smallest = int(df["n"].min())
    target = smallest if n is None else int(n)
    if not 1 <= target <= smallest:
        raise SaemuiError(f"n={n}: expected 1..{smallest} (the smallest run has N = {smallest})")
    out = df.copy()
    cols: list[tuple[float, float, float, bool, int]] = []  # mean, lo, hi (%), exact, subsets used
    for _, row in df.iterrows():
        if int(row["n"]) == target:
            m = float(row["mui"])
            cols.append((m, m, m, True, 1))
        else:
            sub = _subsample_row(row, target, n_sub, seed, level)
            cols.append((100 * sub.mean, 100 * sub.lo, 100 * sub.hi, sub.exact, sub.n_subsets))
    means, los, his, exact, used = (list(c) for c in zip(*cols))
    out["mui_full"] = df["mui"].astype(float)
    out["mui"] = means
    out["mui_lo"], out["mui_hi"] = los, his
    out["n_mui"] = target
    out["mui_exact"], out["mui_subsets"] = exact, used
    full = sorted({int(x) for x in df["n"]})
    if all(exact):
        how = "exact: " + ("every run has that N" if full == [target] else "every distinct subset used")
    else:
        how = f"MUI = mean union over {n_sub} random {target}-sample subsets per larger run, seed {seed}"
    out.attrs = {
        "n_mui": target,
        "note": f"subsampled to N = {target} ({how}; runs' N: {', '.join(map(str, full))})",
    }
    return out


# ----- the law -----------------------------------------------------------------------------------------------


@dataclass
class RunsLaw:
    """The Utility Law fitted on runs at equal N (:func:`fit_law_runs`).

    table: the equalized runs (:func:`equalize_n`); points: one row per model (means over its tasks) as
    fitted, with acc_lo/acc_hi and mui_lo/mui_hi when every model has one run; fits, boots, tests: form →
    ``LawFit`` / ``LawBootstrap`` over models / ``SlopeTest``; n_mui: the common N; note: the equal-N note;
    dropped: models left out because their MUI is 0 (no log). no_fit: why no law was fitted (fewer than 3 model
    points: two models give one line through two points, with no interval and no test); then fits, boots,
    tests and summary are empty and points still carry the per-run intervals.
    """

    table: pd.DataFrame
    points: pd.DataFrame
    fits: dict[str, LawFit]
    boots: dict[str, LawBootstrap]
    tests: dict[str, SlopeTest]
    n_mui: int
    note: str
    level: float
    dropped: list[str] = field(default_factory=list)
    summary: pd.DataFrame = field(default_factory=pd.DataFrame)
    no_fit: str = ""


#: fewest model points a law is fitted on (fit_law refuses fewer: a line through 2 points has no residual)
MIN_LAW_POINTS = 3


def fit_law_runs(
    runs: pd.DataFrame | PathLike | Iterable[PathLike],
    *,
    n: int | None = None,
    n_sub: int = 1000,
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> RunsLaw:
    """Both law forms (MUI on ln P, P on ln MUI) over runs, after bringing every run to the smallest N.

    runs: a :func:`load_runs` table or the paths to load. Refused (one line): runs measured in another unit
    basis, selection rule, alignment or layer set than the first; runs without correctness labels; one
    (model, task) twice. A model with several runs (tasks) is one point, the mean over its tasks, as in the
    zoo; with fewer than three model points no law is fitted (``no_fit`` says so, the points keep their
    intervals). Reports, per form, the OLS fit, the t-interval and t-test of
    its slope, and a percentile bootstrap over models (``n_boot`` resamples).
    """
    df = runs if isinstance(runs, pd.DataFrame) else load_runs(runs)
    unlabelled = df[df["n_labelled"].fillna(0) == 0]
    if not unlabelled.empty:
        r = unlabelled.iloc[0]
        raise SaemuiError(
            f"{r['path'] or r['model']}: no sample is labelled correct/incorrect, so the run has no accuracy "
            "(the law needs one; run with --task, or give records a 'correct' field)"
        )
    check_points(df, keys=("basis", "selection", "alignment", "layers"))
    check_table(df, "runs")
    eq = equalize_n(df, n, n_sub=n_sub, seed=seed, level=level)
    cols = ["model", "acc_lo", "acc_hi", "mui_lo", "mui_hi", "n_correct", "n_labelled"]
    pts = model_points(eq)
    usable = pts[pts["mui"] > 0]
    if len(usable) < MIN_LAW_POINTS:
        # Two models are still worth a look (their accuracies and MUIs with intervals), but not a law: say so
        # instead of refusing, and leave the fit empty.
        if not eq.duplicated("model").any():
            usable = usable.merge(eq[cols], on="model", how="left")
        return RunsLaw(
            table=eq,
            points=usable.reset_index(drop=True),
            fits={},
            boots={},
            tests={},
            n_mui=eq.attrs["n_mui"],
            note=eq.attrs["note"],
            level=level,
            dropped=pts[pts["mui"] <= 0]["model"].tolist(),
            no_fit=(
                f"no law fitted: {len(usable)} model point(s) with MUI > 0, a fit needs at least "
                f"{MIN_LAW_POINTS} (and a test of the law many independent runs)"
            ),
        )
    res = law_analysis(eq, "all", n_boot=n_boot, seed=seed, level=level)
    pts = res["points"]
    if not eq.duplicated("model").any():
        pts = pts.merge(eq[cols], on="model", how="left")
    tests = {form: slope_test(fit, level) for form, fit in res["fits"].items()}
    summary = res["table"].assign(
        slope_t_lo=[tests[f].ci[0] for f in res["table"]["form"]],
        slope_t_hi=[tests[f].ci[1] for f in res["table"]["form"]],
        slope_p=[tests[f].p for f in res["table"]["form"]],
        n_mui=eq.attrs["n_mui"],
    )
    return RunsLaw(
        table=eq,
        points=pts,
        fits=res["fits"],
        boots=res["boots"],
        tests=tests,
        n_mui=eq.attrs["n_mui"],
        note=eq.attrs["note"],
        level=level,
        dropped=res["dropped"],
        summary=summary,
    )


def format_law(res: RunsLaw) -> str:
    """The text ``saemui law`` prints: settings, the equal-N note, one line per run, one block per form."""
    t = res.table
    r0 = t.iloc[0]
    pct = f"{100 * res.level:g} %"
    tasks = sorted({str(x) for x in t["task"] if x is not None})
    lines = [
        f"runs       {len(t)} ({t['model'].nunique()} models"
        + (f"; tasks {', '.join(tasks)})" if tasks else ")"),
        f"settings   basis {', '.join(map(str, dict.fromkeys(t['basis'])))}, selection {r0['selection']}, "
        f"alignment {r0['alignment']}, layers {r0['layer_selection']}",
        res.note,
        "",
        f"{'model':<24} {'task':<12} {'N':>5} {'accuracy %':>10} {'[' + pct + ' Wilson]':>18} "
        f"{'MUI %':>9} {'[' + pct + ' over subsets]':>22}",
    ]
    for r in t.itertuples():
        lines.append(
            f"{str(r.model)[:24]:<24} {str(r.task)[:12]:<12} {r.n:>5} {100 * r.accuracy:>10.1f} "
            f"{f'[{100 * r.acc_lo:.1f}, {100 * r.acc_hi:.1f}]':>18} {r.mui:>9.4f} "
            f"{f'[{r.mui_lo:.4f}, {r.mui_hi:.4f}]':>22}"
        )
    if res.dropped:
        lines.append(f"left out (MUI = 0, no logarithm): {', '.join(res.dropped)}")
    lines.append("")
    if res.no_fit:
        lines.append(res.no_fit)
        return "\n".join(lines)
    lines.append(
        f"fits on {res.fits['mui_from_perf'].n} model points (P = add-half smoothed accuracy %, MUI % at "
        f"N = {res.n_mui})"
    )
    for form, fit in res.fits.items():
        test, boot = res.tests[form], res.boots[form]
        lines += [
            f"  {fit.equation}   n = {fit.n}, R² = {fit.r2:.3f}, Spearman ρ = {fit.spearman_rho:.3f}",
            f"    slope {fit.slope:.4f}: t-interval {pct} [{test.ci[0]:.4f}, {test.ci[1]:.4f}] "
            f"(t = {test.t:.3f}, df {test.df}, p = {test.p:.3g}); bootstrap over runs {pct} "
            f"[{boot.slope_ci[0]:.4f}, {boot.slope_ci[1]:.4f}] ({boot.n_boot} resamples)",
        ]
    return "\n".join(lines)


__all__ = ["MIN_LAW_POINTS", "RunsLaw", "equalize_n", "fit_law_runs", "format_law", "load_runs", "run_row"]
