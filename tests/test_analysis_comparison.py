"""Corollary 3: Kendall tau-b vs scipy and a hand count, scores by hand, rank changes, alpha sweep; the §8.3
nested leave-one-run-out CV against explicit loops, ρ with its paired run bootstrap, the C3 verdict."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from saemui.analysis.comparison import (
    ALPHA_GRID,
    alpha_sensitivity,
    c3_verdict,
    choose_alpha,
    fair_comparison_cv,
    kendall_tau,
    kendall_tau_ci,
    law_residual_score,
    rank_changes,
    utility_adjusted_score,
)
from saemui.analysis.law import fit_law
from saemui.analysis.stats import zscore
from saemui.errors import SaemuiError


def test_kendall_tau_hand_count_with_ties():
    # pairs of a=[1,2,2,3], b=[1,3,2,2]: (0,1) C, (0,2) C, (0,3) C, (1,2) tied in a, (1,3) D, (2,3) tied in b
    # tau_b = (3 - 1) / sqrt((6 - 1) (6 - 1)) = 0.4
    assert kendall_tau([1, 2, 2, 3], [1, 3, 2, 2]) == pytest.approx(0.4)
    assert stats.kendalltau([1, 2, 2, 3], [1, 3, 2, 2]).statistic == pytest.approx(0.4)
    assert kendall_tau([1, 2, 3], [3, 2, 1]) == -1.0
    assert np.isnan(kendall_tau([1, 1, 1], [1, 2, 3]))


@pytest.mark.parametrize("seed", range(8))
def test_kendall_tau_matches_scipy(seed):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 5, size=12)
    b = a + rng.integers(-3, 4, size=12)
    assert kendall_tau(a, b) == pytest.approx(stats.kendalltau(a, b, variant="b").statistic, abs=1e-12)


def test_kendall_tau_ci_matches_independent_resampling():
    a = np.array([1.0, 2, 3, 4, 5, 6, 7])
    b = np.array([2.0, 1, 3, 5, 4, 7, 6])
    ci = kendall_tau_ci(a, b, n_boot=200, seed=3)
    rng = np.random.default_rng(3)
    taus = [stats.kendalltau(a[i], b[i]).statistic for i in rng.integers(0, 7, size=(200, 7))]
    taus = np.array([t for t in taus if np.isfinite(t)])
    assert ci.tau == pytest.approx(stats.kendalltau(a, b).statistic)
    assert (ci.lo, ci.hi) == pytest.approx(tuple(np.percentile(taus, [2.5, 97.5])))
    assert ci.n_undefined == 200 - len(taus)
    assert ci.lo <= ci.tau <= ci.hi


def test_utility_adjusted_score_by_hand():
    p, m = [1.0, 2.0, 3.0], [1.0, 1.0, 4.0]
    zp = np.array([-1, 0, 1]) * np.sqrt(3 / 2)  # population SD of 1,2,3 is sqrt(2/3)
    zm = (np.array(m) - 2) / np.sqrt(2)  # mean 2, population SD sqrt(2)
    assert zscore(p) == pytest.approx(zp)
    assert utility_adjusted_score(p, m, 0.3) == pytest.approx(0.3 * zp - 0.7 * zm)
    assert utility_adjusted_score(p, m, 1.0) == pytest.approx(zp)
    assert utility_adjusted_score(p, [5, 5, 5], 0.5) == pytest.approx(0.5 * zp)
    # two models: higher accuracy wins at alpha=1, fewer units win at alpha=0
    assert np.argmax(utility_adjusted_score([80, 78], [10, 5], 1.0)) == 0
    assert np.argmax(utility_adjusted_score([80, 78], [10, 5], 0.0)) == 1
    with pytest.raises(SaemuiError, match="alpha"):
        utility_adjusted_score(p, m, 1.5)


def test_law_residual_score_by_hand():
    perf, mui = [30.0, 45.0, 60.0, 80.0], [12.0, 10.5, 9.0, 8.2]
    fit = fit_law(perf, mui, form="perf_from_mui")
    d, c = np.polyfit(np.log(mui), perf, 1)
    assert law_residual_score(fit, [50.0], [10.0]) == pytest.approx([50 - (c + d * np.log(10.0))])
    with pytest.raises(SaemuiError, match="perf_from_mui"):
        law_residual_score(fit_law(perf, mui), perf, mui)


def test_rank_changes_by_hand():
    out = rank_changes(["a", "b", "c", "d"], perf=[70, 80, 60, 80], score=[0.5, -0.2, 1.0, 0.1])
    assert out["model"].tolist() == ["c", "a", "d", "b"]
    assert out["rank_score"].tolist() == [1, 2, 3, 4]
    assert out["rank_perf"].tolist() == [4, 3, 1, 1]  # b and d tie on accuracy and share rank 1
    assert out["change"].tolist() == [3, 1, -2, -3]


def test_alpha_sensitivity_table():
    names = ["a", "b", "c", "d"]
    perf = [80.0, 78.0, 60.0, 50.0]
    mui = [10.0, 5.0, 9.0, 11.0]
    tab = alpha_sensitivity(perf, mui, names, reference_rank=[2, 1, 3, 4], n_boot=100)
    assert tab["alpha"].tolist() == pytest.approx(np.linspace(0, 1, 11))
    last = tab.iloc[-1]
    assert last["tau_vs_perf"] == 1.0 and last["best"] == "a"
    assert [last[f"rank:{n}"] for n in names] == [1, 2, 3, 4]
    first = tab.iloc[0]  # alpha = 0: fewest units first -> b, c, a, d
    assert first["best"] == "b"
    assert [first[f"rank:{n}"] for n in names] == [3, 1, 2, 4]
    assert first["tau_vs_ref"] == pytest.approx(stats.kendalltau(-np.array(mui), [-2, -1, -3, -4]).statistic)
    assert {"tau_ref_lo", "tau_ref_hi"} <= set(tab.columns)
    with pytest.raises(SaemuiError, match="names"):
        alpha_sensitivity(perf, mui, names[:2])


# ----- Study v2 §8.3 ------------------------------------------------------------------------------------------


def _cv_points(n_s=6, n_g=5, seed=2):
    rng = np.random.default_rng(seed)
    n = n_s + n_g
    fam = np.array(["S"] * n_s + ["G"] * n_g)
    p = rng.uniform(10, 80, n)
    mui = np.exp(rng.normal(1.5, 0.3, n))
    tau = np.exp(rng.normal(2.5, 0.4, n))
    r = 0.3 * p - 4 * np.log(mui) + np.where(fam == "S", 5.0, 0.0) + rng.normal(0, 2, n)
    return pd.DataFrame(
        {"run_id": [f"r{i:02d}" for i in range(n)], "family": fam, "P": p, "mui": mui, "tau": tau, "R": r}
    )


def _ols_fe_pred(X, y, fam, x_new, fam_new):
    labels = sorted(set(fam))
    D = np.column_stack([X] + [(fam == lab).astype(float) for lab in labels])
    coef = np.linalg.lstsq(D, y, rcond=None)[0]
    d_new = np.r_[x_new, [float(fam_new == lab) for lab in labels]]
    return float(d_new @ coef)


def _z_fit(v, fit):
    return (v - v[fit].mean()) / v[fit].std()


def _m2_loo_mse(p, lm, r, fam, alpha):
    errs = []
    for i in range(len(r)):
        fit = np.arange(len(r)) != i
        s = alpha * _z_fit(p, fit) - (1 - alpha) * _z_fit(lm, fit)
        errs.append(r[i] - _ols_fe_pred(s[fit][:, None], r[fit], fam[fit], [s[i]], fam[i]))
    return float(np.mean(np.square(errs)))


def test_nested_cv_equals_explicit_loops():
    pts = _cv_points()
    grid = [0.0, 0.25, 0.5, 1.0]
    n_boot = 300
    cv = fair_comparison_cv(pts, alphas=grid, n_boot=n_boot, seed=0)
    p, lm, lt, r = pts.P.to_numpy(), np.log(pts.mui.to_numpy()), np.log(pts.tau.to_numpy()), pts.R.to_numpy()
    fam = pts.family.to_numpy()
    n = len(r)
    pred = {k: np.empty(n) for k in ("M0", "M1", "M2", "Mtau")}
    alphas = np.empty(n)
    for i in range(n):
        fit = np.arange(n) != i
        pred["M0"][i] = _ols_fe_pred(p[fit][:, None], r[fit], fam[fit], [p[i]], fam[i])
        pred["M1"][i] = _ols_fe_pred(np.c_[p, lm][fit], r[fit], fam[fit], [p[i], lm[i]], fam[i])
        pred["Mtau"][i] = _ols_fe_pred(np.c_[p, lt][fit], r[fit], fam[fit], [p[i], lt[i]], fam[i])
        inner = [_m2_loo_mse(p[fit], lm[fit], r[fit], fam[fit], a) for a in grid]
        a = grid[int(np.argmin(inner))]
        alphas[i] = a
        s = a * _z_fit(p, fit) - (1 - a) * _z_fit(lm, fit)
        pred["M2"][i] = _ols_fe_pred(s[fit][:, None], r[fit], fam[fit], [s[i]], fam[i])
    assert cv.predictions["alpha"].to_numpy() == pytest.approx(alphas)
    tab = cv.table.set_index("model")
    mse0 = np.mean((r - pred["M0"]) ** 2)
    for k in pred:
        assert cv.predictions[f"pred_{k}"].to_numpy() == pytest.approx(pred[k])
        mse = np.mean((r - pred[k]) ** 2)
        assert tab.loc[k, "mse"] == pytest.approx(mse)
        assert tab.loc[k, "rho"] == pytest.approx(1 - mse / mse0)
        assert tab.loc[k, "tau_b"] == pytest.approx(stats.kendalltau(pred[k], r).statistic)
    # paired bootstrap over runs by hand: within each family (sorted names, runs sorted by id) draw with
    # replacement as many runs as it has; the same draw for every model
    rng = np.random.default_rng(0)
    groups = {f: sorted(pts.loc[pts.family == f, "run_id"]) for f in sorted(set(fam))}
    draws = {f: rng.integers(0, len(ids), size=(n_boot, len(ids))) for f, ids in groups.items()}
    e = {k: pd.Series(r - pred[k], index=pts.run_id) for k in pred}
    rho1 = []
    for b in range(n_boot):
        runs = [groups[f][i] for f in groups for i in draws[f][b]]
        rho1.append(1 - (e["M1"][runs] ** 2).mean() / (e["M0"][runs] ** 2).mean())
    assert (tab.loc["M1", "rho_lo"], tab.loc["M1", "rho_hi"]) == pytest.approx(
        tuple(np.percentile(rho1, [2.5, 97.5]))
    )
    assert tab.loc["M0", "rho"] == 0 and tab.loc["M0", "rho_lo"] == tab.loc["M0", "rho_hi"] == 0


def test_choose_alpha_grid_and_tie_to_larger():
    assert ALPHA_GRID.tolist() == pytest.approx([i / 20 for i in range(21)])
    pts = _cv_points()
    fam = pts.family.to_numpy()
    # with P and ln MUI identical (up to scale), every α gives the same score up to sign: ties everywhere
    # except where α = 0.5 zeroes the score; the tie goes to the largest α
    p = pts.P.to_numpy()
    a, mse = choose_alpha(p, p, pts.R.to_numpy(), fam, [0.0, 1.0])
    assert mse[0] == pytest.approx(mse[1]) and a == 1.0


@pytest.mark.parametrize(
    "lo, hi, expected",
    [
        (0.01, 0.3, "supported"),
        (-0.2, 0.09, "not supported"),
        (-0.2, 0.3, "inconclusive"),
        (0.01, 0.05, "supported"),
    ],
)
def test_c3_verdict_rules(lo, hi, expected):
    cv = fair_comparison_cv(_cv_points(), alphas=[0.0, 1.0], n_boot=50)
    tab = cv.table.copy()
    tab.loc[tab.model == "M1", ["rho_lo", "rho_hi"]] = [lo, hi]
    v = c3_verdict(type(cv)(cv.predictions, tab, cv.rho_boot, cv.n, cv.level, cv.n_boot, cv.seed))
    assert v.verdict == expected and v.n == 11 and v.corollary == "C3"
