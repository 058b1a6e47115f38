"""Utility Law fits checked against numpy.polyfit, scipy and hand arithmetic."""

import math

import numpy as np
import pytest
from scipy import stats

from saemui.analysis.law import bootstrap_ci, check_comparable, fit_law, slope_test
from saemui.errors import SaemuiError

PERF = np.array([35.0, 48.0, 52.0, 61.0, 70.0, 83.0])
MUI = np.array([12.1, 10.4, 10.9, 9.2, 8.9, 7.5])


def test_hand_example_mui_from_perf():
    # ln P = 0, 1, 2 and MUI = 4, 3, 1: slope = Sxy/Sxx = -3/2, intercept = 8/3 + 3/2 = 25/6,
    # residuals -1/6, 1/3, -1/6 -> SS_res = 1/6, SS_tot = 14/3 -> R² = 27/28, residual SD = sqrt(1/6 / 1)
    fit = fit_law(np.exp([0.0, 1.0, 2.0]), [4.0, 3.0, 1.0])
    assert fit.slope == pytest.approx(-1.5)
    assert fit.intercept == pytest.approx(25 / 6)
    assert fit.residuals == pytest.approx([-1 / 6, 1 / 3, -1 / 6])
    assert fit.r2 == pytest.approx(27 / 28)
    assert fit.residual_sd == pytest.approx(math.sqrt(1 / 6))
    assert fit.n == 3


@pytest.mark.parametrize("form", ["mui_from_perf", "perf_from_mui"])
def test_fit_matches_polyfit_and_hand_r2(form):
    fit = fit_law(PERF, MUI, form=form)
    x, y = (np.log(PERF), MUI) if form == "mui_from_perf" else (np.log(MUI), PERF)
    slope, intercept = np.polyfit(x, y, 1)
    assert fit.slope == pytest.approx(slope, rel=1e-10)
    assert fit.intercept == pytest.approx(intercept, rel=1e-10)
    pred = slope * x + intercept
    r2 = 1 - np.sum((y - pred) ** 2) / np.sum((y - y.mean()) ** 2)
    assert fit.r2 == pytest.approx(r2, rel=1e-10)
    assert fit.residuals == pytest.approx(y - pred)
    assert fit.pearson_r == pytest.approx(stats.pearsonr(x, y).statistic)
    assert fit.r2 == pytest.approx(fit.pearson_r**2)
    assert fit.spearman_rho == pytest.approx(stats.spearmanr(PERF, MUI).statistic)
    assert fit.predict(np.exp(x[:2])) == pytest.approx(pred[:2])


def test_forms_do_not_invert_on_noisy_data_but_do_on_exact_data():
    a = fit_law(PERF, MUI, "mui_from_perf")
    d = fit_law(PERF, MUI, "perf_from_mui")
    # MUI = a ln P + b solved for P is not P = c + d ln MUI; the two fits are genuinely different lines
    assert d.slope != pytest.approx(1 / a.slope, rel=1e-3)
    exact_mui = -4.632 * np.log(PERF) + 28.305
    e = fit_law(PERF, exact_mui)
    assert (e.slope, e.intercept, e.r2) == pytest.approx((-4.632, 28.305, 1.0))
    assert fit_law(PERF, exact_mui, "mui_from_perf").residual_sd == pytest.approx(0, abs=1e-9)


@pytest.mark.parametrize(
    "perf, mui, match",
    [
        ([1, 2, 0], [1, 2, 3], "perf: all values must be > 0"),
        ([1, 2, 3], [1, -2, 3], "mui: all values must be > 0"),
        ([1, 2, 3], [1, 2], "equal length"),
        ([1, 2], [1, 2], "at least 3"),
        ([1, 2, float("nan")], [1, 2, 3], "not finite"),
        ([5, 5, 5], [1, 2, 3], "perf: all values are equal"),
    ],
)
def test_validation_messages(perf, mui, match):
    with pytest.raises(SaemuiError, match=match) as e:
        fit_law(perf, mui)
    assert "\n" not in str(e.value)


def test_bad_form_and_labels():
    with pytest.raises(SaemuiError, match="form"):
        fit_law(PERF, MUI, form="mui")
    with pytest.raises(SaemuiError, match="labels"):
        fit_law(PERF, MUI, labels=["a", "b"])
    assert fit_law(PERF, MUI, labels=list("abcdef")).labels == tuple("abcdef")


def test_bootstrap_matches_independent_resampling():
    fit = fit_law(PERF, MUI)
    boot = bootstrap_ci(fit, n_boot=300, seed=7)
    rng = np.random.default_rng(7)
    idx = rng.integers(0, len(PERF), size=(300, len(PERF)))
    slopes = []
    for i in idx:
        if len(set(PERF[i])) > 1:
            slopes.append(np.polyfit(np.log(PERF[i]), MUI[i], 1)[0])
    assert boot.n_degenerate == 300 - len(slopes)
    assert boot.slope_ci == pytest.approx(tuple(np.percentile(slopes, [2.5, 97.5])))
    assert boot.slopes == pytest.approx(slopes)


def test_bootstrap_defaults_reproducible_and_cover_estimate():
    fit = fit_law(PERF, MUI)
    b1, b2 = bootstrap_ci(fit), bootstrap_ci(fit)
    assert b1.n_boot == 2000 and b1.seed == 0 and b1.level == 0.95
    assert b1.slope_ci == b2.slope_ci
    assert bootstrap_ci(fit, seed=1).slope_ci != b1.slope_ci
    assert b1.slope_ci[0] < fit.slope < b1.slope_ci[1]
    assert b1.intercept_ci[0] < fit.intercept < b1.intercept_ci[1]
    assert 0 <= b1.r2_ci[0] <= b1.r2_ci[1] <= 1
    grid = np.array([40.0, 60.0, 80.0])
    lo, hi = b1.band(grid)
    assert np.all(lo <= fit.predict(grid)) and np.all(fit.predict(grid) <= hi)
    with pytest.raises(SaemuiError, match="level"):
        bootstrap_ci(fit, level=95)


def _rec(
    model,
    n=500,
    basis="gemma-scope-9b-pt-res",
    sel="topscore:0.9",
    align="predicting",
    layers=(0, 1, 2),
    first_tokens=None,
):
    return {
        "model": model,
        "n_samples": n,
        "basis": basis,
        "selection": sel,
        "alignment": align,
        "layers": layers,
        "first_tokens": first_tokens,
    }


def test_check_comparable_accepts_equal_settings():
    shared = check_comparable([_rec("a"), _rec("b"), _rec("c")])
    assert shared == {
        "n_samples": 500,
        "basis": "gemma-scope-9b-pt-res",
        "selection": "topscore:0.9",
        "alignment": "predicting",
        "layers": (0, 1, 2),
        "first_tokens": None,
    }


@pytest.mark.parametrize(
    "bad, key",
    [
        (_rec("qwen", n=1000), "n_samples"),
        (_rec("qwen", basis="neurons"), "basis"),
        (_rec("qwen", sel="topk:0.001"), "selection"),
        (_rec("qwen", align="current"), "alignment"),
        (_rec("qwen", layers=(0, 1)), "layers"),
        (_rec("qwen", first_tokens=16), "first_tokens"),
    ],
)
def test_check_comparable_names_offending_model(bad, key):
    with pytest.raises(SaemuiError, match=rf"model 'qwen' has {key}=.*'llama'") as e:
        check_comparable([_rec("llama"), _rec("gemma"), bad])
    assert "\n" not in str(e.value)


def test_check_comparable_missing_key():
    rec = _rec("mistral")
    del rec["selection"]
    with pytest.raises(SaemuiError, match="model 'mistral': missing selection"):
        check_comparable([_rec("a"), rec])


@pytest.mark.parametrize("form", ["mui_from_perf", "perf_from_mui"])
def test_slope_test_matches_scipy_linregress(form):
    perf = np.array([22.0, 35.0, 41.0, 58.0, 63.0, 80.0])
    mui = np.array([6.1, 5.0, 5.3, 3.9, 4.2, 2.8])
    fit = fit_law(perf, mui, form=form)
    x, y = (np.log(perf), mui) if form == "mui_from_perf" else (np.log(mui), perf)
    ref = stats.linregress(x, y)
    st = slope_test(fit, level=0.9)
    q = stats.t.ppf(0.95, len(x) - 2)
    assert st.se == pytest.approx(ref.stderr) and st.p == pytest.approx(ref.pvalue) and st.df == 4
    assert st.ci == pytest.approx((ref.slope - q * ref.stderr, ref.slope + q * ref.stderr))
    assert st.t == pytest.approx(ref.slope / ref.stderr)


def test_slope_test_perfect_fit():
    perf = np.array([10.0, 20.0, 40.0])
    fit = fit_law(perf, 2.0 * np.log(perf) + 1.0)
    st = slope_test(fit)
    assert st.se < 1e-12 and st.p < 1e-12 and st.ci == pytest.approx((2.0, 2.0))
