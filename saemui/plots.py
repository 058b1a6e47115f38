"""Figures for the analysis layer (matplotlib only, Agg canvas, no pyplot global state).

Every ``plot_*`` returns a new ``matplotlib.figure.Figure``; nothing is shown or written until ``save_figure``.
Figures are built on ``FigureCanvasAgg`` directly so importing this module never picks or changes a GUI backend.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from saemui.analysis.diversity import CoverageCurve
from saemui.analysis.law import LawBootstrap, LawFit, bootstrap_ci
from saemui.analysis.stats import ArrayLike, as_1d
from saemui.analysis.training import PHASES
from saemui.errors import SaemuiError
from saemui.io import atomic_write_bytes

PHASE_COLORS: dict[str, str] = {
    "Accumulating": "#1b9e77",
    "Evolving": "#7570b3",
    "Coarsening": "#d95f02",
    "Collapsing": "#e7298a",
    "Stable": "#999999",
}


def new_figure(w: float, h: float, ncols: int = 1, nrows: int = 1) -> tuple[Figure, np.ndarray]:
    """A new Agg-backed figure (no pyplot state) in constrained layout, and its axes as a flat array."""
    fig = Figure(figsize=(w, h), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes.ravel()


def _need(df: pd.DataFrame, cols: Sequence[str], name: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise SaemuiError(f"{name}: missing column(s) {', '.join(missing)} (expected {', '.join(cols)})")


def _annotate_stacked(ax, xs: np.ndarray, ys: np.ndarray, labels: Sequence[str]) -> None:
    """Label points; labels of points that sit close together (checkpoints of one run) are stacked upward
    instead of printed on top of each other."""
    xs, ys = np.asarray(xs, float), np.asarray(ys, float)
    sx = max(np.ptp(xs), 1e-12)
    sy = max(np.ptp(ys), 1e-12)
    placed: list[tuple[float, float]] = []
    lift = np.zeros(len(xs), dtype=int)
    for i in np.argsort(ys, kind="stable"):
        lift[i] = sum(abs(xs[i] - x) / sx < 0.12 and abs(ys[i] - y) / sy < 0.06 for x, y in placed)
        placed.append((xs[i], ys[i]))
    for x, y, s, k in zip(xs, ys, labels, lift):
        ax.annotate(str(s), (x, y), textcoords="offset points", xytext=(4, 4 + 9 * k), fontsize=8)


def _draw_law(ax, fit: LawFit, p, m, labs, boot: LawBootstrap | None, band: bool) -> None:
    ax.scatter(p, m, color="#1f77b4", zorder=3)
    if labs is not None:
        _annotate_stacked(ax, p, m, labs)
    reg = fit.regressor
    lo_r, hi_r = reg.min(), reg.max()
    grid = np.exp(np.linspace(np.log(lo_r), np.log(hi_r), 200))
    curve = fit.predict(grid)
    if band:
        boot = bootstrap_ci(fit) if boot is None else boot
        blo, bhi = boot.band(grid)
        pct = f"{boot.level:.0%} bootstrap band"
        if fit.form == "mui_from_perf":
            ax.fill_between(grid, blo, bhi, color="#ff7f0e", alpha=0.2, label=pct)
        else:
            ax.fill_betweenx(grid, blo, bhi, color="#ff7f0e", alpha=0.2, label=pct)
    if fit.form == "mui_from_perf":
        ax.plot(grid, curve, color="#ff7f0e", label=f"{fit.equation} (R²={fit.r2:.2f})")
    else:
        ax.plot(curve, grid, color="#ff7f0e", label=f"{fit.equation} (R²={fit.r2:.2f})")
    ax.set_xlabel("performance P")
    ax.set_ylabel("MUI")
    ax.legend(fontsize=8)


def plot_law_grid(fits: Mapping[str, LawFit], boots: Mapping[str, LawBootstrap] | None = None) -> Figure:
    """One panel per named fit (e.g. per task), each drawn as :func:`plot_law` draws one, labels from the
    fits' own points."""
    if not fits:
        raise SaemuiError("plot_law_grid: no fits given")
    n = len(fits)
    ncols = min(n, 2)
    nrows = -(-n // ncols)
    fig, axes = new_figure(6 * ncols, 4.5 * nrows, ncols=ncols, nrows=nrows)
    for ax, (name, fit) in zip(axes, fits.items()):
        boot = (boots or {}).get(name)
        _draw_law(ax, fit, fit.perf, fit.mui, list(fit.labels) if fit.labels else None, boot, True)
        ax.set_title(f"{name} (n={fit.n}, Spearman ρ={fit.spearman_rho:.2f})")
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig


def plot_law(
    fit: LawFit,
    perf: ArrayLike | None = None,
    mui: ArrayLike | None = None,
    labels: Sequence[str] | None = None,
    *,
    boot: LawBootstrap | None = None,
    band: bool = True,
    title: str | None = None,
) -> Figure:
    """Scatter of (P, MUI) with the fitted law and a pointwise bootstrap band.

    perf, mui, labels default to the fit's own points. The x axis is always P and the y axis MUI; for a
    ``perf_from_mui`` fit the curve is drawn as P(MUI). ``boot`` defaults to ``bootstrap_ci(fit)`` (2000
    resamples, seed 0) when ``band`` is True.
    """
    p = fit.perf if perf is None else as_1d(perf, "perf", positive=True)
    m = fit.mui if mui is None else as_1d(mui, "mui", positive=True)
    if len(p) != len(m):
        raise SaemuiError(f"perf and mui must have equal length, got {len(p)} and {len(m)}")
    labs = list(labels) if labels is not None else (list(fit.labels) if fit.labels and perf is None else None)
    fig, (ax,) = new_figure(6, 4.5)
    _draw_law(ax, fit, p, m, labs, boot, band)
    ax.set_title(title or f"Utility Law fit (n={fit.n}, Spearman ρ={fit.spearman_rho:.2f})")
    return fig


def plot_task_bars(
    df: pd.DataFrame,
    value: str = "mui",
    *,
    model_col: str = "model",
    task_col: str = "task",
    err_cols: tuple[str, str] | None = None,
) -> Figure:
    """Grouped bars: one group per task, one bar per model.

    df: long table with columns model, task and ``value``; optional ``err_cols`` = (lo, hi) columns give
    interval whiskers (absolute values, e.g. bootstrap CI bounds).
    """
    _need(df, [model_col, task_col, value, *(err_cols or ())], "df")
    tasks = list(dict.fromkeys(df[task_col]))
    models = list(dict.fromkeys(df[model_col]))
    fig, (ax,) = new_figure(max(5.0, 1.0 + 0.6 * len(tasks) * max(1, len(models)) ** 0.5), 4)
    width = 0.8 / len(models)
    x = np.arange(len(tasks))
    for j, mdl in enumerate(models):
        sub = df[df[model_col] == mdl].set_index(task_col).reindex(tasks)
        vals = sub[value].to_numpy(float)
        yerr = None
        if err_cols:
            yerr = np.vstack(
                [vals - sub[err_cols[0]].to_numpy(float), sub[err_cols[1]].to_numpy(float) - vals]
            )
        ax.bar(x + (j - (len(models) - 1) / 2) * width, vals, width, yerr=yerr, capsize=2, label=str(mdl))
    ax.set_xticks(x, [str(t) for t in tasks], rotation=30, ha="right")
    ax.set_ylabel(value)
    ax.legend(fontsize=8, ncols=min(4, len(models)))
    return fig


def plot_trajectory(df_phases: pd.DataFrame, tasks: Sequence[str] | None = None) -> Figure:
    """Training trajectory with each step coloured by its phase (output of ``classify_trajectory``).

    Left: P per checkpoint; middle: MUI per checkpoint; right: ΔP vs ΔMUI per step (the phase quadrants).
    Accepts ``classify_phases`` output too (a single trajectory, no ``task`` column).
    """
    _need(
        df_phases,
        [
            "step",
            "step_to",
            "checkpoint_from",
            "checkpoint_to",
            "perf_from",
            "perf_to",
            "mui_from",
            "mui_to",
            "dP",
            "dMUI",
            "phase",
        ],
        "df_phases",
    )
    df = df_phases if "task" in df_phases.columns else df_phases.assign(task="trajectory")
    if tasks is not None:
        df = df[df["task"].isin(list(tasks))]
    if df.empty:
        raise SaemuiError("df_phases: no steps to plot")
    fig, axes = new_figure(13, 4, ncols=3)
    styles = ["-", "--", ":", "-."]
    for t_i, (task, g) in enumerate(df.groupby("task", sort=False)):
        ls = styles[t_i % len(styles)]
        for _, r in g.iterrows():
            c = PHASE_COLORS.get(r["phase"], "black")
            axes[0].plot(
                [r["step"], r["step_to"]], [r["perf_from"], r["perf_to"]], ls, color=c, marker="o", ms=3
            )
            axes[1].plot(
                [r["step"], r["step_to"]], [r["mui_from"], r["mui_to"]], ls, color=c, marker="o", ms=3
            )
        axes[2].scatter(g["dP"], g["dMUI"], c=[PHASE_COLORS.get(p, "black") for p in g["phase"]], s=18)
        axes[0].plot([], [], ls, color="black", label=str(task))
    # checkpoint names on the x axis, in step order
    names = {}
    for _, r in df.iterrows():
        names.setdefault(int(r["step"]), r["checkpoint_from"])
        names.setdefault(int(r["step_to"]), r["checkpoint_to"])
    ticks = sorted(names)
    for ax, ylab in zip(axes[:2], ["performance P", "MUI"]):
        ax.set_xticks(ticks, [str(names[t]) for t in ticks], rotation=30, ha="right", fontsize=8)
        ax.set_xlabel("checkpoint")
        ax.set_ylabel(ylab)
    axes[2].axhline(0, color="black", lw=0.5)
    axes[2].axvline(0, color="black", lw=0.5)
    axes[2].set_xlabel("ΔP")
    axes[2].set_ylabel("ΔMUI")
    for ph in PHASES:
        axes[2].scatter([], [], color=PHASE_COLORS[ph], label=ph)
    axes[2].legend(fontsize=7)
    axes[0].legend(fontsize=7)
    return fig


def plot_contamination(shift_df: pd.DataFrame, title: str | None = None) -> Figure:
    """ΔP vs ΔMUI per task from ``shift_table``: in-domain vs out-of-domain tasks, quadrant lines at 0.

    The upper-right quadrant (P↑ MUI↑) is the contamination signature when only in-domain tasks land there.
    """
    _need(shift_df, ["task", "domain", "dP", "dMUI"], "shift_df")
    fig, (ax,) = new_figure(5.5, 4.5)
    for dom, color, marker in (("in", "#d62728", "o"), ("out", "#1f77b4", "s")):
        g = shift_df[shift_df["domain"] == dom]
        ax.scatter(g["dP"], g["dMUI"], color=color, marker=marker, label=f"{dom}-domain", zorder=3)
        for _, r in g.iterrows():
            ax.annotate(
                str(r["task"]), (r["dP"], r["dMUI"]), textcoords="offset points", xytext=(4, 4), fontsize=8
            )
    ax.axhline(0, color="black", lw=0.5)
    ax.axvline(0, color="black", lw=0.5)
    ax.set_xlabel("ΔP (after − before)")
    ax.set_ylabel("ΔMUI (after − before)")
    ax.set_title(title or "Performance and utility shifts")
    ax.legend(fontsize=8)
    return fig


def plot_coverage(
    curves: Mapping[str, CoverageCurve] | Sequence[CoverageCurve], title: str | None = None
) -> Figure:
    """Union-growth curves (mean line, percentile band where there is one), one per named curve."""
    items = (
        list(curves.items())
        if isinstance(curves, Mapping)
        else [(f"curve {i}", c) for i, c in enumerate(curves)]
    )
    if not items:
        raise SaemuiError("curves: expected at least one CoverageCurve")
    fig, (ax,) = new_figure(6, 4.5)
    for name, c in items:
        if not isinstance(c, CoverageCurve):
            raise SaemuiError(f"curves[{name!r}]: expected a CoverageCurve, got {type(c).__name__}")
        (line,) = ax.plot(c.k, c.mean, label=str(name))
        if c.n_perm > 0:
            ax.fill_between(c.k, c.lo, c.hi, color=line.get_color(), alpha=0.2)
    ax.set_xlabel("number of samples")
    ax.set_ylabel("distinct key units covered")
    ax.set_title(title or "Key-unit coverage")
    ax.legend(fontsize=8)
    return fig


def plot_rank_sweep(sweep: pd.DataFrame, title: str | None = None) -> Figure:
    """Rank of each model (1 = best) against the weight α of ``utility_adjusted_score`` (``alpha_sensitivity``
    output: columns ``alpha`` and ``rank:<model>``)."""
    _need(sweep, ["alpha"], "sweep")
    cols = [c for c in sweep.columns if str(c).startswith("rank:")]
    if not cols:
        raise SaemuiError("sweep: no rank:<model> columns (expected alpha_sensitivity output)")
    fig, (ax,) = new_figure(6.5, 4.5)
    for c in cols:
        ax.plot(sweep["alpha"], sweep[c], marker="o", ms=3, label=c.removeprefix("rank:"))
    ax.invert_yaxis()
    ax.set_xlabel("α (1 = accuracy only, 0 = fewest key units only)")
    ax.set_ylabel("rank (1 = best)")
    ax.set_title(title or "Ranking under α·z(P) − (1−α)·z(MUI)")
    ax.legend(fontsize=7, ncols=2)
    return fig


def plot_sensitivity(model_means: pd.DataFrame, title: str | None = None) -> Figure:
    """MUI of each model (rows) under each key-unit selection (columns), one line per model."""
    if model_means.empty:
        raise SaemuiError("model_means: no rows to plot")
    fig, (ax,) = new_figure(6, 4.5)
    cols = [str(c) for c in model_means.columns]
    x = np.arange(len(cols))
    # Lines join only selections of one family (k=… with k=…, eta=… with eta=…): an eta column is usually another
    # unit basis (SAE features) than the k sweep (neurons), and a line between them would read as a trend.
    families: dict[str, list[int]] = {}
    for i, c in enumerate(cols):
        families.setdefault(c.split("=")[0], []).append(i)
    cmap = matplotlib.colormaps["tab20" if len(model_means) > 10 else "tab10"]
    for j, (name, row) in enumerate(model_means.iterrows()):
        vals = row.to_numpy(float)
        for f, idx in enumerate(families.values()):
            ax.plot(
                x[idx], vals[idx], marker="o", ms=3, color=cmap(j % cmap.N), label=None if f else str(name)
            )
    ax.set_xticks(x, cols)
    ax.set_xlabel("key-unit selection")
    ax.set_ylabel("MUI")
    ax.set_title(title or "MUI under different key-unit selections")
    ax.legend(fontsize=7, ncols=2)
    return fig


def save_figure(
    fig: Figure, path: str | os.PathLike, formats: Sequence[str] = ("png", "pdf"), dpi: int = 150
) -> list[Path]:
    """Write ``fig`` as ``<path>.png`` and ``<path>.pdf`` atomically (temp file, then ``os.replace``).

    A ``.png``/``.pdf`` suffix on ``path`` is dropped so both files share one stem. Returns the written paths.
    """
    base = Path(path)
    if base.suffix.lower() in {".png", ".pdf"}:
        base = base.with_suffix("")
    written = []
    for fmt in formats:
        buf = io.BytesIO()
        # No creation date in PDFs: regenerating a committed figure from the same results gives the same bytes.
        fig.savefig(buf, format=fmt, dpi=dpi, metadata={"CreationDate": None} if fmt == "pdf" else None)
        out = base.with_name(f"{base.name}.{fmt}")
        atomic_write_bytes(out, buf.getvalue())
        written.append(out)
    return written
