"""Corollary 2: law residual scores, shift tables, AUROC by pair counting, confusion counts; the §8.2 detectors,
run-bootstrap AUROC, matched accuracy, sign table and C2 verdict against hand computations."""

import itertools

import numpy as np
import pandas as pd
import pytest

from saemui.analysis.contamination import (
    auroc,
    c2_verdict,
    confusion_table,
    contamination_scores,
    detector_auroc,
    detector_scores,
    matched_accuracy,
    matched_dmui,
    shift_table,
    sign_table,
)
from saemui.analysis.corollary import MeanCI
from saemui.analysis.law import fit_law
from saemui.errors import SaemuiError

# clean reference models near MUI = -5 ln P + 30
REF_P = np.array([30.0, 40.0, 50.0, 60.0, 70.0, 80.0])
REF_M = -5 * np.log(REF_P) + 30 + np.array([0.2, -0.1, -0.15, 0.1, 0.05, -0.1])


@pytest.mark.parametrize("form", ["mui_from_perf", "perf_from_mui"])
def test_contaminated_point_scores_positive_in_both_directions(form):
    fit = fit_law(REF_P, REF_M, form=form)
    on_law = -5 * np.log(55.0) + 30
    # a model that gained P on the benchmark while its MUI went up (P↑ MUI↑), vs a model with P↓ MUI↓
    s = contamination_scores(fit, [55.0, 75.0, 40.0], [on_law, on_law + 1.0, -5 * np.log(40) + 30 - 1.0])
    assert abs(s[0]) < 1.0
    assert s[1] > 3.0
    assert s[2] < -3.0


def test_score_equals_hand_standardised_residual():
    fit = fit_law(REF_P, REF_M, form="perf_from_mui")
    c, d = fit.intercept, fit.slope
    res = REF_P - (c + d * np.log(REF_M))
    sd = np.sqrt((res**2).sum() / (len(REF_P) - 2))
    expected = (65.0 - (c + d * np.log(9.0))) / sd
    assert contamination_scores(fit, [65.0], [9.0]) == pytest.approx([expected])
    assert contamination_scores(fit, [65.0], [9.0], standardize=False) == pytest.approx([expected * sd])
    fit_m = fit_law(REF_P, REF_M, form="mui_from_perf")
    assert contamination_scores(fit_m, [65.0], [9.0], standardize=False) == pytest.approx(
        [9.0 - (fit_m.slope * np.log(65.0) + fit_m.intercept)]
    )


def test_perfect_fit_cannot_standardise():
    fit = fit_law(REF_P, -5 * np.log(REF_P) + 30)
    with pytest.raises(SaemuiError, match="residual SD is 0"):
        contamination_scores(fit, [50.0], [10.0])


def _frame(vals):
    return pd.DataFrame([{"task": t, "perf": p, "mui": m} for t, p, m in vals])


def test_shift_table_by_hand():
    before = _frame([("mmlu", 60, 5.0), ("gsm8k", 40, 6.0), ("arc", 70, 4.0)])
    after = _frame([("arc", 69, 4.5), ("gsm8k", 55, 7.5), ("mmlu", 61, 4.0)])
    t = shift_table(before, after, in_domain=["gsm8k"])
    assert t["task"].tolist() == ["gsm8k", "mmlu", "arc"]
    assert t["domain"].tolist() == ["in", "out", "out"]
    assert t["dP"].tolist() == [15, 1, -1]
    assert t["dMUI"].tolist() == [1.5, -1.0, 0.5]
    assert t["p_up_mui_up"].tolist() == [True, False, False]
    assert t.loc[0, "perf_after"] == 55 and t.loc[2, "mui_before"] == 4.0


def test_shift_table_errors():
    before = _frame([("mmlu", 60, 5.0), ("gsm8k", 40, 6.0)])
    with pytest.raises(SaemuiError, match="task 'gsm8k' is in 'before' but not in 'after'"):
        shift_table(before, _frame([("mmlu", 61, 5.0)]), ["mmlu"])
    with pytest.raises(SaemuiError, match="in_domain: task 'math'"):
        shift_table(before, before, ["math"])
    with pytest.raises(SaemuiError, match="missing column"):
        shift_table(before.drop(columns="mui"), before, [])


def _auroc_pairs(scores, labels):
    pos = [s for s, y in zip(scores, labels) if y]
    neg = [s for s, y in zip(scores, labels) if not y]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


@pytest.mark.parametrize("seed", range(6))
def test_auroc_equals_pair_count_with_ties(seed):
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 4, size=15).astype(float)  # few distinct values: many ties
    labels = rng.random(15) < 0.4
    labels[:2] = [True, False]
    assert auroc(scores, labels) == pytest.approx(_auroc_pairs(scores, labels))


def test_auroc_fixed_values():
    assert auroc([3, 2, 1, 0], [1, 1, 0, 0]) == 1.0
    assert auroc([0, 1, 2, 3], [1, 1, 0, 0]) == 0.0
    assert auroc([1, 1, 1, 1], [1, 0, 1, 0]) == 0.5
    # pairs (pos 2 vs neg 1, 2, 0): 1 + 0.5 + 1; (pos 1 vs ...): 0.5 + 0 + 1 -> 4 / 6
    assert auroc([2, 1, 1, 2, 0], [1, 1, 0, 0, 0]) == pytest.approx(4 / 6)
    with pytest.raises(SaemuiError, match="both classes"):
        auroc([1, 2], [1, 1])
    with pytest.raises(SaemuiError, match="0/1"):
        auroc([1, 2], [1, 2])


def test_confusion_table_by_hand():
    scores = [2.5, 1.0, 0.4, -1.0, 1.0, 3.0]
    labels = [1, 1, 0, 0, 0, 1]
    c = confusion_table(scores, labels, threshold=1.0)  # flagged: 2.5, 1.0, 1.0, 3.0 (equality flags)
    assert (c.tp, c.fp, c.tn, c.fn) == (3, 1, 2, 0)
    assert (c.tpr, c.fpr, c.precision) == pytest.approx((1.0, 1 / 3, 3 / 4))
    tab = c.table()
    assert tab.loc["contaminated", "flagged"] == 3 and tab.loc["clean", "not_flagged"] == 2
    assert np.isnan(confusion_table(scores, labels, 10.0).precision)


# ----- Study v2 §8.2 ------------------------------------------------------------------------------------------


def _final_points():
    rng = np.random.default_rng(11)
    rows = []
    for fam, n_clean in (("S", 6), ("G", 5)):
        for i in range(n_clean):
            p = 20.0 + 10 * i + rng.normal(0, 2)
            m = 30 - 5 * np.log(p) + rng.normal(0, 0.3)
            rows.append(
                {"run_id": f"{fam}{i}", "family": fam, "P": p, "mui": m, "P_twin": p - rng.normal(1, 1)}
            )
        for d in range(2):
            p = 50.0 + 15 * d
            rows.append(
                {
                    "run_id": f"{fam}c{d}",
                    "family": fam,
                    "P": p,
                    "mui": 30 - 5 * np.log(p) + 1.0 + d,
                    "P_twin": p - 20 - 5 * d,
                    "contaminated": True,
                }
            )
    df = pd.DataFrame(rows)
    df["contaminated"] = df["contaminated"].fillna(False).astype(bool)
    return df


def test_detectors_equal_hand_leave_one_run_out_fits():
    pts = _final_points()
    out = detector_scores(pts)
    for i, r in pts.iterrows():
        ref = pts[(pts.family == r.family) & ~pts.contaminated & (pts.run_id != r.run_id)]
        lp, lm = np.log(ref.P.to_numpy()), np.log(ref.mui.to_numpy())
        a, b = np.polyfit(lp, ref.mui, 1)  # MUI = a ln P + b
        res_b = ref.mui - (a * lp + b)
        d1 = (r.mui - (a * np.log(r.P) + b)) / np.sqrt((res_b**2).sum() / (len(ref) - 2))
        d, c = np.polyfit(lm, ref.P, 1)  # P = c + d ln MUI
        res_h = ref.P - (c + d * lm)
        d2 = (r.P - (c + d * np.log(r.mui))) / np.sqrt((res_h**2).sum() / (len(ref) - 2))
        d3 = (r.P - ref.P.mean()) / ref.P.std(ddof=1)
        gap_ref = ref.P - ref.P_twin
        zd4 = (r.P - r.P_twin - gap_ref.mean()) / gap_ref.std(ddof=1)
        assert out.loc[i, "D1"] == pytest.approx(d1)
        assert out.loc[i, "D2"] == pytest.approx(d2)
        assert out.loc[i, "D3"] == pytest.approx(d3)
        assert out.loc[i, "D4"] == pytest.approx(r.P - r.P_twin)
        assert out.loc[i, "D5"] == pytest.approx(d1 + zd4)
    # the contaminated points sit above the law in MUI and have a large verbatim-twin gap
    assert (out.loc[out.contaminated, "D1"] > 2).all() and (out.loc[out.contaminated, "D5"] > 4).all()


def test_detector_auroc_equals_pair_count_on_explicit_stratified_resamples():
    out = detector_scores(_final_points())
    n_boot = 300
    tab = detector_auroc(out, n_boot=n_boot, seed=0).set_index("what")
    y = out.contaminated.to_numpy()
    for d in ("D1", "D2", "D3", "D4", "D5"):
        assert tab.loc[d, "estimate"] == pytest.approx(_auroc_pairs(out[d], y))
    # the same resamples by hand: per label (clean first, then contaminated), runs sorted by id, drawn with
    # replacement as many as there are
    rng = np.random.default_rng(0)
    neg = sorted(out.loc[~out.contaminated, "run_id"])
    pos = sorted(out.loc[out.contaminated, "run_id"])
    dn = rng.integers(0, len(neg), size=(n_boot, len(neg)))
    dp = rng.integers(0, len(pos), size=(n_boot, len(pos)))
    by = out.set_index("run_id")
    boot = {d: [] for d in ("D1", "D2", "D3", "D4", "D5")}
    for b in range(n_boot):
        runs = [neg[i] for i in dn[b]] + [pos[i] for i in dp[b]]
        lab = [0] * len(neg) + [1] * len(pos)
        for d in boot:
            boot[d].append(_auroc_pairs(by.loc[runs, d].tolist(), lab))
    for d in boot:
        assert (tab.loc[d, "lo"], tab.loc[d, "hi"]) == pytest.approx(
            tuple(np.percentile(boot[d], [2.5, 97.5]))
        )
    diff = np.asarray(boot["D1"]) - np.asarray(boot["D3"])
    assert tab.loc["D1−D3", "estimate"] == pytest.approx(
        tab.loc["D1", "estimate"] - tab.loc["D3", "estimate"]
    )
    assert (tab.loc["D1−D3", "lo"], tab.loc["D1−D3", "hi"]) == pytest.approx(
        tuple(np.percentile(diff, [2.5, 97.5]))
    )
    assert set(tab.index) >= {"D2−D3", "D5−D4"} and tab["n_pos"].iloc[0] == 4 and tab["n_neg"].iloc[0] == 11


def test_matched_accuracy_closest_within_three_points():
    clean = pd.DataFrame(
        {
            "family": ["S"] * 4 + ["G"],
            "seed": [0, 0, 1, 1, 0],
            "step": [10, 20, 10, 20, 10],
            "P": [40.0, 50.0, 48.0, 52.0, 30.0],
            "mui": [5.0, 4.0, 4.5, 3.9, 7.0],
        }
    )
    contam = pd.DataFrame(
        {
            "run_id": ["c1", "c1", "c2", "c3"],
            "family": ["S", "S", "S", "G"],
            "step": [60, 120, 120, 120],
            "P": [49.0, 60.0, 51.0, 33.0],
            "mui": [4.8, 6.0, 4.1, 7.5],
        }
    )
    m = matched_accuracy(contam, clean)
    # 49: |Δ| to 50 and 48 both 1 -> the lower seed (0, step 20, P 50); 60: nearest 52 is 8 away -> unmatched;
    # 51: 50 and 52 both 1 away -> seed 0 step 20; 33: 30 is exactly 3 away -> matched (inclusive)
    assert m["matched"].tolist() == [True, False, True, True]
    assert m["match_P"].tolist() == [50.0, 52.0, 50.0, 30.0]
    assert m["dMUI_match"].iloc[[0, 2, 3]].tolist() == pytest.approx([0.8, 0.1, 0.5])
    assert np.isnan(m["dMUI_match"].iloc[1])
    ci = matched_dmui(m, n_boot=200)
    assert ci.n == 3 and ci.estimate == pytest.approx(np.mean([0.8, 0.1, 0.5]))
    st = sign_table(contam[contam.step == 120], {"S": 6.5, "G": 7.0}, {"S": 4.2, "G": 8.0}, m)
    assert st["sign_root"].tolist() == [-1, -1, 1]
    assert st["sign_rstar"].tolist() == [1, -1, -1]
    assert st["sign_match"].tolist() == [0, 1, 1]


def _auroc_tab(a_lo, d_lo, d_hi):
    return pd.DataFrame(
        [
            {
                "what": "D1",
                "kind": "AUROC",
                "estimate": 0.8,
                "lo": a_lo,
                "hi": 0.99,
                "level": 0.95,
                "n_pos": 6,
                "n_neg": 18,
            },
            {
                "what": "D1−D3",
                "kind": "ΔAUROC",
                "estimate": 0.1,
                "lo": d_lo,
                "hi": d_hi,
                "level": 0.95,
                "n_pos": 6,
                "n_neg": 18,
            },
        ]
    )


@pytest.mark.parametrize(
    "a_lo, d_lo, d_hi, expected",
    [
        (0.55, 0.01, 0.30, "supported"),
        (0.45, 0.01, 0.30, "inconclusive"),  # AUROC(D1) interval reaches 0.5
        (0.55, -0.01, 0.30, "inconclusive"),
        (0.40, -0.30, 0.04, "not supported"),
        (0.55, 0.01, 0.04, "supported"),  # both rules hold: supported is applied first
    ],
)
def test_c2_verdict_rules(a_lo, d_lo, d_hi, expected):
    sig = MeanCI(0.5, 0.1, 0.9, 0.95, 6, 10, 0, np.zeros(10))
    v = c2_verdict(_auroc_tab(a_lo, d_lo, d_hi), sig)
    assert v.verdict == expected and v.n == 24 and v.signature == "reproduced"
    rev = MeanCI(-0.5, -0.9, -0.1, 0.95, 6, 10, 0, np.zeros(10))
    assert c2_verdict(_auroc_tab(a_lo, d_lo, d_hi), rev).signature == "reversed"
    assert c2_verdict(_auroc_tab(a_lo, d_lo, d_hi)).signature == "neither"
