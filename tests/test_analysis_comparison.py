"""Corollary 3: Kendall tau-b vs scipy and a hand count, scores by hand, rank changes, alpha sweep."""

import numpy as np
import pytest
from scipy import stats

from saemui.analysis.comparison import (
    alpha_sensitivity,
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
