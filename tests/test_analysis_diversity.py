"""Corollary 4: coverage curves vs brute-force subset averages, greedy vs brute-force optimum, lexical baseline."""

import itertools
import math

import numpy as np
import pytest

from saemui.analysis.diversity import (
    coverage_curve,
    distinct_ngrams,
    greedy_lexical_subset,
    greedy_max_coverage,
    jaccard,
    ngram_sets,
    subset_rank_preservation,
)
from saemui.analysis.stats import kendall_tau
from saemui.errors import SaemuiError

SETS = [
    np.array([0, 1, 2, 3]),
    np.array([0, 1, 4]),
    np.array([2, 3, 5]),
    np.array([7]),
    np.array([1, 7, 9, 9]),
]


def _union(sets, idx):
    return len(set().union(*(set(sets[i].tolist()) for i in idx))) if idx else 0


def _random_sets(rng, n_items, n_units, p=0.3):
    return [np.flatnonzero(rng.random(n_units) < p) for _ in range(n_items)]


def test_coverage_endpoints_and_exact_mean():
    c = coverage_curve(SETS, n_perm=100)
    sizes = [len(set(s.tolist())) for s in SETS]
    assert c.mean[0] == pytest.approx(np.mean(sizes))  # 4, 3, 3, 1, 3 (9 counted once)
    assert c.mean[-1] == c.total == 8
    assert c.lo[-1] == c.hi[-1] == 8
    assert min(sizes) <= c.lo[0] <= c.hi[0] <= max(sizes)
    # the mean at every k is the average union over all k-subsets
    for k in range(1, len(SETS) + 1):
        avg = np.mean([_union(SETS, idx) for idx in itertools.combinations(range(len(SETS)), k)])
        assert c.mean[k - 1] == pytest.approx(avg)
        assert c.lo[k - 1] <= avg + 1e-9 and avg - 1e-9 <= c.hi[k - 1]
    assert c.k.tolist() == [1, 2, 3, 4, 5]


def test_coverage_random_orders_reproducible_and_matrix_input_agrees():
    rng = np.random.default_rng(5)
    sets = _random_sets(rng, 12, 30)
    mat = np.zeros((12, 30), dtype=bool)
    for i, s in enumerate(sets):
        mat[i, s] = True
    a, b = coverage_curve(sets, seed=1), coverage_curve(mat, seed=1)
    assert np.array_equal(a.lo, b.lo) and np.array_equal(a.hi, b.hi) and a.mean == pytest.approx(b.mean)
    assert not np.array_equal(coverage_curve(sets, seed=2).lo, a.lo) or not np.array_equal(
        coverage_curve(sets, seed=2).hi, a.hi
    )
    assert np.all(np.diff(a.mean) >= 0)
    assert coverage_curve(sets).as_mui(300).mean[-1] == pytest.approx(a.total / 3)


def test_coverage_fixed_order_by_hand():
    c = coverage_curve(SETS, order=[3, 4, 0])  # {7}, +{1, 9}, +{0, 2, 3}
    assert c.mean.tolist() == [1, 3, 6]
    assert c.lo.tolist() == c.hi.tolist() == [1, 3, 6]
    with pytest.raises(SaemuiError, match="order"):
        coverage_curve(SETS, order=[0, 0])


def test_input_validation():
    with pytest.raises(SaemuiError, match="boolean"):
        coverage_curve(np.ones((3, 4), dtype=int))
    with pytest.raises(SaemuiError, match=">= 0"):
        coverage_curve([np.array([1, -2])])
    with pytest.raises(SaemuiError, match="integer unit ids"):
        coverage_curve([np.array([0.5])])


def test_jaccard_by_hand():
    # unions {0,1,2,3,4} and {2,3,5,7}: intersection {2,3}, union 7 elements
    assert jaccard(SETS[:2], SETS[2:4]) == pytest.approx(2 / 7)
    assert jaccard(SETS, SETS) == 1.0
    assert np.isnan(jaccard([[]], [[]]))
    with pytest.raises(SaemuiError, match="same unit columns"):
        jaccard(np.ones((2, 3), bool), np.ones((2, 4), bool))


def _best(sets, budget):
    return max(_union(sets, idx) for idx in itertools.combinations(range(len(sets)), budget))


def test_greedy_is_optimal_on_nested_and_disjoint_families():
    disjoint = [np.arange(5), np.arange(5, 7), np.arange(7, 10), np.arange(10, 11)]
    nested = [np.arange(2), np.arange(6), np.arange(4), np.arange(8, 9)]
    for sets in (disjoint, nested):
        for budget in range(1, len(sets) + 1):
            g = greedy_max_coverage(sets, budget)
            assert g.covered[-1] == _best(sets, budget)
    assert greedy_max_coverage(disjoint, 2).order.tolist() == [0, 2]


@pytest.mark.parametrize("seed", range(10))
def test_greedy_vs_brute_force_random(seed):
    rng = np.random.default_rng(seed)
    sets = _random_sets(rng, 7, 12, p=0.25)
    for budget in (1, 2, 3):
        g = greedy_max_coverage(sets, budget)
        opt = _best(sets, budget)
        covered = _union(sets, g.order.tolist())
        if g.stopped == "budget":
            assert len(g.order) == budget
        assert g.covered[-1] == covered == g.gains.sum()
        assert covered >= (1 - 1 / math.e) * opt
        if budget == 1:
            assert covered == opt  # one pick: greedy is exact
        # each pick is the largest marginal gain, lowest index on ties (checked by recounting)
        chosen: list[int] = []
        for i, gain in zip(g.order, g.gains):
            gains = [
                -1 if j in chosen else _union(sets, chosen + [j]) - _union(sets, chosen)
                for j in range(len(sets))
            ]
            assert gain == max(gains) and i == gains.index(max(gains))
            chosen.append(int(i))


def test_greedy_documented_suboptimal_case():
    # A = {0,1,2,3} is the largest set, but B ∪ C = {0,1,2,3,4,5} beats A ∪ anything for budget 2
    sets = [np.array([0, 1, 2, 3]), np.array([0, 1, 4]), np.array([2, 3, 5])]
    g = greedy_max_coverage(sets, 2)
    assert g.order.tolist() == [0, 1]
    assert g.covered[-1] == 5 < _best(sets, 2) == 6
    assert g.covered[-1] >= (1 - 1 / math.e) * 6


def test_greedy_ties_stops_and_random_tie_break():
    sets = [np.array([0, 1]), np.array([2, 3]), np.array([4, 5])]
    assert greedy_max_coverage(sets, 1).order.tolist() == [0]
    picks = {int(greedy_max_coverage(sets, 1, tie_break="random", seed=s).order[0]) for s in range(20)}
    assert picks == {0, 1, 2}
    r1 = greedy_max_coverage(sets, 3, tie_break="random", seed=4)
    assert r1.order.tolist() == greedy_max_coverage(sets, 3, tie_break="random", seed=4).order.tolist()
    t = greedy_max_coverage(sets, target_fraction=0.6)
    assert t.stopped == "target" and t.order.tolist() == [0, 1] and t.fraction == pytest.approx(4 / 6)
    e = greedy_max_coverage([np.array([0, 1]), np.array([1]), np.array([0])], 3)
    assert e.stopped == "exhausted" and e.order.tolist() == [0] and e.fraction == 1.0
    with pytest.raises(SaemuiError, match="budget"):
        greedy_max_coverage(sets, 4)
    with pytest.raises(SaemuiError, match="budget.*target_fraction"):
        greedy_max_coverage(sets)


def test_subset_rank_preservation_by_hand():
    rng = np.random.default_rng(0)
    acc = (rng.random((5, 40)) < np.array([0.9, 0.7, 0.5, 0.3, 0.1])[:, None]).astype(float)
    order = list(range(40))
    tab = subset_rank_preservation(acc, order, n_random=20)
    assert tab["n_items"].tolist() == [2, 4, 8]
    for size, tau in zip(tab["n_items"], tab["tau"]):
        expected = kendall_tau(acc.mean(axis=1), acc[:, :size].mean(axis=1))
        assert tau == pytest.approx(expected, nan_ok=True)
    assert {"tau_random_mean", "tau_random_lo", "tau_random_hi"} <= set(tab.columns)
    # an item set that orders the models perfectly gives tau = 1
    ideal = np.array([[1, 1, 1, 1], [1, 1, 1, 0], [1, 1, 0, 0], [1, 0, 0, 0]], dtype=float)
    acc2 = np.hstack([ideal] + [np.ones((4, 16))])  # 20 items, the other 16 are solved by everyone
    assert subset_rank_preservation(acc2, [0, 1, 2, 3], fractions=[0.2])["tau"].tolist() == [1.0]
    assert np.isnan(subset_rank_preservation(acc2, [5, 6, 7, 8], fractions=[0.2])["tau"][0])
    with pytest.raises(SaemuiError, match="needs 4 items"):
        subset_rank_preservation(acc2, [0, 1], fractions=[0.2])


def test_lexical_baseline_by_hand():
    # bigrams: (a b) (b a) (a b) | (a b) (b c): 3 distinct of 5
    assert distinct_ngrams(["A b a b", "a b, c"], 2) == pytest.approx(0.6)
    assert distinct_ngrams(["one two three"], 1) == 1.0
    assert np.isnan(distinct_ngrams(["one"], 2))
    sets = ngram_sets(["a b a b", "a b c", "x y"], 2)
    assert [s.tolist() for s in sets] == [[0, 1], [0, 2], [3]]
    g = greedy_lexical_subset(["the cat sat", "the cat sat on the mat", "a dog ran far away"], 2, n=1)
    assert g.order.tolist() == [1, 2]  # 5 distinct words, then 5 new words


def test_coverage_curve_takes_a_result_and_refuses_per_layer_sets():
    # Two layers of 4 units; per-sample key sets by layer. Global id = row * 4 + unit.
    from saemui.result import MUIResult

    per_sample = [([0, 1], [2]), ([1], []), ([3], [2, 3])]
    ip, units = [0], []
    for sets in per_sample:
        for layer_units in sets:
            units += layer_units
            ip.append(len(units))
    res = MUIResult(
        summary={"layers": [0, 1], "units": {"n_units": 4}, "mui": 0.0, "per_layer": [0.0, 0.0]},
        arrays={"set_indptr": np.array(ip, dtype=np.int64), "set_units": np.array(units, dtype=np.int32)},
    )
    curve = coverage_curve(res, order=[0, 1, 2])
    # by hand: sample 0 covers {0, 1, 6}; sample 1 adds nothing ({1}); sample 2 adds {3, 7} (6 already covered)
    assert curve.mean.tolist() == [3.0, 3.0, 5.0]
    with pytest.raises(SaemuiError, match="per-layer sets"):
        coverage_curve([res.sample_sets(i) for i in range(3)], order=[0, 1, 2])
