"""Corollary 2: law residual scores, shift tables, AUROC by pair counting, confusion counts."""

import itertools

import numpy as np
import pandas as pd
import pytest

from saemui.analysis.contamination import auroc, confusion_table, contamination_scores, shift_table
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
