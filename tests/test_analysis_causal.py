"""saemui.analysis.causal (protocol §8.5) against hand computations on fixed data, and its figure."""

from __future__ import annotations

import numpy as np
import pytest

from saemui.analysis.causal import (
    AccuracyEffect,
    CausalEffect,
    accuracy_effect,
    causal_effect,
    causal_table,
    causal_verdict,
)
from saemui.errors import SaemuiError

DK = np.array([1.5, 0.2, -0.3, 2.0, 0.9, 1.1])
DR = np.array([[0.1, 0.3], [0.0, -0.2], [0.4, 0.2], [0.5, 0.7], [-0.1, 0.1], [0.2, 0.2]])


def _hand_boot(d: np.ndarray, n_boot: int, seed: int, level: float) -> tuple[float, float]:
    """Percentile interval of item-resample means, one Python loop over the resamples of default_rng(seed)."""
    idx = np.random.default_rng(seed).integers(0, len(d), size=(n_boot, len(d)))
    means = [sum(d[j] for j in row) / len(row) for row in idx]
    lo, hi = np.percentile(means, [(1 - level) / 2 * 100, (1 + level) / 2 * 100])
    return float(lo), float(hi)


def test_effect_is_the_mean_paired_difference_with_its_bootstrap() -> None:
    eff = causal_effect(DK, DR, n_boot=2000)
    d = [k - (a + b) / 2 for k, (a, b) in zip(DK, DR)]
    assert eff.e == pytest.approx(sum(d) / 6, abs=1e-12)
    assert eff.mean_key == pytest.approx(DK.sum() / 6) and eff.mean_random == pytest.approx(DR.sum() / 12)
    lo, hi = _hand_boot(np.array(d), 2000, 0, 0.95)
    assert (eff.lo, eff.hi) == pytest.approx((lo, hi), abs=1e-12)
    assert eff.n == 6 and eff.n_draws == 2 and eff.n_boot == 2000 and eff.seed == 0
    # the registered defaults: B = 10,000 and seed 0
    full = causal_effect(DK, DR)
    assert full.n_boot == 10_000 and (full.lo, full.hi) == pytest.approx(
        _hand_boot(np.array(d), 10_000, 0, 0.95)
    )


def test_bootstrap_is_paired_over_items() -> None:
    # random Δ = key Δ − 0.5 on every item: a paired bootstrap has no spread at all; an unpaired one would
    key = np.array([3.0, -1.0, 0.5, 7.0, 2.0])
    eff = causal_effect(key, np.stack([key - 0.5, key - 0.5], axis=1), n_boot=500)
    assert eff.e == pytest.approx(0.5) and eff.lo == pytest.approx(0.5) and eff.hi == pytest.approx(0.5)


def test_one_draw_may_be_1d_and_bad_shapes_are_refused() -> None:
    a = causal_effect(DK, DR[:, 0], n_boot=100)
    b = causal_effect(DK, DR[:, :1], n_boot=100)
    assert a == b
    with pytest.raises(SaemuiError, match="shape"):
        causal_effect(DK, DR[:4])
    with pytest.raises(SaemuiError, match="not finite"):
        causal_effect(DK, np.where(DR > 0.6, np.nan, DR))
    with pytest.raises(SaemuiError, match="n_boot"):
        causal_effect(DK, DR, n_boot=0)


def test_accuracy_effect_by_hand() -> None:
    clean = [1, 1, 1, 0, 1, 1, 0, 1]
    key = [0, 1, 0, 0, 0, 1, 0, 1]
    rand = [[1, 1], [1, 0], [0, 1], [0, 0], [1, 1], [1, 1], [0, 1], [1, 1]]
    a = accuracy_effect(clean, key, rand, n_boot=3000, seed=0)
    r = [sum(x) / 2 for x in rand]
    assert a.acc_clean == pytest.approx(6 / 8) and a.acc_key == pytest.approx(3 / 8)
    assert a.acc_random == pytest.approx(sum(r) / 8)
    d = np.array([ri - k for ri, k in zip(r, key)])
    assert a.d_acc == pytest.approx(d.mean())
    assert (a.lo, a.hi) == pytest.approx(_hand_boot(d, 3000, 0, 0.95))
    drop_k = np.array([c - k for c, k in zip(clean, key)], dtype=float)
    assert a.drop_key == pytest.approx((drop_k.mean(), *_hand_boot(drop_k, 3000, 0, 0.95)))
    assert a.drop_random[0] == pytest.approx(a.acc_clean - a.acc_random)
    with pytest.raises(SaemuiError, match="booleans"):
        accuracy_effect(clean, [2] * 8, rand)


def _eff(lo: float, hi: float) -> CausalEffect:
    return CausalEffect((lo + hi) / 2, lo, hi, 0.0, 0.0, 200, 5, 0.95, 10_000, 0)


@pytest.mark.parametrize(
    ("bounds", "n_points", "label"),
    [
        ([(0.1, 1), (0.2, 2), (0.01, 0.3), (0.5, 0.9)], 4, "supported"),
        ([(0.1, 1), (0.2, 2), (0.01, 0.3)], 4, "inconclusive"),  # a missing point never gives supported
        ([(0.1, 1), (0.2, 2), (0.0, 0.3), (0.5, 0.9)], 4, "inconclusive"),  # lower bound 0 is not > 0
        ([(-1, 0.0), (-2, -0.5), (0.1, 1), (0.2, 2)], 4, "not supported"),  # upper bound 0 counts as <= 0
        ([(-1, -0.1), (0.1, 1), (-0.2, 0.4), (0.2, 2)], 4, "inconclusive"),
        ([(-1, -0.1), (-3, -2)], 4, "not supported"),
    ],
)
def test_verdict_rules(bounds, n_points, label) -> None:
    v = causal_verdict([_eff(lo, hi) for lo, hi in bounds], n_points=n_points)
    assert v.label == label
    assert v.n_positive == sum(lo > 0 for lo, _ in bounds) and v.n_nonpositive == sum(
        hi <= 0 for _, hi in bounds
    )


def test_verdict_refuses_too_many_points() -> None:
    with pytest.raises(SaemuiError, match="5 points"):
        causal_verdict([_eff(0.1, 1)] * 5)


def test_table_and_figure(tmp_path) -> None:
    from saemui.plots import plot_causal, save_figure

    effects = {
        "smollm2 base": causal_effect(DK, DR, n_boot=200),
        "gemma base": causal_effect(-DK, DR, n_boot=200),
    }
    acc = {"smollm2 base": accuracy_effect([1, 1, 0], [0, 1, 0], [[1, 1], [1, 1], [0, 0]], n_boot=200)}
    t = causal_table(effects, acc)
    assert list(t["point"]) == list(effects)
    assert t.loc[0, "dAcc_pp"] == pytest.approx(100 * acc["smollm2 base"].d_acc)
    assert np.isnan(t.loc[1, "dAcc_pp"])
    assert isinstance(acc["smollm2 base"], AccuracyEffect)
    fig = plot_causal(effects, acc, causal_verdict(effects))
    written = save_figure(fig, tmp_path / "causal")
    assert [p.suffix for p in written] == [".png", ".pdf"] and all(p.stat().st_size > 0 for p in written)
    assert "n = 6 items" in fig._suptitle.get_text()
    with pytest.raises(SaemuiError):
        plot_causal({})
