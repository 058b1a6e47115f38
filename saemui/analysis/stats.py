"""Small statistics shared by the law fits and the corollaries (input checks, z-scores, AUROC, Kendall tau).

Kept dependency-light (numpy + scipy.stats.rankdata) and written out by hand so each number can be checked
against an independent count in the tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata

from saemui.errors import SaemuiError

ArrayLike = Sequence[float] | np.ndarray


def as_1d(values: object, name: str, *, positive: bool = False, min_len: int = 1) -> np.ndarray:
    """Convert to a finite 1-D float array, or raise a one-line SaemuiError naming ``name``."""
    try:
        arr = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        raise SaemuiError(f"{name}: expected a 1-D sequence of numbers") from None
    if arr.ndim != 1:
        raise SaemuiError(f"{name}: expected a 1-D sequence of numbers, got shape {arr.shape}")
    if len(arr) < min_len:
        raise SaemuiError(f"{name}: expected at least {min_len} values, got {len(arr)}")
    bad = ~np.isfinite(arr)
    if bad.any():
        raise SaemuiError(f"{name}: value at position {int(np.argmax(bad))} is not finite ({arr[bad][0]})")
    if positive and (arr <= 0).any():
        i = int(np.argmax(arr <= 0))
        raise SaemuiError(
            f"{name}: all values must be > 0 (a logarithm is taken), got {arr[i]} at position {i}"
        )
    return arr


def same_length(**arrays: np.ndarray) -> int:
    """Check that all named arrays have one length; return it."""
    lengths = {k: len(v) for k, v in arrays.items()}
    if len(set(lengths.values())) > 1:
        desc = ", ".join(f"{k} has {n}" for k, n in lengths.items())
        raise SaemuiError(f"inputs must have equal length: {desc}")
    return next(iter(lengths.values()))


def as_labels(labels: object, n: int, name: str = "labels") -> np.ndarray:
    """Binary labels (bool or 0/1) as a bool array of length ``n``."""
    arr = np.asarray(labels)
    if arr.ndim != 1 or len(arr) != n:
        raise SaemuiError(f"{name}: expected {n} binary labels, got shape {arr.shape}")
    if arr.dtype != bool:
        if not np.isin(arr, [0, 1]).all():
            raise SaemuiError(f"{name}: expected booleans or 0/1, got values {sorted(set(arr.tolist()))[:5]}")
        arr = arr.astype(bool)
    return arr


def zscore(x: ArrayLike) -> np.ndarray:
    """Population z-score (ddof=0) over the given values [OURS].

    ddof=0 because the compared models are the whole population being ranked, not a sample of a larger one.
    A constant input gives all zeros (it cannot separate the models, so it should not move the ranking).
    """
    arr = as_1d(x, "x")
    sd = arr.std()
    if sd == 0:
        return np.zeros_like(arr)
    return (arr - arr.mean()) / sd


def auroc(scores: ArrayLike, labels: object) -> float:
    """Area under the ROC curve in Mann-Whitney form: P(score_pos > score_neg) + 0.5·P(tie).

    Computed from average ranks, so tied scores count one half, exactly as the pair count
    ``sum_{pos,neg} [s_p > s_n] + 0.5 [s_p == s_n]`` divided by ``n_pos · n_neg``.
    """
    s = as_1d(scores, "scores")
    y = as_labels(labels, len(s))
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise SaemuiError(f"labels: AUROC needs both classes, got {n_pos} positive and {n_neg} negative")
    ranks = rankdata(s)  # average ranks: ties share the mean rank, which is what gives the 0.5 credit
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))


def kendall_tau(a: ArrayLike, b: ArrayLike) -> float:
    """Kendall tau-b between two paired sequences (ties in either handled as in tau-b).

    ``tau_b = (C - D) / sqrt((n0 - t_a) (n0 - t_b))`` with C/D the concordant/discordant pairs, n0 = n(n-1)/2,
    t_a/t_b the pairs tied in a / in b (pairs tied in both count in both). O(n^2) pair count: the compared
    sets are models or benchmark subsets (tens to hundreds), and a direct count is easy to audit.
    Returns NaN when either sequence is constant (tau-b is undefined there).
    """
    x = as_1d(a, "a", min_len=2)
    y = as_1d(b, "b", min_len=2)
    same_length(a=x, b=y)
    dx = np.sign(x[:, None] - x[None, :])
    dy = np.sign(y[:, None] - y[None, :])
    iu = np.triu_indices(len(x), k=1)
    dx, dy = dx[iu], dy[iu]
    n0 = len(dx)
    s = float((dx * dy).sum())  # +1 concordant, -1 discordant, 0 tied in either
    t_a = int((dx == 0).sum())
    t_b = int((dy == 0).sum())
    denom = np.sqrt(float(n0 - t_a) * float(n0 - t_b))
    if denom == 0:
        return float("nan")
    return s / denom


@dataclass(frozen=True)
class TauCI:
    """Kendall tau-b with a bootstrap percentile interval.

    tau: tau-b on the full data.
    lo, hi: percentile interval of tau-b over resamples of the paired items (models), at ``level``.
    level: coverage of the interval, e.g. 0.95.
    n_boot: number of resamples drawn.
    n_undefined: resamples where tau-b was undefined (a constant resample) and were left out of the interval.
    """

    tau: float
    lo: float
    hi: float
    level: float
    n_boot: int
    n_undefined: int


def kendall_tau_ci(
    a: ArrayLike, b: ArrayLike, *, n_boot: int = 2000, seed: int = 0, level: float = 0.95
) -> TauCI:
    """Kendall tau-b and a percentile bootstrap CI from resampling the paired items with replacement [OURS].

    Duplicated items in a resample are tied in both sequences; tau-b discounts them rather than counting
    them as agreement. Seeded ``numpy.random.default_rng(seed)``: same inputs, same interval.
    """
    x = as_1d(a, "a", min_len=3)
    y = as_1d(b, "b", min_len=3)
    n = same_length(a=x, b=y)
    check_level(level)
    if n_boot < 1:
        raise SaemuiError(f"n_boot: expected a positive number of resamples, got {n_boot}")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    taus = np.array([kendall_tau(x[i], y[i]) for i in idx])
    ok = np.isfinite(taus)
    lo, hi = percentile_interval(taus[ok], level) if ok.any() else (float("nan"), float("nan"))
    return TauCI(kendall_tau(x, y), lo, hi, level, n_boot, int((~ok).sum()))


def check_level(level: float) -> None:
    if not 0 < level < 1:
        raise SaemuiError(f"level: expected a coverage strictly between 0 and 1 (e.g. 0.95), got {level}")


def percentile_interval(values: np.ndarray, level: float) -> tuple[float, float]:
    """Equal-tailed percentile interval (linear interpolation, numpy's default)."""
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(values, [tail, 100 - tail])
    return float(lo), float(hi)
