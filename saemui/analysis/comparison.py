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
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from saemui.analysis.corollary import (
    BOOT_SEED,
    LEVEL,
    N_BOOT,
    CorollaryVerdict,
    check_boot,
    need_columns,
    three_way,
)
from saemui.analysis.law import LawFit
from saemui.analysis.stats import (
    ArrayLike,
    TauCI,
    as_1d,
    kendall_tau,
    kendall_tau_ci,
    percentile_interval,
    same_length,
    zscore,
)
from saemui.analysis.study import cluster_weights, design
from saemui.errors import SaemuiError

__all__ = [
    "ALPHA_GRID",
    "CV_MODELS",
    "FairCV",
    "TauCI",
    "alpha_sensitivity",
    "c3_verdict",
    "choose_alpha",
    "fair_comparison_cv",
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


# ----- Study v2 §8.3: nested leave-one-run-out CV of the predictors of R, C3 ---------------------------------

#: §8.3 predictors of R: M0 (P_C), M1 (P_C, ln MUI_C), M2 (the score s_α), Mτ (P_C, ln τ_C)
CV_MODELS: tuple[str, ...] = ("M0", "M1", "M2", "Mtau")
#: §8.3: α ∈ {0, 0.05, …, 1}
ALPHA_GRID: np.ndarray = np.round(np.arange(21) * 0.05, 10)


def _fe_predict(
    x: np.ndarray, y: np.ndarray, g: np.ndarray, x_new: np.ndarray, g_new: np.ndarray
) -> np.ndarray:
    """Least squares of y on x with one intercept per family, evaluated at (x_new, g_new)."""
    X, labels = design(x, g)
    coef = np.linalg.lstsq(X, y, rcond=None)[0]
    k = X.shape[1] - len(labels)
    pos = {lab: i for i, lab in enumerate(labels)}
    missing = [str(v) for v in g_new if str(v) not in pos]
    if missing:
        raise SaemuiError(
            f"family {missing[0]!r}: no fitting point of this family left to estimate its intercept"
        )
    icpt = coef[k:][[pos[str(v)] for v in g_new]]
    return np.asarray(x_new, dtype=float).reshape(len(g_new), k) @ coef[:k] + icpt


def _score(p: np.ndarray, lm: np.ndarray, fit: np.ndarray, alpha: float) -> np.ndarray:
    """s_α = α·z(P) − (1 − α)·z(L), z with the mean and SD (ddof = 0, as :func:`zscore`) of the fitting points
    ``fit`` only, so a held-out run never shapes its own score."""

    def z(v: np.ndarray) -> np.ndarray:
        sd = v[fit].std()
        return np.zeros_like(v) if sd == 0 else (v - v[fit].mean()) / sd

    return alpha * z(p) - (1 - alpha) * z(lm)


def _loo_m2(p, lm, r, g, alpha: float) -> np.ndarray:
    """Leave-one-out CV errors of M2 at a fixed α over the given points."""
    n = len(r)
    err = np.empty(n)
    for i in range(n):
        fit = np.arange(n) != i
        s = _score(p, lm, fit, alpha)
        err[i] = r[i] - _fe_predict(s[fit], r[fit], g[fit], s[[i]], g[[i]])[0]
    return err


def choose_alpha(
    p: ArrayLike, lm: ArrayLike, r: ArrayLike, families: Sequence[str], alphas: ArrayLike = ALPHA_GRID
) -> tuple[float, np.ndarray]:
    """α of M2 by leave-one-run-out CV over the given (fitting) points: the α with the smallest mean squared CV
    error; a tie goes to the larger α (closer to accuracy alone). Returns (α, CV MSE per α)."""
    pv, lv, rv = as_1d(p, "P"), as_1d(lm, "L"), as_1d(r, "R")
    g = np.asarray([str(f) for f in families])
    grid = as_1d(alphas, "alphas")
    mse = np.array([float(np.mean(_loo_m2(pv, lv, rv, g, a) ** 2)) for a in grid])
    # equal up to rounding counts as a tie (e.g. s_α and s_(1-α) with P and L perfectly correlated)
    return float(grid[np.isclose(mse, mse.min(), rtol=1e-12, atol=0.0)].max()), mse


@dataclass(frozen=True)
class FairCV:
    """§8.3 outer leave-one-run-out CV of the predictors of R.

    predictions: one row per run: run_id, family, R, ``pred_<model>`` and ``err_<model>`` (R − prediction) for
        M0, M1, M2, Mtau, and ``alpha`` (M2's α chosen by inner CV in that fold).
    table: one row per model: mse, rho (1 − MSE/MSE(M0); 0 for M0), rho_lo, rho_hi (paired bootstrap over
        runs of the CV errors, stratified by family), tau_b (Kendall τ-b of the CV predictions vs R).
    rho_boot: model → the resampled ρ. n: runs. level, n_boot, seed: of the bootstrap.
    """

    predictions: pd.DataFrame
    table: pd.DataFrame
    rho_boot: dict[str, np.ndarray] = field(repr=False)
    n: int
    level: float
    n_boot: int
    seed: int

    @property
    def length_matches_mui(self) -> bool:
        """ρ(Mτ) >= ρ(M1): results.md must say that length predicts R as well as MUI does (§8.3)."""
        t = self.table.set_index("model")["rho"]
        return bool(t["Mtau"] >= t["M1"])


def fair_comparison_cv(
    points: pd.DataFrame,
    *,
    run_col: str = "run_id",
    family_col: str = "family",
    perf_col: str = "P",
    mui_col: str = "mui",
    tau_col: str = "tau",
    ref_col: str = "R",
    alphas: ArrayLike = ALPHA_GRID,
    n_boot: int = N_BOOT,
    seed: int = BOOT_SEED,
    level: float = LEVEL,
) -> FairCV:
    """§8.3 on the independent runs (16 clean + 2 bases + 6 contaminated finals at full design): per run P_C,
    L_C = ln MUI_C (MUI in %), ln τ_C and the reference R (mean twin accuracy of all law tasks).

    Models, each with one intercept per family: **M0** R ~ P_C; **M1** R ~ P_C + L_C; **M2** R ~ s_α with
    s_α = α·z(P_C) − (1 − α)·z(L_C), α from the grid chosen by inner leave-one-run-out CV on the fold's fitting
    runs; **Mτ** R ~ P_C + ln τ_C. Outer leave-one-run-out CV gives one error per run and model; ρ = 1 −
    MSE(M1)/MSE(M0) (and the same for M2, Mτ) with a percentile interval from ``n_boot`` resamples of runs
    (``numpy.random.default_rng(seed)``, stratified by family; the same resamples for every model, so the
    errors stay paired).
    """
    need_columns(points, [run_col, family_col, perf_col, mui_col, tau_col, ref_col], "points")
    if points[run_col].duplicated().any():
        raise SaemuiError("points: a run appears twice (one point per independent run, protocol §2)")
    check_boot(n_boot, level)
    p = as_1d(points[perf_col], perf_col)
    lm = np.log(as_1d(points[mui_col], mui_col, positive=True))
    lt = np.log(as_1d(points[tau_col], tau_col, positive=True))
    r = as_1d(points[ref_col], ref_col)
    g = points[family_col].astype(str).to_numpy()
    n = len(r)
    if n < 5:
        raise SaemuiError(f"points: nested leave-one-out CV needs at least 5 runs, got {n}")
    regs = {"M0": p[:, None], "M1": np.column_stack([p, lm]), "Mtau": np.column_stack([p, lt])}
    pred = {k: np.empty(n) for k in CV_MODELS}
    chosen = np.empty(n)
    for i in range(n):
        fit = np.arange(n) != i
        for k, x in regs.items():
            pred[k][i] = _fe_predict(x[fit], r[fit], g[fit], x[[i]], g[[i]])[0]
        a, _ = choose_alpha(p[fit], lm[fit], r[fit], g[fit], alphas)
        chosen[i] = a
        s = _score(p, lm, fit, a)
        pred["M2"][i] = _fe_predict(s[fit], r[fit], g[fit], s[[i]], g[[i]])[0]
    err = {k: r - pred[k] for k in CV_MODELS}
    w = cluster_weights(g, points[run_col].astype(str).to_numpy(), np.random.default_rng(seed), n_boot)
    w = w.astype(float)
    sq0 = w @ err["M0"] ** 2
    rows, boots = [], {}
    for k in CV_MODELS:
        mse = float(np.mean(err[k] ** 2))
        rho = 1 - mse / float(np.mean(err["M0"] ** 2))
        boots[k] = 1 - (w @ err[k] ** 2) / sq0
        lo, hi = percentile_interval(boots[k], level)
        rows.append(
            {"model": k, "mse": mse, "rho": rho, "rho_lo": lo, "rho_hi": hi, "tau_b": kendall_tau(pred[k], r)}
        )
    preds = pd.DataFrame({"run_id": points[run_col].to_numpy(), "family": g, "R": r})
    for k in CV_MODELS:
        preds[f"pred_{k}"] = pred[k]
        preds[f"err_{k}"] = err[k]
    preds["alpha"] = chosen
    return FairCV(preds, pd.DataFrame(rows), boots, n, level, n_boot, seed)


def c3_verdict(cv: FairCV) -> CorollaryVerdict:
    """C3 (§8.3): **supported** iff the lower bound of ρ(M1) > 0; **not supported** iff its upper bound < 0.10;
    **inconclusive** otherwise. M2 and Mτ go into the note, with the flag ρ(Mτ) >= ρ(M1)."""
    t = cv.table.set_index("model")
    m1 = t.loc["M1"]
    note = "; ".join(
        f"ρ({k}) = {t.loc[k, 'rho']:.3g} [{t.loc[k, 'rho_lo']:.3g}, {t.loc[k, 'rho_hi']:.3g}]"
        for k in ("M2", "Mtau")
    )
    alphas = cv.predictions["alpha"]
    note += f"; α per fold {alphas.min():.2f}-{alphas.max():.2f} (median {alphas.median():.2f})"
    if cv.length_matches_mui:
        note += "; ρ(Mτ) >= ρ(M1): length predicts R as well as MUI"
    return CorollaryVerdict(
        "C3",
        "ρ = 1 − MSE(M1)/MSE(M0)",
        float(m1["rho"]),
        (float(m1["rho_lo"]), float(m1["rho_hi"])),
        cv.level,
        cv.n,
        three_way(bool(m1["rho_lo"] > 0), bool(m1["rho_hi"] < 0.10)),
        note,
    )
