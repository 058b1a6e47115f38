"""Corollary 4, diversity: coverage of key units by samples, greedy subset selection, lexical baseline.

[P] On data of fixed size, MUI measures model-specific diversity: more diverse data activate more distinct key
units. [X] EffiEval selects an evaluation subset by greedy maximum coverage over a 0/1 (samples × units) matrix
of per-sample key units, adding the sample that covers the most still-uncovered units (random tie-break), until
a budget of k samples or a fraction r of the full union is covered. Union-growth curves, Jaccard overlap, the
rank-preservation check and the lexical (n-gram) baseline are [OURS].

Inputs ("sets"): either a list with one 1-D array of non-negative integer unit ids per sample (duplicates are
ignored), or a 2-D **boolean** matrix (samples × units) whose column index is the unit id. A 2-D integer array
is refused because it could be read either way.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

from saemui.analysis.stats import check_level, kendall_tau, percentile_interval
from saemui.errors import SaemuiError

UnitSets = Sequence[Sequence[int] | np.ndarray] | np.ndarray


@dataclass(frozen=True)
class _Memberships:
    """Sparse (item, unit) pairs with unit ids compressed to 0..n_units-1 (only units that occur)."""

    items: np.ndarray
    units: np.ndarray
    unit_ids: np.ndarray
    n_items: int

    @property
    def n_units(self) -> int:
        return len(self.unit_ids)


def _memberships(sets: UnitSets, name: str = "sets") -> _Memberships:
    if isinstance(sets, np.ndarray) and sets.ndim == 2:
        if sets.dtype != bool:
            raise SaemuiError(
                f"{name}: a 2-D array must be a boolean samples × units matrix (got dtype {sets.dtype}); "
                "pass a list of unit-id arrays for ids"
            )
        items, cols = np.nonzero(sets)
        n_items = sets.shape[0]
    else:
        if hasattr(sets, "flat_keys"):  # an MUIResult: each sample's key units over all layers, as global ids
            ptr, ids = sets.flat_keys()
            sets = [ids[ptr[i] : ptr[i + 1]] for i in range(len(ptr) - 1)]
        try:
            seq = list(sets)
        except TypeError:
            raise SaemuiError(f"{name}: expected a list of unit-id arrays or a boolean matrix") from None
        item_parts, unit_parts = [], []
        for i, s in enumerate(seq):
            try:
                arr = np.asarray(s)
            except ValueError:  # ragged nesting, e.g. [res.sample_sets(i) ...] (one array per layer)
                arr = np.asarray(s, dtype=object)
            if arr.dtype == object or arr.ndim > 1:
                raise SaemuiError(
                    f"{name}[{i}]: expected one 1-D array of unit ids per sample, got a nested sequence "
                    "(per-layer sets?); pass the MUIResult itself, whose sets are flattened to global ids"
                )
            if arr.size == 0:
                continue
            if arr.ndim != 1 or not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool):
                if arr.ndim == 1 and np.issubdtype(arr.dtype, np.floating) and np.all(arr == np.round(arr)):
                    arr = arr.astype(np.int64)
                else:
                    raise SaemuiError(
                        f"{name}[{i}]: expected a 1-D array of integer unit ids, got {arr.dtype} {arr.shape}"
                    )
            if arr.dtype == bool:
                raise SaemuiError(
                    f"{name}[{i}]: got booleans; pass a 2-D boolean matrix, or integer unit ids per sample"
                )
            if (arr < 0).any():
                raise SaemuiError(f"{name}[{i}]: unit ids must be >= 0, got {int(arr.min())}")
            u = np.unique(arr.astype(np.int64))
            item_parts.append(np.full(len(u), i, dtype=np.int64))
            unit_parts.append(u)
        n_items = len(seq)
        items = np.concatenate(item_parts) if item_parts else np.zeros(0, np.int64)
        cols = np.concatenate(unit_parts) if unit_parts else np.zeros(0, np.int64)
    if n_items == 0:
        raise SaemuiError(f"{name}: expected at least one sample")
    unit_ids, units = np.unique(cols, return_inverse=True)
    return _Memberships(items.astype(np.int64), units.astype(np.int64).ravel(), unit_ids, int(n_items))


def union_ids(sets: UnitSets) -> np.ndarray:
    """Sorted unit ids covered by at least one sample."""
    return _memberships(sets).unit_ids


@dataclass(frozen=True)
class CoverageCurve:
    """Union size of key units against the number of samples taken.

    k: number of samples, 1..len.
    mean: for random orders, the **exact** expected union size of a uniformly random k-subset
        (sum over units of 1 − C(n − c_u, k) / C(n, k), c_u = samples containing unit u); for a fixed order, the
        union of its first k samples.
    lo, hi: percentile band of the union size over ``n_perm`` seeded random orders at ``level`` (the spread
        across orders, not an interval for the mean, which is exact); equal to ``mean`` for a fixed order.
    total: union size of all samples (the last point of a full random-order curve).
    n_items: number of samples available.
    n_perm: random orders drawn (0 for a fixed order).
    level: coverage of the band (meaningless when n_perm is 0: lo = mean = hi).
    """

    k: np.ndarray = field(repr=False)
    mean: np.ndarray = field(repr=False)
    lo: np.ndarray = field(repr=False)
    hi: np.ndarray = field(repr=False)
    total: int
    n_items: int
    n_perm: int
    level: float

    def as_mui(self, denominator: float) -> CoverageCurve:
        """The curve in MUI units: ``union / denominator × 100`` (denominator = units per layer × layers)."""
        if not denominator > 0:
            raise SaemuiError(f"denominator: expected the total number of units (> 0), got {denominator}")
        f = 100.0 / denominator
        return CoverageCurve(
            self.k, self.mean * f, self.lo * f, self.hi * f, self.total, self.n_items, self.n_perm, self.level
        )


def _expected_union(ms: _Memberships) -> np.ndarray:
    n = ms.n_items
    counts = np.bincount(ms.units, minlength=ms.n_units)
    j = np.arange(n, dtype=float)
    missed = np.zeros(n)
    # group units by how many samples contain them: the miss probability depends only on that count
    for c, w in zip(*np.unique(counts, return_counts=True)):
        ratio = np.clip((n - c - j) / (n - j), 0.0, None)
        missed += w * np.cumprod(ratio)
    return ms.n_units - missed


def _first_cover(ms: _Memberships, pos: np.ndarray, by_unit: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """For each unit, the earliest position (in an order) of a sample containing it."""
    return np.minimum.reduceat(pos[ms.items[by_unit]], starts)


def coverage_curve(
    sets: UnitSets,
    order: Sequence[int] | None = None,
    n_perm: int = 200,
    seed: int = 0,
    level: float = 0.95,
) -> CoverageCurve:
    """Union-growth curve of key units [OURS].

    order: sample indices in the order to add them (e.g. a greedy selection; may be a prefix). If None, random
        orders: exact mean plus a percentile band from ``n_perm`` permutations drawn with
        ``numpy.random.default_rng(seed)``.
    """
    check_level(level)
    ms = _memberships(sets)
    n = ms.n_items
    if ms.n_units == 0:
        z = np.zeros(n if order is None else len(order))
        return CoverageCurve(np.arange(1, len(z) + 1), z, z, z, 0, n, 0, level)
    by_unit = np.argsort(ms.units, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(ms.units[by_unit]) != 0])
    if order is not None:
        o = np.asarray(order, dtype=np.int64)
        if o.ndim != 1 or len(o) == 0 or len(np.unique(o)) != len(o) or o.min() < 0 or o.max() >= n:
            raise SaemuiError(f"order: expected distinct sample indices in 0..{n - 1}")
        pos = np.full(n, n, dtype=np.int64)  # samples outside the order never cover anything
        pos[o] = np.arange(len(o))
        first = _first_cover(ms, pos, by_unit, starts)
        curve = np.cumsum(np.bincount(first, minlength=n + 1)[: len(o)]).astype(float)
        return CoverageCurve(np.arange(1, len(o) + 1), curve, curve, curve, ms.n_units, n, 0, level)
    if n_perm < 1:
        raise SaemuiError(f"n_perm: expected a positive number of random orders, got {n_perm}")
    rng = np.random.default_rng(seed)
    curves = np.empty((n_perm, n))
    for b in range(n_perm):
        pos = np.empty(n, dtype=np.int64)
        pos[rng.permutation(n)] = np.arange(n)
        curves[b] = np.cumsum(np.bincount(_first_cover(ms, pos, by_unit, starts), minlength=n))
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(curves, [tail, 100 - tail], axis=0)
    return CoverageCurve(np.arange(1, n + 1), _expected_union(ms), lo, hi, ms.n_units, n, n_perm, level)


def jaccard(a_sets: UnitSets, b_sets: UnitSets) -> float:
    """Jaccard overlap |A ∩ B| / |A ∪ B| of the unions of two collections of key-unit sets [OURS].

    Unit ids must come from one numbering (same model, basis and layer layout). NaN when both unions are empty.
    """
    if isinstance(a_sets, np.ndarray) and isinstance(b_sets, np.ndarray) and a_sets.ndim == b_sets.ndim == 2:
        if a_sets.shape[1] != b_sets.shape[1]:
            raise SaemuiError(
                f"b_sets: boolean matrices must have the same unit columns, got {a_sets.shape[1]} and {b_sets.shape[1]}"
            )
    a, b = union_ids(a_sets), union_ids(b_sets)
    union = len(np.union1d(a, b))
    return len(np.intersect1d(a, b, assume_unique=True)) / union if union else float("nan")


@dataclass(frozen=True)
class GreedyResult:
    """A greedy maximum-coverage selection.

    order: chosen sample indices, in the order chosen (every prefix is the greedy answer for that budget).
    gains: newly covered units contributed by each chosen sample.
    covered: cumulative union size after each choice.
    total: union size of all samples.
    fraction: covered[-1] / total (1.0 if total is 0).
    stopped: why selection ended: "budget", "target" (target_fraction reached) or "exhausted" (no sample adds a
        unit; the selection may then be shorter than the budget).
    tie_break: "lowest" (lowest sample index among equal gains) or "random" (seeded).
    """

    order: np.ndarray
    gains: np.ndarray
    covered: np.ndarray
    total: int
    fraction: float
    stopped: str
    tie_break: str

    def curve(self) -> CoverageCurve:
        """The selection's union-growth curve, for ``plots.plot_coverage``."""
        c = self.covered.astype(float)
        return CoverageCurve(np.arange(1, len(c) + 1), c, c, c, self.total, len(self.order), 0, 1.0)


def _gather(ptr: np.ndarray, order: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Concatenate the CSR rows ``keys`` (``order[ptr[k]:ptr[k+1]]``) without a Python loop."""
    lens = ptr[keys + 1] - ptr[keys]
    if lens.sum() == 0:
        return np.zeros(0, dtype=np.int64)
    offs = np.repeat(ptr[keys] - np.r_[0, np.cumsum(lens)[:-1]], lens)
    return order[np.arange(lens.sum()) + offs]


def greedy_max_coverage(
    sets: UnitSets,
    budget: int | None = None,
    *,
    target_fraction: float | None = None,
    tie_break: Literal["lowest", "random"] = "lowest",
    seed: int = 0,
) -> GreedyResult:
    """Greedy maximum coverage: repeatedly add the sample covering the most still-uncovered units [X].

    budget: maximum number of samples; target_fraction: stop once this fraction of the full union is covered
    (EffiEval's r). At least one is required. Ties: "lowest" index (deterministic, our default) or "random"
    among the tied samples with ``numpy.random.default_rng(seed)`` (EffiEval's rule). Greedy is within
    (1 − 1/e) of the best coverage for the same budget, not always optimal.
    """
    if budget is None and target_fraction is None:
        raise SaemuiError("greedy_max_coverage: give a budget (number of samples) or a target_fraction")
    if tie_break not in ("lowest", "random"):
        raise SaemuiError(f"tie_break: expected 'lowest' or 'random', got {tie_break!r}")
    ms = _memberships(sets)
    n = ms.n_items
    if budget is not None and not (isinstance(budget, int | np.integer) and 1 <= budget <= n):
        raise SaemuiError(
            f"budget: expected an integer from 1 to {n} (the number of samples), got {budget!r}"
        )
    if target_fraction is not None and not 0 < target_fraction <= 1:
        raise SaemuiError(f"target_fraction: expected a fraction in (0, 1], got {target_fraction}")
    rng = np.random.default_rng(seed)
    by_item = np.argsort(ms.items, kind="stable")
    item_ptr = np.r_[0, np.cumsum(np.bincount(ms.items, minlength=n))]
    by_unit = np.argsort(ms.units, kind="stable")
    unit_ptr = np.r_[0, np.cumsum(np.bincount(ms.units, minlength=ms.n_units))]
    gain = np.bincount(ms.items, minlength=n).astype(np.int64)
    covered = np.zeros(ms.n_units, dtype=bool)
    chosen = np.zeros(n, dtype=bool)
    order, gains, cum = [], [], []
    total, done, stopped = ms.n_units, 0, "exhausted"
    limit = n if budget is None else budget
    while len(order) < limit:
        if target_fraction is not None and total and done >= target_fraction * total:
            stopped = "target"
            break
        g = np.where(chosen, -1, gain)
        best = int(g.max())
        if best <= 0:
            stopped = "exhausted"
            break
        if tie_break == "lowest":
            i = int(np.argmax(g))  # argmax returns the first maximum: the lowest index
        else:
            i = int(rng.choice(np.flatnonzero(g == best)))
        units_i = ms.units[_gather(item_ptr, by_item, np.array([i]))]
        new = units_i[~covered[units_i]]
        covered[new] = True
        # every sample that contained a newly covered unit loses one potential gain for it
        np.subtract.at(gain, ms.items[_gather(unit_ptr, by_unit, new)], 1)
        chosen[i] = True
        done += len(new)
        order.append(i)
        gains.append(len(new))
        cum.append(done)
    else:
        stopped = "budget" if budget is not None else "exhausted"
    if target_fraction is not None and total and done >= target_fraction * total:
        stopped = "target"
    return GreedyResult(
        order=np.asarray(order, dtype=np.int64),
        gains=np.asarray(gains, dtype=np.int64),
        covered=np.asarray(cum, dtype=np.int64),
        total=total,
        fraction=done / total if total else 1.0,
        stopped=stopped,
        tie_break=tie_break,
    )


def subset_rank_preservation(
    acc_matrix: np.ndarray,
    chosen_items: Sequence[int],
    fractions: Sequence[float] = (0.05, 0.10, 0.20),
    *,
    n_random: int = 0,
    seed: int = 0,
    level: float = 0.95,
) -> pd.DataFrame:
    """Does a subset rank models like the full benchmark? Kendall tau-b of full vs subset accuracy [OURS].

    acc_matrix: models × items scores (0/1 correctness or partial credit).
    chosen_items: item indices in selection order; the first ``round(f × n_items)`` (at least 1) form the
        subset for fraction f (a greedy order gives the greedy subset at every size).
    n_random: if > 0, also draw that many uniformly random subsets of each size (seeded) and report
        tau_random_mean / tau_random_lo / tau_random_hi as a baseline.

    Returns one row per fraction: fraction, n_items, tau (NaN if the subset gives every model the same score).
    """
    acc = np.asarray(acc_matrix, dtype=float)
    if acc.ndim != 2 or acc.shape[0] < 2 or acc.shape[1] < 1:
        raise SaemuiError(
            f"acc_matrix: expected a models × items matrix with at least 2 models, got shape {acc.shape}"
        )
    n_items = acc.shape[1]
    chosen = np.asarray(chosen_items, dtype=np.int64)
    if (
        chosen.ndim != 1
        or len(np.unique(chosen)) != len(chosen)
        or (len(chosen) and (chosen.min() < 0 or chosen.max() >= n_items))
    ):
        raise SaemuiError(f"chosen_items: expected distinct item indices in 0..{n_items - 1}")
    check_level(level)
    full = acc.mean(axis=1)
    rng = np.random.default_rng(seed)
    rows = []
    for f in fractions:
        if not 0 < f <= 1:
            raise SaemuiError(f"fractions: expected values in (0, 1], got {f}")
        size = max(1, int(round(f * n_items)))
        if size > len(chosen):
            raise SaemuiError(
                f"chosen_items: fraction {f} needs {size} items but only {len(chosen)} were chosen"
            )
        row: dict[str, float] = {
            "fraction": f,
            "n_items": size,
            "tau": kendall_tau(full, acc[:, chosen[:size]].mean(axis=1)),
        }
        if n_random > 0:
            taus = np.array(
                [
                    kendall_tau(full, acc[:, rng.choice(n_items, size, replace=False)].mean(axis=1))
                    for _ in range(n_random)
                ]
            )
            ok = taus[np.isfinite(taus)]
            lo, hi = percentile_interval(ok, level) if len(ok) else (float("nan"), float("nan"))
            row.update(
                tau_random_mean=float(ok.mean()) if len(ok) else float("nan"),
                tau_random_lo=lo,
                tau_random_hi=hi,
            )
        rows.append(row)
    return pd.DataFrame(rows)


_WORD = re.compile(r"\w+")


def _ngrams(text: str, n: int) -> list[tuple[str, ...]]:
    words = _WORD.findall(text.lower())
    return [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]


def _check_n(n: int) -> None:
    if not (isinstance(n, int) and n >= 1):
        raise SaemuiError(f"n: expected an n-gram length >= 1, got {n!r}")


def distinct_ngrams(texts: Sequence[str], n: int = 2) -> float:
    """Distinct-n: distinct word n-grams / all word n-grams over ``texts`` [OURS lexical baseline].

    Words are lower-cased ``\\w+`` runs. NaN when no text has n words.
    """
    _check_n(n)
    grams = [g for t in texts for g in _ngrams(t, n)]
    return len(set(grams)) / len(grams) if grams else float("nan")


def ngram_sets(texts: Sequence[str], n: int = 2) -> list[np.ndarray]:
    """Per text, the ids of its distinct word n-grams (ids shared across texts, by first appearance)."""
    _check_n(n)
    vocab: dict[tuple[str, ...], int] = {}
    return [
        np.unique(np.array([vocab.setdefault(g, len(vocab)) for g in _ngrams(t, n)], dtype=np.int64))
        for t in texts
    ]


def greedy_lexical_subset(
    texts: Sequence[str],
    budget: int | None = None,
    n: int = 2,
    *,
    target_fraction: float | None = None,
    tie_break: Literal["lowest", "random"] = "lowest",
    seed: int = 0,
) -> GreedyResult:
    """Greedy maximum coverage over word n-grams instead of key units [OURS], to compare with MUI selection."""
    return greedy_max_coverage(
        ngram_sets(texts, n), budget, target_fraction=target_fraction, tie_break=tie_break, seed=seed
    )
