"""Run-vs-run comparisons of MUI results over the same unit basis.

- :func:`selection_agreement`: how much two runs' key sets agree on the same samples (e.g. SAE encode in fp32 vs
  bf16 on the same tokens). η·max selection is scale-free but not rounding-free: a feature within a rounding step
  of η·max can flip. These numbers say how often that happens, so a cheaper dtype is used only where the
  selection is shown unchanged.
- :func:`compare_runs`, :func:`unique_features`: key units shared by two runs, and those only one run has.
- :func:`correct_vs_incorrect`: within one run, units whose key-set frequency differs between correct and
  incorrect responses (Fisher's exact test, Benjamini–Hochberg q-values).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.stats import fisher_exact

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


def _check_comparable(a: MUIResult, b: MUIResult) -> list[int]:
    if a.n_units != b.n_units:
        raise SaemuiError(f"runs have {a.n_units} and {b.n_units} units per layer: not the same unit basis")
    if a.summary["units"]["kind"] != b.summary["units"]["kind"]:
        raise SaemuiError("one run measures SAE features, the other neurons: units are not comparable")
    common = [lay for lay in a.layers if lay in b.layers]
    if not common:
        raise SaemuiError(f"runs share no layers ({a.layers} vs {b.layers})")
    return common


def _equal_n_subsets(
    x: MUIResult, other: MUIResult, target: int, n_sub: int, rng: np.random.Generator
) -> tuple[list[np.ndarray | None], str]:
    """Sample positions of ``x`` to compare at N = ``target`` (None: all of them), and how they were chosen."""
    nx = int(x.summary["n_samples"])
    if nx == target:
        return [None], f"all {nx}"
    ids = [str(r.get("id")) for r in x.samples]
    other_ids = [str(r.get("id")) for r in other.samples]
    if int(other.summary["n_samples"]) == target and set(other_ids) <= set(ids):
        # the same items as the smaller run: an exact, paired comparison
        pos = {i: k for k, i in enumerate(ids)}
        return [np.array([pos[i] for i in other_ids], dtype=np.int64)], f"the other run's {target} ids"
    x.sets_csr()  # refuse here, with the reason, when no per-sample key sets were kept
    return [rng.permutation(nx)[:target] for _ in range(n_sub)], f"{n_sub} random {target}-subsets of {nx}"


def compare_runs(
    a: MUIResult, b: MUIResult, n: int | None = None, n_sub: int = 200, seed: int = 0
) -> pd.DataFrame:
    """Per common layer: key units of A and B (their MUI unions), shared, only-A, only-B and Jaccard.

    The units must be the same basis (the same SAEs, or neurons of models with the same architecture);
    the last row (layer "all") pools every common layer.

    Equal N: a union grows with the number of samples, so both runs are compared at ``n`` samples (default:
    the smaller run's N). A larger run whose sample ids include all of the smaller run's ids is cut to those
    same samples (exact); otherwise its counts and the Jaccard are means over ``n_sub`` random ``n``-sample
    subsets (seeded). Column ``n_samples`` and ``df.attrs`` (n, n_a, n_b, how_a, how_b, note) say what was
    compared.
    """
    layers = _check_comparable(a, b)
    na, nb = int(a.summary["n_samples"]), int(b.summary["n_samples"])
    target = min(na, nb) if n is None else int(n)
    if not 1 <= target <= min(na, nb):
        raise SaemuiError(f"n={n}: expected 1..{min(na, nb)} (the smaller run has N = {min(na, nb)})")
    if n_sub < 1:
        raise SaemuiError(f"n_sub: expected a positive number of subsets, got {n_sub}")
    rng = np.random.default_rng(seed)
    subs_a, how_a = _equal_n_subsets(a, b, target, n_sub, rng)
    subs_b, how_b = _equal_n_subsets(b, a, target, n_sub, rng)
    k = max(len(subs_a), len(subs_b))

    def unions(x: MUIResult, idx: np.ndarray | None) -> np.ndarray:
        u = x.arrays["union_LU"] if idx is None else x.subset_union(idx)
        return np.asarray(u, dtype=bool)[[x.layers.index(layer) for layer in layers]]

    counts = np.zeros((k, len(layers) + 1, 5))
    for d in range(k):
        ua = unions(a, subs_a[d % len(subs_a)])
        ub = unions(b, subs_b[d % len(subs_b)])
        c = np.stack([ua.sum(1), ub.sum(1), (ua & ub).sum(1), (ua & ~ub).sum(1), (~ua & ub).sum(1)], axis=1)
        counts[d, :-1] = c
        counts[d, -1] = c.sum(0)
    union = counts[..., 2:].sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        jac = np.where(union > 0, counts[..., 2] / np.where(union > 0, union, 1), np.nan)
    cols = ["n_a", "n_b", "shared", "only_a", "only_b"]
    mean = counts.mean(0)
    df = pd.DataFrame(mean.astype(np.int64) if k == 1 else mean, columns=cols)
    df.insert(0, "layer", [*layers, "all"])
    df["jaccard"] = jac[0] if k == 1 else np.nanmean(jac, axis=0) if np.isfinite(jac).any() else np.nan
    df["n_samples"] = target
    note = (
        f"both runs at N = {target}"
        if na == nb == target
        else f"subsampled to N = {target}: run a ({na} samples) uses {how_a}, run b ({nb}) uses {how_b}"
        + ("; counts and Jaccard are means over the subsets" if k > 1 else "")
    )
    df.attrs = {"n": target, "n_a": na, "n_b": nb, "how_a": how_a, "how_b": how_b, "note": note}
    return df


def unique_features(a: MUIResult, b: MUIResult, n: int = 10) -> pd.DataFrame:
    """Key units of A that are never key in B and vice versa, ranked by their key rate in their own run.

    Columns: side ("a" or "b"), layer, unit, keyfreq, key_rate (in the run where the unit is key),
    fire_rate_other (how often it fires at all in the other run: 0 means truly silent there).
    """
    rows = []
    for side, x, y in (("a", a, b), ("b", b, a)):
        cand = []
        for layer in _check_comparable(x, y):
            rx, ry = x.layers.index(layer), y.layers.index(layer)
            only = np.nonzero(x.arrays["union_LU"][rx] & ~y.arrays["union_LU"][ry])[0]
            kf = x.arrays["keyfreq_LU"][rx][only]
            fo = y.arrays["fire_LU"][ry][only] / max(int(y.arrays["n_tokens_L"][ry]), 1)
            cand += [(int(k), layer, int(u), float(f)) for k, u, f in zip(kf, only, fo)]
        cand.sort(key=lambda t: (-t[0], t[1], t[2]))
        ns = max(int(x.summary["n_samples"]), 1)
        rows += [(side, lay, u, k, k / ns, f) for k, lay, u, f in cand[:n]]
    return pd.DataFrame(rows, columns=["side", "layer", "unit", "keyfreq", "key_rate", "fire_rate_other"])


def _bh(p: np.ndarray) -> np.ndarray:
    """Benjamini–Hochberg adjusted p-values (q-values)."""
    m = len(p)
    if not m:
        return p
    o = np.argsort(p)
    q = p[o] * m / np.arange(1, m + 1)
    q = np.minimum.accumulate(q[::-1])[::-1]
    out = np.empty(m)
    out[o] = np.minimum(q, 1.0)
    return out


def correct_vs_incorrect(result: MUIResult, layers: Sequence[int] | None = None) -> pd.DataFrame:
    """Units whose key-set frequency differs between correct and incorrect responses.

    For every unit that is key in at least one labelled sample: a 2×2 table (key / not key × correct /
    incorrect) and Fisher's exact test (two-sided); q is Benjamini–Hochberg over all tested units. Columns:
    layer, unit, n_correct_key, n_incorrect_key, freq_correct, freq_incorrect, diff (= freq_correct −
    freq_incorrect), odds_ratio, p, q. Sorted by p, then |diff| descending.
    """
    corr = [i for i, s in enumerate(result.samples) if s.get("correct") is True]
    inc = [i for i, s in enumerate(result.samples) if s.get("correct") is False]
    if not corr or not inc:
        raise SaemuiError(
            f"need correct and incorrect labelled samples (have {len(corr)} correct, {len(inc)} incorrect)"
        )
    ip, units = result.sets_csr()
    L, U = len(result.layers), result.n_units
    rows = []
    for layer in layers if layers is not None else result.layers:
        r = result.row(layer)
        counts = []
        for group in (corr, inc):
            c = np.zeros(U, np.int64)
            for s in group:
                c[units[ip[s * L + r] : ip[s * L + r + 1]]] += 1
            counts.append(c)
        cc, ci = counts
        for u in np.nonzero((cc + ci) > 0)[0]:
            a, b = int(cc[u]), int(ci[u])
            odds, p = fisher_exact([[a, len(corr) - a], [b, len(inc) - b]])
            rows.append(
                [layer, int(u), a, b, a / len(corr), b / len(inc), a / len(corr) - b / len(inc), odds, p]
            )
    cols = ["layer", "unit", "n_correct_key", "n_incorrect_key", "freq_correct", "freq_incorrect", "diff"]
    df = pd.DataFrame(rows, columns=[*cols, "odds_ratio", "p"])
    df["q"] = _bh(df["p"].to_numpy(float))
    df["_abs"] = -df["diff"].abs()
    return (
        df.sort_values(["p", "_abs", "layer", "unit"], kind="stable")
        .drop(columns="_abs")
        .reset_index(drop=True)
    )
