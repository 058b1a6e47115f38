"""Glue between zoo result records (``results/zoo/<model>__<task>.json``, read by :mod:`saemui.zoo.record`) and
the analysis functions.

The analyses take one table (:data:`TABLE_COLUMNS`, one row per (model, task) point) whether its rows come from
zoo records (:func:`load_zoo`) or from ordinary ``saemui run`` result directories (:func:`saemui.runs.load_runs`).

Nothing here computes a statistic itself: it selects points from the zoo and calls ``saemui.analysis.law``,
``training``, ``contamination``, ``comparison``, ``diversity`` and ``sensitivity``. Choices made here are
[OURS] and stated where they are made:

* Performance for log fits is the add-half smoothed accuracy ``100 (k + 0.5) / (n + 1)`` % (``perf``), because
  ln(0) is undefined and small zoos have models with 0 correct answers; raw accuracy is kept as ``accuracy``.
* A model-level point is the unweighted mean of perf and of MUI (%) over the zoo's tasks (every model has every
  task at the same N).
* Points with MUI = 0 (no scored response token at all, e.g. a model that only emits EOS) cannot enter a log
  fit; they are dropped and listed.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from saemui.analysis.comparison import (
    alpha_sensitivity,
    law_residual_score,
    rank_changes,
    utility_adjusted_score,
)
from saemui.analysis.contamination import contamination_scores, shift_table
from saemui.analysis.diversity import (
    coverage_curve,
    greedy_lexical_subset,
    greedy_max_coverage,
    jaccard,
    subset_rank_preservation,
    union_ids,
)
from saemui.analysis.law import COMPARABILITY_KEYS, bootstrap_ci, check_comparable, fit_law
from saemui.analysis.sensitivity import sensitivity_table
from saemui.analysis.stats import auroc, kendall_tau, kendall_tau_ci
from saemui.analysis.training import classify_trajectory
from saemui.errors import SaemuiError
from saemui.readers import check_zoo_record
from saemui.result import wilson_interval
from saemui.zoo.record import RESULT_SCHEMA, load_items, load_records, results_dir  # noqa: F401  (re-exported)


def smoothed_perf(n_correct: Any, n: Any) -> np.ndarray:
    """Add-half smoothed accuracy in %: ``100 (k + 0.5) / (n + 1)`` (defined and > 0 at k = 0) [OURS]."""
    k, m = np.asarray(n_correct, float), np.asarray(n, float)
    return 100.0 * (k + 0.5) / (m + 1.0)


#: the columns of the table every analysis here takes, in order (see :func:`load_zoo`)
TABLE_COLUMNS: tuple[str, ...] = (
    "model",
    "task",
    "root",
    "derivation",
    "parent",
    "step",
    "train_steps",
    "n",
    "n_labelled",
    "n_correct",
    "accuracy",
    "acc_lo",
    "acc_hi",
    "perf",
    "mui",
    "mui_correct",
    "units",
    "basis",
    "selection",
    "threshold",
    "layers",
    "layer_selection",
    "alignment",
    "neuron_site",
    "first_tokens",
    "prompt_format",
    "n_tokens",
    "tokens_per_item",
    "model_id",
    "model_sha256",
    "sae_ids",
    "saemui_version",
    "in_domain",
    "contaminated",
    "contaminated_model",
    "source",
    "path",
)


def zoo_row(r: dict, path: str | os.PathLike | None = None) -> dict[str, Any]:
    """The table row (:data:`TABLE_COLUMNS`) of one checked zoo record; ``path`` is the file it came from."""
    mc = r.get("mui_correct")
    cfg = r.get("config") if isinstance(r.get("config"), dict) else {}
    n, k = int(r["n"]), int(r["n_correct"])
    lo, hi = wilson_interval(k, n)
    layers = r.get("layers")
    n_tokens = r.get("n_tokens")
    return {
        "model": r["model"],
        "task": r["task"],
        "root": r["root"],
        "derivation": r["derivation"],
        "parent": r.get("parent"),
        "step": r.get("step"),
        "train_steps": r.get("train_steps"),
        "n": n,
        "n_labelled": n,
        "n_correct": k,
        "accuracy": float(r["accuracy"]),
        "acc_lo": lo,
        "acc_hi": hi,
        "perf": float(smoothed_perf(k, n)),
        "mui": 100.0 * float(r["mui"]),
        "mui_correct": None if mc is None else 100.0 * float(mc),
        "units": cfg.get("units") or ("neurons" if str(r["basis"]).startswith("neurons") else "sae"),
        "basis": r["basis"],
        "selection": r["selection"],
        "threshold": cfg.get("threshold"),
        "layers": tuple(int(x) for x in layers) if isinstance(layers, list) else None,
        # the zoo measures every layer of each model (ZooSpec has no layer selection)
        "layer_selection": "all" if cfg.get("layers") is None else layers_text(cfg["layers"]),
        "alignment": cfg.get("alignment"),
        "neuron_site": cfg.get("neuron_site"),
        "first_tokens": cfg.get("first_tokens"),
        "prompt_format": cfg.get("prompt_format"),
        "n_tokens": n_tokens,
        "tokens_per_item": n_tokens / n if isinstance(n_tokens, int) and n else None,
        "model_id": r["model"],
        "model_sha256": r.get("model_sha256"),
        "sae_ids": None,
        "saemui_version": None,
        "in_domain": r["task"] in r.get("in_domain", []),
        "contaminated": r["task"] in r.get("contaminated", []),
        "contaminated_model": bool(r.get("contaminated")),
        "source": "zoo",
        "path": None if path is None else str(path),
    }


def load_zoo(results: str | os.PathLike | Sequence[dict] | None = None) -> pd.DataFrame:
    """One row per (model, task) with :data:`TABLE_COLUMNS`: model, task, root, derivation, parent, step,
    train_steps, n, n_labelled, n_correct, accuracy (0-1) with its 95 % Wilson interval acc_lo/acc_hi, perf
    (smoothed %), mui and mui_correct (%), units (sae or neurons), basis, selection, threshold, layers (tuple),
    alignment, neuron_site, prompt_format, n_tokens, tokens_per_item, provenance (model_id, model_sha256,
    sae_ids, saemui_version; None where a record lacks it), in_domain (the task is in the model's training
    distribution), contaminated (its eval items were trained on), contaminated_model, source ("zoo"), path."""
    recs = (
        list(results)
        if isinstance(results, Sequence) and not isinstance(results, str)
        else load_records(results)
    )
    rows = []
    for i, r in enumerate(recs):
        check_zoo_record(r, f"zoo record {i}")
        rows.append(zoo_row(r))
    return check_table(pd.DataFrame(rows, columns=list(TABLE_COLUMNS)), "zoo results")


def check_table(df: pd.DataFrame, what: str) -> pd.DataFrame:
    """Refuse a table holding one (model, task) point twice (model means and per-task fits would double it)."""
    if df.duplicated(["model", "task"]).any():
        row = df[df.duplicated(["model", "task"])].iloc[0]
        raise SaemuiError(f"{what}: model {row['model']!r} has task {row['task']!r} twice")
    return df


def layers_text(layers: Any) -> str:
    """``[0, 1, 2]`` → ``"0-2"``, ``[0, 5, 9]`` → ``"0,5,9"``."""
    xs = [int(x) for x in layers]
    if len(xs) > 1 and xs == list(range(xs[0], xs[-1] + 1)):
        return f"{xs[0]}-{xs[-1]}"
    return ",".join(map(str, xs))


def _int_or_none(v: Any) -> int | None:
    # a pandas column holding None and ints turns None into NaN
    return None if v is None or v != v else int(v)


def comparability_records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """The settings :func:`~saemui.analysis.law.check_comparable` compares, one dict per row.

    n_samples: the count the MUI was measured at (``n_mui`` after :func:`saemui.runs.equalize_n`, else ``n``).
    basis: the neuron basis with its site (``neurons:down_input``) or ``sae``: each model has its own SAEs, so
    SAE bundles are compared within a model (:func:`check_points`), not across models. layers: the layer
    selection (``all`` layers of each model, or an explicit list), not the layer ids, which differ between
    models of different depth. first_tokens: the first-T cut (``None`` = every scored position).
    """
    n_col = "n_mui" if "n_mui" in df.columns else "n"
    out = []
    for r in df.itertuples():
        basis = getattr(r, "basis", None)
        units = getattr(r, "units", None) or ("neurons" if str(basis).startswith("neurons") else "sae")
        out.append(
            {
                "model": r.model,
                "n_samples": int(getattr(r, n_col)),
                "basis": basis if units == "neurons" else "sae",
                "selection": r.selection,
                "alignment": getattr(r, "alignment", None),
                "layers": getattr(r, "layer_selection", None),
                "first_tokens": _int_or_none(getattr(r, "first_tokens", None)),
            }
        )
    return out


def check_points(df: pd.DataFrame, keys: Sequence[str] = COMPARABILITY_KEYS) -> None:
    """Refuse rows measured under different settings (:func:`comparability_records`) and a model whose rows
    use different unit bases (e.g. two SAE bundles)."""
    check_comparable(comparability_records(df), keys)
    for model, g in df.groupby("model", sort=False):
        bases = list(dict.fromkeys(g["basis"]))
        if len(bases) > 1:
            raise SaemuiError(f"model {model!r} is measured in several bases ({', '.join(map(str, bases))})")


def model_points(df: pd.DataFrame) -> pd.DataFrame:
    """Model-level points (mean perf, accuracy and MUI over tasks); refuses unequal N, basis, selection,
    alignment or layers, and models missing a task."""
    check_points(df)
    tasks = sorted(set(df["task"]))
    for model, g in df.groupby("model", sort=False):
        missing = sorted(set(tasks) - set(g["task"]))
        if missing:
            raise SaemuiError(
                f"model {model!r} lacks task(s) {', '.join(missing)}: model means would not compare"
            )
    agg = df.groupby("model", sort=False).agg(
        perf=("perf", "mean"),
        accuracy=("accuracy", "mean"),
        mui=("mui", "mean"),
        root=("root", "first"),
        derivation=("derivation", "first"),
        contaminated_model=("contaminated_model", "first"),
        n=("n", "first"),
    )
    return agg.reset_index()


# ----- the law ---------------------------------------------------------------------------------------------


LAW_SUBSETS = {
    "clean": "models never trained on eval items (the law as a reference)",
    "independent": "clean models minus intermediate checkpoints (a training run counts once)",
    "all": "every model, contaminated ones included",
}


def _law_subset(pts: pd.DataFrame, subset: str) -> pd.DataFrame:
    if subset not in LAW_SUBSETS:
        raise SaemuiError(f"subset: expected one of {', '.join(LAW_SUBSETS)}, got {subset!r}")
    if subset in ("clean", "independent"):
        pts = pts[~pts["contaminated_model"]]
    if subset == "independent":
        pts = pts[pts["derivation"] != "checkpoint-of"]
    return pts.reset_index(drop=True)


def _law_fits(pts: pd.DataFrame, n_boot: int, seed: int, level: float, **key: Any) -> tuple[dict, dict, list]:
    """Both law forms on perf/mui points, each with its bootstrap CIs, and one table row per form."""
    fits, boots, rows = {}, {}, []
    for form in ("mui_from_perf", "perf_from_mui"):
        fit = fit_law(pts["perf"], pts["mui"], form=form, labels=pts["model"])
        boot = bootstrap_ci(fit, n_boot=n_boot, seed=seed, level=level)
        fits[form], boots[form] = fit, boot
        rows.append(
            {
                **key,
                "form": form,
                "equation": fit.equation,
                "slope": fit.slope,
                "slope_lo": boot.slope_ci[0],
                "slope_hi": boot.slope_ci[1],
                "intercept": fit.intercept,
                "intercept_lo": boot.intercept_ci[0],
                "intercept_hi": boot.intercept_ci[1],
                "r2": fit.r2,
                "r2_lo": boot.r2_ci[0],
                "r2_hi": boot.r2_ci[1],
                "pearson_r": fit.pearson_r,
                "spearman_rho": fit.spearman_rho,
                "n_models": fit.n,
            }
        )
    return fits, boots, rows


def law_analysis(
    df: pd.DataFrame, subset: str = "clean", n_boot: int = 2000, seed: int = 0, level: float = 0.95
) -> dict[str, Any]:
    """Both law forms with bootstrap CIs on model-level points (mean over tasks).

    subset: one of LAW_SUBSETS (``clean``, ``independent``, ``all``).
    Returns points (DataFrame), fits and boots (form → LawFit / LawBootstrap) and a flat summary table.
    """
    pts = _law_subset(model_points(df), subset)
    dropped = pts[pts["mui"] <= 0]["model"].tolist()
    pts = pts[pts["mui"] > 0].reset_index(drop=True)
    fits, boots, rows = _law_fits(pts, n_boot, seed, level, subset=subset)
    pts = pts.assign(resid_mui=fits["mui_from_perf"].residuals, resid_perf=fits["perf_from_mui"].residuals)
    return {"points": pts, "fits": fits, "boots": boots, "table": pd.DataFrame(rows), "dropped": dropped}


def law_per_task(
    df: pd.DataFrame, subset: str = "clean", n_boot: int = 2000, seed: int = 0, level: float = 0.95
) -> dict[str, Any]:
    """The law fitted separately on each task's (model, task) points: the paper's per-benchmark view, where a
    model mean can hide tasks that pull in opposite directions.

    Returns table (one row per (task, form)), fits and boots (task → form → LawFit / LawBootstrap) and skipped
    (task → why no fit: e.g. every model at the same accuracy). Raises when no task can be fitted.
    """
    model_points(df)  # same comparability checks as the model-level fit
    rows, fits, boots, skipped = [], {}, {}, {}
    for task, g in df.groupby("task", sort=True):
        g = _law_subset(g, subset)
        g = g[g["mui"] > 0]
        try:
            fits[task], boots[task], r = _law_fits(g, n_boot, seed, level, subset=subset, task=task)
        except SaemuiError as e:
            skipped[task] = str(e)
            continue
        rows += r
    if not fits:
        raise SaemuiError(f"no per-task law fit possible: {skipped}")
    return {"table": pd.DataFrame(rows), "fits": fits, "boots": boots, "skipped": skipped}


# ----- Corollary 1: checkpoint trajectories -----------------------------------------------------------------


def trajectories(df: pd.DataFrame) -> pd.DataFrame:
    """Long table of every fine-tune that has checkpoints: its root (step 0), checkpoints, final model.

    Columns: series (the fine-tune), checkpoint (step as text), step, task, perf, mui, model.
    """
    parts = []
    ckpts = df[df["derivation"] == "checkpoint-of"]
    for series, g in ckpts.groupby("parent", sort=False):
        final = df[df["model"] == series]
        if final.empty:
            continue
        root = df[(df["model"] == final["parent"].iloc[0])].assign(step=0)
        seq = pd.concat([root, g, final]).sort_values(["step", "task"], kind="stable")
        parts.append(seq.assign(series=series, checkpoint=seq["step"].astype(int).astype(str)))
    if not parts:
        raise SaemuiError("zoo results: no checkpoint series (no checkpoint-of models with their fine-tune)")
    cols = ["series", "checkpoint", "step", "task", "perf", "mui", "model"]
    return pd.concat(parts, ignore_index=True)[cols]


def training_analysis(df: pd.DataFrame, dead_band: tuple[float, float] | None = None) -> pd.DataFrame:
    """Phases (Accumulating / Evolving / Coarsening / Collapsing / Stable) per series, task and overall.

    dead_band: (dP in % points, dMUI in % points); default [OURS]: one item of accuracy (100 / N) and no MUI
    band, so a change of a single answer never counts as a move.
    """
    traj = trajectories(df)
    if dead_band is None:
        dead_band = (100.0 / float(df["n"].iloc[0]), 0.0)
    out = []
    for series, g in traj.groupby("series", sort=False):
        ph = classify_trajectory(g, dead_band, checkpoint_col="checkpoint")
        ph.insert(0, "series", series)
        out.append(ph)
    return pd.concat(out, ignore_index=True)


# ----- Corollary 2: contamination --------------------------------------------------------------------------


def contamination_analysis(df: pd.DataFrame) -> dict[str, Any]:
    """Per task, a ``perf_from_mui`` law on the points of models never trained on eval items scores every point
    of that task (``contamination_scores``; positive = more P than the law predicts for that MUI).

    Reference points are scored leave-one-out (a point inside its own fit pulls the line toward itself).
    Scores are standardised by the fit's residual SD, or raw (% points) when that SD is 0 (a perfectly flat
    reference, as in tiny zoos). AUROC: contaminated (model, task) points vs all others, for this score and for
    the accuracy-only baseline (``accuracy_only_score``: P's z-score against the same leave-one-out reference,
    MUI ignored; raw % points when that reference's SD is 0). Shift tables: each
    fine-tune against its root, with its training tasks as in-domain.
    """
    rows, skipped = [], {}
    for task, g in df[df["mui"] > 0].groupby("task", sort=False):
        ref = g[~g["contaminated_model"]]
        for r in g.itertuples():
            fit_pts = ref[ref["model"] != r.model]
            try:
                fit = fit_law(fit_pts["perf"], fit_pts["mui"], form="perf_from_mui")
            except SaemuiError as e:
                skipped[task] = str(e)
                break
            std = fit.residual_sd > 1e-12
            score = float(contamination_scores(fit, [r.perf], [r.mui], standardize=std)[0])
            # the sceptic's first baseline, same leave-one-out reference with MUI ignored: P's z-score
            p_ref = fit_pts["perf"].to_numpy(float)
            sd_ref = float(np.std(p_ref, ddof=1)) if len(p_ref) > 1 else 0.0
            acc_z = (r.perf - p_ref.mean()) / sd_ref if sd_ref > 1e-12 else r.perf - p_ref.mean()
            rows.append(
                {
                    "model": r.model,
                    "task": task,
                    "perf": r.perf,
                    "mui": r.mui,
                    "score": score,
                    "accuracy_only_score": float(acc_z),
                    "standardized": std,
                    "contaminated": bool(r.contaminated),
                }
            )
    scores = pd.DataFrame(
        rows,
        columns=[
            "model",
            "task",
            "perf",
            "mui",
            "score",
            "accuracy_only_score",
            "standardized",
            "contaminated",
        ],
    )
    scores = scores[~scores["task"].isin(list(skipped))].reset_index(drop=True)
    y = scores["contaminated"].to_numpy(bool)
    both = y.any() and (~y).any()
    auc = auroc(scores["score"], y) if both else float("nan")
    auc_acc = auroc(scores["accuracy_only_score"], y) if both else float("nan")
    shifts = []
    for m, g in df[df["derivation"] != "checkpoint-of"].groupby("model", sort=False):
        if g["derivation"].iloc[0] == "none":
            continue
        before = df[df["model"] == g["parent"].iloc[0]]
        ind = g[g["in_domain"]]["task"].tolist()
        st = shift_table(before[["task", "perf", "mui"]], g[["task", "perf", "mui"]], ind)
        st.insert(0, "model", m)
        st.insert(1, "contaminated_model", bool(g["contaminated_model"].iloc[0]))
        shifts.append(st)
    shift = pd.concat(shifts, ignore_index=True) if shifts else pd.DataFrame()
    return {
        "scores": scores,
        "auroc": auc,
        "auroc_accuracy_only": auc_acc,
        "skipped": skipped,
        "shifts": shift,
    }


# ----- Corollary 3: fair comparison ------------------------------------------------------------------------


def comparison_analysis(
    df: pd.DataFrame, alpha: float = 0.5, n_boot: int = 2000, seed: int = 0, subset: str = "all"
) -> dict[str, Any]:
    """``utility_adjusted_score`` ranking vs accuracy-only ranking on model-level points, Kendall tau-b (with a
    bootstrap CI) between the two, the α sweep, and the law-residual score where a clean law fits."""
    pts = model_points(df)
    if subset == "clean":
        pts = pts[~pts["contaminated_model"]].reset_index(drop=True)
    score = utility_adjusted_score(pts["perf"], pts["mui"], alpha)
    ranks = rank_changes(pts["model"], pts["perf"], score)
    tau = kendall_tau_ci(score, pts["perf"], n_boot=n_boot, seed=seed)
    sweep = alpha_sensitivity(pts["perf"], pts["mui"], pts["model"], n_boot=n_boot, seed=seed)
    resid = None
    try:
        fit = fit_law(pts["perf"], pts["mui"], form="perf_from_mui")
        resid = pd.DataFrame(
            {"model": pts["model"], "law_residual": law_residual_score(fit, pts["perf"], pts["mui"])}
        )
    except SaemuiError:
        pass
    return {"alpha": alpha, "ranks": ranks, "tau": tau, "sweep": sweep, "law_residual": resid}


# ----- Corollary 4: diversity ------------------------------------------------------------------------------


def _sets(rec: dict) -> list[np.ndarray]:
    if rec.get("sets") is None:
        raise SaemuiError(
            f"{rec['model']}__{rec['task']}: per-sample key sets were not kept (too large); diversity needs them"
        )
    return [np.asarray(s, dtype=np.int64) for s in rec["sets"]]


def diversity_analysis(
    records: Sequence[dict], model: str | None = None, n_perm: int = 200, seed: int = 0
) -> dict[str, Any]:
    """Coverage and diversity from per-sample key sets.

    curves: task → random-order union-growth curve of ``model`` in MUI % (and a greedy curve per task);
    jaccard: overlap of the task unions of ``model``; mix: for every model, the MUI of N samples drawn evenly
    from all tasks vs the mean single-task MUI at the same N (the Corollary 4 claim: more diverse data, more
    key units).
    """
    by_model: dict[str, dict[str, dict]] = {}
    for r in records:
        by_model.setdefault(r["model"], {})[r["task"]] = r
    model = model or next(iter(by_model))
    if model not in by_model:
        raise SaemuiError(f"diversity: no results for model {model!r}")
    mine = by_model[model]
    curves, greedy = {}, {}
    for task, r in mine.items():
        denom = r["n_units"] * r["n_layers"]
        sets = _sets(r)
        curves[f"{task} (random)"] = coverage_curve(sets, n_perm=n_perm, seed=seed).as_mui(denom)
        g = greedy_max_coverage(sets, budget=len(sets))
        greedy[task] = g
        curves[f"{task} (greedy)"] = g.curve().as_mui(denom)
    tasks = sorted(mine)
    jac = pd.DataFrame(
        [[jaccard(_sets(mine[a]), _sets(mine[b])) for b in tasks] for a in tasks], index=tasks, columns=tasks
    )
    mix_rows = []
    for m, recs in by_model.items():
        ts = sorted(recs)
        if len(ts) < 2 or any(recs[t].get("sets") is None for t in ts):
            continue
        n = min(len(recs[t]["sets"]) for t in ts)
        denom = recs[ts[0]]["n_units"] * recs[ts[0]]["n_layers"]
        per = n // len(ts)
        mixed = [s for t in ts for s in _sets(recs[t])[:per]]
        # the single-task unions use the same number of samples as the mixture
        single = [
            len(np.unique(np.concatenate(_sets(recs[t])[: per * len(ts)] or [np.zeros(0, np.int64)])))
            for t in ts
        ]
        mixed_u = len(np.unique(np.concatenate(mixed))) if mixed else 0
        mix_rows.append(
            {
                "model": m,
                "n_samples": per * len(ts),
                "mui_mixed": 100.0 * mixed_u / denom,
                "mui_single_mean": 100.0 * float(np.mean(single)) / denom,
                "mixed_gt_single": mixed_u > float(np.mean(single)),
            }
        )
    return {"model": model, "curves": curves, "greedy": greedy, "jaccard": jac, "mix": pd.DataFrame(mix_rows)}


def _basis_sets(rec: dict, basis: str) -> list[np.ndarray] | None:
    # neuron sets sit at the record's top level, SAE-feature sets under "sae" (same form); None: not kept
    if basis not in ("neurons", "sae"):
        raise SaemuiError(f"basis: expected 'neurons' or 'sae', got {basis!r}")
    sets = (rec if basis == "neurons" else rec.get("sae") or {}).get("sets")
    return None if sets is None else [np.asarray(x, dtype=np.int64) for x in sets]


def _complete_order(order: np.ndarray, n: int) -> np.ndarray:
    # Greedy stops once no item adds a unit (or n-gram); the remaining items follow in index order, so every
    # budget has a subset and the greedy prefix is unchanged.
    return np.r_[order, np.setdiff1d(np.arange(n), order)].astype(np.int64)


def _covered(sets: list[np.ndarray], chosen: np.ndarray, total: int) -> float:
    return len(union_ids([sets[i] for i in chosen])) / total if total else float("nan")


def subset_analysis(
    records: Sequence[dict],
    results: str | os.PathLike | None = None,
    fractions: Sequence[float] = (0.05, 0.10, 0.20),
    selectors: Sequence[str] | None = None,
    basis: str = "neurons",
    n_random: int = 200,
    ngram: int = 2,
    seed: int = 0,
) -> pd.DataFrame:
    """Corollary 4 in use: pick a small subset of a task's items by greedy maximum coverage of one model's key
    units, and ask whether it ranks *all* zoo models like the full task does (Kendall τ-b of subset vs full
    accuracy) [OURS protocol; EffiEval-style selection].

    Baselines on the same budget: greedy coverage of word ``ngram``-grams of the item prompts (lexical diversity,
    from ``items/<task>.json``) and ``n_random`` uniform random subsets (mean and 95 % interval of τ). Also
    reported: the share of the selector's full key-unit union each subset covers (``cov_mui`` / ``cov_lexical``),
    which shows whether lexical diversity already buys unit coverage.

    selectors: models whose key sets choose the subset (default: every root model with sets in ``basis``);
    basis: ``"neurons"`` (the records' sets) or ``"sae"`` (``record["sae"]["sets"]``, roots with a bundle).
    One row per (task, selector, fraction).
    """
    by_task: dict[str, list[dict]] = {}
    for r in records:
        by_task.setdefault(r["task"], []).append(r)
    rows = []
    for task in sorted(by_task):
        recs = sorted(by_task[task], key=lambda r: r["model"])
        ids = recs[0]["ids"]
        bad = [r["model"] for r in recs if r["ids"] != ids]
        if bad:
            raise SaemuiError(
                f"task {task}: models {bad} were evaluated on other items than {recs[0]['model']}"
            )
        if len(recs) < 2:
            continue
        acc = np.array([r["correct"] for r in recs], dtype=float)
        n = acc.shape[1]
        items = load_items(task, results)
        if items["ids"] != ids:
            raise SaemuiError(f"items/{task}.json: item ids differ from the result records'")
        lex = greedy_lexical_subset(items["prompts"], budget=n, n=ngram)
        lex_order = _complete_order(lex.order, n)
        names = selectors or [r["model"] for r in recs if r["derivation"] == "none"]
        for sel in names:
            rec = next((r for r in recs if r["model"] == sel), None)
            if rec is None:
                raise SaemuiError(f"subset selector {sel!r}: no result on task {task}")
            sets = _basis_sets(rec, basis)
            if sets is None:
                if selectors:
                    raise SaemuiError(f"{sel}__{task}: no per-sample {basis} key sets kept")
                continue
            total = len(union_ids(sets))
            mui_order = _complete_order(greedy_max_coverage(sets, budget=n).order, n)
            t_mui = subset_rank_preservation(acc, mui_order, fractions, n_random=n_random, seed=seed)
            t_lex = subset_rank_preservation(acc, lex_order, fractions)
            for a, b in zip(t_mui.itertuples(), t_lex.itertuples()):
                rows.append(
                    {
                        "task": task,
                        "selector": sel,
                        "basis": basis,
                        "n_models": len(recs),
                        "fraction": a.fraction,
                        "n_items": a.n_items,
                        "tau_mui": a.tau,
                        "tau_lexical": b.tau,
                        "tau_random_mean": getattr(a, "tau_random_mean", float("nan")),
                        "tau_random_lo": getattr(a, "tau_random_lo", float("nan")),
                        "tau_random_hi": getattr(a, "tau_random_hi", float("nan")),
                        "cov_mui": _covered(sets, mui_order[: a.n_items], total),
                        "cov_lexical": _covered(sets, lex_order[: a.n_items], total),
                    }
                )
    if not rows:
        raise SaemuiError(f"subset analysis: no task with ≥ 2 models and a selector with {basis} key sets")
    return pd.DataFrame(rows)


# ----- selection sensitivity -------------------------------------------------------------------------------


def _rule_key(threshold: str) -> dict[str, Any]:
    """``topscore:0.9`` → ``{"eta": 0.9}``; ``topk:0.001`` / ``topk:2`` → ``{"k": 0.001}`` / ``{"k": 2}``; other
    rules keep their text as ``k`` (``sensitivity_table`` needs exactly one of eta or k)."""
    kind, _, val = str(threshold).partition(":")
    num: Any = val
    for conv in (int, float):
        try:
            num = conv(val)
            break
        except ValueError:
            continue
    if kind == "topscore":
        return {"eta": num}
    return {"k": num if kind == "topk" else str(threshold)}


def sensitivity_analysis(records: Sequence[dict]) -> dict[str, Any]:
    """MUI (%) per (model, task) under each measured key-unit rule (``sensitivity_table``), and how the model
    ranking by mean MUI moves between rules (Kendall tau-b against the main rule)."""
    rows, sae_rows = [], []
    for r in records:
        for s in r.get("sensitivity") or []:
            rows.append(
                {
                    "model": r["model"],
                    "task": r["task"],
                    "basis": r["basis"],
                    **_rule_key(s["threshold"]),
                    "mui": 100.0 * s["mui"],
                }
            )
        sae = r.get("sae")
        if sae:  # the same samples in an SAE feature basis: neuron vs feature basis side by side
            sae_rows.append(
                {
                    "model": r["model"],
                    "task": r["task"],
                    "basis": sae["basis"],
                    "width": sae["n_units"],
                    **({"l0": sae["l0"]} if sae.get("l0") is not None else {}),
                    **_rule_key(sae["selection"]),
                    "mui": 100.0 * sae["mui"],
                }
            )
    if not rows:
        raise SaemuiError("zoo results: no sensitivity entries")
    table = sensitivity_table(rows + sae_rows)
    wide = table.groupby(level="model").mean()
    # the main rule is the first one measured (the zoo's own selection), from any record that has entries
    main_rule = next(r["sensitivity"][0]["threshold"] for r in records if r.get("sensitivity"))
    key = _rule_key(main_rule)
    main = f"eta={key['eta']}" if "eta" in key else f"k={key['k']}"

    def paired(c: str) -> pd.DataFrame:
        # an SAE column covers only the models measured in that basis
        return pd.concat([wide[c], wide[main]], axis=1, keys=["x", "y"]).dropna()

    taus = pd.DataFrame(
        [
            {
                "selection": c,
                "tau_vs_main": kendall_tau(b["x"], b["y"]) if len(b) > 1 else float("nan"),
                "n_models": len(b),
            }
            for c in wide
            for b in [paired(c)]
        ]
    )
    return {"table": table, "model_means": wide, "taus": taus, "main": main}
