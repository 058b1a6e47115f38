"""Run-level analysis of the Utility Law for Study v2 (``docs/study/protocol.md`` §1, §2, §6).

Input: a tidy pandas DataFrame, one row per measured point (a model on a task at a MUI setting). Columns:

- required: ``run_id`` (one independent training run or base, §2), ``family``, ``task``, ``setting``, the MUI
  column (``mui`` by default, in %), and either ``k`` and ``N`` (correct answers, items) or ``P``;
- optional: ``model`` (label), ``is_checkpoint``, ``contaminated``, ``replicate`` (R* seeds 1-2, §2),
  ``recipe`` (defaults to ``run_id``; R* seeds share one), ``is_base`` (needed for δ of H1b, §6.3),
  ``tokens_per_item`` (τ, needed for H1-L), ``empty_flag`` or ``n_empty`` (§6.5 flag, > 10 % of N), ``mui_nstar``
  and ``n_nonempty`` (§6.5 sensitivity B).

P is the add-half smoothed accuracy ``100 (k + 0.5) / (N + 1)`` (§1) when ``k``/``N`` are given. Checkpoints and
contaminated points never enter a law fit, replicates only the §6.6 fit that adds them; a ``run_id`` repeated among
the remaining points of one task and setting is refused (it would count one run twice).

Fits (§1, §6.1): OLS with one intercept per family (``α_f``) and the slope of the hypothesis' regressor:
H1 ``P ~ α_f + β ln M``; H1b ``M ~ γ_f + a ln P``; H1-L ``P ~ α_f + β ln M + θ ln τ``. Intervals (§6.2): the
classical t-interval with n − p df (p = families + regressors; n − 3 for H1) and the run bootstrap stratified by
family, both at level 1 − α′ with α′ = 0.05/m. Verdicts: §6.4.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
import pandas as pd
from scipy.stats import t as student_t

from saemui.analysis.stats import percentile_interval
from saemui.errors import SaemuiError

Hypothesis = Literal["H1", "H1b", "H1-L"]
HYPOTHESES: tuple[str, ...] = ("H1", "H1b", "H1-L")
VerdictLabel = Literal["supported", "not supported", "inconclusive"]

#: family-wise error rate per hypothesis (§6.2)
FAMILY_ALPHA = 0.05
#: §6.2: bootstrap resamples and seed of the primary interval; §6.4: the seeds of the downgrade check
N_BOOT = 10_000
BOOT_SEED = 0
ROBUSTNESS_SEEDS: tuple[int, ...] = (1, 2, 3, 4)
#: §6.3: smallest effect of interest for H1 (points of P per unit of ln MUI) and the H1b factor
DELTA_H1 = 5 / math.log(2)
DELTA_H1B_FACTOR = 0.10 / math.log(2)
#: §6.5: empty-response share above which a point is flagged; n* below which sensitivity B is not run
EMPTY_SHARE = 0.10
MIN_NSTAR = 100


def alpha_prime(m: int) -> float:
    """α′ = 0.05/m, Bonferroni over the m law tasks, separately per hypothesis (§6.2)."""
    if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or m < 1:
        raise SaemuiError(f"m: expected the number of law tasks (an integer >= 1), got {m!r}")
    return FAMILY_ALPHA / int(m)


def smoothed_perf(k: np.ndarray | float, n: np.ndarray | float) -> np.ndarray:
    """P = 100·(k + 0.5)/(N + 1), the add-half smoothed accuracy in % (§1); never 0, so ln P exists."""
    return 100.0 * (np.asarray(k, dtype=float) + 0.5) / (np.asarray(n, dtype=float) + 1.0)


# ----- selecting the points ---------------------------------------------------------------------------------


def _bool_col(df: pd.DataFrame, col: str) -> pd.Series:
    if col not in df:
        return pd.Series(False, index=df.index)
    s = df[col]
    if s.isna().any():
        raise SaemuiError(f"column {col}: missing values (expected True/False on every row)")
    return s.astype(bool)


def law_points(
    df: pd.DataFrame,
    task: str | Sequence[str],
    setting: str,
    *,
    mui_col: str = "mui",
    include_replicates: bool = False,
) -> pd.DataFrame:
    """The clean law points of ``task`` (or several tasks) at ``setting``, with columns ``P`` and ``M`` added.

    Drops checkpoints and contaminated points (§2) and, unless ``include_replicates``, the R* replicate seeds
    (§2: the law fits use seed 0 only). Raises SaemuiError when a ``run_id`` repeats within one task, when a
    required column is missing, or when P or M is not a positive finite number (no point is imputed, §6.5).
    """
    if not isinstance(df, pd.DataFrame):
        raise SaemuiError(f"points: expected a pandas DataFrame, got {type(df).__name__}")
    need = ["run_id", "family", "task", "setting", mui_col]
    missing = [c for c in need if c not in df]
    if missing:
        raise SaemuiError(f"points: missing column(s) {', '.join(missing)}")
    if not ({"k", "N"} <= set(df) or "P" in df):
        raise SaemuiError("points: need columns k and N (correct answers, items) or P (smoothed accuracy, %)")
    tasks = [task] if isinstance(task, str) else list(task)
    keep = df["task"].isin(tasks) & (df["setting"] == setting)
    keep &= ~_bool_col(df, "is_checkpoint") & ~_bool_col(df, "contaminated")
    if not include_replicates:
        keep &= ~_bool_col(df, "replicate")
    pts = df.loc[keep].copy()
    if pts.empty:
        raise SaemuiError(f"points: no clean law points for task {tasks} at setting {setting!r}")
    dup = pts.loc[pts.duplicated(["task", "run_id"], keep=False), ["task", "run_id"]]
    if len(dup):
        t, r = dup.iloc[0]
        raise SaemuiError(
            f"task {t}, setting {setting}: run_id {r!r} appears {int(((pts.task == t) & (pts.run_id == r)).sum())} "
            "times among independent points (one run is one point, protocol §2)"
        )
    pts["P"] = smoothed_perf(pts["k"], pts["N"]) if {"k", "N"} <= set(pts) else pts["P"].astype(float)
    pts["M"] = pts[mui_col].astype(float)
    for col in ("P", "M"):
        bad = ~np.isfinite(pts[col].to_numpy()) | (pts[col].to_numpy() <= 0)
        if bad.any():
            raise SaemuiError(
                f"run {pts['run_id'].iloc[int(np.argmax(bad))]!r}: {col} must be a positive number "
                f"(a logarithm is taken), got {pts[col].iloc[int(np.argmax(bad))]}"
            )
    if "recipe" not in pts:
        pts["recipe"] = pts["run_id"]
    return pts.reset_index(drop=True)


def empty_flags(points: pd.DataFrame) -> pd.Series:
    """§6.5 flag: more than 10 % empty responses (``empty_flag`` if given, else ``n_empty > 0.10·N``)."""
    if "empty_flag" in points:
        return _bool_col(points, "empty_flag")
    if "n_empty" in points and "N" in points:
        return points["n_empty"].astype(float) > EMPTY_SHARE * points["N"].astype(float)
    return pd.Series(False, index=points.index)


# ----- the fit ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FEFit:
    """OLS with one intercept per group (family, or family × task for the pooled fit) [§6.1].

    slope: coefficient of the first regressor (β, a or β_L). se: its classical OLS standard error.
    coef: all regressor coefficients (e.g. β_L and θ for H1-L), then the group intercepts in ``groups`` order.
    df: residual degrees of freedom n − p. rss: residual sum of squares. n: points.
    groups: intercept group labels. residuals: y − fitted, in row order.
    """

    slope: float
    se: float
    coef: np.ndarray = field(repr=False)
    df: int
    rss: float
    n: int
    groups: tuple[str, ...]
    residuals: np.ndarray = field(repr=False)
    cov: np.ndarray = field(repr=False)


def design(x: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, tuple[str, ...]]:
    """Design matrix ``[regressors | one indicator per group]`` (no global intercept)."""
    labels = tuple(sorted({str(g) for g in groups}))
    g = np.asarray([str(v) for v in groups])
    dummies = (g[:, None] == np.asarray(labels)[None, :]).astype(float)
    x2 = np.asarray(x, dtype=float).reshape(len(g), -1)
    return np.hstack([x2, dummies]), labels


def fit_fe(y: np.ndarray, x: np.ndarray, groups: np.ndarray) -> FEFit:
    """Least squares of ``y`` on the regressor column(s) ``x`` with an intercept per group (§6.1)."""
    y = np.asarray(y, dtype=float)
    X, labels = design(x, groups)
    n, p = X.shape
    if n <= p:
        raise SaemuiError(f"fit: {n} points for {p} parameters; need more points than parameters")
    if np.linalg.matrix_rank(X) < p:
        raise SaemuiError(
            "fit: the regressors are collinear with the intercepts (e.g. a family with one value)"
        )
    xtx_inv = np.linalg.inv(X.T @ X)
    coef = xtx_inv @ X.T @ y
    resid = y - X @ coef
    rss = float(resid @ resid)
    df = n - p
    cov = rss / df * xtx_inv
    return FEFit(float(coef[0]), float(math.sqrt(cov[0, 0])), coef, df, rss, n, labels, resid, cov)


def t_interval(fit: FEFit, alpha: float) -> tuple[float, float]:
    """slope ± t(1 − α/2; df)·SE, the classical two-sided t-interval at level 1 − α (§6.2)."""
    q = float(student_t.ppf(1 - alpha / 2, fit.df))
    return fit.slope - q * fit.se, fit.slope + q * fit.se


def cr1_interval(fit: FEFit, x: np.ndarray, groups: np.ndarray, clusters: np.ndarray, alpha: float) -> dict:
    """Cluster-robust (CR1) t-interval for the slope with (clusters − 1) df (§6.6 pooled fit).

    V = (n − 1)/(n − p) · C/(C − 1) · (X'X)⁻¹ [Σ_c X_c' u_c u_c' X_c] (X'X)⁻¹ (Stata's ``vce(cluster)``).
    """
    X, _ = design(x, groups)
    n, p = X.shape
    cl = np.asarray([str(c) for c in clusters])
    labels = sorted(set(cl))
    c = len(labels)
    if c < 2:
        raise SaemuiError("CR1: need at least 2 clusters")
    bread = np.linalg.inv(X.T @ X)
    meat = np.zeros((p, p))
    for lab in labels:
        s = X[cl == lab].T @ fit.residuals[cl == lab]
        meat += np.outer(s, s)
    v = (n - 1) / (n - p) * c / (c - 1) * bread @ meat @ bread
    se = float(math.sqrt(v[0, 0]))
    q = float(student_t.ppf(1 - alpha / 2, c - 1))
    return {"se": se, "df": c - 1, "ci": (fit.slope - q * se, fit.slope + q * se), "n_clusters": c}


def regressors(points: pd.DataFrame, hypothesis: str) -> tuple[np.ndarray, np.ndarray]:
    """(y, x) of a hypothesis (§1): H1 (P, ln M); H1b (M, ln P); H1-L (P, [ln M, ln τ])."""
    if hypothesis == "H1":
        return points["P"].to_numpy(float), np.log(points["M"].to_numpy(float))[:, None]
    if hypothesis == "H1b":
        return points["M"].to_numpy(float), np.log(points["P"].to_numpy(float))[:, None]
    if hypothesis == "H1-L":
        if "tokens_per_item" not in points:
            raise SaemuiError(
                "H1-L: column tokens_per_item (τ, scored positions per non-empty sample) is missing"
            )
        tau = points["tokens_per_item"].to_numpy(float)
        if not (np.isfinite(tau) & (tau > 0)).all():
            raise SaemuiError("H1-L: tokens_per_item must be positive numbers")
        return points["P"].to_numpy(float), np.column_stack(
            [np.log(points["M"].to_numpy(float)), np.log(tau)]
        )
    raise SaemuiError(f"hypothesis: expected one of {', '.join(HYPOTHESES)}, got {hypothesis!r}")


# ----- the run bootstrap ------------------------------------------------------------------------------------


def cluster_weights(
    strata: np.ndarray, clusters: np.ndarray, rng: np.random.Generator, size: int
) -> np.ndarray:
    """``size`` bootstrap resamples as row weights, shape ``(size, rows)``: within each stratum, as many
    clusters as it has are drawn with replacement, and every row of a cluster gets the number of times its
    cluster was drawn (§6.2: runs within family, family sizes kept; §6.6: all tasks of a run together).
    A weighted fit equals the fit on the rows repeated by their weights."""
    st = np.asarray([str(v) for v in strata])
    cl = np.asarray([str(v) for v in clusters])
    w = np.zeros((size, len(st)), dtype=np.int64)
    for s in sorted(set(st)):
        ids = sorted(set(cl[st == s]))
        draws = rng.integers(0, len(ids), size=(size, len(ids)))
        counts = np.zeros((size, len(ids)), dtype=np.int64)
        np.add.at(counts, (np.arange(size)[:, None], draws), 1)
        for j, c in enumerate(ids):
            w[:, (st == s) & (cl == c)] = counts[:, j : j + 1]
    return w


def _weighted_fe_slopes(
    y: np.ndarray, x: np.ndarray, gcode: np.ndarray, w: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Slopes of the FE fit for every row of weights ``w`` (Frisch-Waugh: regressors and response demeaned
    within group with the weights). Returns (coefficients ``(B, k)``, full-rank mask ``(B,)``)."""
    n_groups = int(gcode.max()) + 1
    onehot = (gcode[None, :] == np.arange(n_groups)[:, None]).astype(float)  # (G, n)
    wg = w @ onehot.T  # (B, G) weight per group
    with np.errstate(invalid="ignore", divide="ignore"):

        def demean(v: np.ndarray) -> np.ndarray:
            means = (w * v[None, :]) @ onehot.T / wg  # (B, G)
            return v[None, :] - np.nan_to_num(means)[:, gcode]

        xd = np.stack([demean(x[:, j]) for j in range(x.shape[1])], axis=-1)  # (B, n, k)
        yd = demean(y)  # (B, n)
    wx = xd * w[:, :, None]
    xtx = np.einsum("bnk,bnl->bkl", wx, xd)
    xty = np.einsum("bnk,bn->bk", wx, yd)
    full = np.linalg.matrix_rank(xtx) == x.shape[1]
    coef = np.full((len(w), x.shape[1]), np.nan)
    if full.any():
        coef[full] = np.linalg.solve(xtx[full], xty[full][..., None])[..., 0]
    return coef, full


def _distinct_ok(x0: np.ndarray, codes: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Per resample: every group (codes) has >= 2 distinct values of ``x0`` among its drawn rows."""
    _, xcode = np.unique(x0, return_inverse=True)
    ok = np.ones(len(w), dtype=bool)
    for g in np.unique(codes):
        present = w[:, codes == g] > 0
        xc = xcode[codes == g][None, :]
        lo = np.where(present, xc, np.iinfo(np.int64).max).min(axis=1)
        hi = np.where(present, xc, -1).max(axis=1)
        ok &= hi > lo
    return ok


@dataclass(frozen=True)
class BootResult:
    """Percentile run-bootstrap interval of the slope (§6.2).

    ci: (lo, hi) at ``level``. slopes: the B slopes. weights: the B resamples as row weights (see
    :func:`cluster_weights`). n_redrawn: resamples redrawn because a family (or intercept group) had fewer than
    2 distinct values of the main regressor (the protocol's rule, reported). n_redrawn_rank: resamples redrawn
    because the design was otherwise rank-deficient (only possible with a second regressor).
    """

    ci: tuple[float, float]
    level: float
    slopes: np.ndarray = field(repr=False)
    weights: np.ndarray = field(repr=False)
    n_boot: int
    seed: int
    n_redrawn: int
    n_redrawn_rank: int


def run_bootstrap(
    y: np.ndarray,
    x: np.ndarray,
    groups: np.ndarray,
    *,
    strata: np.ndarray,
    clusters: np.ndarray,
    level: float,
    n_boot: int = N_BOOT,
    seed: int = BOOT_SEED,
) -> BootResult:
    """Stratified cluster bootstrap of the slope: ``numpy.random.default_rng(seed)``, B resamples, refit, an
    equal-tailed percentile interval at ``level`` (§6.2). Resamples are drawn in chunks of B; a degenerate
    resample is dropped and replaced by the next one drawn (the protocol's "redrawn"), and counted. The
    distinct-value rule is checked per family (the strata, as §6.2 says) and per intercept group (else α_ft is
    not identified; in the primary fit the two coincide)."""
    if n_boot < 1:
        raise SaemuiError(f"n_boot: expected a positive number of resamples, got {n_boot}")
    y = np.asarray(y, dtype=float)
    x = np.asarray(x, dtype=float).reshape(len(y), -1)
    _, gcode = np.unique(np.asarray([str(v) for v in groups]), return_inverse=True)
    _, scode = np.unique(np.asarray([str(v) for v in strata]), return_inverse=True)
    rng = np.random.default_rng(seed)
    kept_s: list[np.ndarray] = []
    kept_w: list[np.ndarray] = []
    n_kept = redrawn = redrawn_rank = 0
    while n_kept < n_boot:
        if redrawn + redrawn_rank > 100 * n_boot:
            raise SaemuiError(
                "bootstrap: almost every resample is degenerate (too few distinct runs per family)"
            )
        w = cluster_weights(strata, clusters, rng, n_boot)
        ok = _distinct_ok(x[:, 0], gcode, w) & _distinct_ok(x[:, 0], scode, w)
        coef, full = _weighted_fe_slopes(y, x, gcode, w[ok])
        take = np.flatnonzero(ok)[full][: n_boot - n_kept]
        # count only the draws up to the last one used, as if resamples had been drawn one at a time
        last = take[-1] + 1 if len(take) else len(w)
        redrawn += int((~ok[:last]).sum())
        ok_idx = np.flatnonzero(ok[:last])
        redrawn_rank += int((~full[: len(ok_idx)]).sum())
        kept_s.append(coef[full][: len(take), 0])
        kept_w.append(w[take])
        n_kept += len(take)
    slopes = np.concatenate(kept_s)
    return BootResult(
        percentile_interval(slopes, level),
        level,
        slopes,
        np.concatenate(kept_w),
        n_boot,
        seed,
        redrawn,
        redrawn_rank,
    )


# ----- verdicts ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """§6.4 decision for one hypothesis, task and setting.

    label: ``"supported"``, ``"not supported"`` or ``"inconclusive"``.
    supported: U_t < 0 and U_b < 0. contradicted: L_t > 0 and L_b > 0. absent: L_t > −δ and L_b > −δ and not
    contradicted. An interval inside (−δ, 0) is both "supported" and "absent"; the protocol lists "supported"
    first and this function applies the rules in that order (label "supported", ``absent`` still True).
    downgraded: the reasons a "supported" became "inconclusive" (§6.4 downgrade), empty otherwise.
    """

    label: VerdictLabel
    supported: bool
    contradicted: bool
    absent: bool
    downgraded: tuple[str, ...] = ()


def decide(t_ci: tuple[float, float], boot_ci: tuple[float, float], delta: float) -> Verdict:
    """The §6.4 rule from the t-interval [L_t, U_t], the bootstrap interval [L_b, U_b] and δ > 0."""
    (lt, ut), (lb, ub) = t_ci, boot_ci
    if not delta > 0:
        raise SaemuiError(f"delta: expected a positive smallest effect of interest, got {delta}")
    supported = ut < 0 and ub < 0
    contradicted = lt > 0 and lb > 0
    absent = lt > -delta and lb > -delta and not contradicted
    if supported:
        label: VerdictLabel = "supported"
    elif contradicted or absent:
        label = "not supported"
    else:
        label = "inconclusive"
    return Verdict(label, supported, contradicted, absent)


def downgrade(
    verdict: Verdict,
    sensitivity: Mapping[str, tuple[tuple[float, float], tuple[float, float]] | None],
    seed_verdicts: Mapping[int, Verdict],
) -> Verdict:
    """§6.4 downgrade: "supported" becomes "inconclusive" if U_t >= 0 or U_b >= 0 in a sensitivity fit
    (name -> (t_ci, boot_ci); None = not run) or if the verdict changes under another bootstrap seed."""
    if verdict.label != "supported":
        return verdict
    reasons = [
        f"sensitivity {name}: U >= 0"
        for name, cis in sensitivity.items()
        if cis is not None and (cis[0][1] >= 0 or cis[1][1] >= 0)
    ]
    reasons += [
        f"bootstrap seed {s}: {v.label}" for s, v in seed_verdicts.items() if v.label != verdict.label
    ]
    if not reasons:
        return verdict
    return replace(verdict, label="inconclusive", downgraded=tuple(reasons))


def overall_verdict(labels: Sequence[Verdict], m: int) -> VerdictLabel:
    """Per hypothesis over the m law tasks at P0 (§6.4): supported iff supported on more than m/2 tasks and
    contradicted on none; not supported iff not supported on more than m/2; inconclusive otherwise."""
    if len(labels) != m:
        raise SaemuiError(f"overall verdict: expected one verdict per law task ({m}), got {len(labels)}")
    n_sup = sum(v.label == "supported" for v in labels)
    n_not = sum(v.label == "not supported" for v in labels)
    if n_sup > m / 2 and not any(v.contradicted for v in labels):
        return "supported"
    if n_not > m / 2:
        return "not supported"
    return "inconclusive"


def robust_across_shares(
    primary: Verdict, slopes: Mapping[str, float], verdicts: Mapping[str, Verdict]
) -> bool:
    """§6.6: a primary "supported" is robust across shares iff the slope is < 0 at every share and no share is
    contradicted (``slopes``/``verdicts``: share setting -> value, all three shares including P0)."""
    return (
        primary.label == "supported"
        and all(s < 0 for s in slopes.values())
        and not any(v.contradicted for v in verdicts.values())
    )


# ----- one task ---------------------------------------------------------------------------------------------


def delta_for(hypothesis: str, points: pd.DataFrame) -> float:
    """δ of §6.3: 5/ln 2 for H1 and H1-L; 0.10·M̄/ln 2 for H1b, M̄ the mean MUI of the bases (``is_base``)."""
    if hypothesis != "H1b":
        return DELTA_H1
    bases = points.loc[_bool_col(points, "is_base")]
    if bases.empty or set(bases["family"]) != set(points["family"]) or bases["family"].duplicated().any():
        raise SaemuiError("H1b: δ needs exactly one base point per family (column is_base)")
    return DELTA_H1B_FACTOR * float(bases["M"].mean())


@dataclass(frozen=True)
class LawTest:
    """One hypothesis on one task at one setting (§6.1-§6.5).

    fit: the FE fit; t_ci / boot: the intervals at 1 − α′; delta: δ of §6.3; verdict: the §6.4 verdict after the
    downgrade; raw_verdict: before it; seed_verdicts: the verdict with the bootstrap of seeds 1-4;
    sensitivity: name -> (t_ci, boot_ci) or None with the reason in ``notes``; n, n_by_family: points used.
    """

    hypothesis: str
    task: str
    setting: str
    alpha: float
    fit: FEFit
    t_ci: tuple[float, float]
    boot: BootResult
    delta: float
    raw_verdict: Verdict
    verdict: Verdict
    seed_verdicts: dict[int, Verdict]
    sensitivity: dict[str, tuple[tuple[float, float], tuple[float, float]] | None]
    notes: dict[str, str]
    n: int
    n_by_family: dict[str, int]


def _intervals(
    pts: pd.DataFrame, hypothesis: str, alpha: float, *, n_boot: int, seed: int, cluster_col: str = "run_id"
) -> tuple[FEFit, tuple[float, float], BootResult]:
    y, x = regressors(pts, hypothesis)
    g = pts["family"].to_numpy()
    fit = fit_fe(y, x, g)
    boot = run_bootstrap(
        y, x, g, strata=g, clusters=pts[cluster_col].to_numpy(), level=1 - alpha, n_boot=n_boot, seed=seed
    )
    return fit, t_interval(fit, alpha), boot


def law_test(
    df: pd.DataFrame,
    task: str,
    setting: str,
    hypothesis: Hypothesis,
    m: int,
    *,
    mui_col: str = "mui",
    n_boot: int = N_BOOT,
    seed: int = BOOT_SEED,
    robustness_seeds: Sequence[int] = ROBUSTNESS_SEEDS,
    delta: float | None = None,
) -> LawTest:
    """The primary test of one hypothesis on one law task at one setting, with its §6.4 verdict.

    m: number of law tasks (α′ = 0.05/m). mui_col: the MUI column (e.g. a teacher-forced MUI for H1-TF-G/B,
    which use H1's form and δ). delta: override δ (default §6.3). Sensitivity A drops the flagged points;
    sensitivity B uses column ``mui_nstar`` and is not run when n* = min ``n_nonempty`` < 100 or the column is
    absent (the reason is in ``notes``).
    """
    alpha = alpha_prime(m)
    pts = law_points(df, task, setting, mui_col=mui_col)
    fit, t_ci, boot = _intervals(pts, hypothesis, alpha, n_boot=n_boot, seed=seed)
    d = delta_for(hypothesis, pts) if delta is None else float(delta)
    raw = decide(t_ci, boot.ci, d)
    seed_verdicts = {
        s: decide(t_ci, _intervals(pts, hypothesis, alpha, n_boot=n_boot, seed=s)[2].ci, d)
        for s in robustness_seeds
    }
    sens: dict[str, tuple[tuple[float, float], tuple[float, float]] | None] = {}
    notes: dict[str, str] = {}
    flagged = empty_flags(pts)
    if flagged.any():
        _, tA, bA = _intervals(
            pts.loc[~flagged].reset_index(drop=True), hypothesis, alpha, n_boot=n_boot, seed=seed
        )
        sens["A"] = (tA, bA.ci)
        notes["A"] = f"{int(flagged.sum())} flagged point(s) removed"
    else:
        sens["A"] = (t_ci, boot.ci)
        notes["A"] = "no flagged point: same as the primary fit"
    if "mui_nstar" not in pts or "n_nonempty" not in pts:
        sens["B"] = None
        notes["B"] = "not run: columns mui_nstar / n_nonempty absent"
    elif int(pts["n_nonempty"].min()) < MIN_NSTAR:
        sens["B"] = None
        notes["B"] = f"not run: n* = {int(pts['n_nonempty'].min())} < {MIN_NSTAR}"
    else:
        ptsB = pts.assign(M=pts["mui_nstar"].astype(float))
        _, tB, bB = _intervals(ptsB, hypothesis, alpha, n_boot=n_boot, seed=seed)
        sens["B"] = (tB, bB.ci)
        notes["B"] = f"n* = {int(pts['n_nonempty'].min())}"
    return LawTest(
        hypothesis=hypothesis,
        task=task,
        setting=setting,
        alpha=alpha,
        fit=fit,
        t_ci=t_ci,
        boot=boot,
        delta=d,
        raw_verdict=raw,
        verdict=downgrade(raw, sens, seed_verdicts),
        seed_verdicts=seed_verdicts,
        sensitivity=sens,
        notes=notes,
        n=len(pts),
        n_by_family={str(k): int(v) for k, v in pts["family"].value_counts().sort_index().items()},
    )


# ----- secondary fits (§6.6) --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SecondaryFit:
    """A §6.6 secondary fit: slope, its t-interval (classical, or CR1 for the pooled fit) and bootstrap interval
    at 1 − α′, and the §6.4 verdict (labelled secondary by the caller). ``what`` names the fit."""

    what: str
    slope: float
    t_ci: tuple[float, float]
    boot: BootResult
    verdict: Verdict
    n: int
    df: int


def secondary_fits(
    df: pd.DataFrame,
    task: str,
    setting: str,
    hypothesis: Hypothesis,
    m: int,
    *,
    mui_col: str = "mui",
    n_boot: int = N_BOOT,
    seed: int = BOOT_SEED,
    delta: float | None = None,
) -> dict[str, SecondaryFit]:
    """§6.6 on one task: per-family slopes (no α_f, df n − 2), the fit without α_f (the paper's form), and R*
    seeds 1-2 added (bootstrap over recipes). Keys ``family:<name>``, ``no_fe``, ``replicates``."""
    alpha = alpha_prime(m)
    pts = law_points(df, task, setting, mui_col=mui_col)
    d = delta_for(hypothesis, pts) if delta is None else float(delta)
    out: dict[str, SecondaryFit] = {}

    def one(what: str, p: pd.DataFrame, groups: np.ndarray, cluster_col: str) -> None:
        y, x = regressors(p, hypothesis)
        fit = fit_fe(y, x, groups)
        t_ci = t_interval(fit, alpha)
        boot = run_bootstrap(
            y,
            x,
            groups,
            strata=p["family"].to_numpy(),
            clusters=p[cluster_col].to_numpy(),
            level=1 - alpha,
            n_boot=n_boot,
            seed=seed,
        )
        out[what] = SecondaryFit(what, fit.slope, t_ci, boot, decide(t_ci, boot.ci, d), fit.n, fit.df)

    for fam in sorted(pts["family"].unique()):
        p = pts.loc[pts["family"] == fam].reset_index(drop=True)
        one(f"family:{fam}", p, p["family"].to_numpy(), "run_id")
    one("no_fe", pts, np.zeros(len(pts)), "run_id")
    rep = law_points(df, task, setting, mui_col=mui_col, include_replicates=True)
    if len(rep) > len(pts):
        one("replicates", rep, rep["family"].to_numpy(), "recipe")
    return out


def pooled_fit(
    df: pd.DataFrame,
    tasks: Sequence[str],
    setting: str,
    hypothesis: Hypothesis,
    m: int | None = None,
    *,
    mui_col: str = "mui",
    n_boot: int = N_BOOT,
    seed: int = BOOT_SEED,
    delta: float | None = None,
) -> SecondaryFit:
    """§6.6 pooled fit over the law tasks: ``y_it = α_ft + slope·x_it`` (an intercept per family × task), a
    cluster bootstrap over runs (all tasks of a run resampled together, stratified by family) and a CR1
    t-interval with (clusters − 1) df. m defaults to ``len(tasks)``. δ for H1b: the mean of the per-task δ."""
    tasks = list(tasks)
    mm = len(tasks) if m is None else m
    alpha = alpha_prime(mm)
    pts = law_points(df, tasks, setting, mui_col=mui_col)
    y, x = regressors(pts, hypothesis)
    groups = (pts["family"].astype(str) + "|" + pts["task"].astype(str)).to_numpy()
    fit = fit_fe(y, x, groups)
    cr1 = cr1_interval(fit, x, groups, pts["run_id"].to_numpy(), alpha)
    boot = run_bootstrap(
        y,
        x,
        groups,
        strata=pts["family"].to_numpy(),
        clusters=pts["run_id"].to_numpy(),
        level=1 - alpha,
        n_boot=n_boot,
        seed=seed,
    )
    if delta is None:
        d = float(np.mean([delta_for(hypothesis, pts.loc[pts["task"] == t]) for t in tasks]))
    else:
        d = float(delta)
    return SecondaryFit("pooled", fit.slope, cr1["ci"], boot, decide(cr1["ci"], boot.ci, d), fit.n, cr1["df"])


__all__ = [
    "BootResult",
    "DELTA_H1",
    "FEFit",
    "HYPOTHESES",
    "LawTest",
    "SecondaryFit",
    "Verdict",
    "alpha_prime",
    "cr1_interval",
    "decide",
    "delta_for",
    "design",
    "downgrade",
    "empty_flags",
    "fit_fe",
    "law_points",
    "overall_verdict",
    "pooled_fit",
    "regressors",
    "robust_across_shares",
    "run_bootstrap",
    "secondary_fits",
    "smoothed_perf",
    "cluster_weights",
    "t_interval",
    "law_test",
]
