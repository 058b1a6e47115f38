"""Corollary 2, contamination: deviations from the Utility Law and in-/out-of-domain shifts.

[P] Training on test data breaks the law: P rises while MUI does not fall (it rises). [INF] Procedure: fine-tune
on a benchmark's test (or in-domain) data, measure P and MUI on it and on out-of-domain tasks, and flag
in-domain P↑ with MUI↑, i.e. a positive residual from a law fitted on reference models.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from saemui.analysis.corollary import (
    BOOT_SEED,
    LEVEL,
    N_BOOT,
    CorollaryVerdict,
    MeanCI,
    check_boot,
    need_columns,
    run_bootstrap_mean,
    three_way,
)
from saemui.analysis.law import LawFit, fit_law
from saemui.analysis.stats import (
    ArrayLike,
    as_1d,
    as_labels,
    auroc,
    percentile_interval,
    same_length,
)
from saemui.analysis.study import cluster_weights
from saemui.errors import SaemuiError

__all__ = [
    "AUROC_PAIRS",
    "ContaminationVerdict",
    "Confusion",
    "DETECTORS",
    "auroc",
    "c2_verdict",
    "confusion_table",
    "contamination_scores",
    "detector_auroc",
    "detector_scores",
    "matched_accuracy",
    "matched_dmui",
    "shift_table",
    "sign_table",
]


def contamination_scores(
    law_fit: LawFit, perf: ArrayLike, mui: ArrayLike, *, standardize: bool = True
) -> np.ndarray:
    """Deviation of (P, MUI) points from a fitted law; positive = off the law in the contamination direction.

    The score is ``(observed response - law prediction) / law_fit.residual_sd`` [OURS], in the fit's direction:

    * ``perf_from_mui`` fit: positive = **P higher than the law predicts for that MUI**.
    * ``mui_from_perf`` fit: positive = **MUI higher than the law predicts for that P**.

    Why both are "positive = suspicious": the law slopes down, and contamination moves a model up in P
    *and* up in MUI. In ``perf_from_mui`` the higher P raises the observation and the higher MUI lowers the
    prediction; in ``mui_from_perf`` the higher MUI raises the observation and the higher P lowers the
    prediction. Either way the residual grows. (If a fit came out with a positive slope the law does not
    hold for those models, and the scores should not be read as contamination evidence.)

    Fit ``law_fit`` on reference (presumed clean) models and score held-out ones: a point that was part of
    the fit has pulled the line toward itself, which shrinks its own score.
    ``standardize=False`` returns raw residuals in response units.
    """
    p = as_1d(perf, "perf", positive=True)
    m = as_1d(mui, "mui", positive=True)
    same_length(perf=p, mui=m)
    if law_fit.form == "mui_from_perf":
        resid = m - law_fit.predict(p)
    else:
        resid = p - law_fit.predict(m)
    if not standardize:
        return resid
    if not law_fit.residual_sd > 0:
        raise SaemuiError("law_fit: residual SD is 0 (a perfect fit), so scores cannot be standardised")
    return resid / law_fit.residual_sd


def shift_table(
    before: pd.DataFrame,
    after: pd.DataFrame,
    in_domain: Iterable[str],
    *,
    task_col: str = "task",
    perf_col: str = "perf",
    mui_col: str = "mui",
) -> pd.DataFrame:
    """ΔP and ΔMUI per task between two versions of one model (e.g. before/after fine-tuning).

    before, after: one row per task with columns task, perf, mui (same task set).
    in_domain: tasks the fine-tuning data came from (the suspected contamination target); others are "out".

    Returns columns task, domain ("in"/"out"), perf_before, perf_after, dP, mui_before, mui_after, dMUI and
    ``p_up_mui_up`` (dP > 0 and dMUI > 0: the contamination signature [P] when it is in-domain only).
    In-domain tasks come first, each group in ``before``'s order.
    """
    frames = {}
    for name, df in (("before", before), ("after", after)):
        missing = [c for c in (task_col, perf_col, mui_col) if c not in df.columns]
        if missing:
            raise SaemuiError(
                f"{name}: missing column(s) {', '.join(missing)} (expected {task_col}, {perf_col}, {mui_col})"
            )
        if df[task_col].duplicated().any():
            raise SaemuiError(
                f"{name}: task {df[task_col][df[task_col].duplicated()].iloc[0]!r} appears twice"
            )
        frames[name] = df.set_index(task_col)[[perf_col, mui_col]]
    tasks_b, tasks_a = list(frames["before"].index), set(frames["after"].index)
    for t in tasks_b:
        if t not in tasks_a:
            raise SaemuiError(f"after: task {t!r} is in 'before' but not in 'after'")
    extra = tasks_a - set(tasks_b)
    if extra:
        raise SaemuiError(f"before: task {sorted(extra)[0]!r} is in 'after' but not in 'before'")
    ind = set(in_domain)
    unknown = ind - set(tasks_b)
    if unknown:
        raise SaemuiError(f"in_domain: task {sorted(unknown)[0]!r} is not among the measured tasks")
    b, a = frames["before"], frames["after"].reindex(tasks_b)
    out = pd.DataFrame(
        {
            "task": tasks_b,
            "domain": ["in" if t in ind else "out" for t in tasks_b],
            "perf_before": b[perf_col].to_numpy(float),
            "perf_after": a[perf_col].to_numpy(float),
            "mui_before": b[mui_col].to_numpy(float),
            "mui_after": a[mui_col].to_numpy(float),
        }
    )
    out.insert(4, "dP", out["perf_after"] - out["perf_before"])
    out["dMUI"] = out["mui_after"] - out["mui_before"]
    out["p_up_mui_up"] = (out["dP"] > 0) & (out["dMUI"] > 0)
    out["_k"] = out["domain"].map({"in": 0, "out": 1})
    return out.sort_values("_k", kind="stable").drop(columns="_k").reset_index(drop=True)


@dataclass(frozen=True)
class Confusion:
    """Confusion counts of a flag rule ``score >= threshold`` against known contamination labels.

    threshold: the cut-off; a score equal to it is flagged.
    tp, fp, tn, fn: flagged-contaminated, flagged-clean, unflagged-clean, unflagged-contaminated counts.
    tpr: tp / (tp + fn) (recall); NaN without contaminated items.
    fpr: fp / (fp + tn); NaN without clean items.
    precision: tp / (tp + fp); NaN when nothing is flagged.
    """

    threshold: float
    tp: int
    fp: int
    tn: int
    fn: int
    tpr: float
    fpr: float
    precision: float

    def table(self) -> pd.DataFrame:
        """2×2 table: rows actual (contaminated, clean), columns (flagged, not_flagged)."""
        return pd.DataFrame(
            [[self.tp, self.fn], [self.fp, self.tn]],
            index=pd.Index(["contaminated", "clean"], name="actual"),
            columns=pd.Index(["flagged", "not_flagged"], name="predicted"),
        )


def _ratio(a: int, b: int) -> float:
    return a / b if b else float("nan")


def confusion_table(scores: ArrayLike, labels: object, threshold: float) -> Confusion:
    """Confusion counts for flagging ``score >= threshold``; labels True/1 = known contaminated."""
    s = as_1d(scores, "scores")
    y = as_labels(labels, len(s))
    flag = s >= threshold
    tp, fp = int((flag & y).sum()), int((flag & ~y).sum())
    tn, fn = int((~flag & ~y).sum()), int((~flag & y).sum())
    return Confusion(
        float(threshold), tp, fp, tn, fn, _ratio(tp, tp + fn), _ratio(fp, fp + tn), _ratio(tp, tp + fp)
    )


# ----- Study v2 §8.2: detectors D1-D5, AUROC with a run bootstrap, matched accuracy, C2 ----------------------

DETECTORS: tuple[str, ...] = ("D1", "D2", "D3", "D4", "D5")
#: what each detector scores, for figure labels (the definitions are §8.2's and :func:`detector_scores`')
DETECTOR_NAMES: dict[str, str] = {
    "D1": "MUI residual, MUI on ln P",
    "D2": "P residual, P on ln MUI",
    "D3": "accuracy alone, z(P)",
    "D4": "verbatim − twin gap",
    "D5": "D1 + z(gap)",
}
#: §8.2: the paired ΔAUROC intervals (first minus second)
AUROC_PAIRS: tuple[tuple[str, str], ...] = (("D1", "D3"), ("D2", "D3"), ("D5", "D4"))
#: §8.2: a contaminated checkpoint is matched to a clean one only within this many points of verbatim P
MATCH_DP = 3.0


def _z_against(x: float, ref: np.ndarray, what: str) -> float:
    sd = float(np.std(ref, ddof=1))
    if not sd > 0:
        raise SaemuiError(f"{what}: the clean reference points all have the same value (SD 0)")
    return (x - float(np.mean(ref))) / sd


def detector_scores(
    points: pd.DataFrame,
    *,
    run_col: str = "run_id",
    family_col: str = "family",
    perf_col: str = "P",
    mui_col: str = "mui",
    twin_col: str = "P_twin",
    contaminated_col: str = "contaminated",
) -> pd.DataFrame:
    """§8.2 detectors, one score per point, positive = suspicious, each against the clean points of the same
    family with the point's own run left out.

    points: the final points on task C: the clean law points and the contaminated finals (``contaminated``
        True), one row per run: P (verbatim accuracy, %), MUI (%), P_twin (accuracy on the twins, %).

    * **D1**: standardised MUI residual from the H1b-direction fit ``MUI = a ln P + b`` on the reference
      (:func:`contamination_scores`, residual SD with n − 2 df): MUI higher than P implies, the paper's
      signature.
    * **D2**: standardised P residual from the H1-direction fit ``P = c + d ln MUI``.
    * **D3**: z(P) = (P − mean)/SD over the reference (SD with ddof = 1).
    * **D4**: verbatim − twin accuracy gap, P − P_twin (points).
    * **D5**: z(D1) + z(D4) with fixed equal weights: D1 is already a z-scale residual, z(D4) is D4
      standardised like D3 against the reference's D4 values.

    Returns ``points`` with columns D1 … D5 and zD4 added (same row order).
    """
    need_columns(points, [run_col, family_col, perf_col, mui_col, twin_col, contaminated_col], "points")
    if points[run_col].duplicated().any():
        raise SaemuiError(
            f"points: run {points[run_col][points[run_col].duplicated()].iloc[0]!r} appears twice "
            "(one final point per run, protocol §2)"
        )
    p = as_1d(points[perf_col], perf_col, positive=True)
    m = as_1d(points[mui_col], mui_col, positive=True)
    gap = p - as_1d(points[twin_col], twin_col)
    contam = as_labels(points[contaminated_col].to_numpy(), len(p), contaminated_col)
    fam = points[family_col].astype(str).to_numpy()
    run = points[run_col].astype(str).to_numpy()
    out = {k: np.empty(len(p)) for k in ("D1", "D2", "D3", "D4", "zD4")}
    for i in range(len(p)):
        ref = (~contam) & (fam == fam[i]) & (run != run[i])
        if ref.sum() < 3:
            raise SaemuiError(
                f"run {run[i]!r}: {int(ref.sum())} clean reference point(s) of family {fam[i]!r} "
                "after leaving it out; a law fit needs at least 3"
            )
        fit_b = fit_law(p[ref], m[ref], form="mui_from_perf")
        fit_h = fit_law(p[ref], m[ref], form="perf_from_mui")
        out["D1"][i] = contamination_scores(fit_b, [p[i]], [m[i]])[0]
        out["D2"][i] = contamination_scores(fit_h, [p[i]], [m[i]])[0]
        out["D3"][i] = _z_against(p[i], p[ref], f"run {run[i]!r}, D3")
        out["D4"][i] = gap[i]
        out["zD4"][i] = _z_against(gap[i], gap[ref], f"run {run[i]!r}, D5")
    res = points.copy()
    for k in ("D1", "D2", "D3", "D4"):
        res[k] = out[k]
    res["zD4"] = out["zD4"]
    res["D5"] = out["D1"] + out["zD4"]
    return res


def _weighted_auroc(scores: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """AUROC per row of run weights: sum_{p,n} w_p w_n k(s_p, s_n) / (W_pos W_neg), k = 1, 1/2 (tie), 0;
    a resample is the data with each run repeated by its weight, so this is the pair count on it."""
    sp, sn = scores[y], scores[~y]
    kernel = (sp[:, None] > sn[None, :]) + 0.5 * (sp[:, None] == sn[None, :])
    wp, wn = w[:, y], w[:, ~y]
    return np.einsum("bp,pn,bn->b", wp, kernel, wn) / (wp.sum(axis=1) * wn.sum(axis=1))


def detector_auroc(
    scores: pd.DataFrame,
    *,
    detectors: Sequence[str] = DETECTORS,
    pairs: Sequence[tuple[str, str]] = AUROC_PAIRS,
    label_col: str = "contaminated",
    run_col: str = "run_id",
    n_boot: int = N_BOOT,
    seed: int = BOOT_SEED,
    level: float = LEVEL,
) -> pd.DataFrame:
    """§8.2 AUROC of each detector (contaminated = positive) over the final points, with a percentile interval
    from a bootstrap over runs stratified by label (positives and negatives resampled separately, counts kept),
    ``numpy.random.default_rng(seed)``; the paired ΔAUROC of each pair from the same resamples.

    The scores are those of :func:`detector_scores` on the full data: a resample reuses each run's score
    (the leave-one-run-out reference fits are not redone inside resamples).

    Returns one row per detector (kind "AUROC") and per pair (kind "ΔAUROC", what = "D1−D3"): what, kind,
    estimate, lo, hi, level, n_pos, n_neg, n_boot.
    """
    check_boot(n_boot, level)
    need_columns(scores, [label_col, run_col, *detectors], "scores")
    for a, b in pairs:
        if a not in detectors or b not in detectors:
            raise SaemuiError(f"pairs: ({a}, {b}) names a detector not in {list(detectors)}")
    if scores[run_col].duplicated().any():
        raise SaemuiError("scores: a run appears twice (one final point per run, protocol §2)")
    y = as_labels(scores[label_col].to_numpy(), len(scores), label_col)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise SaemuiError(f"{label_col}: AUROC needs both classes, got {n_pos} positive and {n_neg} negative")
    w = cluster_weights(y, scores[run_col].to_numpy(), np.random.default_rng(seed), n_boot).astype(float)
    est, boot = {}, {}
    for d in detectors:
        s = as_1d(scores[d], d)
        est[d] = auroc(s, y)
        boot[d] = _weighted_auroc(s, y, w)
    rows = []
    for d in detectors:
        rows.append((d, "AUROC", est[d], *percentile_interval(boot[d], level)))
    for a, b in pairs:
        rows.append((f"{a}−{b}", "ΔAUROC", est[a] - est[b], *percentile_interval(boot[a] - boot[b], level)))
    out = pd.DataFrame(rows, columns=["what", "kind", "estimate", "lo", "hi"])
    return out.assign(level=level, n_pos=n_pos, n_neg=n_neg, n_boot=n_boot)


def matched_accuracy(
    contaminated: pd.DataFrame,
    clean: pd.DataFrame,
    *,
    max_dp: float = MATCH_DP,
    family_col: str = "family",
    perf_col: str = "P",
    mui_col: str = "mui",
    seed_col: str = "seed",
    step_col: str = "step",
) -> pd.DataFrame:
    """§8.2 matched accuracy: each contaminated checkpoint is paired with the clean R* checkpoint of its family
    whose verbatim P is closest, if ``|ΔP| <= max_dp`` points.

    contaminated: one row per contaminated checkpoint (run_id, family, step, P, mui). clean: the clean R*
    checkpoints (family, seed, step, P, mui; 3 seeds × 6 steps per family). Ties in |ΔP| go to the lower seed,
    then the lower step. Returns ``contaminated`` with match_seed, match_step, match_P, match_mui, dP_match
    (contaminated − clean), matched (|ΔP| <= max_dp, inclusive) and dMUI_match (MUI_contam − MUI_clean, NaN
    when unmatched).
    """
    need_columns(contaminated, [family_col, perf_col, mui_col], "contaminated")
    need_columns(clean, [family_col, seed_col, step_col, perf_col, mui_col], "clean")
    if not max_dp >= 0:
        raise SaemuiError(f"max_dp: expected a non-negative number of points, got {max_dp}")
    cand = clean.sort_values([seed_col, step_col], kind="stable")
    rows = []
    for _, r in contaminated.iterrows():
        c = cand[cand[family_col] == r[family_col]]
        if c.empty:
            raise SaemuiError(f"clean: no R* checkpoint of family {r[family_col]!r} to match against")
        dp = float(r[perf_col]) - c[perf_col].to_numpy(float)
        best = int(np.argmin(np.abs(dp)))  # argmin takes the first minimum: the lowest (seed, step)
        ok = abs(dp[best]) <= max_dp or np.isclose(abs(dp[best]), max_dp, rtol=1e-9, atol=0.0)
        b = c.iloc[best]
        rows.append(
            {
                "match_seed": b[seed_col],
                "match_step": b[step_col],
                "match_P": float(b[perf_col]),
                "match_mui": float(b[mui_col]),
                "dP_match": float(dp[best]),
                "matched": bool(ok),
                "dMUI_match": float(r[mui_col]) - float(b[mui_col]) if ok else float("nan"),
            }
        )
    return pd.concat([contaminated.reset_index(drop=True), pd.DataFrame(rows)], axis=1)


def matched_dmui(
    matches: pd.DataFrame,
    *,
    run_col: str = "run_id",
    family_col: str = "family",
    n_boot: int = N_BOOT,
    seed: int = BOOT_SEED,
    level: float = LEVEL,
) -> MeanCI:
    """Mean ΔMUI_match over contaminated runs (§8.2): each run's matched checkpoints are averaged first (one
    value per run, §2), runs without a match are left out (n counts the rest), then the mean over runs with a
    bootstrap over runs stratified by family."""
    m = matches[matches["matched"].astype(bool)]
    if m.empty:
        raise SaemuiError("matches: no contaminated checkpoint has a clean match within the ΔP limit")
    per_run = m.groupby(run_col, sort=True).agg(v=("dMUI_match", "mean"), fam=(family_col, "first"))
    return run_bootstrap_mean(
        per_run["v"].to_numpy(),
        per_run["fam"].to_numpy(),
        per_run.index.to_numpy(),
        n_boot=n_boot,
        seed=seed,
        level=level,
    )


def _sign(x: float) -> int:
    return 0 if not np.isfinite(x) else int(np.sign(x))


def sign_table(
    finals: pd.DataFrame,
    root_mui: Mapping[str, float],
    rstar_mui: Mapping[str, float],
    matches: pd.DataFrame | None = None,
    *,
    run_col: str = "run_id",
    family_col: str = "family",
    mui_col: str = "mui",
    step_col: str = "step",
) -> pd.DataFrame:
    """§8.2 sign table: for each contaminated run's final point, ΔMUI and its sign against its root (the
    family's base), against R* seed 0 of its family and against its matched clean checkpoint (the row of
    :func:`matched_accuracy` with the same run and step; sign 0 when unmatched)."""
    rows = []
    for _, r in finals.iterrows():
        fam = str(r[family_col])
        if fam not in root_mui or fam not in rstar_mui:
            raise SaemuiError(f"family {fam!r}: root or R* MUI not given")
        mu = float(r[mui_col])
        row = {run_col: r[run_col], family_col: fam, "dMUI_root": mu - float(root_mui[fam])}
        row["dMUI_rstar"] = mu - float(rstar_mui[fam])
        dm = float("nan")
        if matches is not None:
            hit = matches[(matches[run_col] == r[run_col]) & (matches[step_col] == r[step_col])]
            if len(hit):
                dm = float(hit["dMUI_match"].iloc[0])
        row["dMUI_match"] = dm
        for k in ("root", "rstar", "match"):
            row[f"sign_{k}"] = _sign(row[f"dMUI_{k}"])
        rows.append(row)
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class ContaminationVerdict(CorollaryVerdict):
    """C2 (§8.2) with the separate flag ``signature``: "reproduced" (mean ΔMUI_match lower bound > 0),
    "reversed" (upper bound < 0) or "neither"."""

    signature: str = "neither"


def c2_verdict(auroc_table: pd.DataFrame, dmui_match: MeanCI | None = None) -> ContaminationVerdict:
    """C2: **supported** iff the lower bound of AUROC(D1) > 0.5 and that of ΔAUROC(D1 − D3) > 0; **not
    supported** iff the upper bound of ΔAUROC(D1 − D3) < 0.05; **inconclusive** otherwise (rules applied in
    that order). The estimate is AUROC(D1); the note carries ΔAUROC(D1 − D3)."""
    t = auroc_table.set_index("what")
    for k in ("D1", "D1−D3"):
        if k not in t.index:
            raise SaemuiError(
                f"auroc_table: no row {k!r} (run detector_auroc with D1, D3 and the pair D1−D3)"
            )
    a, d = t.loc["D1"], t.loc["D1−D3"]
    sig = "neither"
    if dmui_match is not None:
        sig = "reproduced" if dmui_match.lo > 0 else "reversed" if dmui_match.hi < 0 else "neither"
    note = f"ΔAUROC(D1−D3) = {d['estimate']:.3g} [{d['lo']:.3g}, {d['hi']:.3g}]"
    if dmui_match is not None:
        note += (
            f"; mean ΔMUI_match = {dmui_match.estimate:.3g} [{dmui_match.lo:.3g}, {dmui_match.hi:.3g}] "
            f"over {dmui_match.n} runs: paper signature {sig}"
        )
    return ContaminationVerdict(
        "C2",
        "AUROC(D1)",
        float(a["estimate"]),
        (float(a["lo"]), float(a["hi"])),
        float(a["level"]),
        int(a["n_pos"]) + int(a["n_neg"]),
        three_way(bool(a["lo"] > 0.5 and d["lo"] > 0), bool(d["hi"] < 0.05)),
        note,
        sig,
    )
