"""Run-level law analysis (docs/study/protocol.md §6) against independent computations."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import t as student_t

from saemui.analysis.study import (
    DELTA_H1,
    Verdict,
    alpha_prime,
    cluster_weights,
    cr1_interval,
    decide,
    delta_for,
    downgrade,
    fit_fe,
    law_points,
    law_test,
    overall_verdict,
    pooled_fit,
    regressors,
    robust_across_shares,
    run_bootstrap,
    secondary_fits,
    smoothed_perf,
    t_interval,
)
from saemui.errors import SaemuiError


def _table(
    seed: int = 0, slope: float = -20.0, noise: float = 3.0, n_s: int = 10, n_g: int = 8
) -> pd.DataFrame:
    """A synthetic zoo: SmolLM2 and Gemma runs, P falling with ln MUI, family intercepts 60 and 40."""
    rng = np.random.default_rng(seed)
    rows = []
    for fam, n, alpha in (("smollm2", n_s, 60.0), ("gemma", n_g, 40.0)):
        for i in range(n):
            mui = float(np.exp(rng.uniform(0.0, 1.5)))
            p = alpha + slope * math.log(mui) + rng.normal(0, noise)
            k = int(np.clip(round((p / 100) * 201 - 0.5), 0, 200))
            rows.append(
                dict(
                    model=f"{fam}-{i}",
                    run_id=f"{fam}-{i}",
                    family=fam,
                    task="arith-1",
                    setting="P0",
                    k=k,
                    N=200,
                    mui=mui,
                    tokens_per_item=float(np.exp(rng.uniform(1, 3))),
                    is_base=i == 0,
                )
            )
    return pd.DataFrame(rows)


def test_smoothed_perf_and_alpha_prime() -> None:
    assert smoothed_perf(0, 200) == pytest.approx(100 * 0.5 / 201)
    assert smoothed_perf(200, 200) == pytest.approx(100 * 200.5 / 201)
    assert alpha_prime(3) == pytest.approx(0.05 / 3)
    with pytest.raises(SaemuiError):
        alpha_prime(0)


def test_fe_ols_against_lstsq_and_within_formula() -> None:
    # hand-built: two families, x = ln M, y = P
    x = np.log(np.array([1.0, 2.0, 3.0, 5.0, 1.5, 2.5, 4.0, 6.0, 7.0]))
    fam = np.array(["a"] * 4 + ["b"] * 5)
    y = np.array([50.0, 44.0, 41.0, 33.0, 30.0, 27.0, 20.0, 19.0, 14.0])
    fit = fit_fe(y, x, fam)
    X = np.column_stack([x, fam == "a", fam == "b"]).astype(float)
    coef, rss, *_ = np.linalg.lstsq(X, y, rcond=None)
    assert fit.slope == pytest.approx(coef[0]) and fit.coef[1:] == pytest.approx(coef[1:])
    assert fit.rss == pytest.approx(float(rss[0])) and fit.df == 9 - 3
    # Frisch-Waugh: slope and SE from within-family deviations
    xd = np.concatenate([x[fam == f] - x[fam == f].mean() for f in ("a", "b")])
    yd = np.concatenate([y[fam == f] - y[fam == f].mean() for f in ("a", "b")])
    b = (xd @ yd) / (xd @ xd)
    s2 = ((yd - b * xd) ** 2).sum() / (9 - 3)
    assert fit.slope == pytest.approx(b) and fit.se == pytest.approx(math.sqrt(s2 / (xd @ xd)))
    # t-interval at alpha' = 0.05/3 with n - 3 df
    a = 0.05 / 3
    lo, hi = t_interval(fit, a)
    q = student_t.ppf(1 - a / 2, 6)
    assert (lo, hi) == pytest.approx((b - q * math.sqrt(s2 / (xd @ xd)), b + q * math.sqrt(s2 / (xd @ xd))))
    assert q == pytest.approx(3.288, abs=1e-3)  # t(1 - 0.05/6; 6)


def test_fe_ols_two_regressors_against_lstsq() -> None:
    df = law_points(_table(), "arith-1", "P0")
    y, x = regressors(df, "H1-L")
    fit = fit_fe(y, x, df["family"].to_numpy())
    X = np.column_stack([x, df["family"] == "gemma", df["family"] == "smollm2"]).astype(float)
    coef = np.linalg.lstsq(X, y, rcond=None)[0]
    assert fit.coef == pytest.approx(coef) and fit.df == len(df) - 4


def test_law_points_exclusions_and_refusals() -> None:
    df = _table()
    extra = pd.DataFrame(
        [
            dict(df.iloc[1]) | dict(model="ck", run_id="smollm2-1", is_checkpoint=True),
            dict(df.iloc[2]) | dict(model="cont", run_id="cont", contaminated=True),
            dict(df.iloc[3]) | dict(model="seed1", run_id="rstar-s1", replicate=True, recipe="R*"),
            dict(df.iloc[3]) | dict(setting="other"),
        ]
    )
    full = pd.concat([df, extra], ignore_index=True).fillna(
        {"is_checkpoint": False, "contaminated": False, "replicate": False}
    )
    pts = law_points(full, "arith-1", "P0")
    assert len(pts) == len(df) and set(pts["model"]) == set(df["model"])
    assert pts["P"].to_numpy() == pytest.approx(100 * (df["k"].to_numpy() + 0.5) / 201)
    assert len(law_points(full, "arith-1", "P0", include_replicates=True)) == len(df) + 1
    bad = full.copy()
    bad.loc[bad["model"] == "ck", "is_checkpoint"] = False
    with pytest.raises(SaemuiError, match="run_id 'smollm2-1' appears 2 times"):
        law_points(bad, "arith-1", "P0")
    with pytest.raises(SaemuiError, match="missing column"):
        law_points(df.drop(columns="family"), "arith-1", "P0")
    neg = df.copy()
    neg.loc[0, "mui"] = 0.0
    with pytest.raises(SaemuiError, match="M must be a positive"):
        law_points(neg, "arith-1", "P0")


@pytest.mark.parametrize(
    ("t_ci", "b_ci", "label", "flags"),
    [
        ((-30.0, -2.0), (-28.0, -1.0), "supported", (True, False, False)),
        ((-30.0, -2.0), (-28.0, 0.5), "inconclusive", (False, False, False)),  # bootstrap crosses 0
        ((1.0, 9.0), (0.5, 8.0), "not supported", (False, True, False)),  # contradicted
        ((-7.0, 9.0), (-6.0, 8.0), "not supported", (False, False, True)),  # absent: L > -δ (7.21)
        ((-7.5, 9.0), (-6.0, 8.0), "inconclusive", (False, False, False)),  # L_t <= -δ
        (
            (-1.0, 9.0),
            (0.5, 8.0),
            "not supported",
            (False, False, True),
        ),  # not both > 0: absent, not contradicted
        ((-5.0, -1.0), (-6.0, -0.5), "supported", (True, False, True)),  # inside (-δ, 0): both rules hold
    ],
)
def test_decide_branches(t_ci: tuple, b_ci: tuple, label: str, flags: tuple) -> None:
    v = decide(t_ci, b_ci, 5 / math.log(2))
    assert v.label == label and (v.supported, v.contradicted, v.absent) == flags


def test_downgrade_and_overall() -> None:
    sup = decide((-30, -2), (-28, -1), DELTA_H1)
    assert downgrade(sup, {"A": ((-30, -1), (-29, -0.5)), "B": None}, {1: sup}).label == "supported"
    d = downgrade(sup, {"A": ((-30, 0.0), (-29, -0.5))}, {})
    assert d.label == "inconclusive" and d.downgraded == ("sensitivity A: U >= 0",)
    inc = decide((-30, -2), (-28, 0.1), DELTA_H1)
    d = downgrade(sup, {}, {1: sup, 3: inc})
    assert d.label == "inconclusive" and d.downgraded == ("bootstrap seed 3: inconclusive",)
    notsup = decide((1, 9), (0.5, 8), DELTA_H1)
    assert downgrade(notsup, {"A": ((0, 1), (0, 1))}, {}) is notsup
    absent = decide((-7, 9), (-6, 8), DELTA_H1)
    assert overall_verdict([sup, sup, inc], 3) == "supported"
    assert overall_verdict([sup, sup, notsup], 3) == "inconclusive"  # contradicted on one task
    assert overall_verdict([sup, sup, absent], 3) == "supported"  # absent is not contradicted
    assert overall_verdict([notsup, absent, sup], 3) == "not supported"
    assert overall_verdict([sup, inc], 2) == "inconclusive"  # 1 is not > 2/2
    assert overall_verdict([sup], 1) == "supported"
    with pytest.raises(SaemuiError):
        overall_verdict([sup], 3)
    assert robust_across_shares(sup, {"a": -1, "b": -2, "c": -0.1}, {"a": sup, "b": inc, "c": absent})
    assert not robust_across_shares(sup, {"a": -1, "b": -2, "c": 0.1}, {})
    assert not robust_across_shares(inc, {"a": -1}, {})


def test_bootstrap_determinism_and_interval() -> None:
    df = law_points(_table(), "arith-1", "P0")
    y, x = regressors(df, "H1")
    g = df["family"].to_numpy()
    kw = dict(strata=g, clusters=df["run_id"].to_numpy(), level=1 - 0.05 / 3, n_boot=400)
    a = run_bootstrap(y, x, g, seed=0, **kw)
    b = run_bootstrap(y, x, g, seed=0, **kw)
    c = run_bootstrap(y, x, g, seed=1, **kw)
    assert np.array_equal(a.slopes, b.slopes) and a.ci == b.ci
    assert not np.array_equal(a.slopes, c.slopes)
    lo, hi = np.percentile(a.slopes, [100 * 0.05 / 6, 100 * (1 - 0.05 / 6)])
    assert a.ci == pytest.approx((lo, hi))
    assert lo < fit_fe(y, x, g).slope < hi


def test_bootstrap_resamples_runs_within_family_not_rows() -> None:
    # pooled layout: every run has a row on two tasks; a resample must weigh both rows of a run alike
    runs = [("s0", "A"), ("s1", "A"), ("s2", "A"), ("g0", "B"), ("g1", "B")]
    rows = [(r, f, t) for t in ("t1", "t2") for r, f in runs]
    clusters = np.array([r for r, _, _ in rows])
    strata = np.array([f for _, f, _ in rows])
    w = cluster_weights(strata, clusters, np.random.default_rng(5), 500)
    assert w.shape == (500, 10)
    assert np.array_equal(w[:, :5], w[:, 5:])  # run r on t1 and on t2: same count in every resample
    assert (w[:, :3].sum(axis=1) == 3).all() and (w[:, 3:5].sum(axis=1) == 2).all()  # family sizes kept
    assert (w[:, :5] >= 2).any() and (w[:, :5] == 0).any()  # with replacement
    # each run of family A is drawn 1 time per resample on average (3 draws over 3 runs)
    assert w[:, :3].mean() == pytest.approx(1.0, abs=0.1)


def test_bootstrap_slopes_equal_fits_on_the_resampled_runs() -> None:
    pooled = pd.concat(
        [_table(n_s=5, n_g=4), _table(n_s=5, n_g=4).assign(task="t2", k=lambda d: d["k"] // 2)]
    )
    pts = law_points(pooled, ["arith-1", "t2"], "P0")
    for hyp in ("H1", "H1-L"):
        y, x = regressors(pts, hyp)
        groups = (pts["family"] + "|" + pts["task"]).to_numpy()
        res = run_bootstrap(
            y,
            x,
            groups,
            strata=pts["family"].to_numpy(),
            clusters=pts["run_id"].to_numpy(),
            level=0.9,
            n_boot=50,
        )
        for b in range(0, 50, 7):
            rows = np.repeat(np.arange(len(y)), res.weights[b])  # the resampled runs, rows repeated
            assert res.slopes[b] == pytest.approx(fit_fe(y[rows], x[rows], groups[rows]).slope)


def test_primary_bootstrap_resamples_one_row_per_run_and_redraws_degenerate() -> None:
    # family B has 2 runs: half of its draws repeat one run (1 distinct value) and must be redrawn
    y = np.array([10.0, 8.0, 7.0, 5.0, 20.0, 15.0])
    x = np.log(np.array([1.0, 2.0, 3.0, 4.0, 1.0, 3.0]))
    g = np.array(["A"] * 4 + ["B"] * 2)
    res = run_bootstrap(y, x, g, strata=g, clusters=np.arange(6), level=0.95, n_boot=2000, seed=0)
    # P(redraw) = 1 - P(A ok) P(B ok) = 1 - (1 - 4/4**4) * (1/2); expected redraws per kept = p/(1-p)
    p = 1 - (1 - 4 / 256) * 0.5
    assert res.n_redrawn / 2000 == pytest.approx(p / (1 - p), rel=0.15)
    assert res.n_redrawn_rank == 0


def test_cr1_against_hand_formula() -> None:
    df = _table(n_s=5, n_g=4)
    pooled = pd.concat([df, df.assign(task="arith-2", mui=df["mui"] * 1.3, k=(df["k"] * 0.7).astype(int))])
    pts = law_points(pooled, ["arith-1", "arith-2"], "P0")
    y, x = regressors(pts, "H1")
    groups = (pts["family"] + "|" + pts["task"]).to_numpy()
    fit = fit_fe(y, x, groups)
    res = cr1_interval(fit, x, groups, pts["run_id"].to_numpy(), 0.05)
    # hand: Frisch-Waugh within family x task, then the clustered sandwich on the scalar slope
    xd = x[:, 0] - pd.Series(x[:, 0]).groupby(groups).transform("mean").to_numpy()
    u = fit.residuals
    sxx = xd @ xd
    meat = sum(((xd * u)[pts["run_id"].to_numpy() == r].sum()) ** 2 for r in pts["run_id"].unique())
    n, p, c = len(y), 1 + 4, 9
    se = math.sqrt((n - 1) / (n - p) * c / (c - 1) * meat / sxx**2)
    assert res["se"] == pytest.approx(se) and res["df"] == 8
    q = student_t.ppf(0.975, 8)
    assert res["ci"] == pytest.approx((fit.slope - q * se, fit.slope + q * se))
    sm = pytest.importorskip("statsmodels.api")
    X = np.column_stack([x, pd.get_dummies(groups).to_numpy(float)])
    ref = sm.OLS(y, X).fit(cov_type="cluster", cov_kwds={"groups": pd.factorize(pts["run_id"])[0]})
    assert res["se"] == pytest.approx(float(ref.bse[0]))


def test_law_test_end_to_end() -> None:
    df = _table(slope=-25.0, noise=2.0)
    res = law_test(df, "arith-1", "P0", "H1", m=3, n_boot=300)
    assert res.n == 18 and res.n_by_family == {"gemma": 8, "smollm2": 10}
    assert res.fit.df == 15 and res.alpha == pytest.approx(0.05 / 3)
    assert res.t_ci[1] < 0 and res.boot.ci[1] < 0 and res.verdict.label == "supported"
    assert set(res.seed_verdicts) == {1, 2, 3, 4}
    assert res.sensitivity["B"] is None and "not run" in res.notes["B"]
    # H1b: δ from the two bases' MUI
    pts = law_points(df, "arith-1", "P0")
    base_mean = pts.loc[pts["is_base"], "M"].mean()
    assert delta_for("H1b", pts) == pytest.approx(0.10 * base_mean / math.log(2))
    rb = law_test(df, "arith-1", "P0", "H1b", m=3, n_boot=200)
    assert rb.delta == pytest.approx(0.10 * base_mean / math.log(2))
    assert rb.fit.slope < 0
    # a flagged point: sensitivity A refits without it
    flagged = df.assign(n_empty=[30] + [0] * (len(df) - 1))
    ra = law_test(flagged, "arith-1", "P0", "H1", m=3, n_boot=200)
    assert "1 flagged" in ra.notes["A"] and ra.sensitivity["A"][0] != ra.t_ci
    # sensitivity B: run only when n* >= 100
    nb = df.assign(mui_nstar=df["mui"] * 0.9, n_nonempty=[99] + [200] * (len(df) - 1))
    assert "n* = 99 < 100" in law_test(nb, "arith-1", "P0", "H1", m=3, n_boot=100).notes["B"]
    nb["n_nonempty"] = 150
    assert law_test(nb, "arith-1", "P0", "H1", m=3, n_boot=100).sensitivity["B"] is not None


def test_flat_relation_is_not_supported_or_inconclusive() -> None:
    res = law_test(_table(slope=0.0, noise=1.0), "arith-1", "P0", "H1", m=1, n_boot=300)
    assert res.verdict.label in ("not supported", "inconclusive") and res.verdict.label != "supported"
    assert res.verdict.absent == (res.t_ci[0] > -DELTA_H1 and res.boot.ci[0] > -DELTA_H1)


def test_secondary_and_pooled_fits() -> None:
    df = _table()
    rep = pd.DataFrame(
        [dict(df.iloc[0]) | dict(run_id="rstar-s1", replicate=True, recipe="smollm2-0", is_base=False)]
    )
    full = pd.concat([df, rep], ignore_index=True).fillna({"replicate": False})
    sec = secondary_fits(full, "arith-1", "P0", "H1", m=3, n_boot=100)
    assert set(sec) == {"family:gemma", "family:smollm2", "no_fe", "replicates"}
    assert sec["family:gemma"].df == 8 - 2 and sec["no_fe"].df == 18 - 2 and sec["replicates"].n == 19
    gem = law_points(df, "arith-1", "P0").query("family == 'gemma'")
    assert sec["family:gemma"].slope == pytest.approx(np.polyfit(np.log(gem["M"]), gem["P"], 1)[0])
    pooled = pd.concat([df, df.assign(task="arith-2")], ignore_index=True)
    pf = pooled_fit(pooled, ["arith-1", "arith-2"], "P0", "H1", n_boot=100)
    assert pf.df == 18 - 1 and pf.n == 36
    assert pf.slope == pytest.approx(law_test(df, "arith-1", "P0", "H1", m=2, n_boot=50).fit.slope)


def test_verdict_is_frozen_dataclass() -> None:
    v = Verdict("supported", True, False, False)
    with pytest.raises(AttributeError):
        v.label = "x"  # type: ignore[misc]
