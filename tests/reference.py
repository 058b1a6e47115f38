"""Independent numpy re-implementation of key-unit selection and MUI (the spec in docs/method.md §1.2)."""

from __future__ import annotations

import numpy as np


def ref_keys(S: np.ndarray, mode: str, eta: float = 0.9, k: int = 1, positive_only: bool = False) -> set[int]:
    """Key units of one (sample, layer) score matrix S [positions, units]."""
    if S.shape[0] == 0:
        return set()
    if mode == "positive":
        return {int(u) for u in np.where((S > 0).any(axis=0))[0]}
    if mode == "topscore":
        m = S.max()
        if m <= 0:
            return set()
        return {int(u) for u in np.where((S >= eta * m).any(axis=0))[0]}
    if mode == "topk":
        entries = [
            (-float(S[p, u]), u, p)
            for p in range(S.shape[0])
            for u in range(S.shape[1])
            if (S[p, u] > 0 or not positive_only)
        ]
        entries.sort()
        return {u for _, u, _ in entries[:k]}
    raise ValueError(mode)


def ref_global_topk(S_by_layer: list[np.ndarray], k: int, positive_only: bool = False) -> list[set[int]]:
    entries = []
    for layer, S in enumerate(S_by_layer):
        for p in range(S.shape[0]):
            for u in range(S.shape[1]):
                if S[p, u] > 0 or not positive_only:
                    entries.append((-float(S[p, u]), layer, u))
    entries.sort()
    out = [set() for _ in S_by_layer]
    for _, layer, u in entries[:k]:
        out[layer].add(u)
    return out


def ref_mui(keys: list[list[set[int]]], n_units: int) -> tuple[float, list[float]]:
    """keys[sample][layer] → (MUI, per-layer fraction): union over samples / (units × layers)."""
    L = len(keys[0])
    unions = [set().union(*(ks[layer] for ks in keys)) for layer in range(L)]
    return sum(len(u) for u in unions) / (n_units * L), [len(u) / n_units for u in unions]
