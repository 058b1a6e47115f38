"""Shared corollary pieces: the t-interval over seeds, interval signs, the stratified run-bootstrap mean."""

import numpy as np
import pytest
from scipy import stats

from saemui.analysis.corollary import (
    CorollaryVerdict,
    interval_sign,
    run_bootstrap_mean,
    t_interval_mean,
    three_way,
)
from saemui.errors import SaemuiError


def test_t_interval_by_hand():
    v = np.array([[1.0, -2.0], [3.0, -1.0], [2.0, -1.5]])
    mean, lo, hi = t_interval_mean(v)
    q = stats.t.ppf(0.975, 2)
    for j in range(2):
        m, s = v[:, j].mean(), v[:, j].std(ddof=1)
        assert (mean[j], lo[j], hi[j]) == pytest.approx((m, m - q * s / np.sqrt(3), m + q * s / np.sqrt(3)))
    # the same as scipy's interval for a mean
    ci = stats.t.interval(0.95, 2, loc=v[:, 0].mean(), scale=stats.sem(v[:, 0]))
    assert (lo[0], hi[0]) == pytest.approx(ci)
    with pytest.raises(SaemuiError, match="at least 2"):
        t_interval_mean(np.array([[1.0]]))


def test_interval_sign_and_three_way():
    assert interval_sign([0.1, -1.0, 0.0, -0.5], [1.0, -0.1, 1.0, 0.0]).tolist() == [1, -1, 0, 0]
    assert three_way(True, True) == "supported"
    assert three_way(False, True) == "not supported"
    assert three_way(False, False) == "inconclusive"


def test_run_bootstrap_mean_equals_explicit_stratified_draws():
    vals = np.array([1.0, 2.0, 4.0, 8.0, 16.0])
    fam = ["b", "a", "b", "a", "b"]
    runs = ["r1", "r0", "r2", "r3", "r4"]
    ci = run_bootstrap_mean(vals, fam, runs, n_boot=400, seed=7)
    rng = np.random.default_rng(7)
    by_run = dict(zip(runs, vals))
    groups = {"a": ["r0", "r3"], "b": ["r1", "r2", "r4"]}  # families sorted, runs sorted within
    draws = {f: rng.integers(0, len(ids), size=(400, len(ids))) for f, ids in groups.items()}
    boot = [np.mean([by_run[groups[f][i]] for f in groups for i in draws[f][b]]) for b in range(400)]
    assert ci.estimate == pytest.approx(vals.mean()) and ci.n == 5
    assert (ci.lo, ci.hi) == pytest.approx(tuple(np.percentile(boot, [2.5, 97.5])))
    with pytest.raises(SaemuiError, match="appears twice"):
        run_bootstrap_mean(vals, fam, ["r1"] * 5)


def test_verdict_row_and_text():
    v = CorollaryVerdict("C3", "ρ", 0.2, (0.05, 0.3), 0.95, 24, "supported", "note")
    assert v.as_row()["lo"] == 0.05 and "C3: ρ = 0.2 [0.05, 0.3] (95%), n = 24: supported; note" == str(v)
    w = CorollaryVerdict("C1", "count", 3, (float("nan"), float("nan")), 0.95, 12, "inconclusive")
    assert str(w) == "C1: count = 3, n = 12: inconclusive"
