"""Corollary 4: coverage curves vs brute-force subset averages, greedy vs brute-force optimum, lexical baseline;
the §8.4 designed datasets, measures, C4a and subset selection (C4b) against explicit set computations."""

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from saemui.analysis.corollary import MeanCI
from saemui.analysis.diversity import (
    SubsetCells,
    binomial_min_count,
    c4a_verdict,
    c4b_verdict,
    coverage_curve,
    dataset_clusters,
    dataset_mui,
    dataset_ngrams,
    designed_datasets,
    distinct_ngrams,
    diversity_delta_tau,
    greedy_lexical_subset,
    greedy_max_coverage,
    jaccard,
    kmq_subset,
    ngram_sets,
    pool_clusters,
    subset_rank_preservation,
    subset_selection,
    tau_b_rows,
    union_sizes,
)
from saemui.analysis.embed import kmeans, nearest_to_centers, word_ngrams
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


# ----- Study v2 §8.4 ------------------------------------------------------------------------------------------


def test_union_sizes_equal_python_sets():
    rng = np.random.default_rng(0)
    sets = _random_sets(rng, 9, 25, 0.2)
    taken = rng.integers(0, 3, size=(40, 9))
    got = union_sizes(sets, taken)
    for row, g in zip(taken, got):
        assert g == len(set().union(*(set(sets[i].tolist()) for i in np.flatnonzero(row))))


def test_designed_datasets_by_explicit_draws():
    sizes = {"t1": 30, "t2": 25, "t3": 40}
    ds = designed_datasets(sizes, n_items=12, draws=4, seed=3)
    rng = np.random.default_rng(3)
    tasks = list(sizes)
    k_id = 0
    for k in (1, 2, 3):
        for d in range(4):
            g = ds[ds.dataset == k_id]
            chosen = sorted(rng.choice(3, k, replace=False).tolist())
            exp = [
                (tasks[t], int(i))
                for t in chosen
                for i in rng.choice(sizes[tasks[t]], 12 // k, replace=False)
            ]
            assert list(zip(g.task, g.item)) == exp
            assert (g.level == k).all() and (g.draw == d).all() and len(g) == 12
            assert g.groupby("task").size().tolist() == [12 // k] * k
            assert not g.duplicated(["task", "item"]).any()
            k_id += 1
    assert ds.dataset.nunique() == 12
    with pytest.raises(SaemuiError, match="equal task shares"):
        designed_datasets({"a": 50, "b": 50, "c": 50, "d": 50, "e": 50}, n_items=12)


def _pool(rng):
    sizes = {"t1": 20, "t2": 16}
    keys = {
        t: [np.unique(rng.integers(0, 60, rng.integers(1, 5))) for _ in range(n)] for t, n in sizes.items()
    }
    texts = {
        t: [
            f"What is {rng.integers(0, 9)} {'+' if t == 't1' else '-'} {rng.integers(0, 9)}?"
            for _ in range(n)
        ]
        for t, n in sizes.items()
    }
    return sizes, keys, texts


def test_dataset_measures_equal_python_sets():
    rng = np.random.default_rng(4)
    sizes, keys, texts = _pool(rng)
    ds = designed_datasets(sizes, n_items=8, draws=3, seed=0)
    labels = {t: rng.integers(0, 5, n) for t, n in sizes.items()}
    mui = dataset_mui(ds, keys, 200)
    ngr = dataset_ngrams(ds, texts)
    clu = dataset_clusters(ds, labels)
    for d, g in ds.groupby("dataset"):
        items = list(zip(g.task, g.item))
        assert mui[d] == pytest.approx(
            100 * len(set().union(*(set(keys[t][i].tolist()) for t, i in items))) / 200
        )
        assert ngr[d] == len(set().union(*(set(word_ngrams(texts[t][i])) for t, i in items)))
        assert clu[d] == len({int(labels[t][i]) for t, i in items})


def test_pool_clusters_is_one_kmeans_over_the_pool():
    rng = np.random.default_rng(4)
    sizes, _, texts = _pool(rng)
    emb = lambda t: np.array([[sum(map(int, filter(str.isdigit, x))), x.count("+")] for x in t], float)  # noqa: E731
    out = pool_clusters(texts, embedder=emb, k=3, n_init=4, seed=0)
    km = kmeans(emb(texts["t1"] + texts["t2"]), 3, n_init=4, seed=0)
    assert np.array_equal(np.r_[out["t1"], out["t2"]], km.labels)


def test_diversity_delta_tau_against_scipy():
    ds = designed_datasets({"a": 30, "b": 30, "c": 30}, n_items=6, draws=4, seed=1)
    levels = ds.groupby("dataset")["level"].first().to_numpy()
    rng = np.random.default_rng(2)
    points = pd.DataFrame({"run_id": [f"r{i}" for i in range(6)], "family": ["S", "S", "S", "G", "G", "G"]})
    mui = levels[None, :] * rng.uniform(0.5, 1.5, (6, 1)) + rng.normal(0, 0.6, (6, len(levels)))
    ngr = levels + rng.normal(0, 1.0, len(levels))
    clu = rng.normal(0, 1, len(levels))
    res = diversity_delta_tau(ds, points, mui, {"n-grams": ngr, "k-means": clu}, n_boot=300)
    best = max(stats.kendalltau(levels, ngr).statistic, stats.kendalltau(levels, clu).statistic)
    exp = np.array([stats.kendalltau(levels, row).statistic for row in mui]) - best
    assert res.per_point["delta_tau"].to_numpy() == pytest.approx(exp)
    assert res.delta.estimate == pytest.approx(exp.mean()) and res.n_datasets == 12
    v = c4a_verdict(res)
    assert v.corollary == "C4a" and v.n == 6
    assert v.verdict == (
        "supported" if res.delta.lo > 0 else "not supported" if res.delta.hi < 0.05 else "inconclusive"
    )


def test_tau_b_rows_and_binomial_c():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 4, (30, 9)).astype(float)
    y = rng.integers(0, 4, (30, 9)).astype(float)
    x[0] = 1.0  # constant row: undefined
    got = tau_b_rows(x, y)
    assert np.isnan(got[0])
    for i in range(1, 30):
        assert got[i] == pytest.approx(stats.kendalltau(x[i], y[i]).statistic)
    assert binomial_min_count(12) == 3
    assert stats.binom.sf(2, 12, 0.05) == pytest.approx(0.0196, abs=1e-4)  # P(X >= 3), the protocol's 0.020
    assert stats.binom.sf(1, 12, 0.05) > 0.05  # P(X >= 2) = 0.118: c = 2 would be too lax
    assert binomial_min_count(1) == 1  # P(X >= 1) = 0.05 <= 0.05


def _selection_inputs(seed=0):
    rng = np.random.default_rng(seed)
    n_pts, n_items = 8, 30
    points = pd.DataFrame({"run_id": [f"r{i}" for i in range(n_pts)], "family": ["S"] * 5 + ["G"] * 3})
    skill = np.linspace(0.2, 0.8, n_pts)
    acc, keys_a, keys_b, texts, emb = {}, {}, {}, {}, {}
    for t in ("t1", "t2"):
        diff = rng.uniform(0, 1, n_items)
        acc[t] = (rng.uniform(0, 1, (n_pts, n_items)) < skill[:, None] * (1.2 - diff)).astype(float)
        keys_a[t] = [np.unique(rng.integers(0, 80, 6)) for _ in range(n_items)]
        keys_b[t] = [np.unique(rng.integers(0, 80, 6)) for _ in range(n_items)]
        texts[t] = [f"What is {rng.integers(0, 30)} + {rng.integers(0, 30)}?" for _ in range(n_items)]
        emb[t] = rng.normal(0, 1, (n_items, 4))
    return points, acc, {"base-S": keys_a, "base-G": keys_b}, texts, emb


def test_subset_selection_cells_by_hand():
    points, acc, sel, texts, emb = _selection_inputs()
    res = subset_selection(
        acc, points, sel, texts, emb, fractions=(0.1, 0.2), n_random=200, kmeans_restarts=3, n_boot=200
    )
    assert isinstance(res, SubsetCells) and len(res.cells) == 2 * 2 * 2
    rng = np.random.default_rng(0)
    for t in ("t1", "t2"):
        a = acc[t]
        full = a.mean(1)
        for f in (0.1, 0.2):
            size = round(f * 30)
            rand = [rng.choice(30, size, replace=False) for _ in range(200)]
            taus = np.array([stats.kendalltau(full, a[:, r].mean(1)).statistic for r in rand])
            taus = taus[np.isfinite(taus)]
            km = kmeans(emb[t], size, n_init=3, seed=0)
            kmq = nearest_to_centers(emb[t], km.centers)
            assert np.array_equal(res.subsets[(t, f, "kmq")], kmq)
            assert np.array_equal(kmq_subset(emb[t], size, n_init=3), kmq)
            lex = greedy_lexical_subset(texts[t], size).order
            assert np.array_equal(res.subsets[(t, f, "lexical")][: len(lex)], lex)
            for s, keys in sel.items():
                row = res.cells[
                    (res.cells.task == t) & (res.cells.fraction == f) & (res.cells.selector == s)
                ].iloc[0]
                g = greedy_max_coverage(keys[t], size).order
                assert np.array_equal(res.subsets[(t, f, f"mui:{s}")][: len(g)], g)
                tau_g = stats.kendalltau(full, a[:, res.subsets[(t, f, f"mui:{s}")]].mean(1)).statistic
                assert row.tau_greedy == pytest.approx(tau_g)
                assert row.q95_random == pytest.approx(np.percentile(taus, 95))
                assert row.percentile == pytest.approx(100 * np.mean(taus <= tau_g))
                assert row.reaches == (tau_g >= np.percentile(taus, 95))
                assert row.tau_kmq == pytest.approx(stats.kendalltau(full, a[:, kmq].mean(1)).statistic)
                assert row.n_items == size and row.n_random == len(taus)
    adv = (res.cells.tau_greedy - res.cells.tau_kmq).mean()
    assert res.advantage.estimate == pytest.approx(adv) and res.advantage.n == 8


def test_subset_bootstrap_recomputes_taus_on_resampled_points():
    points, acc, sel, texts, emb = _selection_inputs(1)
    res = subset_selection(
        acc, points, sel, texts, emb, fractions=(0.2,), n_random=20, kmeans_restarts=2, n_boot=60, boot_seed=5
    )
    rng = np.random.default_rng(5)
    groups = {"G": ["r5", "r6", "r7"], "S": ["r0", "r1", "r2", "r3", "r4"]}
    draws = {f: rng.integers(0, len(ids), size=(60, len(ids))) for f, ids in groups.items()}
    pos = {r: i for i, r in enumerate(points.run_id)}
    boot = []
    for b in range(60):
        rows = [pos[groups[f][i]] for f in groups for i in draws[f][b]]
        diffs = []
        for t in ("t1", "t2"):
            a = acc[t][rows]
            for s in sel:
                g, k = res.subsets[(t, 0.2, f"mui:{s}")], res.subsets[(t, 0.2, "kmq")]
                diffs.append(
                    stats.kendalltau(a.mean(1), a[:, g].mean(1)).statistic
                    - stats.kendalltau(a.mean(1), a[:, k].mean(1)).statistic
                )
        boot.append(np.mean(diffs))
    boot = np.asarray(boot)
    assert res.advantage.boot == pytest.approx(boot, nan_ok=True)


@pytest.mark.parametrize(
    "reach, lo, hi, expected",
    [
        (3, 0.01, 0.2, "supported"),
        (2, 0.01, 0.2, "inconclusive"),
        (3, -0.1, 0.2, "inconclusive"),
        (1, -0.2, 0.04, "not supported"),
        (0, -0.2, 0.2, "inconclusive"),
        (2, -0.2, 0.04, "inconclusive"),
    ],
)
def test_c4b_verdict_rules(reach, lo, hi, expected):
    cells = pd.DataFrame({"reaches": [True] * reach + [False] * (12 - reach)})
    res = SubsetCells(cells, MeanCI(0.05, lo, hi, 0.95, 18, 10, 0, np.zeros(10)), {})
    v = c4b_verdict(res)
    assert v.verdict == expected and v.n == 12 and "c = 3" in v.note
