"""How much two MUI runs' key sets agree (e.g. SAE encode in fp32 vs bf16 on the same tokens).

η·max selection is scale-free but not rounding-free: a feature within a rounding step of η·max can flip. These
numbers say how often that happens, so a cheaper dtype is used only where the selection is shown unchanged.
"""

from __future__ import annotations

import numpy as np

from saemui.errors import SaemuiError
from saemui.result import MUIResult


def _jaccard(a: np.ndarray, b: np.ndarray) -> float:
    if a.size == 0 and b.size == 0:
        return 1.0
    inter = np.intersect1d(a, b, assume_unique=True).size
    return inter / (a.size + b.size - inter)


def selection_agreement(a: MUIResult, b: MUIResult) -> dict:
    """Agreement of two results over the same samples, layers and units.

    union_jaccard: Jaccard of the (layer, unit) unions; sets_identical: fraction of (sample, layer) key sets that
    are equal; mean_set_jaccard / min_set_jaccard over those sets; mui_a, mui_b and their difference in points.
    """
    if a.layers != b.layers or a.n_units != b.n_units or a.summary["n_samples"] != b.summary["n_samples"]:
        raise SaemuiError("results differ in layers, units or samples: nothing to compare")
    ua, ub = a.arrays["union_LU"].astype(bool), b.arrays["union_LU"].astype(bool)
    inter, union = int((ua & ub).sum()), int((ua | ub).sum())
    out = {
        "mui_a": a.mui,
        "mui_b": b.mui,
        "mui_diff_points": 100.0 * (b.mui - a.mui),
        "union_jaccard": inter / union if union else 1.0,
        "union_only_a": int((ua & ~ub).sum()),
        "union_only_b": int((ub & ~ua).sum()),
    }
    if a.arrays["set_indptr"].size and b.arrays["set_indptr"].size:
        n = int(a.summary["n_samples"])
        jac = [_jaccard(x, y) for s in range(n) for x, y in zip(a.sample_sets(s), b.sample_sets(s))]
        jac_arr = np.asarray(jac) if jac else np.ones(1)
        out.update(
            {
                "n_sets": len(jac),
                "sets_identical": float((jac_arr == 1.0).mean()),
                "mean_set_jaccard": float(jac_arr.mean()),
                "min_set_jaccard": float(jac_arr.min()),
            }
        )
    return out
