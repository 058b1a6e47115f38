"""Corollary 2, contamination: deviations from the Utility Law and in-/out-of-domain shifts.

[P] Training on test data breaks the law: P rises while MUI does not fall (it rises). [INF] Procedure: fine-tune
on a benchmark's test (or in-domain) data, measure P and MUI on it and on out-of-domain tasks, and flag
in-domain P↑ with MUI↑, i.e. a positive residual from a law fitted on reference models.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from saemui.analysis.law import LawFit
from saemui.analysis.stats import ArrayLike, as_1d, as_labels, auroc, same_length
from saemui.errors import SaemuiError

__all__ = ["Confusion", "auroc", "confusion_table", "contamination_scores", "shift_table"]


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
