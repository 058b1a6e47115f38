"""Every zoo figure and table from committed result files: ``reproduce(KIND, results, out)``.

``saemui plot KIND``, the ``scripts/reproduce_*.py`` scripts and the notebooks call the same ``reproduce_*``
functions, so a figure has exactly one code path. Each writes ``<out>/<name>.png`` and ``.pdf`` plus a small CSV/JSON table, and
returns the written paths. Nothing here loads a model: only ``results/zoo/*.json`` is read.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from saemui.analysis import KINDS
from saemui.analysis import zoo as az
from saemui.errors import SaemuiError
from saemui.io import atomic_write_json, atomic_write_text
from saemui.plots import (
    legend_outside,
    new_figure,
    plot_contamination,
    plot_coverage,
    plot_law,
    plot_law_grid,
    plot_rank_sweep,
    plot_sensitivity,
    plot_task_bars,
    plot_trajectory,
    save_figure,
    series_styles,
)


def _csv(df: pd.DataFrame, path: Path, index: bool = False) -> Path:
    atomic_write_text(path, df.to_csv(index=index, float_format="%.6g"))
    return path


def _clean(obj: Any) -> Any:
    # JSON has no NaN: write null so the tables stay valid for any reader
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    if hasattr(obj, "item"):
        return _clean(obj.item())
    return obj


def _json(obj: Any, path: Path) -> Path:
    atomic_write_json(path, _clean(obj))
    return path


PERF_SMOOTHED = "accuracy P (%, add-half smoothed)"


def _n_items(df: pd.DataFrame) -> str:
    ns = sorted(set(int(n) for n in df["n"]))
    return str(ns[0]) if len(ns) == 1 else f"{ns[0]}–{ns[-1]}"


def _tasks_n(df: pd.DataFrame) -> str:
    return f"{df['task'].nunique()} tasks × N = {_n_items(df)} items"


def _with_accuracy_ci(df: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """Accuracy in % with exact binomial (Clopper–Pearson) bounds per (model, task) row."""
    from scipy.stats import beta

    k, n = df["n_correct"].to_numpy(float), df["n"].to_numpy(float)
    a = (1 - level) / 2
    lo = np.where(k > 0, beta.ppf(a, k, n - k + 1), 0.0)
    hi = np.where(k < n, beta.ppf(1 - a, k + 1, n - k), 1.0)
    return df.assign(accuracy_pct=100 * k / n, acc_lo=100 * lo, acc_hi=100 * hi)


def reproduce_law(results: Path | None, out: Path, n_boot: int = 2000) -> list[Path]:
    """Law fits (both forms, bootstrap CIs) on clean, independent and all models, and per task; scatter + band;
    per-task bars."""
    df = az.load_zoo(results)
    written, tables, errors, shown, skipped = [], [], {}, None, {}
    for subset in az.LAW_SUBSETS:
        try:
            res = az.law_analysis(df, subset, n_boot=n_boot)
        except SaemuiError as e:
            errors[subset] = str(e)
            continue
        tables.append(res["table"])
        written.append(_csv(res["points"], out / f"law_points_{subset}.csv"))
        if shown is None:
            shown = (subset, res)
    if shown is None:
        raise SaemuiError(f"no law fit possible on these results: {errors}")
    subset, res = shown
    fit = res["fits"]["mui_from_perf"]
    boot = res["boots"]["mui_from_perf"]
    fig = plot_law(
        fit,
        boot=boot,
        title=f"Utility Law on the zoo ({subset} models; each point: mean over {_tasks_n(df)})",
        perf_label=PERF_SMOOTHED,
    )
    written += save_figure(fig, out / "law")
    written.append(_csv(pd.concat(tables, ignore_index=True), out / "law_fits.csv"))
    try:
        per_task = az.law_per_task(df, "clean", n_boot=n_boot)
    except SaemuiError as e:
        errors["per_task"] = str(e)
    else:
        written.append(_csv(per_task["table"], out / "law_fits_per_task.csv"))
        skipped = per_task["skipped"]
        form = "perf_from_mui"
        fig = plot_law_grid(
            {t: f[form] for t, f in per_task["fits"].items()},
            {t: b[form] for t, b in per_task["boots"].items()},
            perf_label=PERF_SMOOTHED,
            title=f"Utility Law per task, P = c + d·ln(MUI) on clean models (N = {_n_items(df)} items per point)",
        )
        written += save_figure(fig, out / "law_per_task")
    written.append(
        _json(
            {
                "shown": subset,
                "errors": errors,
                "per_task_skipped": skipped,
                "dropped_zero_mui": res["dropped"],
            },
            out / "law_notes.json",
        )
    )
    sel = ", ".join(sorted(set(df["selection"].astype(str))))
    basis = ", ".join(sorted(set(df["basis"].astype(str))))
    fig = plot_task_bars(
        df,
        "mui",
        title="MUI per task and model",
        caption=f"N = {_n_items(df)} samples per bar; {basis}, {sel}; point estimates (no interval)",
    )
    written += save_figure(fig, out / "tasks_mui")
    fig = plot_task_bars(
        _with_accuracy_ci(df),
        "accuracy_pct",
        err_cols=("acc_lo", "acc_hi"),
        ylabel="accuracy (%)",
        title="Accuracy per task and model",
        caption=f"n = {_n_items(df)} items per bar; whiskers: 95 % Clopper–Pearson intervals",
    )
    written += save_figure(fig, out / "tasks_perf")
    return written


def reproduce_training(results: Path | None, out: Path, n_boot: int = 2000) -> list[Path]:
    """Phases along every checkpoint series; one trajectory figure per series."""
    df = az.load_zoo(results)
    phases = az.training_analysis(df)
    written = [_csv(phases, out / "training_phases.csv")]
    for series, g in phases.groupby("series", sort=False):
        n_ck = len(set(g["checkpoint_from"]) | set(g["checkpoint_to"]))
        fig = plot_trajectory(
            g.drop(columns="series"),
            caption=f"checkpoints of {series}: {n_ck} checkpoints × {g['task'].nunique()} series "
            f"(tasks and their mean), N = {_n_items(df)} items per task; phases from the signs of ΔP and ΔMUI "
            "outside a dead band (no test)",
        )
        written += save_figure(fig, out / f"training_{series}")
    return written


def _auc_s(auc: float | None) -> str:
    return "AUROC not defined" if auc is None or auc != auc else f"AUROC {auc:.3f}"


def reproduce_contamination(results: Path | None, out: Path, n_boot: int = 2000) -> list[Path]:
    """Contamination scores, AUROC, and ΔP/ΔMUI shift plots of each fine-tune against its root."""
    df = az.load_zoo(results)
    res = az.contamination_analysis(df)
    written = [_csv(res["scores"], out / "contamination_scores.csv")]
    if not res["shifts"].empty:
        written.append(_csv(res["shifts"], out / "contamination_shifts.csv"))
        sc = res["scores"]
        auc_txt = f"law-residual score {_auc_s(res['auroc'])}; accuracy alone (P z-score) {_auc_s(res['auroc_accuracy_only'])}"
        for model, g in res["shifts"].groupby("model", sort=False):
            tag = "contaminated" if g["contaminated_model"].iloc[0] else "clean fine-tune"
            fig = plot_contamination(
                g,
                title=f"{model} vs its base ({tag})",
                caption=f"n = {len(g)} tasks × N = {_n_items(df)} items; descriptive. Over all "
                f"{len(sc)} (model, task) points: {auc_txt}",
            )
            written += save_figure(fig, out / f"contamination_{model}")
    n_pos = int(res["scores"]["contaminated"].sum()) if not res["scores"].empty else 0
    summary = {
        "auroc": res["auroc"],
        "auroc_accuracy_only": res["auroc_accuracy_only"],
        "n_contaminated_points": n_pos,
        "n_points": len(res["scores"]),
        "skipped_tasks": res["skipped"],
    }
    written.append(_json(summary, out / "contamination_summary.json"))
    return written


def reproduce_comparison(results: Path | None, out: Path, n_boot: int = 2000) -> list[Path]:
    """Utility-adjusted ranking (α = 0.5), rank changes, Kendall τ vs accuracy, α sweep."""
    df = az.load_zoo(results)
    res = az.comparison_analysis(df, n_boot=n_boot)
    tau = res["tau"]
    written = [
        _csv(res["ranks"], out / "comparison_ranks.csv"),
        _csv(res["sweep"], out / "comparison_alpha_sweep.csv"),
        _json(
            {
                "alpha": res["alpha"],
                "kendall_tau_vs_accuracy": tau.tau,
                "tau_lo": tau.lo,
                "tau_hi": tau.hi,
                "level": tau.level,
                "n_boot": tau.n_boot,
            },
            out / "comparison_tau.json",
        ),
    ]
    if res["law_residual"] is not None:
        written.append(_csv(res["law_residual"], out / "comparison_law_residual.csv"))
    fig = plot_rank_sweep(
        res["sweep"],
        caption=f"n = {df['model'].nunique()} models, mean over {_tasks_n(df)}; at α = {res['alpha']:g}: "
        f"Kendall τ-b vs accuracy ranking = {tau.tau:.2f}, {tau.level:.0%} CI [{tau.lo:.2f}, {tau.hi:.2f}] "
        f"({tau.n_boot} bootstrap)",
    )
    written += save_figure(fig, out / "comparison")
    return written


def reproduce_diversity(results: Path | None, out: Path, n_boot: int = 2000) -> list[Path]:
    """Per root model: coverage curves (random orders and greedy); task overlap; mixed vs single-task MUI."""
    recs = az.load_records(results)
    df_all = az.load_zoo(recs)
    roots = list(dict.fromkeys(r["model"] for r in recs if r["derivation"] == "none"))
    written = []
    for i, root in enumerate(roots or [None]):
        res = az.diversity_analysis(recs, model=root)
        if i == 0:
            written.append(_csv(res["mix"], out / "diversity_mix.csv"))
        written.append(_csv(res["jaccard"], out / f"diversity_jaccard_{res['model']}.csv", index=True))
        n_perm = next((c.n_perm for c in res["curves"].values() if c.n_perm), 0)
        level = next((c.level for c in res["curves"].values() if c.n_perm), 0.95)
        fig = plot_coverage(
            res["curves"],
            title=f"Key-unit coverage of {res['model']}",
            caption=f"up to N = {_n_items(df_all)} samples per task; band: {level:.0%} percentile band over "
            f"{n_perm} random orders; dashed: greedy max coverage (descriptive, no test)",
        )
        written += save_figure(fig, out / f"diversity_{res['model']}")
    for basis in ("neurons", "sae"):
        try:
            sub = az.subset_analysis(recs, results, basis=basis)
        except SaemuiError as e:
            if basis == "neurons":
                raise
            print(f"subset selection in the sae basis skipped: {e}", file=sys.stderr)
            continue
        written.append(_csv(sub, out / f"diversity_subsets_{basis}.csv"))
    return written


def reproduce_sensitivity(results: Path | None, out: Path, n_boot: int = 2000) -> list[Path]:
    """MUI under each measured key-unit rule and the rank stability (Kendall τ) of models across rules."""
    recs = az.load_records(results)
    res = az.sensitivity_analysis(recs)
    written = [
        _csv(res["table"], out / "sensitivity_table.csv", index=True),
        _csv(res["taus"], out / "sensitivity_taus.csv"),
    ]
    # one panel per unit basis: the SAE and the neuron MUI are different quantities on different scales
    tab = res["table"]
    panels: dict[str, list[str]] = {}
    for basis, g in tab.groupby(level="basis", sort=True):
        cols = [str(c) for c in tab.columns if g[c].notna().any()]
        kind = "MLP neurons" if str(basis).startswith("neurons") else "SAE features"
        panels.setdefault(f"{kind} ({basis})", cols)
    taus = "; ".join(
        f"{r.selection} {r.tau_vs_main:.2f} (n = {r.n_models})"
        for r in res["taus"].itertuples()
        if r.selection != res["main"]
    )
    fig = plot_sensitivity(
        res["model_means"],
        panels=panels,
        caption=f"mean over {_tasks_n(az.load_zoo(recs))} per model; Kendall τ-b of the model ranking vs "
        f"{res['main']}: {taus}",
    )
    written += save_figure(fig, out / "sensitivity")
    return written


def reproduce_summary(results: Path | None, out: Path, n_boot: int = 2000) -> list[Path]:
    """The numbers a closing note needs, in one Markdown + JSON: the law fits (clean and all models), the
    contamination AUROC, rank changes and Kendall τ, phase counts, and the mixed-vs-single diversity result.
    Parts that cannot be computed on these results say why instead of failing the whole summary."""
    df = az.load_zoo(results)
    recs = az.load_records(results)
    info: dict[str, Any] = {
        "n_models": int(df["model"].nunique()),
        "tasks": sorted(set(df["task"])),
        "n_per_task": int(df["n"].iloc[0]),
    }
    md = [
        f"# Zoo summary ({info['n_models']} models, tasks {', '.join(info['tasks'])}, N = {info['n_per_task']})",
        "",
    ]

    def part(name: str, fn: Callable[[], list[str]]) -> None:
        try:
            md.extend(fn())
        except SaemuiError as e:
            info[name] = {"error": str(e)}
            md.extend([f"## {name}", "", f"not computable on these results: {e}", ""])

    def law() -> list[str]:
        lines = ["## Utility Law (model-level, smoothed accuracy %, MUI %)", ""]
        info["law"] = {}
        for subset in az.LAW_SUBSETS:
            try:
                t = az.law_analysis(df, subset, n_boot=n_boot)["table"]
            except SaemuiError as e:
                info["law"][subset] = {"error": str(e)}
                lines.append(f"- {subset}: not computable ({e})")
                continue
            info["law"][subset] = t.to_dict(orient="records")
            for r in t.itertuples():
                lines.append(
                    f"- {subset}, {r.form}: {r.equation}, slope 95% CI [{r.slope_lo:.3f}, {r.slope_hi:.3f}], "
                    f"R² {r.r2:.2f}, Spearman ρ {r.spearman_rho:.2f}, n = {r.n_models}"
                )
        lines += ["", "Per task (clean models, P on ln MUI):", ""]
        try:
            per_task = az.law_per_task(df, "clean", n_boot=n_boot)
        except SaemuiError as e:
            info["law"]["per_task"] = {"error": str(e)}
            return [*lines, f"- not computable ({e})", ""]
        pt = per_task["table"]
        info["law"]["per_task"] = pt.to_dict(orient="records")
        info["law"]["per_task_skipped"] = per_task["skipped"]
        for r in pt[pt["form"] == "perf_from_mui"].itertuples():
            lines.append(
                f"- {r.task}: {r.equation}, slope 95% CI [{r.slope_lo:.2f}, {r.slope_hi:.2f}], R² {r.r2:.2f}, "
                f"Spearman ρ {r.spearman_rho:.2f}, n = {r.n_models}"
            )
        lines += [f"- {task}: no fit ({why})" for task, why in per_task["skipped"].items()]
        return [*lines, ""]

    def contamination() -> list[str]:
        res = az.contamination_analysis(df)
        sc = res["scores"]
        pos = sc[sc["contaminated"]]
        if pos.empty or len(pos) == len(sc):
            raise SaemuiError(
                f"AUROC needs contaminated and clean points; got {len(pos)} of {len(sc)} contaminated"
            )
        info["contamination"] = {
            "auroc": res["auroc"],
            "auroc_accuracy_only": res["auroc_accuracy_only"],
            "positives": pos.to_dict(orient="records"),
            "skipped": res["skipped"],
        }
        lines = [
            "## Contamination",
            "",
            f"AUROC (contaminated points vs all others) over {len(sc)} points: law-residual score "
            f"{res['auroc']:.3f}; accuracy alone (P z-score, same reference) {res['auroc_accuracy_only']:.3f}",
            "",
        ]
        lines += [f"- {r.model} on {r.task}: score {r.score:+.2f}" for r in pos.itertuples()]
        sig = res["shifts"]
        if not sig.empty:
            ind = sig[sig["domain"] == "in"]
            for m, g in ind.groupby("model", sort=False):
                lines.append(
                    f"- {m} in-domain: ΔP {g['dP'].mean():+.1f}, ΔMUI {g['dMUI'].mean():+.3f} (P↑ MUI↑ on {int(g['p_up_mui_up'].sum())}/{len(g)} tasks)"
                )
        return [*lines, ""]

    def comparison() -> list[str]:
        res = az.comparison_analysis(df, n_boot=n_boot)
        r, tau = res["ranks"], res["tau"]
        info["comparison"] = {
            "ranks": r.to_dict(orient="records"),
            "tau": tau.tau,
            "tau_ci": [tau.lo, tau.hi],
        }
        lines = [
            "## Fair comparison (α = 0.5)",
            "",
            f"Kendall τ-b (score vs accuracy): {tau.tau:.3f} [{tau.lo:.3f}, {tau.hi:.3f}]",
            "",
        ]
        lines += [f"- {x.model}: rank {x.rank_perf} → {x.rank_score} ({x.change:+d})" for x in r.itertuples()]
        return [*lines, ""]

    def training() -> list[str]:
        ph = az.training_analysis(df)
        counts = ph[ph["task"] == "overall"].groupby("series")["phase"].value_counts().unstack(fill_value=0)
        info["training"] = counts.to_dict(orient="index")
        lines = ["## Training phases (overall mean over tasks)", ""]
        for series, g in ph[ph["task"] == "overall"].groupby("series", sort=False):
            lines.append(
                f"- {series}: "
                + "; ".join(
                    f"{a}→{b} {p}" for a, b, p in zip(g["checkpoint_from"], g["checkpoint_to"], g["phase"])
                )
            )
        return [*lines, ""]

    def diversity() -> list[str]:
        mix = az.diversity_analysis(recs, n_perm=50)["mix"]
        info["diversity"] = mix.to_dict(orient="records")
        k = int(mix["mixed_gt_single"].sum())
        lines = [
            "## Diversity",
            "",
            f"MUI of N mixed-task samples > mean single-task MUI at the same N for {k}/{len(mix)} models",
            "",
        ]
        lines += [
            f"- {r.model}: mixed {r.mui_mixed:.3f} % vs single {r.mui_single_mean:.3f} %"
            for r in mix.itertuples()
        ]
        try:
            sub = az.subset_analysis(recs, results, n_random=200)
        except SaemuiError as e:
            info["subsets"] = {"error": str(e)}
            return [*lines, "", f"Subset selection not computable on these results: {e}", ""]
        info["subsets"] = sub.to_dict(orient="records")
        lines += [
            "",
            "Subset selection (Kendall τ-b of subset vs full accuracy over all models; mean over tasks; "
            "selector = root model's neuron key sets; lexical = greedy word-bigram coverage; random = mean of 200)",
            "",
        ]
        for (sel, f), g in sub.groupby(["selector", "fraction"]):
            lines.append(
                f"- {sel}, {100 * f:.0f} % of items: MUI greedy τ {g['tau_mui'].mean():.3f}, lexical "
                f"{g['tau_lexical'].mean():.3f}, random {g['tau_random_mean'].mean():.3f} "
                f"(key-unit coverage {100 * g['cov_mui'].mean():.0f} % vs lexical {100 * g['cov_lexical'].mean():.0f} %)"
            )
        return [*lines, ""]

    for name, fn in (
        ("law", law),
        ("contamination", contamination),
        ("comparison", comparison),
        ("training", training),
        ("diversity", diversity),
    ):
        part(name, fn)
    return [_json(info, out / "zoo_summary.json"), _write_md("\n".join(md) + "\n", out / "zoo_summary.md")]


def _write_md(text: str, path: Path) -> Path:
    atomic_write_text(path, text)
    return path


REPRODUCERS: dict[str, Callable[..., list[Path]]] = {
    "law": reproduce_law,
    "training": reproduce_training,
    "contamination": reproduce_contamination,
    "comparison": reproduce_comparison,
    "diversity": reproduce_diversity,
    "sensitivity": reproduce_sensitivity,
    "summary": reproduce_summary,
}


def reproduce(
    kind: str, results: str | Path | None = None, out: str | Path = "figures", n_boot: int = 2000
) -> list[Path]:
    """Write the figure(s) and table(s) of ``kind`` from the zoo results in ``results`` into ``out``."""
    if kind not in REPRODUCERS:
        raise SaemuiError(f"plot kind {kind!r} unknown (expected one of {', '.join(KINDS)})")
    if n_boot < 1:
        raise SaemuiError(f"--n-boot {n_boot}: expected a positive number of resamples")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    return REPRODUCERS[kind](az.results_dir(results), out, n_boot)


__all__ = ["KINDS", "REPRODUCERS", "reproduce"]


# ----- figures from ordinary run directories (``saemui plot KIND --runs RUN ...``) ---------------------------


def plot_law_runs(res: Any) -> Any:
    """The law plot of :func:`saemui.runs.fit_law_runs`: model points (smoothed accuracy %, MUI % at the common
    N), the ``mui_from_perf`` fit with its bootstrap band, and per point the 95 % Wilson interval of the
    accuracy (clipped to [0, 100]) and the interval of MUI over subsets, when every model has one run."""
    import numpy as np

    n_runs = len(res.table)
    pts = res.points
    if res.no_fit:
        # too few models for a law: the points and their intervals, nothing fitted
        fig, (ax,) = new_figure(7.6, 4.6)
        styles = series_styles(list(pts["model"]))
        for r in pts.itertuples():
            ax.scatter(r.perf, r.mui, s=40, zorder=3, label=r.model, **styles[str(r.model)])
        ax.set_title(
            f"{len(pts)} models, {n_runs} runs, MUI at N = {res.n_mui} (subsampled)\n"
            f"no law fitted (needs at least 3 models): per-run intervals only",
            fontsize=9,
        )
        legend_outside(ax, fontsize=7.5)
    else:
        fit, boot, test = res.fits["mui_from_perf"], res.boots["mui_from_perf"], res.tests["mui_from_perf"]
        title = (
            f"Utility Law on {n_runs} runs, MUI at N = {res.n_mui} (subsampled)\n"
            f"n = {fit.n} models, slope t-test p = {test.p:.2g} (df {test.df})"
        )
        fig = plot_law(fit, boot=boot, title=title)
        ax = fig.axes[0]
    x, y = pts["perf"].to_numpy(float), pts["mui"].to_numpy(float)
    if {"acc_lo", "mui_lo"} <= set(pts.columns):
        a_lo = np.clip(100 * pts["acc_lo"].to_numpy(float), 0, 100)
        a_hi = np.clip(100 * pts["acc_hi"].to_numpy(float), 0, 100)
        m_lo, m_hi = pts["mui_lo"].to_numpy(float), pts["mui_hi"].to_numpy(float)
        ax.errorbar(
            x,
            y,
            xerr=np.vstack([np.maximum(x - a_lo, 0), np.maximum(a_hi - x, 0)]),
            yerr=np.vstack([np.maximum(y - m_lo, 0), np.maximum(m_hi - y, 0)]),
            fmt="none",
            ecolor="#1f77b4",
            alpha=0.5,
            capsize=3,
            zorder=2,
        )
        lo, hi = float(a_lo.min()), float(a_hi.max())
    else:
        lo, hi = float(x.min()), float(x.max())
    pad = max(2.0, 0.05 * (hi - lo))
    ax.set_xlim(max(0.0, lo - pad), min(100.0, hi + pad))
    ax.set_xlabel("accuracy P (%, add-half smoothed; bars: 95 % Wilson)")
    ax.set_ylabel(f"MUI (%) at N = {res.n_mui} (bars: 95 % over subsets)")
    return fig


def reproduce_law_runs(
    runs: Any, out: Path, n_boot: int = 2000, n_sub: int = 1000, seed: int = 0, n: int | None = None
) -> list[Path]:
    """The law over run directories at equal N: ``law_runs.png``/``.pdf``, the run table, the fits (OLS, slope
    t-interval and p, bootstrap over models) and a notes JSON with the equal-N note."""
    from saemui.runs import fit_law_runs

    res = fit_law_runs(runs, n=n, n_sub=n_sub, n_boot=n_boot, seed=seed)
    written = [
        _csv(res.table, out / "law_runs_table.csv"),
        _csv(res.summary, out / "law_runs_fits.csv"),
        _json(
            {"note": res.note, "n_mui": res.n_mui, "dropped_zero_mui": res.dropped},
            out / "law_runs_notes.json",
        ),
    ]
    written += save_figure(plot_law_runs(res), out / "law_runs")
    return written


def reproduce_comparison_runs(
    runs: Any, out: Path, n_boot: int = 2000, n_sub: int = 1000, seed: int = 0, n: int | None = None
) -> list[Path]:
    """The fair-comparison ranking (:func:`saemui.analysis.zoo.comparison_analysis`) over run directories at
    equal N."""
    from saemui.runs import equalize_n, load_runs

    df = load_runs(runs)
    az.check_points(df, keys=("basis", "selection", "alignment", "layers"))
    eq = equalize_n(az.check_table(df, "runs"), n, n_sub=n_sub, seed=seed)
    res = az.comparison_analysis(eq, n_boot=n_boot)
    tau = res["tau"]
    written = [
        _csv(eq, out / "comparison_runs_table.csv"),
        _csv(res["ranks"], out / "comparison_runs_ranks.csv"),
        _csv(res["sweep"], out / "comparison_runs_alpha_sweep.csv"),
        _json(
            {
                "note": eq.attrs["note"],
                "kendall_tau_vs_accuracy": tau.tau,
                "tau_lo": tau.lo,
                "tau_hi": tau.hi,
            },
            out / "comparison_runs_tau.json",
        ),
    ]
    written += save_figure(plot_rank_sweep(res["sweep"], title=eq.attrs["note"]), out / "comparison_runs")
    return written


RUN_REPRODUCERS: dict[str, Callable[..., list[Path]]] = {
    "law": reproduce_law_runs,
    "comparison": reproduce_comparison_runs,
}


def reproduce_runs(
    kind: str, runs: Any, out: str | Path = "figures", n_boot: int = 2000, n: int | None = None
) -> list[Path]:
    """Write the figure(s) and table(s) of ``kind`` from ``saemui run`` result directories into ``out``, every
    run's MUI at ``n`` samples (default: the smallest run's N)."""
    if kind not in RUN_REPRODUCERS:
        raise SaemuiError(
            f"plot {kind} --runs: not drawn from run directories (kinds with --runs: {', '.join(RUN_REPRODUCERS)})"
        )
    if n_boot < 1:
        raise SaemuiError(f"--n-boot {n_boot}: expected a positive number of resamples")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    return RUN_REPRODUCERS[kind](runs, out, n_boot, n=n)


__all__ += ["RUN_REPRODUCERS", "plot_law_runs", "reproduce_runs"]
