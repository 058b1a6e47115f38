"""Utility Law fits: MUI against ln(performance), in both directions.

[P] The paper reports an inverse logarithmic relation between MUI and performance across models. The repo
figure [F] prints ``MUI = -4.632 ln(P) + 28.305`` (P and MUI in %) for 8 instruct models; those constants belong
to that model set only and are not used here.

Two forms are fitted separately because ordinary least squares does not invert (regressing y on x and x on y
give different lines unless the fit is perfect):

* ``"mui_from_perf"``: ``MUI = a * ln(P) + b`` (the paper's printed form [P/F]); ``slope`` = a, ``intercept`` = b.
* ``"perf_from_mui"``: ``P = c + d * ln(MUI)`` [OURS, recommended in the method notes]; ``intercept`` = c,
  ``slope`` = d.

Units: any, as long as they are consistent across points (a change of unit only moves the intercept). The
MUI values must be comparable: same sample count, same unit basis, same key-unit selection, same token
alignment and the same layers; see ``check_comparable``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from scipy.stats import spearmanr
from scipy.stats import t as t_dist

from saemui.analysis.stats import ArrayLike, as_1d, check_level, percentile_interval, same_length
from saemui.errors import SaemuiError

LawForm = Literal["mui_from_perf", "perf_from_mui"]
FORMS: tuple[str, ...] = ("mui_from_perf", "perf_from_mui")


@dataclass(frozen=True)
class LawFit:
    """A least-squares fit of the Utility Law in one direction.

    form: ``"mui_from_perf"`` (MUI = slope * ln P + intercept) or ``"perf_from_mui"`` (P = intercept + slope * ln MUI).
    slope, intercept: the coefficients (a, b) or (d, c) of the form above.
    r2: coefficient of determination of this fit, 1 - SS_res / SS_tot on the response; NaN if the response is
        constant.
    pearson_r: Pearson correlation between ln(regressor) and the response, i.e. the correlation this fit
        linearises (so ``r2 == pearson_r ** 2``). It differs between the two forms.
    spearman_rho: Spearman rank correlation between P and MUI; identical in both forms (ranks ignore the log).
    residuals: observed response minus fitted response, one per point, in input order.
    fitted: fitted response values, one per point.
    residual_sd: sqrt(SS_res / (n - 2)), the residual standard error used to standardise residuals.
    n: number of points (models).
    perf, mui: the input points, kept so bootstraps, plots and contamination scores use the same data.
    labels: optional point names (e.g. model ids), same order as the inputs.
    """

    form: str
    slope: float
    intercept: float
    r2: float
    pearson_r: float
    spearman_rho: float
    residuals: np.ndarray = field(repr=False)
    fitted: np.ndarray = field(repr=False)
    residual_sd: float
    n: int
    perf: np.ndarray = field(repr=False)
    mui: np.ndarray = field(repr=False)
    labels: tuple[str, ...] | None = field(default=None, repr=False)

    def predict(self, x: ArrayLike) -> np.ndarray:
        """The fitted response at regressor values ``x`` (P for ``mui_from_perf``, MUI for ``perf_from_mui``)."""
        xv = as_1d(x, "x", positive=True)
        return self.slope * np.log(xv) + self.intercept

    @property
    def regressor(self) -> np.ndarray:
        return self.perf if self.form == "mui_from_perf" else self.mui

    @property
    def response(self) -> np.ndarray:
        return self.mui if self.form == "mui_from_perf" else self.perf

    @property
    def equation(self) -> str:
        if self.form == "mui_from_perf":
            return f"MUI = {self.slope:.3f}·ln(P) {self.intercept:+.3f}"
        return f"P = {self.intercept:.3f} {self.slope:+.3f}·ln(MUI)"


def _check_form(form: str) -> None:
    if form not in FORMS:
        raise SaemuiError(f"form: expected one of {', '.join(FORMS)}, got {form!r}")


def _validate(perf: ArrayLike, mui: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    p = as_1d(perf, "perf", positive=True)
    m = as_1d(mui, "mui", positive=True)
    n = same_length(perf=p, mui=m)
    if n < 3:
        raise SaemuiError(f"need at least 3 (perf, mui) points to fit and judge a law, got {n}")
    return p, m


def _ols(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Closed-form simple OLS along the last axis (vectorised so a bootstrap is one array operation)."""
    xm = x.mean(axis=-1, keepdims=True)
    ym = y.mean(axis=-1, keepdims=True)
    sxx = ((x - xm) ** 2).sum(axis=-1)
    sxy = ((x - xm) * (y - ym)).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        slope = sxy / sxx
    intercept = ym[..., 0] - slope * xm[..., 0]
    return slope, intercept


def _r2(y: np.ndarray, fitted: np.ndarray) -> np.ndarray:
    ss_res = ((y - fitted) ** 2).sum(axis=-1)
    ss_tot = ((y - y.mean(axis=-1, keepdims=True)) ** 2).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ss_tot > 0, 1 - ss_res / np.where(ss_tot > 0, ss_tot, 1), np.nan)


def fit_law(
    perf: ArrayLike,
    mui: ArrayLike,
    form: LawForm = "mui_from_perf",
    labels: Iterable[str] | None = None,
) -> LawFit:
    """Fit the Utility Law by ordinary least squares on log-transformed regressor.

    perf: performance per model (> 0; e.g. accuracy in %), one point per model at equal sample count.
    mui: MUI per model (> 0), same order.
    form: ``"mui_from_perf"`` (MUI = a ln P + b, the paper's form [P]) or ``"perf_from_mui"``
        (P = c + d ln MUI [OURS]).
    labels: optional model names for plots and residual tables.
    """
    _check_form(form)
    p, m = _validate(perf, mui)
    x, y = (np.log(p), m) if form == "mui_from_perf" else (np.log(m), p)
    if np.ptp(x) == 0:
        what = "perf" if form == "mui_from_perf" else "mui"
        raise SaemuiError(f"{what}: all values are equal, so the slope of the law is undefined")
    slope, intercept = (float(v) for v in _ols(x, y))
    fitted = slope * x + intercept
    resid = y - fitted
    r2 = float(_r2(y, fitted))
    pearson = float(np.corrcoef(x, y)[0, 1]) if np.ptp(y) > 0 else float("nan")
    rho = float(spearmanr(p, m).statistic) if np.ptp(p) > 0 and np.ptp(m) > 0 else float("nan")
    lab = None
    if labels is not None:
        lab = tuple(str(s) for s in labels)
        if len(lab) != len(p):
            raise SaemuiError(f"labels: expected {len(p)} names (one per point), got {len(lab)}")
    return LawFit(
        form=form,
        slope=slope,
        intercept=intercept,
        r2=r2,
        pearson_r=pearson,
        spearman_rho=rho,
        residuals=resid,
        fitted=fitted,
        residual_sd=float(np.sqrt((resid**2).sum() / (len(p) - 2))),
        n=len(p),
        perf=p,
        mui=m,
        labels=lab,
    )


@dataclass(frozen=True)
class LawBootstrap:
    """Percentile bootstrap of a law fit, resampling points (models) with replacement [OURS].

    form: the fitted form (see ``LawFit``).
    level: coverage of the intervals, e.g. 0.95.
    slope_ci, intercept_ci, r2_ci: (lo, hi) percentile intervals.
    slopes, intercepts, r2s: the per-resample values that were kept (for custom summaries and curve bands).
    n_boot: resamples drawn.
    n_degenerate: resamples dropped because every drawn point had the same regressor value (slope undefined).
    seed: seed of the ``numpy.random.default_rng`` used.
    """

    form: str
    level: float
    slope_ci: tuple[float, float]
    intercept_ci: tuple[float, float]
    r2_ci: tuple[float, float]
    slopes: np.ndarray = field(repr=False)
    intercepts: np.ndarray = field(repr=False)
    r2s: np.ndarray = field(repr=False)
    n_boot: int
    n_degenerate: int
    seed: int

    def band(self, grid: ArrayLike, level: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Pointwise percentile band of the fitted curve at regressor values ``grid`` (for plots)."""
        g = as_1d(grid, "grid", positive=True)
        lev = self.level if level is None else level
        check_level(lev)
        curves = self.slopes[:, None] * np.log(g)[None, :] + self.intercepts[:, None]
        tail = (1 - lev) / 2 * 100
        lo, hi = np.percentile(curves, [tail, 100 - tail], axis=0)
        return lo, hi


def bootstrap_ci(fit: LawFit, n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> LawBootstrap:
    """Percentile CIs for a ``LawFit`` by resampling its points with a seeded ``numpy.random.Generator``.

    Resamples whose regressor values are all equal are dropped and counted (the slope is undefined there);
    R² is NaN for resamples with a constant response and is summarised over the finite values.
    """
    check_level(level)
    if n_boot < 1:
        raise SaemuiError(f"n_boot: expected a positive number of resamples, got {n_boot}")
    x = np.log(fit.regressor)
    y = fit.response
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, fit.n, size=(n_boot, fit.n))
    xb, yb = x[idx], y[idx]
    keep = np.ptp(xb, axis=1) > 0
    if keep.sum() < n_boot / 2:
        raise SaemuiError(f"bootstrap: {int((~keep).sum())} of {n_boot} resamples had a constant regressor")
    slopes, intercepts = _ols(xb[keep], yb[keep])
    r2s = _r2(yb[keep], slopes[:, None] * xb[keep] + intercepts[:, None])
    finite_r2 = r2s[np.isfinite(r2s)]
    r2_ci = percentile_interval(finite_r2, level) if len(finite_r2) else (float("nan"), float("nan"))
    return LawBootstrap(
        form=fit.form,
        level=level,
        slope_ci=percentile_interval(slopes, level),
        intercept_ci=percentile_interval(intercepts, level),
        r2_ci=r2_ci,
        slopes=slopes,
        intercepts=intercepts,
        r2s=r2s,
        n_boot=n_boot,
        n_degenerate=int((~keep).sum()),
        seed=seed,
    )


@dataclass(frozen=True)
class SlopeTest:
    """The classical OLS inference on a law fit's slope (normal, independent residuals assumed).

    se: standard error ``residual_sd / sqrt(sum((x - mean x)^2))`` with x the log regressor; t: slope / se;
    df: n - 2; p: two-sided p-value of slope = 0 (Student t with df degrees of freedom); ci: slope ± t_q · se,
    t_q the (1 + level) / 2 quantile. With a handful of models df is tiny and the interval is wide: that is
    the honest width, and the reason a bootstrap over models is reported beside it.
    """

    se: float
    t: float
    df: int
    p: float
    ci: tuple[float, float]
    level: float


def slope_test(fit: LawFit, level: float = 0.95) -> SlopeTest:
    """t-interval and two-sided t-test of a fit's slope (``LawFit.slope``)."""
    check_level(level)
    x = np.log(fit.regressor)
    sxx = float(((x - x.mean()) ** 2).sum())
    df = fit.n - 2
    se = fit.residual_sd / np.sqrt(sxx)
    q = float(t_dist.ppf(0.5 + level / 2, df))
    if se == 0:  # a perfect fit: the slope is known exactly from these points
        return SlopeTest(
            0.0, float("inf") if fit.slope else float("nan"), df, 0.0, (fit.slope, fit.slope), level
        )
    tval = fit.slope / se
    p = float(2 * t_dist.sf(abs(tval), df))
    return SlopeTest(
        float(se), float(tval), df, p, (float(fit.slope - q * se), float(fit.slope + q * se)), level
    )


COMPARABILITY_KEYS: tuple[str, ...] = (
    "n_samples",
    "basis",
    "selection",
    "alignment",
    "layers",
    "first_tokens",
)


def _name(rec: Mapping, i: int) -> str:
    for key in ("model", "name", "id"):
        if key in rec:
            return str(rec[key])
    return f"record {i}"


def check_comparable(
    records: Iterable[Mapping], keys: Iterable[str] = COMPARABILITY_KEYS
) -> dict[str, object]:
    """Refuse to fit MUI values measured under different settings; return the shared settings.

    MUI is a union over samples, so it grows with the sample count [method notes §1.3], and its denominator
    depends on the unit basis (an SAE bundle id or ``"neurons"``) and the key-unit selection rule (e.g.
    ``"topscore:0.9"``, ``"topk:0.001"``). The token alignment (which position's activations score which token)
    changes which units are key, and the layer selection (all layers of each model, or a chosen subset) is the
    denominator's other factor. ``first_tokens`` (MUI over the first T scored positions of each sample, ``None``
    = all) changes how many positions enter the union. Values differing in any of ``keys`` are not on one scale.

    records: one mapping per model with at least ``keys`` (and ideally ``model`` for error messages).
    Raises SaemuiError naming the first model whose setting differs from the first record's, or that lacks a key.
    """
    recs = list(records)
    keys = tuple(keys)
    if not recs:
        raise SaemuiError("records: expected at least one MUI record to compare")
    ref_name = _name(recs[0], 0)
    for i, rec in enumerate(recs):
        if not isinstance(rec, Mapping):
            raise SaemuiError(
                f"record {i}: expected a mapping with keys {', '.join(keys)}, got {type(rec).__name__}"
            )
        missing = [k for k in keys if k not in rec]
        if missing:
            raise SaemuiError(
                f"model {_name(rec, i)!r}: missing {', '.join(missing)} (needed to check comparability)"
            )
    shared = {k: recs[0][k] for k in keys}
    for i, rec in enumerate(recs[1:], start=1):
        for k in keys:
            if rec[k] != shared[k]:
                raise SaemuiError(
                    f"model {_name(rec, i)!r} has {k}={rec[k]!r} but {ref_name!r} has {k}={shared[k]!r}; "
                    f"MUI values are only comparable at equal {k}"
                )
    return shared
