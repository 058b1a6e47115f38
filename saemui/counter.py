"""The streaming, mergeable utilization counter.

Per layer it keeps the union of key units (bool), per-unit firing counts over scored tokens (score > 0), and in
how many samples each unit was key. Optionally it keeps every sample's key set (sparse unit ids), which makes
subset MUI (e.g. correct answers only), coverage curves and diversity selection possible afterwards. Memory is
O(layers × units) plus the kept sets; it does not grow with the number of samples otherwise. Two counters over
disjoint samples merge by OR / sum / concatenation (shards, processes, resumed runs).
"""

from __future__ import annotations

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
    sets: (sample_index, layer_row) → sorted int32 unit ids, kept when ``keep_sets``.
    """

    layers: list[int]
    n_units: int
    device: str | torch.device = "cpu"
    keep_sets: bool = True
    union_LU: torch.Tensor = field(init=False)
    fire_LU: torch.Tensor = field(init=False)
    keyfreq_LU: torch.Tensor = field(init=False)
    n_tokens_L: torch.Tensor = field(init=False)
    sets: dict[tuple[int, int], np.ndarray] = field(default_factory=dict)
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
            for j, s in enumerate(sample_index):
                self.sets[(s, r)] = cols[bounds[j] : bounds[j + 1]]

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
        self.sets.update(other.sets)
        return self

    def mui(self) -> float:
        return float(self.union_LU.sum().item()) / (self.n_units * len(self.layers))

    def per_layer(self) -> list[float]:
        return (self.union_LU.sum(1).double() / self.n_units).tolist()

    def sets_csr(self, n_samples: int) -> tuple[np.ndarray, np.ndarray]:
        """Per-sample key sets as CSR over rows ordered (sample, layer row): indptr [S·L+1], units int32."""
        L = len(self.layers)
        lengths = np.zeros(n_samples * L, dtype=np.int64)
        chunks = []
        for s in range(n_samples):
            for r in range(L):
                a = self.sets.get((s, r))
                if a is not None:
                    lengths[s * L + r] = len(a)
                    chunks.append(a)
        indptr = np.concatenate([[0], np.cumsum(lengths)])
        units = np.concatenate(chunks).astype(np.int32) if chunks else np.zeros(0, np.int32)
        return indptr, units

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
            "sets": {f"{s},{r}": torch.from_numpy(a.copy()) for (s, r), a in self.sets.items()},
        }

    @classmethod
    def from_state_dict(cls, d: dict, device: str | torch.device = "cpu") -> UtilizationCounter:
        c = cls(list(d["layers"]), int(d["n_units"]), device=device, keep_sets=bool(d["keep_sets"]))
        c.union_LU = d["union_LU"].to(device).clone()
        c.fire_LU = d["fire_LU"].to(device).clone()
        c.keyfreq_LU = d["keyfreq_LU"].to(device).clone()
        c.n_tokens_L = d["n_tokens_L"].clone()
        c.samples_seen = set(d["samples_seen"])
        c.sets = {tuple(int(x) for x in k.split(",")): v.numpy() for k, v in d["sets"].items()}
        return c
