"""Random-unit MUI, the sceptic baseline of ``docs/study/protocol.md`` §7.3 **[OURS]**.

MUI is recomputed with every sample's key set replaced, layer by layer, by a uniformly random set of the same
size drawn from that layer's units; the mean over seeded draws is the baseline. It keeps the set sizes (and so
the token counts behind them) and throws away which units were chosen: if H1 also holds for it, unit identities
add nothing beyond sizes. Computed from stored set sizes only, no forward pass.

Closed form: with independent uniform subsets of sizes k_1..k_S of a layer's U units, a unit is missed by all of
them with probability prod_s (1 - k_s/U), so the expected union is ``U (1 - prod_s (1 - k_s/U))`` and the expected
MUI the sum of those over layers divided by ``L U`` (:func:`expected_random_mui`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from saemui.errors import SaemuiError

#: §7.3: draws averaged per point
N_DRAWS = 20


@dataclass(frozen=True)
class RandomUnitMUI:
    """mean: the mean MUI (fraction) over the draws; draws: each draw's MUI; expected: the closed form."""

    mean: float
    draws: tuple[float, ...]
    expected: float


def layer_set_sizes(sets: Sequence[Sequence[int]], n_units: int, n_layers: int) -> np.ndarray:
    """Per-sample, per-layer key-set sizes [S, L] from key sets as global ids ``row * n_units + unit``."""
    out = np.zeros((len(sets), n_layers), dtype=np.int64)
    for i, ids in enumerate(sets):
        arr = np.asarray(ids, dtype=np.int64)
        if arr.size and (arr.min() < 0 or arr.max() >= n_units * n_layers):
            raise SaemuiError(f"sample {i}: key id outside 0..{n_units * n_layers - 1}")
        out[i] = np.bincount(arr // n_units, minlength=n_layers)[:n_layers]
    return out


def _check_sizes(sizes_SL: Any, n_units: int) -> np.ndarray:
    sizes = np.asarray(sizes_SL)
    if sizes.ndim != 2 or sizes.shape[1] < 1:
        raise SaemuiError(f"set sizes must be a [samples, layers] array, got shape {sizes.shape}")
    if not np.issubdtype(sizes.dtype, np.integer) or (sizes < 0).any() or (sizes > n_units).any():
        raise SaemuiError(f"set sizes must be integers between 0 and n_units = {n_units}")
    return sizes.astype(np.int64)


def expected_random_mui(sizes_SL: Any, n_units: int) -> float:
    """Closed-form expectation of random-unit MUI (module docstring)."""
    sizes = _check_sizes(sizes_SL, n_units)
    miss_L = np.prod(1.0 - sizes / n_units, axis=0)
    return float(np.sum(n_units * (1.0 - miss_L)) / (sizes.shape[1] * n_units))


def _draw_subsets(rng: np.random.Generator, n: int, k: int, U: int) -> np.ndarray:
    """``n`` uniform k-subsets of range(U) as an [n, k] array: i.i.d. rows redrawn until their entries are
    distinct (conditioning uniform tuples on distinctness gives uniform subsets); a full permutation prefix when
    k is a large share of U, where redrawing would be slow."""
    if 2 * k * k > U:
        return np.stack([rng.permutation(U)[:k] for _ in range(n)]) if n else np.zeros((0, k), np.int64)
    out = rng.integers(0, U, size=(n, k))
    while True:
        srt = np.sort(out, axis=1)
        bad = (srt[:, 1:] == srt[:, :-1]).any(axis=1) if k > 1 else np.zeros(n, bool)
        if not bad.any():
            return out
        out[bad] = rng.integers(0, U, size=(int(bad.sum()), k))


def random_unit_mui(sizes_SL: Any, n_units: int, n_draws: int = N_DRAWS, seed: int = 0) -> RandomUnitMUI:
    """Random-unit MUI of one point from its per-(sample, layer) key-set sizes (§7.3).

    For each draw (in order) and each layer (in order), every sample with k > 0 key units in that layer gets a
    uniform random k-subset of the layer's ``n_units`` units (samples grouped by k, in increasing k, one
    ``numpy.random.default_rng(seed)`` stream); the draw's MUI is the union size over layers / (L · n_units).
    """
    sizes = _check_sizes(sizes_SL, n_units)
    if n_draws < 1:
        raise SaemuiError(f"n_draws must be >= 1, got {n_draws}")
    S, L = sizes.shape
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(n_draws):
        covered = 0
        for layer in range(L):
            col = sizes[:, layer]
            hit = np.zeros(n_units, dtype=bool)
            for k in np.unique(col[col > 0]):
                hit[_draw_subsets(rng, int((col == k).sum()), int(k), n_units).ravel()] = True
            covered += int(hit.sum())
        draws.append(covered / (L * n_units))
    return RandomUnitMUI(float(np.mean(draws)), tuple(draws), expected_random_mui(sizes, n_units))


def random_unit_mui_record(
    rec: Mapping[str, Any], setting: str = "P0", n_draws: int = N_DRAWS, seed: int = 0
) -> RandomUnitMUI:
    """Random-unit MUI of a v2 zoo record at one setting, from its stored key sets (``settings[setting]``)."""
    entry = (rec.get("settings") or {}).get(setting)
    if entry is None:
        raise SaemuiError(f"record {rec.get('model')}/{rec.get('task')}: no setting {setting!r}")
    if entry.get("sets") is None:
        raise SaemuiError(
            f"record {rec.get('model')}/{rec.get('task')}: setting {setting!r} kept no key sets (too many "
            "entries), so its per-layer sizes are unknown"
        )
    sizes = layer_set_sizes(entry["sets"], int(entry["n_units"]), int(entry["n_layers"]))
    return random_unit_mui(sizes, int(entry["n_units"]), n_draws, seed)


__all__ = [
    "N_DRAWS",
    "RandomUnitMUI",
    "expected_random_mui",
    "layer_set_sizes",
    "random_unit_mui",
    "random_unit_mui_record",
]
