"""Shared pieces of the Study v2 corollary tests (``docs/study/protocol.md`` §8.1-§8.4).

A verdict record every corollary returns (:class:`CorollaryVerdict`), the mean with a t-interval over seeds
(§8.1), the sign of an interval against 0, and the mean of per-run values with a bootstrap over runs
stratified by family (§2: runs are the unit of independence; :func:`saemui.analysis.study.cluster_weights`
draws the resamples, so every run bootstrap of the study draws them the same way).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import t as student_t

from saemui.analysis.stats import ArrayLike, as_1d, check_level, percentile_interval, same_length
from saemui.analysis.study import cluster_weights
from saemui.errors import SaemuiError

SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE = "supported", "not supported", "inconclusive"
#: §8.2-§8.4: resamples and seed of every run bootstrap of the corollaries (as §6.2)
N_BOOT = 10_000
BOOT_SEED = 0
LEVEL = 0.95


@dataclass(frozen=True)
class CorollaryVerdict:
    """The decision of one corollary test, printable as a results-table row.

    corollary: "C1" … "C4b". statistic: what ``estimate`` is (e.g. "AUROC(D1)").
    estimate, interval, level: the tested quantity and its interval (NaN when the rule uses counts only).
    n: independent units behind it (runs, transitions or cells, named in ``statistic``/``note``).
    verdict: "supported", "not supported" or "inconclusive", from the protocol's inequalities only.
    note: the other numbers the rule used (counts, second interval, flags).
    """

    corollary: str
    statistic: str
    estimate: float
    interval: tuple[float, float]
    level: float
    n: int
    verdict: str
    note: str = ""

    def as_row(self) -> dict[str, object]:
        """One flat row for a results table."""
        return {
            "corollary": self.corollary,
            "statistic": self.statistic,
            "estimate": self.estimate,
            "lo": self.interval[0],
            "hi": self.interval[1],
            "level": self.level,
            "n": self.n,
            "verdict": self.verdict,
            "note": self.note,
        }

    def __str__(self) -> str:
        lo, hi = self.interval
        ci = "" if np.isnan(lo) and np.isnan(hi) else f" [{lo:.3g}, {hi:.3g}] ({self.level:.0%})"
        tail = f"; {self.note}" if self.note else ""
        return f"{self.corollary}: {self.statistic} = {self.estimate:.3g}{ci}, n = {self.n}: {self.verdict}{tail}"


@dataclass(frozen=True)
class MeanCI:
    """A mean over runs with its bootstrap-over-runs percentile interval.

    n: runs averaged; n_boot, seed: resamples and ``default_rng`` seed; boot: the resampled means.
    """

    estimate: float
    lo: float
    hi: float
    level: float
    n: int
    n_boot: int
    seed: int
    boot: np.ndarray


def t_interval_mean(values: np.ndarray, level: float = LEVEL) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean over axis 0 with the t-interval ``mean ± t(1 − (1 − level)/2; n − 1)·s/√n`` (s with ddof = 1).

    values: shape (n, …), e.g. seeds × transitions (§8.1: n = 3 seeds, df 2, t = 4.303 at 95 %).
    Returns (mean, lo, hi), each of shape values.shape[1:].
    """
    check_level(level)
    v = np.asarray(values, dtype=float)
    if v.ndim < 1 or v.shape[0] < 2:
        raise SaemuiError(f"t-interval: needs at least 2 values (seeds), got shape {v.shape}")
    if not np.isfinite(v).all():
        raise SaemuiError("t-interval: values must be finite numbers")
    n = v.shape[0]
    mean = v.mean(axis=0)
    half = float(student_t.ppf(1 - (1 - level) / 2, n - 1)) * v.std(axis=0, ddof=1) / np.sqrt(n)
    return mean, mean - half, mean + half


def interval_sign(lo: ArrayLike | float, hi: ArrayLike | float) -> np.ndarray:
    """+1 where the interval lies above 0 (lo > 0), −1 below (hi < 0), 0 where it contains 0 (bounds
    included: an interval touching 0 does not exclude it)."""
    lo_a, hi_a = np.asarray(lo, dtype=float), np.asarray(hi, dtype=float)
    return np.where(lo_a > 0, 1, np.where(hi_a < 0, -1, 0)).astype(int)


def run_bootstrap_mean(
    values: ArrayLike,
    families: object,
    runs: object | None = None,
    *,
    n_boot: int = N_BOOT,
    seed: int = BOOT_SEED,
    level: float = LEVEL,
) -> MeanCI:
    """Mean of one value per run with a percentile bootstrap over runs, stratified by family (family sizes
    kept, §6.2), ``numpy.random.default_rng(seed)``."""
    v = as_1d(values, "values")
    fam = np.asarray(families, dtype=object)
    run = np.arange(len(v)) if runs is None else np.asarray(runs, dtype=object)
    same_length(values=v, families=fam, runs=run)
    if len(set(map(str, run))) != len(run):
        raise SaemuiError("runs: a run appears twice; pass one value per run (protocol §2)")
    check_boot(n_boot, level)
    w = cluster_weights(fam, run, np.random.default_rng(seed), n_boot).astype(float)
    boot = (w @ v) / w.sum(axis=1)
    lo, hi = percentile_interval(boot, level)
    return MeanCI(float(v.mean()), lo, hi, level, len(v), n_boot, seed, boot)


def need_columns(df: pd.DataFrame, cols: Sequence[str], name: str) -> None:
    """Raise a one-line SaemuiError naming the columns of ``cols`` that ``df`` lacks."""
    if not isinstance(df, pd.DataFrame):
        raise SaemuiError(f"{name}: expected a pandas DataFrame, got {type(df).__name__}")
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise SaemuiError(f"{name}: missing column(s) {', '.join(missing)} (expected {', '.join(cols)})")


def check_boot(n_boot: int, level: float) -> None:
    """A positive number of resamples and a coverage strictly between 0 and 1."""
    check_level(level)
    if not (isinstance(n_boot, int | np.integer) and n_boot >= 1):
        raise SaemuiError(f"n_boot: expected a positive number of resamples, got {n_boot!r}")


def three_way(supported: bool, not_supported: bool) -> str:
    """The verdict from the two rules, applied in the order the protocol writes them (supported first, as
    §11 fixed for §6.4): an interval meeting both is "supported"."""
    if supported:
        return SUPPORTED
    if not_supported:
        return NOT_SUPPORTED
    return INCONCLUSIVE


__all__ = [
    "BOOT_SEED",
    "CorollaryVerdict",
    "INCONCLUSIVE",
    "LEVEL",
    "MeanCI",
    "NOT_SUPPORTED",
    "N_BOOT",
    "SUPPORTED",
    "check_boot",
    "interval_sign",
    "need_columns",
    "run_bootstrap_mean",
    "t_interval_mean",
    "three_way",
]
