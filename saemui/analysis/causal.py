"""The causal check of protocol §8.5 as statistics on per-item arrays (no model: :mod:`saemui.ablation` makes them).

- **Effect E** [OURS, registered]: per item i, Δlogp_key,i − mean_r Δlogp_random,ir, with Δlogp = log p(gold | prompt)
  clean minus ablated (nats, summed over gold tokens; positive = the ablation lowered the gold's probability).
  E is the mean over items; its interval is the percentile interval of a paired bootstrap over items (the key and
  random values of an item are resampled together), B = 10,000, ``numpy.random.default_rng(0)``.
- **ΔAcc** [OURS]: per item, mean_r correct_random,ir − correct_key,i: how much more accuracy the key ablation costs
  than a random one of the same size (percentage points; positive = key units matter more). Same paired bootstrap.
  The drops from the clean model (clean − key, clean − random) are reported from the same resamples.
- **Verdict**: supported iff E's lower bound > 0 at all ``n_points`` neuron points (4: two bases, two R* finals);
  not supported iff E's upper bound ≤ 0 at ≥ 2 points; inconclusive otherwise. A missing point can therefore
  never give "supported".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from saemui.analysis.stats import as_1d, check_level, percentile_interval
from saemui.errors import SaemuiError

CausalLabel = Literal["supported", "not supported", "inconclusive"]
N_BOOT = 10_000


def _draws(values: object, n: int, name: str) -> np.ndarray:
    """[N, R] float array (a 1-D input is one draw), finite, N rows."""
    arr = np.asarray(values, dtype=float)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[0] != n or arr.shape[1] < 1:
        raise SaemuiError(f"{name}: expected shape [{n} items, draws], got {arr.shape}")
    if not np.isfinite(arr).all():
        raise SaemuiError(f"{name}: contains a value that is not finite")
    return arr


def _boot_means(values_NK: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """[n_boot, K] means of the K columns over item resamples (rows drawn with replacement, one draw for all K)."""
    if n_boot < 1:
        raise SaemuiError(f"n_boot: expected a positive number of resamples, got {n_boot}")
    n = values_NK.shape[0]
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    return values_NK[idx].mean(axis=1)


@dataclass(frozen=True)
class CausalEffect:
    """E of one point with its paired item-bootstrap interval.

    e: mean over items of (Δlogp_key − mean over draws of Δlogp_random), nats. lo, hi: percentile interval at
    ``level``. mean_key, mean_random: mean Δlogp of the key ablation and of the random controls (nats).
    n: items; n_draws: random draws per item; n_boot, seed: the bootstrap.
    """

    e: float
    lo: float
    hi: float
    mean_key: float
    mean_random: float
    n: int
    n_draws: int
    level: float
    n_boot: int
    seed: int


def causal_effect(
    delta_key: object, delta_random: object, n_boot: int = N_BOOT, seed: int = 0, level: float = 0.95
) -> CausalEffect:
    """E and its interval from per-item Δlogp of the key ablation [N] and of the random controls [N, R]."""
    dk = as_1d(delta_key, "delta_key")
    dr = _draws(delta_random, len(dk), "delta_random")
    check_level(level)
    d = dk - dr.mean(axis=1)
    lo, hi = percentile_interval(_boot_means(d[:, None], n_boot, seed)[:, 0], level)
    return CausalEffect(
        float(d.mean()), lo, hi, float(dk.mean()), float(dr.mean()), len(dk), dr.shape[1], level, n_boot, seed
    )


@dataclass(frozen=True)
class AccuracyEffect:
    """ΔAcc of one point (fractions in [−1, 1]) with paired item-bootstrap intervals.

    d_acc: mean over items of (mean over draws of correct_random − correct_key); lo, hi its interval.
    acc_clean, acc_key, acc_random: accuracies (acc_random: mean over draws). drop_key = acc_clean − acc_key and
    drop_random = acc_clean − acc_random, each with an interval from the same resamples.
    """

    d_acc: float
    lo: float
    hi: float
    acc_clean: float
    acc_key: float
    acc_random: float
    drop_key: tuple[float, float, float]
    drop_random: tuple[float, float, float]
    n: int
    n_draws: int
    level: float
    n_boot: int
    seed: int


def _as_bool(values: object, name: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.dtype != bool and not np.isin(arr, [0, 1]).all():
        raise SaemuiError(f"{name}: expected booleans or 0/1")
    return arr.astype(float)


def accuracy_effect(
    correct_clean: object,
    correct_key: object,
    correct_random: object,
    n_boot: int = N_BOOT,
    seed: int = 0,
    level: float = 0.95,
) -> AccuracyEffect:
    """ΔAcc from per-item correctness clean [N], key-ablated [N] and under random controls [N, R]."""
    c0 = as_1d(_as_bool(correct_clean, "correct_clean"), "correct_clean")
    ck = as_1d(_as_bool(correct_key, "correct_key"), "correct_key")
    if len(ck) != len(c0):
        raise SaemuiError(f"correct_key: expected {len(c0)} items, got {len(ck)}")
    cr = _draws(_as_bool(correct_random, "correct_random"), len(c0), "correct_random")
    check_level(level)
    r = cr.mean(axis=1)
    cols = np.stack([r - ck, c0 - ck, c0 - r], axis=1)
    boots = _boot_means(cols, n_boot, seed)
    ivs = [percentile_interval(boots[:, j], level) for j in range(3)]
    means = cols.mean(axis=0)
    return AccuracyEffect(
        float(means[0]),
        *ivs[0],
        float(c0.mean()),
        float(ck.mean()),
        float(r.mean()),
        (float(means[1]), *ivs[1]),
        (float(means[2]), *ivs[2]),
        len(c0),
        cr.shape[1],
        level,
        n_boot,
        seed,
    )


@dataclass(frozen=True)
class CausalVerdict:
    """§8.5 verdict over the neuron points.

    label: "supported" / "not supported" / "inconclusive". n_given: points passed; n_points: points the protocol
    requires. n_positive: points with lower bound > 0; n_nonpositive: points with upper bound ≤ 0.
    """

    label: CausalLabel
    n_given: int
    n_points: int
    n_positive: int
    n_nonpositive: int


def causal_verdict(
    effects: Sequence[CausalEffect] | Mapping[str, CausalEffect], n_points: int = 4
) -> CausalVerdict:
    """Supported iff E's lower bound > 0 at all ``n_points`` points (all present); not supported iff E's upper
    bound ≤ 0 at ≥ 2 points; inconclusive otherwise."""
    eff = list(effects.values()) if isinstance(effects, Mapping) else list(effects)
    if n_points < 1:
        raise SaemuiError(f"n_points: expected a positive number of points, got {n_points}")
    if len(eff) > n_points:
        raise SaemuiError(f"effects: {len(eff)} points given, the check has {n_points}")
    pos = sum(1 for x in eff if x.lo > 0)
    nonpos = sum(1 for x in eff if x.hi <= 0)
    if len(eff) == n_points and pos == n_points:
        label: CausalLabel = "supported"
    elif nonpos >= 2:
        label = "not supported"
    else:
        label = "inconclusive"
    return CausalVerdict(label, len(eff), n_points, pos, nonpos)


def causal_table(
    effects: Mapping[str, CausalEffect], accuracy: Mapping[str, AccuracyEffect] | None = None
) -> pd.DataFrame:
    """One row per point: E (nats) with its interval, mean Δlogp key / random, n; ΔAcc (percentage points) with
    its interval and the accuracies (%) when ``accuracy`` has the point."""
    rows = []
    for name, x in effects.items():
        row = {
            "point": name,
            "E": x.e,
            "E_lo": x.lo,
            "E_hi": x.hi,
            "dlogp_key": x.mean_key,
            "dlogp_random": x.mean_random,
            "n": x.n,
            "n_draws": x.n_draws,
        }
        a = (accuracy or {}).get(name)
        if a is not None:
            row |= {
                "dAcc_pp": 100 * a.d_acc,
                "dAcc_lo": 100 * a.lo,
                "dAcc_hi": 100 * a.hi,
                "acc_clean": 100 * a.acc_clean,
                "acc_key": 100 * a.acc_key,
                "acc_random": 100 * a.acc_random,
            }
        rows.append(row)
    return pd.DataFrame(rows)


__all__ = [
    "N_BOOT",
    "AccuracyEffect",
    "CausalEffect",
    "CausalLabel",
    "CausalVerdict",
    "accuracy_effect",
    "causal_effect",
    "causal_table",
    "causal_verdict",
]
