"""Figures for the analysis layer (matplotlib only, Agg canvas, no pyplot global state).

Every ``plot_*`` returns a new ``matplotlib.figure.Figure``; nothing is shown or written until ``save_figure``.
Figures are built on ``FigureCanvasAgg`` directly so importing this module never picks or changes a GUI backend.
"""

from __future__ import annotations

import io
import os
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.colors
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
# 20 colours (tab20) and 8 markers whose cycles never realign before 40 series: every model of a zoo keeps one
# distinct (colour, marker) pair in every figure, even where colours alone would repeat.
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
MUI_LABEL = "MUI (%)"
PERF_LABEL = "accuracy P (%)"


def _legend_beside(ax, handles: dict, order: list[str], fontsize: float) -> None:
    """One legend entry per name in ``order``, to the right of ``ax`` (outside the data)."""
    ax.legend(
        [handles[k] for k in order],
        order,
        loc="upper left",
        bbox_to_anchor=(1.04, 1.0),
        borderaxespad=0.0,
        fontsize=fontsize,
    )


def new_figure(w: float, h: float, ncols: int = 1, nrows: int = 1) -> tuple[Figure, np.ndarray]:
    """A new Agg-backed figure (no pyplot state) in constrained layout, and its axes as a flat array."""
    fig = Figure(figsize=(w, h), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes.ravel()


def series_styles(names: Sequence[str]) -> dict[str, dict[str, str]]:
    """name → {"color", "marker"}: one distinct pair per name, assigned in sorted name order so that a model
    looks the same in every figure built from the same set of names."""
    cmap = matplotlib.colormaps["tab20"]
    # tab20 pairs a dark and a light shade of each hue: even indices first keeps neighbours far apart
    order = [*range(0, 20, 2), *range(1, 20, 2)]
    return {
        n: {"color": matplotlib.colors.to_hex(cmap(order[i % 20])), "marker": MARKERS[i % len(MARKERS)]}
        for i, n in enumerate(sorted(dict.fromkeys(str(x) for x in names)))
    }


def legend_outside(ax, fontsize: float = 8, sort: bool = False, **kw) -> None:
    """The axes' legend to the right of the plot area, where it cannot cover data (``sort``: by label)."""
    hs, ls = ax.get_legend_handles_labels()
    if sort:
        hs, ls = zip(*sorted(zip(hs, ls), key=lambda t: t[1])) if ls else ((), ())
    ax.legend(
        hs, ls, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, fontsize=fontsize, **kw
    )


def _wrap(text: str, fig: Figure, fontsize: float) -> str:
    # about 0.55 em per character: wrap to the figure's width so that no title runs off the canvas
    width = max(30, int(fig.get_figwidth() * 72 / (0.55 * fontsize)) - 4)
    return "\n".join(textwrap.fill(line, width) for line in text.split("\n"))


def _titles(fig: Figure, title: str, caption: str | None) -> None:
    """Title and caption (n and the test or interval behind the figure) over the whole figure, wrapped to its
    width: legends sit beside the axes, so an axes-wide title would be too narrow."""
    fig.suptitle(_wrap(f"{title}\n{caption}" if caption else title, fig, 9.5), fontsize=9.5)


def _need(df: pd.DataFrame, cols: Sequence[str], name: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise SaemuiError(f"{name}: missing column(s) {', '.join(missing)} (expected {', '.join(cols)})")


def _spearman_p(p: np.ndarray, m: np.ndarray) -> float:
    from scipy.stats import spearmanr

    if len(p) < 3 or np.ptp(p) == 0 or np.ptp(m) == 0:
        return float("nan")
    return float(spearmanr(p, m).pvalue)


def law_caption(fit: LawFit, boot: LawBootstrap | None = None, unit: str = "models", sep: str = "; ") -> str:
    """n, the rank test and (with ``boot``) the slope interval of a law fit, for a title or caption."""
    pv = _spearman_p(np.asarray(fit.perf), np.asarray(fit.mui))
    s = f"n = {fit.n} {unit}, Spearman ρ = {fit.spearman_rho:.2f} (two-sided p = {pv:.2g})"
    if boot is not None:
        s += f"{sep}slope {boot.level:.0%} CI [{boot.slope_ci[0]:.3g}, {boot.slope_ci[1]:.3g}] ({boot.n_boot} bootstrap)"
    return s


def _draw_law(
    ax,
    fit: LawFit,
    p,
    m,
    labs,
    boot: LawBootstrap | None,
    band: bool,
    styles: Mapping[str, Mapping[str, str]] | None,
    perf_bounds: tuple[float, float] | None,
    perf_label: str,
    mui_label: str,
) -> None:
    p, m = np.asarray(p, float), np.asarray(m, float)
    if labs is None:
        ax.scatter(p, m, color="#1f77b4", zorder=3, label="models")
    else:
        styles = styles or series_styles(labs)
        for i in sorted(range(len(labs)), key=lambda i: str(labs[i])):  # legend in name order
            x, y, lab = p[i], m[i], labs[i]
            st = styles.get(str(lab), {"color": "#1f77b4", "marker": "o"})
            ax.scatter([x], [y], zorder=3, s=36, label=str(lab), edgecolors="black", linewidths=0.4, **st)
    reg = fit.regressor
    grid = np.exp(np.linspace(np.log(reg.min()), np.log(reg.max()), 200))
    curve = fit.predict(grid)
    # A band or a curve outside the possible values (accuracy below 0 % or above 100 %, MUI below 0) is an
    # artefact of extrapolating a log-linear fit: draw only the possible part.
    lo_p, hi_p = perf_bounds if perf_bounds is not None else (-np.inf, np.inf)
    if band:
        boot = bootstrap_ci(fit) if boot is None else boot
        blo, bhi = boot.band(grid)
        lab = f"{boot.level:.0%} bootstrap band ({boot.n_boot} resamples)"
        if fit.form == "mui_from_perf":
            ax.fill_between(
                grid, np.maximum(blo, 0.0), np.maximum(bhi, 0.0), color="#ff7f0e", alpha=0.2, label=lab
            )
        else:
            ax.fill_betweenx(
                grid,
                np.clip(blo, lo_p, hi_p),
                np.clip(bhi, lo_p, hi_p),
                color="#ff7f0e",
                alpha=0.2,
                label=lab,
            )
    eq = f"{fit.equation} (R² = {fit.r2:.2f})"
    if fit.form == "mui_from_perf":
        ax.plot(grid, np.where(curve >= 0, curve, np.nan), color="#ff7f0e", label=eq)
    else:
        ax.plot(np.where((curve >= lo_p) & (curve <= hi_p), curve, np.nan), grid, color="#ff7f0e", label=eq)
    ax.set_xlabel(perf_label)
    ax.set_ylabel(mui_label)
    ax.set_ylim(bottom=0)
    if perf_bounds is not None:
        # a little room beyond the bounds so that markers of points at 0 % or 100 % are not cut in half
        x0, x1 = ax.get_xlim()
        pad = 0.02 * (hi_p - lo_p)
        ax.set_xlim(max(x0, lo_p - pad), min(x1, hi_p + pad))


def plot_law_grid(
    fits: Mapping[str, LawFit],
    boots: Mapping[str, LawBootstrap] | None = None,
    *,
    perf_bounds: tuple[float, float] | None = (0.0, 100.0),
    perf_label: str = PERF_LABEL,
    mui_label: str = MUI_LABEL,
    title: str | None = None,
) -> Figure:
    """One panel per named fit (e.g. per task), drawn as :func:`plot_law` draws one; the points' names (the
    fits' labels) share one (colour, marker) per name across panels and one legend outside the panels. Each
    panel title gives its n, the Spearman test and the fitted equation."""
    if not fits:
        raise SaemuiError("plot_law_grid: no fits given")
    n = len(fits)
    ncols = min(n, 2)
    nrows = -(-n // ncols)
    fig, axes = new_figure(5.2 * ncols + 2.4, 4.2 * nrows, ncols=ncols, nrows=nrows)
    names = [str(x) for f in fits.values() for x in (f.labels or ())]
    styles = series_styles(names) if names else None
    handles: dict[str, Any] = {}
    for ax, (name, fit) in zip(axes, fits.items()):
        boot = (boots or {}).get(name)
        labs = list(fit.labels) if fit.labels else None
        _draw_law(ax, fit, fit.perf, fit.mui, labs, boot, True, styles, perf_bounds, perf_label, mui_label)
        ax.set_title(
            f"{name}: {fit.equation}, R² = {fit.r2:.2f}\n{law_caption(fit, boot, sep=chr(10))}", fontsize=8.5
        )
        for h, lab in zip(*ax.get_legend_handles_labels()):
            # one legend entry per model; the fitted line is named in each panel's title
            key = (
                "fitted law (equation in each title)" if lab == f"{fit.equation} (R² = {fit.r2:.2f})" else lab
            )
            handles.setdefault(key, h)
    for ax in axes[n:]:
        ax.set_visible(False)
    order = sorted(k for k in handles if k in names) + [k for k in handles if k not in names]
    _legend_beside(axes[ncols - 1], handles, order, fontsize=8)
    if title:
        _titles(fig, title, None)
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
    caption: str | None = None,
    styles: Mapping[str, Mapping[str, str]] | None = None,
    perf_bounds: tuple[float, float] | None = (0.0, 100.0),
    perf_label: str = PERF_LABEL,
    mui_label: str = MUI_LABEL,
) -> Figure:
    """Scatter of (P, MUI) with the fitted law and a pointwise bootstrap band.

    perf, mui, labels default to the fit's own points; labelled points get one (colour, marker) each and a
    legend outside the axes. The x axis is always P and the y axis MUI; for a ``perf_from_mui`` fit the curve
    is drawn as P(MUI). ``boot`` defaults to ``bootstrap_ci(fit)`` (2000 resamples, seed 0) when ``band`` is
    True. Band and curve are cut to the possible range: P within ``perf_bounds`` (default 0–100, P in %;
    None: no bounds), MUI ≥ 0. The caption (default: n, Spearman test, slope CI) is printed under the title.
    """
    p = fit.perf if perf is None else as_1d(perf, "perf", positive=True)
    m = fit.mui if mui is None else as_1d(mui, "mui", positive=True)
    if len(p) != len(m):
        raise SaemuiError(f"perf and mui must have equal length, got {len(p)} and {len(m)}")
    labs = list(labels) if labels is not None else (list(fit.labels) if fit.labels and perf is None else None)
    if band and boot is None:
        boot = bootstrap_ci(fit)
    fig, (ax,) = new_figure(7.6, 4.6)
    _draw_law(ax, fit, p, m, labs, boot, band, styles, perf_bounds, perf_label, mui_label)
    _titles(fig, title or "Utility Law fit", caption or law_caption(fit, boot if band else None))
    legend_outside(ax, fontsize=7.5)
    return fig


def plot_task_bars(
    df: pd.DataFrame,
    value: str = "mui",
    *,
    model_col: str = "model",
    task_col: str = "task",
    err_cols: tuple[str, str] | None = None,
    ylabel: str | None = None,
    title: str | None = None,
    caption: str | None = None,
) -> Figure:
    """Grouped bars: one group per task, one bar per model (colours as :func:`series_styles`), legend outside.

    df: long table with columns model, task and ``value``; optional ``err_cols`` = (lo, hi) columns give
    interval whiskers (absolute values, e.g. bootstrap CI bounds).
    """
    _need(df, [model_col, task_col, value, *(err_cols or ())], "df")
    tasks = list(dict.fromkeys(df[task_col]))
    models = sorted(dict.fromkeys(str(m) for m in df[model_col]))
    styles = series_styles(models)
    fig, (ax,) = new_figure(max(6.0, 3.0 + 0.16 * len(tasks) * len(models)), 4.2)
    width = 0.84 / len(models)
    x = np.arange(len(tasks))
    for j, mdl in enumerate(models):
        sub = df[df[model_col].astype(str) == mdl].set_index(task_col).reindex(tasks)
        vals = sub[value].to_numpy(float)
        yerr = None
        if err_cols:
            yerr = np.vstack(
                [vals - sub[err_cols[0]].to_numpy(float), sub[err_cols[1]].to_numpy(float) - vals]
            )
        ax.bar(
            x + (j - (len(models) - 1) / 2) * width,
            vals,
            width,
            yerr=yerr,
            capsize=1.5,
            error_kw={"elinewidth": 0.7},
            label=mdl,
            color=styles[mdl]["color"],
        )
    ax.set_xticks(x, [str(t) for t in tasks])
    ax.set_xlabel("task")
    ylabel = ylabel or {"mui": MUI_LABEL, "perf": PERF_LABEL}.get(value, value)
    ax.set_ylabel(ylabel)
    ax.set_ylim(bottom=0)
    _titles(fig, title or f"{ylabel} per task and model", caption)
    legend_outside(ax, fontsize=7.5)
    return fig


def plot_trajectory(
    df_phases: pd.DataFrame, tasks: Sequence[str] | None = None, caption: str | None = None
) -> Figure:
    """Training trajectory with each step coloured by its phase (output of ``classify_trajectory``).

    Left: P per checkpoint; middle: MUI per checkpoint; right: ΔP vs ΔMUI per step (the phase quadrants).
    Accepts ``classify_phases`` output too (a single trajectory, no ``task`` column). Both legends (line style
    per task, colour per phase) sit below the panels.
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
    fig, axes = new_figure(13, 4.6, ncols=3)
    styles = ["-", "--", ":", "-.", (0, (5, 1, 1, 1, 1, 1))]
    task_handles = []
    for t_i, (task, g) in enumerate(df.groupby("task", sort=False)):
        ls = styles[t_i % len(styles)]
        for _, r in g.iterrows():
            c = PHASE_COLORS.get(r["phase"], "black")
            axes[0].plot(
                [r["step"], r["step_to"]], [r["perf_from"], r["perf_to"]], ls=ls, color=c, marker="o", ms=3
            )
            axes[1].plot(
                [r["step"], r["step_to"]], [r["mui_from"], r["mui_to"]], ls=ls, color=c, marker="o", ms=3
            )
        axes[2].scatter(g["dP"], g["dMUI"], c=[PHASE_COLORS.get(p, "black") for p in g["phase"]], s=18)
        (h,) = axes[0].plot([], [], ls=ls, color="black", label=str(task))
        task_handles.append(h)
    # checkpoint names on the x axis, in step order
    names = {}
    for _, r in df.iterrows():
        names.setdefault(int(r["step"]), r["checkpoint_from"])
        names.setdefault(int(r["step_to"]), r["checkpoint_to"])
    ticks = sorted(names)
    for ax, ylab in zip(axes[:2], [PERF_LABEL, MUI_LABEL]):
        ax.set_xticks(ticks, [str(names[t]) for t in ticks], rotation=30, ha="right", fontsize=8)
        ax.set_xlabel("checkpoint (training step)")
        ax.set_ylabel(ylab)
        ax.set_ylim(bottom=0)
    axes[0].set_ylim(top=100)
    axes[0].set_title("accuracy per checkpoint", fontsize=10)
    axes[1].set_title("MUI per checkpoint", fontsize=10)
    axes[2].set_title("step changes and their phase", fontsize=10)
    axes[2].axhline(0, color="black", lw=0.5)
    axes[2].axvline(0, color="black", lw=0.5)
    axes[2].set_xlabel("ΔP (percentage points)")
    axes[2].set_ylabel("ΔMUI (percentage points)")
    phase_handles = [axes[2].scatter([], [], color=PHASE_COLORS[ph], label=ph) for ph in PHASES]
    fig.legend(
        [*task_handles, *phase_handles],
        [*(h.get_label() for h in task_handles), *PHASES],
        loc="outside lower center",
        ncols=len(task_handles) + len(PHASES),
        fontsize=8,
    )
    if caption:
        _titles(fig, caption, None)
    return fig


def plot_contamination(
    shift_df: pd.DataFrame, title: str | None = None, caption: str | None = None
) -> Figure:
    """ΔP vs ΔMUI per task from ``shift_table``: in-domain vs out-of-domain tasks, quadrant lines at 0.

    The upper-right quadrant (P↑ MUI↑) is the contamination signature when only in-domain tasks land there.
    """
    _need(shift_df, ["task", "domain", "dP", "dMUI"], "shift_df")
    fig, (ax,) = new_figure(6.8, 4.5)
    for dom, color, marker in (("in", "#d62728", "o"), ("out", "#1f77b4", "s")):
        g = shift_df[shift_df["domain"] == dom]
        ax.scatter(
            g["dP"],
            g["dMUI"],
            color=color,
            marker=marker,
            label="in-domain task" if dom == "in" else "out-of-domain task",
            zorder=3,
        )
        for _, r in g.iterrows():
            ax.annotate(
                str(r["task"]), (r["dP"], r["dMUI"]), textcoords="offset points", xytext=(4, 4), fontsize=8
            )
    ax.axhline(0, color="black", lw=0.5)
    ax.axvline(0, color="black", lw=0.5)
    ax.margins(0.15)
    ax.set_xlabel("ΔP, accuracy after − before (percentage points)")
    ax.set_ylabel("ΔMUI, after − before (percentage points)")
    _titles(fig, title or "Performance and utility shifts", caption)
    legend_outside(ax)
    return fig


def plot_coverage(
    curves: Mapping[str, CoverageCurve] | Sequence[CoverageCurve],
    title: str | None = None,
    caption: str | None = None,
    ylabel: str = "key units covered, MUI (%)",
) -> Figure:
    """Union-growth curves (mean line, percentile band where there is one), one per named curve.

    Curves named ``"<task> (random)"`` / ``"<task> (greedy)"`` share the task's colour (solid / dashed)."""
    items = (
        list(curves.items())
        if isinstance(curves, Mapping)
        else [(f"curve {i}", c) for i, c in enumerate(curves)]
    )
    if not items:
        raise SaemuiError("curves: expected at least one CoverageCurve")
    fig, (ax,) = new_figure(7.4, 4.5)
    groups = list(dict.fromkeys(str(n).rsplit(" (", 1)[0] for n, _ in items))
    cmap = matplotlib.colormaps["tab10" if len(groups) <= 10 else "tab20"]
    for name, c in items:
        if not isinstance(c, CoverageCurve):
            raise SaemuiError(f"curves[{name!r}]: expected a CoverageCurve, got {type(c).__name__}")
        color = cmap(groups.index(str(name).rsplit(" (", 1)[0]) % cmap.N)
        ls = "--" if str(name).endswith("(greedy)") else "-"
        (line,) = ax.plot(c.k, c.mean, ls=ls, color=color, label=str(name))
        if c.n_perm > 0:
            ax.fill_between(c.k, c.lo, c.hi, color=color, alpha=0.2)
    ax.set_xlabel("number of samples")
    ax.set_ylabel(ylabel)
    ax.set_ylim(bottom=0)
    _titles(fig, title or "Key-unit coverage", caption)
    legend_outside(ax)
    return fig


def plot_rank_sweep(sweep: pd.DataFrame, title: str | None = None, caption: str | None = None) -> Figure:
    """Rank of each model (1 = best) against the weight α of ``utility_adjusted_score`` (``alpha_sensitivity``
    output: columns ``alpha`` and ``rank:<model>``); one (colour, marker) per model, legend outside."""
    _need(sweep, ["alpha"], "sweep")
    cols = [c for c in sweep.columns if str(c).startswith("rank:")]
    if not cols:
        raise SaemuiError("sweep: no rank:<model> columns (expected alpha_sensitivity output)")
    styles = series_styles([c.removeprefix("rank:") for c in cols])
    fig, (ax,) = new_figure(8.2, 4.8)
    for c in cols:
        name = c.removeprefix("rank:")
        ax.plot(sweep["alpha"], sweep[c], ms=4, lw=1.2, label=name, **styles[name])
    ax.invert_yaxis()
    ax.set_yticks(range(1, len(cols) + 1))
    ax.set_xlabel("α (1 = accuracy only, 0 = fewest key units only)")
    ax.set_ylabel("rank (1 = best)")
    _titles(fig, title or "Ranking under α·z(P) − (1−α)·z(MUI)", caption)
    legend_outside(ax, fontsize=7.5, sort=True)
    return fig


def plot_sensitivity(
    model_means: pd.DataFrame,
    title: str | None = None,
    panels: Mapping[str, Sequence[str]] | None = None,
    caption: str | None = None,
) -> Figure:
    """MUI (%) of each model (rows) under each key-unit selection (columns), one line per model.

    panels: panel title → its columns (e.g. ``{"SAE features": ["eta=0.9"], "MLP neurons": ["k=0.001", …]}``);
    default one panel per rule family (``k=…``, ``eta=…``). Each panel has its own MUI axis: MUI in two unit
    bases are different quantities, and lines never join selections of different panels.
    """
    if model_means.empty:
        raise SaemuiError("model_means: no rows to plot")
    cols = [str(c) for c in model_means.columns]
    if panels is None:
        fam: dict[str, list[str]] = {}
        for c in cols:
            fam.setdefault(c.split("=")[0], []).append(c)
        panels = {f"{k} rule": v for k, v in fam.items()}
    panels = {k: [str(c) for c in v if str(c) in cols] for k, v in panels.items()}
    panels = {k: v for k, v in panels.items() if v}
    if not panels:
        raise SaemuiError("plot_sensitivity: no panel has a column of model_means")
    widths = [max(1.2, len(v)) for v in panels.values()]
    fig = Figure(figsize=(3.0 + 1.9 * sum(widths), 4.6), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(panels), squeeze=False, width_ratios=widths).ravel()
    styles = series_styles([str(i) for i in model_means.index])
    mm = model_means.copy()
    mm.columns = cols
    for ax, (ptitle, pcols) in zip(axes, panels.items()):
        x = np.arange(len(pcols))
        for name, row in mm[pcols].iterrows():
            vals = row.to_numpy(float)
            if np.isfinite(vals).any():
                ax.plot(x, vals, ms=4, lw=1.1, label=str(name), **styles[str(name)])
        ax.set_xticks(x, pcols)
        ax.set_xlim(-0.5, len(pcols) - 0.5)
        ax.set_xlabel("key-unit selection")
        ax.set_ylabel(MUI_LABEL)
        ax.set_ylim(bottom=0)
        ax.set_title(ptitle, fontsize=10)
    handles: dict[str, Any] = {}
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    order = sorted(handles)
    # on the last panel, beside it: a figure legend would collide with the figure-wide title
    _legend_beside(axes[-1], handles, order, fontsize=7.5)
    _titles(fig, title or "MUI under different key-unit selections", caption)
    return fig


def plot_sae_sensitivity(grid: pd.DataFrame, title: str | None = None, caption: str | None = None) -> Figure:
    """The SAE width / k grid (:func:`saemui.analysis.sensitivity.sae_grid`): MUI (%) at each threshold (top row)
    and response-token FVE (bottom row, median over the compared layers, bars = their min-max range) against
    the width at the centre's k (left) and against k at the centre's width (right), both on log2 axes."""
    _need(grid, ["width", "k", "varies", "fve_median", "fve_min", "fve_max"], "plot_sae_sensitivity")
    mui_cols = [c for c in grid.columns if str(c).startswith("mui_eta=")]
    if not mui_cols:
        raise SaemuiError("plot_sae_sensitivity: no mui_eta=<η> column")
    centre = grid[grid["varies"] == "centre"]
    if len(centre) != 1:
        raise SaemuiError("plot_sae_sensitivity: expected exactly one row with varies == 'centre'")
    fig, axes = new_figure(9.0, 6.2, ncols=2, nrows=2)
    # "mui_eta=0.9" → "key features ≥ 0.9·max"
    labels = {c: f"key features ≥ {c.split('=', 1)[1]}·max" for c in mui_cols}
    styles = series_styles(list(labels.values()))
    for j, (factor, other) in enumerate((("width", "k"), ("k", "width"))):
        sub = grid[grid["varies"].isin([factor, "centre"])].sort_values(factor)
        x = sub[factor].to_numpy(float)
        ax_m, ax_f = axes[j], axes[2 + j]
        for c in mui_cols:
            ax_m.plot(x, sub[c].to_numpy(float), lw=1.2, ms=5, label=labels[c], **styles[labels[c]])
        med = sub["fve_median"].to_numpy(float)
        err = np.vstack([med - sub["fve_min"].to_numpy(float), sub["fve_max"].to_numpy(float) - med])
        ax_f.errorbar(x, med, yerr=err, marker="o", ms=5, lw=1.2, capsize=3, color="0.25")
        fixed = int(centre[other].iloc[0])
        for ax in (ax_m, ax_f):
            ax.set_xscale("log", base=2)
            ax.set_xticks(x, [str(int(v)) for v in x])
            ax.minorticks_off()
            ax.set_xlabel(
                f"{'dictionary width' if factor == 'width' else 'k, features per token'} ({other} = {fixed})"
            )
        ax_m.set_ylabel(MUI_LABEL)
        ax_m.set_ylim(bottom=0)
        ax_f.set_ylabel("response-token FVE")
        ax_f.set_ylim(0, 1)
    legend_outside(axes[1], fontsize=8)
    _titles(fig, title or "Feature-level MUI and reconstruction against SAE width and k", caption)
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


# ----- causal check (protocol §8.5; saemui.analysis.causal) ---------------------------------------------------


def plot_causal(
    effects: Mapping[str, Any],
    accuracy: Mapping[str, Any] | None = None,
    verdict: Any | None = None,
    title: str | None = None,
) -> Figure:
    """Per point, E (nats) with its paired item-bootstrap interval beside the mean Δlogp of the key and random
    ablations; with ``accuracy``, a second panel of ΔAcc (percentage points) with its interval. ``effects`` and
    ``accuracy`` map point names to :class:`saemui.analysis.causal.CausalEffect` / ``AccuracyEffect``."""
    if not effects:
        raise SaemuiError("plot_causal: no points to plot")
    names = list(effects)
    acc = {k: v for k, v in (accuracy or {}).items() if k in effects}
    fig, axes = new_figure(4.0 + 1.1 * len(names) * (2 if acc else 1), 4.4, ncols=2 if acc else 1)
    x = np.arange(len(names))
    ax = axes[0]
    e = np.array([effects[k].e for k in names])
    lo = np.array([effects[k].lo for k in names])
    hi = np.array([effects[k].hi for k in names])
    ax.bar(
        x - 0.2,
        [effects[k].mean_key for k in names],
        0.36,
        color="#d95f02",
        alpha=0.45,
        label="mean Δlogp, key ablated",
    )
    ax.bar(
        x + 0.2,
        [effects[k].mean_random for k in names],
        0.36,
        color="#7570b3",
        alpha=0.45,
        label="mean Δlogp, random ablated",
    )
    ax.errorbar(
        x, e, yerr=[e - lo, hi - e], fmt="o", color="black", capsize=4, zorder=3, label="E (95% interval)"
    )
    ax.axhline(0, color="black", lw=0.6)
    ax.set_xticks(x, names, rotation=20, ha="right")
    ax.set_ylabel("Δlog p(gold | prompt), clean − ablated (nats)")
    ax.set_title("gold log-probability", fontsize=10)
    legend_outside(ax, fontsize=7.5)
    if acc:
        ax2 = axes[1]
        an = [k for k in names if k in acc]
        xa = np.array([names.index(k) for k in an])
        d = np.array([100 * acc[k].d_acc for k in an])
        dlo = np.array([100 * acc[k].lo for k in an])
        dhi = np.array([100 * acc[k].hi for k in an])
        ax2.errorbar(
            xa, d, yerr=[d - dlo, dhi - d], fmt="s", color="black", capsize=4, label="ΔAcc (95% interval)"
        )
        ax2.axhline(0, color="black", lw=0.6)
        ax2.set_xticks(x, names, rotation=20, ha="right")
        ax2.set_xlim(-0.5, len(names) - 0.5)
        # two lines: on one the label is longer than the panel is tall and is clipped at the top
        ax2.set_ylabel("ΔAcc (pp)\n= Acc(random ablated) − Acc(key ablated)")
        ax2.set_title("greedy accuracy", fontsize=10)
        legend_outside(ax2, fontsize=7.5)
    first = effects[names[0]]
    ns = sorted({v.n for v in effects.values()})
    caption = (
        f"n = {', '.join(map(str, ns))} items per point, {first.n_draws} random draws; paired item bootstrap, "
        f"B = {first.n_boot:,}, {first.level:.0%} percentile intervals"
    )
    if verdict is not None:
        caption += f"; verdict: {verdict.label} ({verdict.n_positive}/{verdict.n_points} points with lower bound > 0)"
    _titles(fig, title or "Causal check: key units vs random units of the same size", caption)
    return fig


# ----- Study v2 corollaries (docs/study/protocol.md §8.1-§8.4) ----------------------------------------------

_BAND_ROWS = {
    "dP": "ΔP (points of accuracy)",
    "dMUI": "ΔMUI (points of %)",
    "dMUI_T": "ΔMUI_T (points of %)",
    "dlntau": "Δln τ (ln positions)",
}


def plot_seed_band(band: pd.DataFrame, title: str | None = None, caption: str | None = None) -> Figure:
    """§8.1: per family (columns) and delta (rows), the mean over seeds of each transition's change with its
    t-interval over seeds (``training.seed_band`` output); markers coloured by the transition's phase label,
    grey = within noise."""
    from saemui.analysis.training import NOISE

    _need(band, ["family", "step_from", "step_to", "n_seeds", "phase", "dP", "dP_lo", "dP_hi"], "band")
    rows = [k for k in _BAND_ROWS if k in band.columns]
    fams = list(dict.fromkeys(band["family"]))
    fig = Figure(figsize=(3.6 * len(fams) + 1.8, 2.3 * len(rows) + 0.9), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(rows), len(fams), squeeze=False, sharex="col")
    colors = {**PHASE_COLORS, NOISE: "#bbbbbb"}
    for c, fam in enumerate(fams):
        g = band[band["family"] == fam].reset_index(drop=True)
        x = np.arange(len(g))
        for r, k in enumerate(rows):
            ax = axes[r, c]
            ax.axhline(0, color="black", lw=0.6)
            for i, row in g.iterrows():
                col = colors.get(row["phase"], "black")
                ax.errorbar(
                    x[i],
                    row[k],
                    yerr=[[row[k] - row[f"{k}_lo"]], [row[f"{k}_hi"] - row[k]]],
                    fmt="o",
                    color=col,
                    ms=5,
                    capsize=3,
                )
            ax.set_ylabel(_BAND_ROWS[k], fontsize=8)
            if r == 0:
                ax.set_title(f"{fam} (n = {int(g['n_seeds'].iloc[0])} seeds)", fontsize=10)
        axes[-1, c].set_xticks(x, [f"{a:g}→{b:g}" for a, b in zip(g["step_from"], g["step_to"])], rotation=30)
        axes[-1, c].set_xlabel("transition (training step → step)")
    labels = [*PHASES[:4], NOISE]
    handles = [axes[0, 0].scatter([], [], color=colors[p]) for p in labels]
    # one legend row is wider than a single-family figure: wrap to three entries a row there
    ncols = len(labels) if len(fams) > 1 else 3
    fig.legend(handles, labels, loc="outside lower center", ncols=ncols, fontsize=8)
    n = int(band["n_seeds"].iloc[0])
    _titles(
        fig,
        title or "Cor. 1: checkpoint transitions of R*, mean over seeds",
        caption
        or f"bars: 95 % t-interval over n = {n} seeds (df = {n - 1}); a phase label needs the ΔP and ΔMUI "
        "intervals both to exclude 0",
    )
    return fig


def _detector_label(what: str) -> str:
    """A detector id over its name on a second line; a pair such as "D1−D3" stays as it is."""
    from saemui.analysis.contamination import DETECTOR_NAMES

    return f"{what}\n{DETECTOR_NAMES[what]}" if what in DETECTOR_NAMES else what


def plot_detector_auroc(
    auroc_table: pd.DataFrame, title: str | None = None, caption: str | None = None
) -> Figure:
    """§8.2: AUROC of each detector (left, chance 0.5) and the paired ΔAUROC (right, 0 = no gain) with their
    run-bootstrap intervals (``contamination.detector_auroc`` output)."""
    _need(
        auroc_table,
        ["what", "kind", "estimate", "lo", "hi", "n_pos", "n_neg", "n_boot", "level"],
        "auroc_table",
    )
    fig, axes = new_figure(9.0, 3.8, ncols=2)
    for ax, kind, ref, lim in ((axes[0], "AUROC", 0.5, (0, 1)), (axes[1], "ΔAUROC", 0.0, (-1, 1))):
        g = auroc_table[auroc_table["kind"] == kind].reset_index(drop=True)
        y = np.arange(len(g))[::-1]
        ax.errorbar(
            g["estimate"],
            y,
            xerr=[g["estimate"] - g["lo"], g["hi"] - g["estimate"]],
            fmt="o",
            color="#1f77b4",
            capsize=3,
        )
        ax.axvline(ref, color="black", lw=0.6, ls="--")
        ax.set_yticks(y, [_detector_label(w) for w in g["what"]], fontsize=8)
        ax.set_xlim(*lim)
        ax.set_xlabel(f"{kind} (contaminated vs clean final points)")
    axes[0].set_ylabel("detector")
    r = auroc_table.iloc[0]
    _titles(
        fig,
        title or "Cor. 2: contamination detectors",
        caption
        or f"n = {int(r['n_pos'])} contaminated vs {int(r['n_neg'])} clean runs; {r['level']:.0%} percentile intervals "
        f"from {int(r['n_boot'])} run resamples stratified by label (paired for Δ)",
    )
    return fig


def plot_cv_errors(cv: Any, title: str | None = None, caption: str | None = None) -> Figure:
    """§8.3: leave-one-run-out CV error of each predictor of R (left) and its skill ρ = 1 − MSE/MSE(M0) with the
    paired run-bootstrap interval (right; dashed: 0 and the 0.10 of the C3 rule). ``cv``: a
    ``comparison.FairCV``."""
    t = cv.table
    _need(t, ["model", "mse", "rho", "rho_lo", "rho_hi"], "cv.table")
    fig, axes = new_figure(9.0, 3.8, ncols=2)
    x = np.arange(len(t))
    axes[0].bar(x, t["mse"], color="#7f7f7f")
    axes[0].set_xticks(x, t["model"].tolist())
    axes[0].set_ylabel("CV mean squared error of R (points²)")
    axes[0].set_xlabel("model")
    axes[1].errorbar(x, t["rho"], yerr=[t["rho"] - t["rho_lo"], t["rho_hi"] - t["rho"]], fmt="o", capsize=3)
    for v in (0.0, 0.10):
        axes[1].axhline(v, color="black", lw=0.6, ls="--")
    axes[1].set_xticks(x, t["model"].tolist())
    axes[1].set_ylabel("ρ = 1 − MSE(model)/MSE(M0)")
    axes[1].set_xlabel("model")
    _titles(
        fig,
        title or "Cor. 3: predicting the twin accuracy R",
        caption
        or f"outer leave-one-run-out CV over n = {cv.n} runs; {cv.level:.0%} intervals from {cv.n_boot} paired "
        "run resamples stratified by family; dashed: 0 and 0.10 (the C3 rule's bounds)",
    )
    return fig


def plot_diversity_levels(
    datasets: pd.DataFrame,
    measures: Mapping[str, ArrayLike],
    ylabels: Mapping[str, str] | None = None,
    title: str | None = None,
    caption: str | None = None,
) -> Figure:
    """§8.4: each measure (one panel) against the designed level of the datasets (``diversity.designed_datasets``
    output), one dot per dataset, the level means joined; Kendall τ-b of level vs measure in each panel title."""
    from saemui.analysis.stats import kendall_tau

    _need(datasets, ["dataset", "level"], "datasets")
    if not measures:
        raise SaemuiError("measures: expected at least one measure per dataset")
    levels = datasets.groupby("dataset", sort=True)["level"].first().to_numpy()
    fig, axes = new_figure(3.4 * len(measures) + 0.6, 3.8, ncols=len(measures))
    jitter = np.random.default_rng(0).uniform(-0.08, 0.08, len(levels))
    for ax, (name, vals) in zip(axes, measures.items()):
        v = as_1d(vals, name)
        if len(v) != len(levels):
            raise SaemuiError(
                f"measures[{name!r}]: expected {len(levels)} values (one per dataset), got {len(v)}"
            )
        ax.scatter(levels + jitter, v, s=12, color="#1f77b4", alpha=0.7)
        lv = np.unique(levels)
        ax.plot(lv, [v[levels == k].mean() for k in lv], color="black", lw=1.2, marker="_", ms=12)
        ax.set_xticks(lv)
        ax.set_xlabel("designed level k (law tasks in the dataset)")
        ax.set_ylabel((ylabels or {}).get(name, name))
        ax.set_title(f"{name}: τ-b = {kendall_tau(levels, v):.2f}", fontsize=10)
    _titles(
        fig,
        title or "Cor. 4: diversity measures against the designed level",
        caption or f"n = {len(levels)} datasets of equal size; τ-b: Kendall rank correlation with the level",
    )
    return fig


# ----- Study v2, the law (docs/study/protocol.md §6-§7; scripts/reproduce_study_law.py) --------------------

_VERDICT_COLORS = {"supported": "#1b9e77", "not supported": "#d95f02", "inconclusive": "#7570b3"}


def _family_styles(families: Sequence[str]) -> dict[str, dict[str, str]]:
    # families in sorted order take the first colours of a fixed qualitative palette: the same in every figure
    palette = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd")
    return {f: {"color": palette[i % len(palette)]} for i, f in enumerate(sorted(set(map(str, families))))}


def _plain_log_ticks(axis, values: ArrayLike) -> None:
    """Plain numbers (1, 2, 5, not 10^0, 2x10^0) on a log axis; minor ticks labelled too when the data span less
    than two decades, where a log axis would otherwise show one label or none."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v) & (v > 0)]
    fmt = FuncFormatter(lambda x, _: f"{x:.3g}")
    axis.set_major_formatter(fmt)
    few = len(v) and v.max() / v.min() < 100
    axis.set_minor_formatter(fmt if few else NullFormatter())


def plot_study_law(
    panels: Mapping[str, Mapping[str, Any]],
    *,
    title: str | None = None,
    caption: str | None = None,
    ncols: int | None = None,
) -> Figure:
    """One panel per law fit of H1's form (P = α_f + β·ln x): the points as (x on a log axis, P in %), one colour
    per family (bases as stars), and the fitted lines α_f + β·ln x over each family's range.

    Each panel (name → mapping): ``points`` (DataFrame with ``x``, ``P``, ``family`` and optionally ``is_base``),
    ``slope`` (β, or None: no line), ``intercepts`` (family → α_f), ``x_label`` (default MUI (%)) and ``note``
    (n, the test and its intervals, printed under the panel name).
    """
    from matplotlib.lines import Line2D

    if not panels:
        raise SaemuiError("plot_study_law: no panels given")
    n = len(panels)
    ncols = ncols or min(n, 3)
    nrows = -(-n // ncols)
    fig, axes = new_figure(4.3 * ncols + 1.8, 3.9 * nrows, ncols=ncols, nrows=nrows)
    fams = sorted({str(f) for p in panels.values() for f in p["points"]["family"]})
    styles = _family_styles(fams)
    handles: dict[str, Any] = {}
    for ax, (name, panel) in zip(axes, panels.items()):
        pts = panel["points"]
        _need(pts, ["x", "P", "family"], f"panel {name!r} points")
        x, y = pts["x"].to_numpy(float), pts["P"].to_numpy(float)
        if (x <= 0).any():
            raise SaemuiError(f"panel {name!r}: x must be positive (log axis)")
        base = pts["is_base"].to_numpy(bool) if "is_base" in pts else np.zeros(len(pts), bool)
        for fam in fams:
            sel = (pts["family"].astype(str) == fam).to_numpy()
            if not sel.any():
                continue
            col = styles[fam]["color"]
            h = ax.scatter(
                x[sel & ~base], y[sel & ~base], s=30, color=col, edgecolors="black", linewidths=0.4
            )
            handles.setdefault(f"{fam} (fine-tuned runs)", h)
            if (sel & base).any():
                hb = ax.scatter(
                    x[sel & base],
                    y[sel & base],
                    s=110,
                    marker="*",
                    color=col,
                    edgecolors="black",
                    linewidths=0.5,
                )
                handles.setdefault(f"{fam} (base)", hb)
            slope, icpt = panel.get("slope"), (panel.get("intercepts") or {}).get(fam)
            if slope is not None and icpt is not None and np.isfinite(slope):
                grid = np.exp(np.linspace(np.log(x[sel].min()), np.log(x[sel].max()), 50))
                ax.plot(grid, icpt + slope * np.log(grid), color=col, lw=1.2)
                if "fit" not in handles:
                    # a neutral legend entry: the lines take their family's colour
                    handles["fit"] = Line2D([], [], color="#555555", lw=1.2)
        ax.set_xscale("log")
        _plain_log_ticks(ax.xaxis, x)
        ax.tick_params(axis="x", which="both", labelsize=8)  # major and minor labels alike: one scale
        ax.set_xlabel(panel.get("x_label", MUI_LABEL))
        ax.set_ylabel(PERF_LABEL)
        lo, hi = float(y.min()), float(y.max())
        pad = max(2.0, 0.08 * (hi - lo))
        ax.set_ylim(max(0.0, lo - pad), min(100.0, hi + pad))
        note = panel.get("note")
        # panel titles wrap to the width of one panel (4.3 in, about 0.62 em per character)
        width = int(4.3 * 72 / (0.62 * 8.0))
        text = f"{name}\n{note}" if note else name
        ax.set_title("\n".join(textwrap.fill(line, width) for line in text.split("\n")), fontsize=8)
    for ax in axes[n:]:
        ax.set_visible(False)
    labels = {"fit": "fit α_f + β·ln x (one β, family intercepts)"}
    axes[ncols - 1].legend(
        [handles[k] for k in handles],
        [labels.get(k, k) for k in handles],
        loc="upper left",
        bbox_to_anchor=(1.04, 1.0),
        borderaxespad=0.0,
        fontsize=8,
    )
    _titles(fig, title or "Study v2: accuracy against MUI per law task", caption)
    return fig


def plot_study_slopes(
    table: pd.DataFrame, *, title: str | None = None, caption: str | None = None, x_label: str | None = None
) -> Figure:
    """One panel per task, one row per setting: the slope estimate with its t-interval (thick, above) and its
    run-bootstrap interval (thin, below), the marker coloured by the §6.4 verdict; solid line at 0, dashed at −δ.

    ``table`` columns: task, setting, slope, t_lo, t_hi, b_lo, b_hi, delta, verdict, n (settings in row order).
    """
    _need(
        table, ["task", "setting", "slope", "t_lo", "t_hi", "b_lo", "b_hi", "delta", "verdict", "n"], "table"
    )
    if table.empty:
        raise SaemuiError("plot_study_slopes: no slopes given")
    tasks = list(dict.fromkeys(table["task"]))
    settings = list(dict.fromkeys(table["setting"]))
    fig, axes = new_figure(3.6 * len(tasks) + 2.4, 0.42 * len(settings) + 1.9, ncols=len(tasks))
    ypos = {s: len(settings) - 1 - i for i, s in enumerate(settings)}
    handles: dict[str, Any] = {}
    for ax, task in zip(axes, tasks):
        g = table[table["task"] == task]
        for _, r in g.iterrows():
            y0 = ypos[r["setting"]]
            (ht,) = ax.plot([r["t_lo"], r["t_hi"]], [y0 + 0.12] * 2, color="black", lw=2.4)
            (hb,) = ax.plot([r["b_lo"], r["b_hi"]], [y0 - 0.12] * 2, color="#888888", lw=1.2)
            col = _VERDICT_COLORS.get(str(r["verdict"]), "black")
            hv = ax.scatter([r["slope"]], [y0], s=34, color=col, edgecolors="black", linewidths=0.4, zorder=3)
            handles.setdefault("t-interval (1 − α′)", ht)
            handles.setdefault("run-bootstrap interval (1 − α′)", hb)
            handles.setdefault(f"verdict: {r['verdict']}", hv)
        ax.axvline(0.0, color="black", lw=0.7)
        deltas = sorted(set(np.round(g["delta"].astype(float), 9)))
        if len(deltas) == 1:
            hd = ax.axvline(-deltas[0], color="black", lw=0.7, ls="--")
        else:
            # δ differs by setting (H1b's δ scales with the mean MUI): mark each row's own −δ, not a
            # full-height line per value that would cross every other row
            for _, r in g.iterrows():
                y0 = ypos[r["setting"]]
                (hd,) = ax.plot([-r["delta"]] * 2, [y0 - 0.38, y0 + 0.38], color="black", lw=0.7, ls="--")
        handles.setdefault("−δ (§6.3)", hd)
        ax.set_yticks(list(ypos.values()), list(ypos))
        ax.set_ylim(-0.6, len(settings) - 0.4)
        ax.set_xlabel(x_label or "slope")
        ns = sorted(set(g["n"].astype(int)))
        ax.set_title(f"{task} (n = {', '.join(map(str, ns))} runs)", fontsize=9)
    _legend_beside(axes[-1], handles, list(handles), fontsize=8)
    _titles(fig, title or "Study v2: slope estimates per task and setting", caption)
    return fig


def plot_mui_tokens(curves: pd.DataFrame, *, title: str | None = None, caption: str | None = None) -> Figure:
    """§7.2: per point, MUI (%) over the first t scored positions against t (log axes), one panel per task, one
    line per point coloured by family (bases thick); ``t`` = inf is drawn at the right end as "all".

    ``curves`` columns: task, model, family, is_base, t, mui.
    """
    from matplotlib.ticker import NullLocator

    _need(curves, ["task", "model", "family", "is_base", "t", "mui"], "curves")
    if curves.empty:
        raise SaemuiError("plot_mui_tokens: no curves given")
    tasks = list(dict.fromkeys(curves["task"]))
    fig, axes = new_figure(4.2 * len(tasks) + 2.2, 3.9, ncols=len(tasks))
    ts = sorted({float(t) for t in curves["t"] if np.isfinite(t)})
    t_all = 2 * max(ts) if ts else 1.0
    styles = _family_styles(curves["family"])
    handles: dict[str, Any] = {}
    for ax, task in zip(axes, tasks):
        g = curves[curves["task"] == task]
        for _model, c in g.groupby("model", sort=True):
            c = c.assign(tx=np.where(np.isfinite(c["t"].astype(float)), c["t"].astype(float), t_all))
            c = c.sort_values("tx")
            fam = str(c["family"].iloc[0])
            base = bool(c["is_base"].iloc[0])
            (h,) = ax.plot(
                c["tx"],
                c["mui"],
                color=styles[fam]["color"],
                lw=2.2 if base else 0.9,
                alpha=1.0 if base else 0.6,
                marker="*" if base else ".",
                ms=8 if base else 4,
            )
            handles.setdefault(f"{fam} ({'base' if base else 'fine-tuned runs'})", h)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ticks = [*ts, t_all]
        ax.set_xticks(ticks, [f"{t:g}" for t in ts] + ["all"])
        ax.xaxis.set_minor_locator(NullLocator())
        _plain_log_ticks(ax.yaxis, g["mui"])
        ax.set_xlabel("first t scored positions per sample")
        ax.set_ylabel(MUI_LABEL)
        ax.set_title(f"{task} (n = {g['model'].nunique()} points)", fontsize=9)
    _legend_beside(axes[-1], handles, sorted(handles), fontsize=8)
    _titles(fig, title or "Study v2: MUI against the positions counted (§7.2)", caption)
    return fig
