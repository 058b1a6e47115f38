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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.stats import binom

from saemui.analysis.corollary import (
    BOOT_SEED,
    LEVEL,
    N_BOOT,
    CorollaryVerdict,
    MeanCI,
    check_boot,
    need_columns,
    run_bootstrap_mean,
    three_way,
)
from saemui.analysis.embed import (
    KMEANS_K,
    KMEANS_RESTARTS,
    Embedder,
    embed,
    kmeans,
    nearest_to_centers,
    word_ngrams,
)
from saemui.analysis.stats import ArrayLike, as_1d, check_level, kendall_tau, percentile_interval
from saemui.analysis.study import cluster_weights
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


def union_sizes(sets: UnitSets, taken: np.ndarray, *, chunk: int = 256) -> np.ndarray:
    """Union size of the sets of the taken samples, for each row of ``taken`` (rows × samples; > 0 = taken).

    One sparse product per chunk of rows, so bootstrap resamples (draw counts) and designed datasets (0/1
    membership) cost one pass each [OURS]. A sample drawn twice covers its units once.
    """
    ms = _memberships(sets)
    t = np.asarray(taken)
    if t.ndim != 2 or t.shape[1] != ms.n_items:
        raise SaemuiError(f"taken: expected a rows × {ms.n_items} (samples) array, got shape {t.shape}")
    if ms.n_units == 0:
        return np.zeros(len(t), dtype=np.int64)
    member = sparse.csr_matrix(
        (np.ones(len(ms.items), dtype=np.float32), (ms.items, ms.units)), shape=(ms.n_items, ms.n_units)
    )
    out = np.empty(len(t), dtype=np.int64)
    for a in range(0, len(t), chunk):
        hit = (
            member.T @ (t[a : a + chunk] > 0).astype(np.float32).T
        )  # units × rows: how many taken contain it
        out[a : a + chunk] = (np.asarray(hit) > 0).sum(axis=0)
    return out


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


# ----- Study v2 §8.4: designed datasets, model-free baselines, C4a, subset selection, C4b -------------------

#: §8.4: items per designed dataset, seeded draws per level, subset fractions, random draws per cell
DATASET_N = 120
DATASET_DRAWS = 10
SUBSET_FRACTIONS: tuple[float, ...] = (0.10, 0.20)
N_RANDOM_SUBSETS = 1000


def designed_datasets(
    task_sizes: Mapping[str, int], *, n_items: int = DATASET_N, draws: int = DATASET_DRAWS, seed: int = 0
) -> pd.DataFrame:
    """§8.4 datasets of fixed size at designed diversity levels k = 1 … m (m = number of tasks): each holds k
    tasks in equal shares (n_items/k items each), ``draws`` seeded datasets per level.

    task_sizes: task → number of eval items in its pool (tasks in priority order). One
    ``numpy.random.default_rng(seed)`` serves every draw, levels in increasing order, draws in order: a draw
    takes k distinct tasks uniformly (``rng.choice(m, k, replace=False)``, then in priority order) and, per
    task in that order, n_items/k distinct items uniformly (``rng.choice(size, n_items/k, replace=False)``).

    Returns one row per (dataset, item): dataset (0 … draws·m − 1), level, draw, task, item (index in the
    task's pool).
    """
    tasks = list(task_sizes)
    m = len(tasks)
    if m < 1:
        raise SaemuiError("task_sizes: expected at least one task")
    if draws < 1:
        raise SaemuiError(f"draws: expected a positive number of datasets per level, got {draws}")
    rng = np.random.default_rng(seed)
    rows = []
    ds = 0
    for k in range(1, m + 1):
        if n_items % k:
            raise SaemuiError(f"n_items: {n_items} items cannot be split into {k} equal task shares")
        share = n_items // k
        for name in tasks:
            if task_sizes[name] < share:
                raise SaemuiError(f"task {name!r}: {task_sizes[name]} items, fewer than a share of {share}")
        for d in range(draws):
            for t in sorted(rng.choice(m, k, replace=False).tolist()):
                for i in rng.choice(int(task_sizes[tasks[t]]), share, replace=False).tolist():
                    rows.append((ds, k, d, tasks[t], int(i)))
            ds += 1
    return pd.DataFrame(rows, columns=["dataset", "level", "draw", "task", "item"])


def _dataset_levels(datasets: pd.DataFrame) -> np.ndarray:
    need_columns(datasets, ["dataset", "level", "task", "item"], "datasets")
    lv = datasets.groupby("dataset", sort=True)["level"].first()
    if not np.array_equal(lv.index.to_numpy(), np.arange(len(lv))):
        raise SaemuiError("datasets: dataset ids must be 0 … n − 1 (the designed_datasets output)")
    return lv.to_numpy()


def _pool_membership(datasets: pd.DataFrame, sizes: Mapping[str, int]) -> np.ndarray:
    """datasets × pool items 0/1 matrix; the pool is the tasks of ``sizes`` in order, concatenated."""
    offset, o = {}, 0
    for t, s in sizes.items():
        offset[t], o = o, o + int(s)
    unknown = set(datasets["task"]) - set(offset)
    if unknown:
        raise SaemuiError(f"datasets: task {sorted(unknown)[0]!r} has no per-item data")
    n_ds = len(_dataset_levels(datasets))
    take = np.zeros((n_ds, o), dtype=np.float32)
    col = datasets["task"].map(offset).to_numpy() + datasets["item"].to_numpy()
    if (datasets["item"].to_numpy() >= datasets["task"].map(sizes).to_numpy()).any():
        raise SaemuiError("datasets: an item index lies beyond its task's per-item data")
    take[datasets["dataset"].to_numpy(), col] = 1
    return take


def dataset_mui(datasets: pd.DataFrame, keys_by_task: Mapping[str, UnitSets], n_units: int) -> np.ndarray:
    """MUI (%) of one point on each designed dataset: the union of its stored per-sample key sets over the
    dataset's items / n_units × 100 (no forward pass). keys_by_task: task → the point's key sets on that task's
    pool, in item order; unit ids must be the model's one numbering across tasks."""
    if not (isinstance(n_units, int | np.integer) and n_units > 0):
        raise SaemuiError(f"n_units: expected the number of units (a positive integer), got {n_units!r}")
    pool: list[np.ndarray] = []
    sizes = {}
    for t, sets in keys_by_task.items():
        ms = _memberships(sets, f"keys_by_task[{t!r}]")
        order = np.argsort(ms.items, kind="stable")
        pool.extend(
            np.split(
                ms.unit_ids[ms.units[order]], np.cumsum(np.bincount(ms.items, minlength=ms.n_items))[:-1]
            )
        )
        sizes[t] = ms.n_items
    return 100.0 * union_sizes(pool, _pool_membership(datasets, sizes)) / int(n_units)


def dataset_ngrams(datasets: pd.DataFrame, texts_by_task: Mapping[str, Sequence[str]]) -> np.ndarray:
    """Number of distinct token 1- and 2-grams (tokens of :func:`saemui.analysis.embed.tokens`) over each
    dataset's prompts: the lexical baseline of §8.4."""
    vocab: dict[str, int] = {}
    sets, sizes = [], {}
    for t, texts in texts_by_task.items():
        for x in texts:
            sets.append(
                np.unique(np.array([vocab.setdefault(g, len(vocab)) for g in word_ngrams(x)], dtype=np.int64))
            )
        sizes[t] = len(texts)
    return union_sizes(sets, _pool_membership(datasets, sizes)).astype(float)


def dataset_clusters(datasets: pd.DataFrame, labels_by_task: Mapping[str, ArrayLike]) -> np.ndarray:
    """Number of distinct k-means clusters each dataset's items fall in (kMQ coverage, §8.4). labels_by_task:
    task → cluster label per pool item (from one k-means over all pool prompts, :func:`pool_clusters`)."""
    sets, sizes = [], {}
    for t, lab in labels_by_task.items():
        arr = np.asarray(lab, dtype=np.int64)
        sets.extend(arr[:, None])
        sizes[t] = len(arr)
    return union_sizes(sets, _pool_membership(datasets, sizes)).astype(float)


def pool_clusters(
    texts_by_task: Mapping[str, Sequence[str]],
    *,
    embedder: Embedder | None = None,
    k: int = KMEANS_K,
    n_init: int = KMEANS_RESTARTS,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """One k-means (k = 50, 20 restarts, seed 0) over the embeddings of all pool prompts (every task's, in the
    mapping's order); returns task → cluster label per item."""
    texts = [x for v in texts_by_task.values() for x in v]
    labels = kmeans(embed(texts, embedder), k, n_init=n_init, seed=seed).labels
    out, o = {}, 0
    for t, v in texts_by_task.items():
        out[t], o = labels[o : o + len(v)], o + len(v)
    return out


@dataclass(frozen=True)
class DiversityTaus:
    """§8.4 C4a: Kendall τ-b between designed level and each measure over the datasets.

    per_point: one row per point: run_id, family, tau_mui, delta_tau = tau_mui − max(baseline τ).
    baseline_tau: baseline name → τ-b (model-free: the same for every point). delta: mean Δτ over points with
    its bootstrap over runs. n_datasets: datasets used.
    """

    per_point: pd.DataFrame
    baseline_tau: dict[str, float]
    delta: MeanCI
    n_datasets: int


def diversity_delta_tau(
    datasets: pd.DataFrame,
    points: pd.DataFrame,
    mui: np.ndarray,
    baselines: Mapping[str, ArrayLike],
    *,
    run_col: str = "run_id",
    family_col: str = "family",
    n_boot: int = N_BOOT,
    seed: int = BOOT_SEED,
    level: float = LEVEL,
) -> DiversityTaus:
    """C4a numbers: per point, τ(MUI) = Kendall τ-b between level and the point's dataset MUI (``mui[i]``,
    from :func:`dataset_mui`); Δτ = τ(MUI) − max over ``baselines`` (e.g. {"n-grams": …, "k-means": …}) of
    their τ; the mean Δτ over the points with a bootstrap over runs stratified by family."""
    need_columns(points, [run_col, family_col], "points")
    levels = _dataset_levels(datasets)
    mu = np.asarray(mui, dtype=float)
    if mu.ndim != 2 or mu.shape != (len(points), len(levels)):
        raise SaemuiError(
            f"mui: expected shape (points, datasets) = ({len(points)}, {len(levels)}), got {mu.shape}"
        )
    if not baselines:
        raise SaemuiError("baselines: expected at least one model-free measure")
    base = {str(k): kendall_tau(levels, as_1d(v, k)) for k, v in baselines.items()}
    best = max(base.values())
    tau_m = np.array([kendall_tau(levels, row) for row in mu])
    if not np.isfinite(tau_m).all() or not np.isfinite(best):
        raise SaemuiError("C4a: a measure is constant over the datasets (τ-b undefined)")
    per = pd.DataFrame(
        {"run_id": points[run_col].to_numpy(), "family": points[family_col].to_numpy(), "tau_mui": tau_m}
    )
    per["delta_tau"] = tau_m - best
    ci = run_bootstrap_mean(
        per["delta_tau"], per["family"], per["run_id"], n_boot=n_boot, seed=seed, level=level
    )
    return DiversityTaus(per, base, ci, len(levels))


def c4a_verdict(res: DiversityTaus) -> CorollaryVerdict:
    """C4a: **supported** iff the lower bound of the mean Δτ > 0; **not supported** iff its upper bound < 0.05;
    **inconclusive** otherwise."""
    d = res.delta
    note = ", ".join(f"τ({k}) = {v:.3g}" for k, v in res.baseline_tau.items())
    note += f"; mean τ(MUI) = {res.per_point['tau_mui'].mean():.3g}; {res.n_datasets} datasets"
    return CorollaryVerdict(
        "C4a",
        "mean Δτ = τ(MUI) − max τ(baselines)",
        d.estimate,
        (d.lo, d.hi),
        d.level,
        d.n,
        three_way(d.lo > 0, d.hi < 0.05),
        note,
    )


def tau_b_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Kendall τ-b of each row pair (x[b], y[b]) (as :func:`saemui.analysis.stats.kendall_tau`, vectorised
    over rows for bootstrap resamples); NaN where a row is constant."""
    x, y = np.atleast_2d(np.asarray(x, dtype=float)), np.atleast_2d(np.asarray(y, dtype=float))
    iu = np.triu_indices(x.shape[1], k=1)
    dx = np.sign(x[:, :, None] - x[:, None, :])[:, iu[0], iu[1]]
    dy = np.sign(y[:, :, None] - y[:, None, :])[:, iu[0], iu[1]]
    n0 = dx.shape[1]
    denom = np.sqrt((n0 - (dx == 0).sum(1)).astype(float) * (n0 - (dy == 0).sum(1)).astype(float))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, (dx * dy).sum(1) / np.where(denom > 0, denom, 1), np.nan)


def binomial_min_count(cells: int, p: float = 0.05, alpha: float = 0.05) -> int:
    """§8.4 c: the smallest count with P(X >= c) <= alpha for X ~ Bin(cells, p) (c = 3 for 12 cells)."""
    if not (isinstance(cells, int | np.integer) and cells >= 1):
        raise SaemuiError(f"cells: expected a positive number of cells, got {cells!r}")
    for c in range(int(cells) + 2):
        if binom.sf(c - 1, cells, p) <= alpha:
            return c
    return int(cells) + 1


def _fill(order: np.ndarray, size: int, n: int) -> np.ndarray:
    """A greedy order that stopped early (nothing left to cover) filled up to ``size`` with the remaining
    items in index order."""
    if len(order) >= size:
        return order[:size]
    rest = np.setdiff1d(np.arange(n), order)
    return np.r_[order, rest[: size - len(order)]].astype(np.int64)


def kmq_subset(
    embeddings: np.ndarray, size: int, *, n_init: int = KMEANS_RESTARTS, seed: int = 0
) -> np.ndarray:
    """kMQ-style subset: k-means with k = size over the task's item embeddings, then the item nearest each
    centroid (distinct items, :func:`saemui.analysis.embed.nearest_to_centers`)."""
    km = kmeans(embeddings, size, n_init=n_init, seed=seed)
    return nearest_to_centers(embeddings, km.centers)


@dataclass(frozen=True)
class SubsetCells:
    """§8.4 subset selection per cell (task × fraction × MUI selector).

    cells: one row per cell: task, fraction, n_items, selector, tau_greedy, q95_random (95th percentile of the
        random draws' τ), percentile (share of random τ <= tau_greedy, %), reaches (tau_greedy >= q95_random),
        tau_kmq, tau_lexical, tau_random_mean, n_random (draws with a defined τ).
    advantage: mean over cells of (tau_greedy − tau_kmq) with its bootstrap over runs.
    subsets: (task, fraction, method) → chosen item indices (method "kmq", "lexical", "mui:<selector>").
    """

    cells: pd.DataFrame
    advantage: MeanCI
    subsets: dict[tuple[str, float, str], np.ndarray] = field(repr=False)


def subset_selection(
    acc_by_task: Mapping[str, np.ndarray],
    points: pd.DataFrame,
    selector_keys: Mapping[str, Mapping[str, UnitSets]],
    texts_by_task: Mapping[str, Sequence[str]],
    embeddings_by_task: Mapping[str, np.ndarray],
    *,
    fractions: Sequence[float] = SUBSET_FRACTIONS,
    n_random: int = N_RANDOM_SUBSETS,
    run_col: str = "run_id",
    family_col: str = "family",
    kmeans_restarts: int = KMEANS_RESTARTS,
    seed: int = 0,
    n_boot: int = N_BOOT,
    boot_seed: int = BOOT_SEED,
    level: float = LEVEL,
) -> SubsetCells:
    """§8.4 subset selection for evaluation, per law task and fraction: MUI-greedy (maximum coverage of a
    selector's key units, one cell per selector = each base), kMQ-style, lexical (:func:`greedy_lexical_subset`,
    word 2-grams) and ``n_random`` uniform random subsets (one ``numpy.random.default_rng(seed)``, tasks and fractions in
    order). Metric: Kendall τ-b between subset and full accuracy over the points (rows of ``acc_by_task[t]``,
    one per clean law point, in ``points`` order; columns the task's items, 0/1).

    The τ advantage of MUI-greedy over kMQ (mean over cells) gets a bootstrap over the points (runs),
    stratified by family: every τ is recomputed on each resample of the points, with the subsets held fixed.
    A greedy selection that covers everything before the budget is filled up in item order.
    """
    if n_random < 1:
        raise SaemuiError(f"n_random: expected a positive number of random subsets, got {n_random}")
    check_boot(n_boot, level)
    need_columns(points, [run_col, family_col], "points")
    n_pts = len(points)
    rng = np.random.default_rng(seed)
    rows, subsets = [], {}
    sub_acc: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (full, greedy subset acc, kmq subset acc)
    for t, acc in acc_by_task.items():
        a = np.asarray(acc, dtype=float)
        if a.ndim != 2 or a.shape[0] != n_pts:
            raise SaemuiError(f"acc_by_task[{t!r}]: expected ({n_pts} points × items), got shape {a.shape}")
        n = a.shape[1]
        if len(texts_by_task[t]) != n or len(embeddings_by_task[t]) != n:
            raise SaemuiError(f"task {t!r}: texts and embeddings must have one entry per item ({n})")
        full = a.mean(axis=1)
        for f in fractions:
            size = max(1, int(round(f * n)))
            kmq = kmq_subset(
                np.asarray(embeddings_by_task[t], dtype=float), size, n_init=kmeans_restarts, seed=seed
            )
            lex = _fill(greedy_lexical_subset(list(texts_by_task[t]), size).order, size, n)
            subsets[(t, f, "kmq")], subsets[(t, f, "lexical")] = kmq, lex
            rand = np.array([rng.choice(n, size, replace=False) for _ in range(n_random)])
            tau_rand = tau_b_rows(np.broadcast_to(full, (n_random, n_pts)), a[:, rand].mean(axis=2).T)
            ok = tau_rand[np.isfinite(tau_rand)]
            tau_kmq = kendall_tau(full, a[:, kmq].mean(axis=1))
            for sel, keys in selector_keys.items():
                g = _fill(greedy_max_coverage(keys[t], size).order, size, n)
                subsets[(t, f, f"mui:{sel}")] = g
                tau_g = kendall_tau(full, a[:, g].mean(axis=1))
                q95 = float(np.percentile(ok, 95)) if len(ok) else float("nan")
                rows.append(
                    {
                        "task": t,
                        "fraction": f,
                        "n_items": size,
                        "selector": sel,
                        "tau_greedy": tau_g,
                        "q95_random": q95,
                        "percentile": 100.0 * float((ok <= tau_g).mean()) if len(ok) else float("nan"),
                        "reaches": bool(np.isfinite(tau_g) and tau_g >= q95),
                        "tau_kmq": tau_kmq,
                        "tau_lexical": kendall_tau(full, a[:, lex].mean(axis=1)),
                        "tau_random_mean": float(ok.mean()) if len(ok) else float("nan"),
                        "n_random": len(ok),
                    }
                )
                sub_acc.append((full, a[:, g].mean(axis=1), a[:, kmq].mean(axis=1)))
    cells = pd.DataFrame(rows)
    adv = cells["tau_greedy"].to_numpy() - cells["tau_kmq"].to_numpy()
    w = cluster_weights(
        points[family_col].to_numpy(), points[run_col].to_numpy(), np.random.default_rng(boot_seed), n_boot
    )
    # a resample as an index list: run i repeated w[b, i] times (each run is one row of points)
    idx = np.stack([np.repeat(np.arange(n_pts), wb) for wb in w])
    boot = np.zeros(n_boot)
    for full, g_acc, k_acc in sub_acc:
        boot += tau_b_rows(full[idx], g_acc[idx]) - tau_b_rows(full[idx], k_acc[idx])
    boot /= len(sub_acc)
    ok = np.isfinite(boot)
    lo, hi = percentile_interval(boot[ok], level) if ok.any() else (float("nan"), float("nan"))
    est = MeanCI(float(np.mean(adv)), lo, hi, level, n_pts, n_boot, boot_seed, boot)
    return SubsetCells(cells, est, subsets)


def c4b_verdict(res: SubsetCells) -> CorollaryVerdict:
    """C4b: **supported** iff MUI-greedy reaches the random 95th percentile in >= c cells (c of
    :func:`binomial_min_count`) and the lower bound of its mean τ advantage over kMQ > 0; **not supported** iff
    it reaches it in <= 1 cell and the upper bound of the advantage < 0.05; **inconclusive** otherwise."""
    n_cells = len(res.cells)
    reach = int(res.cells["reaches"].sum())
    c = binomial_min_count(n_cells)
    a = res.advantage
    return CorollaryVerdict(
        "C4b",
        "mean τ(MUI-greedy) − τ(kMQ) over cells",
        a.estimate,
        (a.lo, a.hi),
        a.level,
        n_cells,
        three_way(reach >= c and a.lo > 0, reach <= 1 and a.hi < 0.05),
        f"reaches the random 95th percentile in {reach} of {n_cells} cells (c = {c}); {a.n} points",
    )
