"""The streaming, mergeable utilization counter.

Per layer it keeps the union of key units (bool), per-unit firing counts over scored tokens (score > 0), and in
how many samples each unit was key. Optionally it keeps every sample's key set (sparse unit ids), which makes
subset MUI (e.g. correct answers only), coverage curves and diversity selection possible afterwards. Memory is
O(layers × units) plus the kept sets (flat int arrays: 24 B per (sample, layer) plus 4 B per unit id); it does
not grow with the number of samples otherwise. Two counters over disjoint samples merge by OR / sum /
concatenation (shards, processes, resumed runs).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch


@dataclass
class UtilizationCounter:
    """State of a MUI run over a set of layers with ``n_units`` units each.

    layers: model layer index of each counter row.
    union_LU: unit was key for at least one sample.
    fire_LU: scored tokens at which the unit's score was > 0 (SAE: active feature).
    keyfreq_LU: samples in which the unit was key.
    n_tokens_L: scored tokens seen per layer; n_samples: samples seen (counted once, at layer rows' first pass).
    Per-sample key sets (kept when ``keep_sets``) are stored as flat parts, one per update: sample ids, layer rows,
    CSR offsets and int32 unit ids. A dict of one small array per (sample, layer) cost ~9 KB of Python objects per
    sample at 30 layers (tracemalloc), many times the ids themselves; ``sets`` still gives that dict view on demand.
    """

    layers: list[int]
    n_units: int
    device: str | torch.device = "cpu"
    keep_sets: bool = True
    union_LU: torch.Tensor = field(init=False)
    fire_LU: torch.Tensor = field(init=False)
    keyfreq_LU: torch.Tensor = field(init=False)
    n_tokens_L: torch.Tensor = field(init=False)
    _set_parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = field(
        default_factory=list, repr=False
    )
    samples_seen: set[int] = field(default_factory=set)

    def __post_init__(self):
        L, U = len(self.layers), self.n_units
        self.union_LU = torch.zeros(L, U, dtype=torch.bool, device=self.device)
        self.fire_LU = torch.zeros(L, U, dtype=torch.int64, device=self.device)
        self.keyfreq_LU = torch.zeros(L, U, dtype=torch.int64, device=self.device)
        self.n_tokens_L = torch.zeros(L, dtype=torch.int64)
        self._row = {layer: i for i, layer in enumerate(self.layers)}

    def row(self, layer: int) -> int:
        return self._row[layer]

    def update(
        self, layer: int, sample_index: list[int], key_SU: torch.Tensor, fire_U: torch.Tensor, n_tokens: int
    ) -> None:
        r = self._row[layer]
        key_SU = key_SU.to(self.union_LU.device)
        self.union_LU[r] |= key_SU.any(0)
        self.keyfreq_LU[r] += key_SU.sum(0)
        self.fire_LU[r] += fire_U.to(self.fire_LU.device)
        self.n_tokens_L[r] += int(n_tokens)
        self.samples_seen.update(sample_index)
        if self.keep_sets:
            rows, cols = key_SU.nonzero(as_tuple=True)
            rows, cols = rows.cpu().numpy(), cols.cpu().numpy().astype(np.int32)
            bounds = np.searchsorted(rows, np.arange(len(sample_index) + 1))
            self.add_sets(sample_index, np.full(len(sample_index), r), bounds, cols)

    def add_key_units(self, sample: int, row: int, units_K: torch.Tensor) -> None:
        """Mark ``units_K`` (CPU unit ids) key for one (sample, layer row) after the pass: global top-k decides
        across layers only once every layer is scored. The sample's tokens were counted by :meth:`update`."""
        key = torch.zeros(self.n_units, dtype=torch.bool)
        key[units_K] = True
        self.union_LU[row] |= key.to(self.union_LU.device)
        self.keyfreq_LU[row] += key.long().to(self.keyfreq_LU.device)
        if self.keep_sets:
            # Global top-k picks (position, unit) entries, so one unit can be chosen at two positions; a key set
            # holds each unit once (np.unique also sorts).
            units = np.unique(units_K.numpy().astype(np.int32))
            self.add_sets([sample], [row], [0, units.size], units)

    def replace_counts(
        self,
        union_LU: torch.Tensor,
        fire_LU: torch.Tensor,
        keyfreq_LU: torch.Tensor,
        n_tokens_L: torch.Tensor,
        samples_seen: set[int],
    ) -> None:
        """Replace the counts wholesale (a restored or merged state); tensors are kept as given."""
        self.union_LU, self.fire_LU, self.keyfreq_LU = union_LU, fire_LU, keyfreq_LU
        self.n_tokens_L = n_tokens_L
        self.samples_seen = samples_seen

    def add_sets(self, samples, rows, indptr, units) -> None:
        """Record key sets: set i belongs to (samples[i], layer row rows[i]) and is units[indptr[i]:indptr[i+1]]
        (sorted unit ids). A later set for the same (sample, row) replaces an earlier one."""
        samples = np.asarray(samples, dtype=np.int64)
        rows = np.asarray(rows, dtype=np.int64)
        indptr = np.asarray(indptr, dtype=np.int64)
        if not (samples.shape == rows.shape and indptr.shape == (samples.size + 1,)):
            raise ValueError(f"add_sets: {samples.size} samples, {rows.size} rows, {indptr.size} offsets")
        self._set_parts.append((samples, rows, indptr, np.asarray(units, dtype=np.int32)))

    def flat_sets(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Every kept set once (the last one recorded per (sample, row)), ordered by (sample, row):
        samples, rows, lengths and units concatenated in that order."""
        if not self._set_parts:
            z = np.zeros(0, np.int64)
            return z, z, z, np.zeros(0, np.int32)
        S = np.concatenate([p[0] for p in self._set_parts])
        R = np.concatenate([p[1] for p in self._set_parts])
        lens = np.concatenate([np.diff(p[2]) for p in self._set_parts])
        base = np.cumsum([0] + [p[3].size for p in self._set_parts[:-1]])
        starts = np.concatenate([p[2][:-1] + b for p, b in zip(self._set_parts, base)])
        units = np.concatenate([p[3] for p in self._set_parts])
        key = S * len(self.layers) + R
        order = np.argsort(key, kind="stable")
        k = key[order]
        last = order[np.r_[k[1:] != k[:-1], True]] if k.size else order
        n = lens[last]
        first_out = np.cumsum(n) - n
        idx = np.repeat(starts[last] - first_out, n) + np.arange(int(n.sum()))
        return S[last], R[last], n, units[idx]

    def add_flat_sets(self, flat: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]) -> None:
        """Record sets given as :meth:`flat_sets` returns them (samples, rows, lengths, units)."""
        S, R, n, units = flat
        self.add_sets(S, R, np.r_[0, np.cumsum(n)], units)

    def clear_sets(self) -> None:
        self._set_parts.clear()

    @property
    def sets(self) -> dict[tuple[int, int], np.ndarray]:
        """(sample index, layer row) → sorted int32 unit ids (a view built on demand)."""
        S, R, n, units = self.flat_sets()
        ends = np.cumsum(n)
        return {(int(s), int(r)): units[e - c : e] for s, r, c, e in zip(S, R, n, ends)}

    @property
    def n_samples(self) -> int:
        return len(self.samples_seen)

    def merge(self, other: UtilizationCounter) -> UtilizationCounter:
        """Combine with a counter over disjoint samples (same layers and units)."""
        if other.layers != self.layers or other.n_units != self.n_units:
            raise ValueError("cannot merge counters over different layers/units")
        overlap = self.samples_seen & other.samples_seen
        if overlap:
            raise ValueError(f"cannot merge counters that share samples (e.g. {sorted(overlap)[:3]})")
        self.union_LU |= other.union_LU.to(self.union_LU.device)
        self.fire_LU += other.fire_LU.to(self.fire_LU.device)
        self.keyfreq_LU += other.keyfreq_LU.to(self.keyfreq_LU.device)
        self.n_tokens_L += other.n_tokens_L
        self.samples_seen |= other.samples_seen
        self._set_parts.extend(other._set_parts)
        return self

    def mui(self) -> float:
        return float(self.union_LU.sum().item()) / (self.n_units * len(self.layers))

    def per_layer(self) -> list[float]:
        return (self.union_LU.sum(1).double() / self.n_units).tolist()

    def sets_csr(self, n_samples: int) -> tuple[np.ndarray, np.ndarray]:
        """Per-sample key sets as CSR over rows ordered (sample, layer row): indptr [S·L+1], units int32."""
        L = len(self.layers)
        S, R, n, units = self.flat_sets()
        inside = S < n_samples
        if not inside.all():
            units = units[np.repeat(inside, n)]
            S, R, n = S[inside], R[inside], n[inside]
        lengths = np.zeros(n_samples * L, dtype=np.int64)
        lengths[S * L + R] = n
        return np.concatenate([[0], np.cumsum(lengths)]), units

    def arrays(self, n_samples: int) -> dict[str, np.ndarray]:
        """The counter as a result's ``arrays.npz``: union, counts and, when kept, the per-sample sets as CSR."""
        indptr, units = (
            self.sets_csr(n_samples) if self.keep_sets else (np.zeros(0, np.int64), np.zeros(0, np.int32))
        )
        return {
            "union_LU": self.union_LU.cpu().numpy(),
            "fire_LU": self.fire_LU.cpu().numpy(),
            "keyfreq_LU": self.keyfreq_LU.cpu().numpy(),
            "n_tokens_L": self.n_tokens_L.cpu().numpy(),
            "set_indptr": indptr,
            "set_units": units,
        }

    def state_dict(self) -> dict:
        return {
            "layers": list(self.layers),
            "n_units": self.n_units,
            "keep_sets": self.keep_sets,
            "union_LU": self.union_LU.cpu(),
            "fire_LU": self.fire_LU.cpu(),
            "keyfreq_LU": self.keyfreq_LU.cpu(),
            "n_tokens_L": self.n_tokens_L.clone(),
            "samples_seen": sorted(self.samples_seen),
            "sets": {
                k: torch.from_numpy(a.copy())
                for k, a in zip(("samples", "rows", "lengths", "units"), self.flat_sets())
            },
        }

    @classmethod
    def from_state_dict(cls, d: dict, device: str | torch.device = "cpu") -> UtilizationCounter:
        c = cls(list(d["layers"]), int(d["n_units"]), device=device, keep_sets=bool(d["keep_sets"]))
        c.replace_counts(
            d["union_LU"].to(device).clone(),
            d["fire_LU"].to(device).clone(),
            d["keyfreq_LU"].to(device).clone(),
            d["n_tokens_L"].clone(),
            set(d["samples_seen"]),
        )
        sets = {k: v.numpy() for k, v in d["sets"].items()}
        if set(sets) == {"samples", "rows", "lengths", "units"}:
            c.add_flat_sets((sets["samples"], sets["rows"], sets["lengths"], sets["units"]))
        else:  # checkpoints written before the flat layout: one "sample,row" entry per set
            for key, units in sets.items():
                s, r = (int(x) for x in key.split(","))
                c.add_sets([s], [r], [0, units.size], units)
        return c

    @classmethod
    def from_arrays(
        cls, arrays: Mapping[str, np.ndarray], layers: list[int], n_units: int, samples: Sequence[int]
    ) -> UtilizationCounter:
        """A CPU counter from a result's arrays (see :meth:`arrays`); ``samples`` names the arrays' samples in
        order (e.g. their global positions), and the per-sample sets are kept when the arrays hold them."""
        keep_sets = arrays["set_indptr"].size > 0
        c = cls(list(layers), n_units, device="cpu", keep_sets=keep_sets)
        c.replace_counts(
            torch.from_numpy(np.asarray(arrays["union_LU"], dtype=bool).copy()),
            torch.from_numpy(np.asarray(arrays["fire_LU"], dtype=np.int64).copy()),
            torch.from_numpy(np.asarray(arrays["keyfreq_LU"], dtype=np.int64).copy()),
            torch.from_numpy(np.asarray(arrays["n_tokens_L"], dtype=np.int64).copy()),
            set(samples),
        )
        if keep_sets:
            L, n = len(c.layers), len(samples)
            c.add_sets(
                np.repeat(samples, L), np.tile(np.arange(L), n), arrays["set_indptr"], arrays["set_units"]
            )
        return c
