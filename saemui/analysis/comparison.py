"""Corollary 3, fair comparison: rank models by performance *and* utility.

[P] A later version of the paper ranks nine base models with a score that combines performance and MUI with a
weight α ("Eq. 7") and compares it to a manually ordered reference. **The formula, α and the agreement metric
are not known**; nothing here is the paper's formula. Two transparent scores are offered [OURS]:

* ``utility_adjusted_score``: ``α·z(P) − (1−α)·z(MUI)`` with z over the compared models. Under the law, a
  stronger model reaches a given P with fewer key units, so lower MUI counts in its favour; α = 1 is accuracy
  alone, α = 0 is "fewest units" alone.
* ``law_residual_score``: ``P − P̂(MUI)`` from a ``perf_from_mui`` law fit: performance beyond what the law
  predicts for the utility the model shows. At equal MUI it prefers the higher P, but at equal P it prefers
  the *higher* MUI (the law predicts less P for more MUI). That is the same direction as the contamination
  score (Corollary 2), so a high value can mean "better" or "contaminated": check contamination first.

Agreement with a reference ranking is Kendall tau-b with a bootstrap CI over models.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from saemui.analysis.law import LawFit
from saemui.analysis.stats import (
    ArrayLike,
    TauCI,
    as_1d,
    kendall_tau,
    kendall_tau_ci,
    same_length,
    zscore,
)
from saemui.errors import SaemuiError

__all__ = [
    "TauCI",
    "alpha_sensitivity",
    "kendall_tau",
    "kendall_tau_ci",
    "law_residual_score",
    "rank_changes",
    "utility_adjusted_score",
]


def _check_alpha(alpha: float) -> float:
    a = float(alpha)
    if not 0 <= a <= 1:
        raise SaemuiError(f"alpha: expected a weight in [0, 1], got {alpha}")
    return a


def utility_adjusted_score(perf: ArrayLike, mui: ArrayLike, alpha: float = 0.5) -> np.ndarray:
    """``alpha·z(P) − (1−alpha)·z(MUI)`` over the compared models [OURS]; higher is better.

    z is the population z-score (ddof=0) over exactly the models passed in, so scores change if the model
    set changes; a constant P or MUI contributes 0.
    """
    a = _check_alpha(alpha)
    p = as_1d(perf, "perf", min_len=2)
    m = as_1d(mui, "mui", min_len=2)
    same_length(perf=p, mui=m)
    return a * zscore(p) - (1 - a) * zscore(m)


def law_residual_score(fit: LawFit, perf: ArrayLike, mui: ArrayLike) -> np.ndarray:
    """``P − P̂(MUI)`` under a ``perf_from_mui`` law fit [OURS]; higher = more performance than the law predicts.

    See the module docstring for why this is ambiguous with contamination.
    """
    if fit.form != "perf_from_mui":
        raise SaemuiError(f"fit: expected a 'perf_from_mui' law fit (P = c + d·ln MUI), got {fit.form!r}")
    p = as_1d(perf, "perf", positive=True)
    m = as_1d(mui, "mui", positive=True)
    same_length(perf=p, mui=m)
    return p - fit.predict(m)


def _rank_desc(x: np.ndarray) -> np.ndarray:
    # competition ranking ("1224"): tied models share the best rank, so a tie never looks like a rank change
    return rankdata(-x, method="min").astype(int)


def rank_changes(names: Sequence[str], perf: ArrayLike, score: ArrayLike) -> pd.DataFrame:
    """Accuracy-only rank vs score rank per model (1 = best, ties share the best rank).

    Returns columns model, perf, score, rank_perf, rank_score and ``change`` = rank_perf − rank_score
    (positive = the model moves up under the score), sorted by rank_score then input order.
    """
    p = as_1d(perf, "perf")
    s = as_1d(score, "score")
    n = same_length(perf=p, score=s)
    names = [str(x) for x in names]
    if len(names) != n:
        raise SaemuiError(f"names: expected {n} model names, got {len(names)}")
    out = pd.DataFrame(
        {"model": names, "perf": p, "score": s, "rank_perf": _rank_desc(p), "rank_score": _rank_desc(s)}
    )
    out["change"] = out["rank_perf"] - out["rank_score"]
    return out.sort_values("rank_score", kind="stable").reset_index(drop=True)


def alpha_sensitivity(
    perf: ArrayLike,
    mui: ArrayLike,
    names: Sequence[str] | None = None,
    alphas: ArrayLike | None = None,
    reference_rank: ArrayLike | None = None,
    *,
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> pd.DataFrame:
    """How the ``utility_adjusted_score`` ranking moves with α.

    alphas: weights to try (default 0, 0.1, ..., 1).
    reference_rank: optional reference ordering, **1 = best** (e.g. a manually ordered list).

    One row per α: alpha, tau_vs_perf (tau-b between score and P), best (top model), and if a reference is
    given tau_vs_ref with its bootstrap interval tau_ref_lo/tau_ref_hi; then one column ``rank:<model>``
    per model (1 = best).
    """
    p = as_1d(perf, "perf", min_len=2)
    m = as_1d(mui, "mui", min_len=2)
    n = same_length(perf=p, mui=m)
    labels = [str(x) for x in names] if names is not None else [f"m{i}" for i in range(n)]
    if len(labels) != n:
        raise SaemuiError(f"names: expected {n} model names, got {len(labels)}")
    grid = np.round(np.linspace(0, 1, 11), 10) if alphas is None else as_1d(alphas, "alphas")
    ref = None
    if reference_rank is not None:
        ref = as_1d(reference_rank, "reference_rank")
        same_length(perf=p, reference_rank=ref)
    rows = []
    for a in grid:
        s = utility_adjusted_score(p, m, a)
        row: dict[str, object] = {"alpha": float(a), "tau_vs_perf": kendall_tau(s, p)}
        row["best"] = labels[int(np.argmax(s))]
        if ref is not None:
            # reference ranks are 1 = best, scores are higher = better: compare scores with -rank
            ci = kendall_tau_ci(s, -ref, n_boot=n_boot, seed=seed, level=level)
            row.update(tau_vs_ref=ci.tau, tau_ref_lo=ci.lo, tau_ref_hi=ci.hi)
        row.update({f"rank:{lab}": int(r) for lab, r in zip(labels, _rank_desc(s))})
        rows.append(row)
    return pd.DataFrame(rows)
