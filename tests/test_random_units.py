"""Random-unit MUI (protocol §7.3) against hand computations and its closed-form expectation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from saemui.analysis.random_units import (
    expected_random_mui,
    layer_set_sizes,
    random_unit_mui,
    random_unit_mui_record,
)
from saemui.errors import SaemuiError


def test_deterministic_cases_by_hand():
    # one sample: its sets never overlap themselves, so MUI = sum of sizes / (L U) whatever is drawn
    r = random_unit_mui([[3, 1, 0]], n_units=10)
    assert r.mean == r.expected == pytest.approx((3 + 1 + 0) / 30) and len(r.draws) == 20
    # a sample that takes every unit of a layer covers it fully; the other layer has one size-2 sample
    r = random_unit_mui([[5, 2], [1, 0]], n_units=5, n_draws=7)
    assert all(d == pytest.approx((5 + 2) / 10) for d in r.draws)
    # no key units at all
    assert random_unit_mui(np.zeros((4, 2), dtype=int), n_units=8).mean == 0.0


def test_closed_form_by_hand():
    # L = 1, U = 4, sizes 2 and 1: P(unit missed) = (1 - 2/4)(1 - 1/4) = 3/8, E[union] = 4 * 5/8 = 2.5
    assert expected_random_mui([[2], [1]], 4) == pytest.approx(2.5 / 4)
    # two layers of U = 2, two samples of size 1 each in layer 0, none in layer 1: E = 2 (1 - 1/4) / 4
    assert expected_random_mui([[1, 0], [1, 0]], 2) == pytest.approx(1.5 / 4)


def test_draws_range_and_mean_match_closed_form():
    # L = 1, U = 2, two samples of size 1: each draw's union is 1 or 2 units -> MUI 0.5 or 1, mean 0.75
    r = random_unit_mui([[1], [1]], n_units=2, n_draws=4000, seed=3)
    assert set(r.draws) <= {0.5, 1.0}
    sd = math.sqrt(0.25 * 0.25)  # Bernoulli(1/2) on {0.5, 1}
    assert abs(r.mean - 0.75) < 4 * sd / math.sqrt(4000)
    # a realistic shape (200 samples, k = 3 of 1536 in 30 layers, some empty samples): mean of 20 draws within
    # 4 standard errors of the closed form; every draw between the largest set and the sum of the sets
    rng = np.random.default_rng(1)
    sizes = np.full((200, 30), 3)
    sizes[rng.random(200) < 0.1] = 0
    r = random_unit_mui(sizes, n_units=1536, n_draws=20, seed=0)
    exp = expected_random_mui(sizes, 1536)
    se = np.std(r.draws, ddof=1) / math.sqrt(20)
    assert abs(r.mean - exp) < 4 * se + 1e-6
    assert all(3 / 1536 <= d <= sizes.sum() / (30 * 1536) for d in r.draws)
    # seeded: same seed, same draws; another seed, other draws
    assert random_unit_mui(sizes, 1536, 3, seed=0).draws == r.draws[:3]
    assert random_unit_mui(sizes, 1536, 3, seed=1).draws != r.draws[:3]


def test_subsets_are_uniform_and_distinct():
    # U = 5, k = 2: each of the 10 pairs should appear about equally often (chi-square by hand)
    from saemui.analysis.random_units import _draw_subsets

    rows = _draw_subsets(np.random.default_rng(0), 20000, 2, 5)
    assert (rows[:, 0] != rows[:, 1]).all()
    pairs = np.sort(rows, axis=1)
    counts = np.bincount(pairs[:, 0] * 5 + pairs[:, 1], minlength=25)[
        [a * 5 + b for a in range(5) for b in range(a + 1, 5)]
    ]
    expected = 20000 / 10
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 27.9  # 99.9th percentile of chi-square with 9 df


def test_from_record_sets():
    # global ids row * U + unit: sample 0 has units {1, 4} in layer 0 and {0} in layer 1; sample 1 has {2} in 1
    U, L = 5, 2
    sets = [[1, 4, 5 + 0], [5 + 2]]
    assert layer_set_sizes(sets, U, L).tolist() == [[2, 1], [0, 1]]
    rec = {"model": "m", "task": "t", "settings": {"P0": {"sets": sets, "n_units": U, "n_layers": L}}}
    r = random_unit_mui_record(rec, n_draws=50)
    # layer 0: one sample of 2 -> 2 units; layer 1: two of size 1 -> E = 5 (1 - (4/5)^2) = 1.8
    assert r.expected == pytest.approx((2 + 1.8) / 10)
    with pytest.raises(SaemuiError, match="kept no key sets"):
        random_unit_mui_record({"settings": {"P0": {"sets": None, "n_units": U, "n_layers": L}}})
    with pytest.raises(SaemuiError, match="no setting"):
        random_unit_mui_record(rec, setting="share-1/128")
    with pytest.raises(SaemuiError, match="outside"):
        layer_set_sizes([[10]], U, L)
    with pytest.raises(SaemuiError, match="between 0 and n_units"):
        random_unit_mui([[6]], U)
