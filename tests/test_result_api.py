"""MUIResult.to_pandas, mui_at and accuracy_interval against hand computations on fixed key sets."""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pandas as pd
import pytest
from run_fixtures import hand_union, make_result, save_run
from scipy.optimize import brentq
from scipy.stats import norm

from saemui.errors import SaemuiError
from saemui.records import Sample
from saemui.result import load_result, wilson_interval

U = 5
# 6 samples × 2 layers; units overlap so the union of a subset depends on which samples are drawn
SETS = [
    [[0, 1], [2]],
    [[1], [2, 3]],
    [[4], []],
    [[0], [0]],
    [[2, 3], [4]],
    [[1], [1]],
]
CORRECT = [True, False, True, None, True, False]


@pytest.fixture
def run_dir(tmp_path):
    res = make_result(SETS, U, CORRECT)
    recs = [
        Sample(f"prompt {i}", f"answer {i}", f"item-{i}", CORRECT[i], {"gold": i * 10, "correct": "meta-c"})
        for i in reversed(range(len(SETS)))  # another order than the result: rows are matched by id
    ]
    return save_run(tmp_path / "run", res, recs)


def _hand_values(n: int) -> list[float]:
    return [len(hand_union(SETS, c)) / (2 * U) for c in combinations(range(len(SETS)), n)]


def test_mui_at_exact_enumeration_matches_hand(run_dir):
    res = load_result(run_dir)
    vals = _hand_values(3)  # C(6, 3) = 20 subsets <= n_boot: every one is used
    got = res.mui_at(3, n_boot=100)
    assert got.exact and got.n_subsets == 20 and (got.n, got.n_total) == (3, 6)
    assert got.mean == pytest.approx(sum(vals) / len(vals))
    assert sorted(got.values.tolist()) == pytest.approx(sorted(vals))
    assert min(vals) <= got.lo <= got.hi <= max(vals)
    full = res.mui_at(6)
    assert full.exact and full.mean == full.lo == full.hi == pytest.approx(
        len(hand_union(SETS, range(6))) / 10
    )
    assert full.mean == pytest.approx(res.mui)


def test_mui_at_sampled_subsets(run_dir):
    res = load_result(run_dir)
    vals = _hand_values(3)
    got = res.mui_at(3, n_boot=15, seed=1)  # fewer draws than distinct subsets: random subsets
    assert not got.exact and got.n_subsets == 15
    assert set(np.round(got.values, 12)) <= set(np.round(vals, 12))
    assert res.mui_at(3, n_boot=15, seed=1).mean == got.mean  # seeded
    assert res.mui_at(3, n_boot=20).exact and not res.mui_at(3, n_boot=19).exact
    # a larger run: 12 samples, n = 6 -> 924 subsets, 400 drawn; the mean is within 4 standard errors
    sets12 = SETS + [[[u % U], [(u + 1) % U]] for u in range(6)]
    r12 = make_result(sets12, U)
    exact = [len(hand_union(sets12, c)) / (2 * U) for c in combinations(range(12), 6)]
    draw = r12.mui_at(6, n_boot=400, seed=3)
    assert not draw.exact
    assert abs(draw.mean - np.mean(exact)) < 4 * np.std(exact) / np.sqrt(400)


def test_mui_at_refusals(run_dir, tmp_path):
    res = load_result(run_dir)
    for bad in (0, 7):
        with pytest.raises(SaemuiError, match="between 1 and this run's N = 6"):
            res.mui_at(bad)
    nosets = make_result(SETS, U, keep_sets=False)
    assert nosets.mui_at(6).mean == pytest.approx(nosets.mui)
    with pytest.raises(SaemuiError, match="kept no per-sample key sets"):
        nosets.mui_at(3)


def _wilson_by_root(k: int, n: int, level: float) -> tuple[float, float]:
    # the Wilson interval is {p : |k/n - p| <= z sqrt(p (1 - p) / n)}: find its ends numerically
    z = norm.ppf(0.5 + level / 2)
    ph = k / n

    def f(p):
        return (ph - p) ** 2 - z * z * p * (1 - p) / n

    lo = 0.0 if k == 0 else brentq(f, 1e-12, min(ph, 1 - 1e-12))
    hi = 1.0 if k == n else brentq(f, max(ph, 1e-12), 1 - 1e-12)
    return lo, hi


@pytest.mark.parametrize(
    "k, n, level", [(0, 10, 0.95), (5, 10, 0.95), (10, 10, 0.9), (3, 40, 0.99), (1, 1, 0.95)]
)
def test_wilson_matches_root_finding(k, n, level):
    assert wilson_interval(k, n, level) == pytest.approx(_wilson_by_root(k, n, level), abs=1e-9)


def test_wilson_textbook_value_and_refusals():
    assert wilson_interval(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert all(np.isnan(wilson_interval(0, 0)))
    with pytest.raises(SaemuiError, match="0 <= k <= n"):
        wilson_interval(4, 3)
    with pytest.raises(SaemuiError, match="level"):
        wilson_interval(1, 3, level=95)


def test_accuracy_interval_counts_labelled_only(run_dir):
    acc = load_result(run_dir).accuracy_interval()
    # 5 labelled (one None), 3 correct
    assert (acc.k, acc.n, acc.method) == (3, 5, "wilson")
    assert acc.accuracy == pytest.approx(0.6) and (acc.lo, acc.hi) == pytest.approx(
        _wilson_by_root(3, 5, 0.95)
    )


def test_to_pandas_layer_and_unit(run_dir):
    res = load_result(run_dir)
    lay = res.to_pandas("layer")
    for r in range(2):
        union_r = {u for s in SETS for u in s[r]}
        row = lay.iloc[r]
        assert (
            row["layer"] == r
            and row["n_key"] == len(union_r)
            and row["mui"] == pytest.approx(100 * len(union_r) / U)
        )
        assert row["mean_set_size"] == pytest.approx(sum(len(s[r]) for s in SETS) / 6)
        assert row["n_fired"] == len(union_r) and row["n_tokens"] == 30
    unit = res.to_pandas("unit")
    assert len(unit) == 2 * U
    one = unit[(unit.layer == 0) & (unit.unit == 1)].iloc[0]
    assert one["key"] and one["keyfreq"] == 3 and one["key_rate"] == pytest.approx(3 / 6)
    assert one["fire"] == 6 and one["fire_rate"] == pytest.approx(6 / 30)
    with pytest.raises(SaemuiError, match="level='token'"):
        res.to_pandas("token")


def test_to_pandas_sample_keeps_text_and_metadata(run_dir):
    df = load_result(run_dir).to_pandas("sample")
    assert df["id"].tolist() == [f"item-{i}" for i in range(6)]
    assert df["n_key"].tolist() == [sum(len(x) for x in s) for s in SETS]
    assert df["prompt"].tolist() == [f"prompt {i}" for i in range(6)]
    assert df["response"].tolist() == [f"answer {i}" for i in range(6)]
    assert df["gold"].tolist() == [0, 10, 20, 30, 40, 50]
    # a meta field named like a samples.csv column is kept under a prefixed name
    assert df["meta.correct"].tolist() == ["meta-c"] * 6 and df["correct"].tolist() == CORRECT
    # records given explicitly; an id missing from them is refused
    recs = [Sample("p", "r", f"item-{i}") for i in range(6)]
    assert load_result(run_dir).to_pandas("sample", records=recs)["prompt"].tolist() == ["p"] * 6
    with pytest.raises(SaemuiError, match="no record with id 'item-5'"):
        load_result(run_dir).to_pandas("sample", records=recs[:5])
    # a result still in memory has no directory: no text columns
    assert "prompt" not in make_result(SETS, U).to_pandas("sample")


def test_repr_is_short(run_dir):
    text = repr(load_result(run_dir))
    assert len(text) < 300 and "mui=" in text and "n=6" in text and "accuracy=60.0%" in text


def test_subset_union_matches_hand(run_dir):
    res = load_result(run_dir)
    u = res.subset_union([1, 4, 4])
    assert {(int(r), int(c)) for r, c in zip(*np.nonzero(u))} == hand_union(SETS, [1, 4])


def test_to_pandas_sample_from_samples_csv_alone(tmp_path):
    # without records, the text and meta that samples.csv keeps (prompt, response, meta as JSON) are the columns
    from saemui.result import _expand_meta

    df = pd.DataFrame({"id": ["a", "b"], "correct": [True, False], "meta": [{"gold": 1, "correct": "x"}, {}]})
    out = _expand_meta(df)
    assert out["gold"].iloc[0] == 1 and pd.isna(out["gold"].iloc[1])
    assert out["meta.correct"].iloc[0] == "x" and pd.isna(out["meta.correct"].iloc[1])
    assert "meta" not in out.columns
