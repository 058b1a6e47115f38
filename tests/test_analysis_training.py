"""Corollary 1: phase classification on constructed trajectories, including dead-band edges; the §8.1 seed
band, C1 verdict and item bootstrap against hand computations."""

import numpy as np
import pandas as pd
import pytest
from scipy.stats import t as student_t

from saemui.analysis.training import (
    NOISE,
    CheckpointItems,
    c1_verdict,
    classify_phases,
    classify_trajectory,
    item_bootstrap_transitions,
    label_agreement,
    phase_counts,
    seed_band,
)
from saemui.errors import SaemuiError


def test_all_four_quadrants_and_stable():
    # steps: (+2,+1) (+2,-1) (-1,-1) (-2,+1) (+0.25,+2)
    perf = [10, 12, 14, 13, 11, 11.25]
    mui = [5, 6, 5, 4, 5, 7]
    out = classify_phases(perf, mui, dead_band=(0.5, 0.5), checkpoints=["a", "b", "c", "d", "e", "f"])
    assert out["phase"].tolist() == ["Accumulating", "Evolving", "Coarsening", "Collapsing", "Stable"]
    assert out["dP"].tolist() == [2, 2, -1, -2, 0.25]
    assert out["dMUI"].tolist() == [1, -1, -1, 1, 2]
    assert out["p_dir"].tolist() == [1, 1, -1, -1, 0]
    assert out["mui_dir"].tolist() == [1, -1, -1, 1, 1]
    assert out["checkpoint_from"].tolist() == list("abcde")
    assert out["checkpoint_to"].tolist() == list("bcdef")


def test_zero_band_only_exact_zero_is_stable():
    out = classify_phases([1.0, 1.0, 1.001], [2.0, 3.0, 2.999])
    assert out["phase"].tolist() == ["Stable", "Evolving"]


@pytest.mark.parametrize(
    "p1, m1, expected",
    [
        (1.5, 2.25, "Stable"),  # ΔP exactly on the P band edge (binary-exact numbers): inside
        (1.625, 2.25, "Accumulating"),  # ΔP just beyond the edge, ΔMUI beyond its band
        (1.625, 2.125, "Stable"),  # ΔMUI exactly on the MUI band edge
        (1.625, 2.0, "Stable"),  # MUI unchanged
        (0.375, 1.75, "Coarsening"),  # both beyond the edges, downwards
        (0.5, 2.25, "Stable"),  # ΔP = -0.5: the band is symmetric
    ],
)
def test_dead_band_edges(p1, m1, expected):
    out = classify_phases([1.0, p1], [2.0, m1], dead_band=(0.5, 0.125))
    assert out["phase"].tolist() == [expected]


def test_dead_band_edge_is_robust_to_float_rounding():
    # 0.3 - 0.2 = 0.09999999999999998 and 0.4 - 0.3 = 0.10000000000000003: both are "a change of 0.1"
    out = classify_phases([0.2, 0.3, 0.4], [1.0, 2.0, 3.0], dead_band=(0.1, 0.0))
    assert out["phase"].tolist() == ["Stable", "Stable"]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"dead_band": (-0.1, 0.0)}, "dead_band"),
        ({"dead_band": 0.1}, "dead_band"),
        ({"checkpoints": ["a"]}, "checkpoints"),
    ],
)
def test_bad_inputs(kwargs, match):
    with pytest.raises(SaemuiError, match=match):
        classify_phases([1, 2, 3], [1, 2, 3], **kwargs)
    with pytest.raises(SaemuiError, match="equal length"):
        classify_phases([1, 2, 3], [1, 2])
    with pytest.raises(SaemuiError, match="at least 2"):
        classify_phases([1], [1])


def _long():
    ck = ["0.5T", "1T", "1.5T"]
    rows = []
    for t, perf, mui in [("gsm8k", [10, 20, 15], [4, 6, 3]), ("arc", [30, 32, 40], [8, 7, 9])]:
        rows += [{"checkpoint": c, "task": t, "perf": p, "mui": m} for c, p, m in zip(ck, perf, mui)]
    return pd.DataFrame(rows)


def test_trajectory_per_task_and_overall():
    out = classify_trajectory(_long(), dead_band=(1.0, 0.25))
    by = {t: g["phase"].tolist() for t, g in out.groupby("task")}
    assert by["gsm8k"] == ["Accumulating", "Coarsening"]
    assert by["arc"] == ["Evolving", "Accumulating"]  # ΔP = +2 > 1, ΔMUI = -1; then +8, +2
    # overall: mean P 20, 26, 27.5; mean MUI 6, 6.5, 6 -> (+6, +0.5) Accumulating, (+1.5, -0.5) Evolving
    ov = out[out["task"] == "overall"]
    assert ov["dP"].tolist() == pytest.approx([6.0, 1.5])
    assert ov["dMUI"].tolist() == pytest.approx([0.5, -0.5])
    assert ov["phase"].tolist() == ["Accumulating", "Evolving"]
    assert ov["checkpoint_from"].tolist() == ["0.5T", "1T"]
    counts = phase_counts(out)
    assert counts.loc["gsm8k", "Coarsening"] == 1 and counts.loc["arc", "Collapsing"] == 0
    assert counts.to_numpy().sum() == 6


def test_trajectory_order_is_first_appearance_and_gaps_keep_steps():
    df = _long()
    df = df[~((df["task"] == "arc") & (df["checkpoint"] == "1T"))]
    out = classify_trajectory(df, overall=False)
    arc = out[out["task"] == "arc"]
    assert arc["step"].tolist() == [0] and arc["step_to"].tolist() == [2]
    assert arc["checkpoint_to"].tolist() == ["1.5T"]
    with pytest.raises(SaemuiError, match="checkpoint '1T': not every task"):
        classify_trajectory(df)


def test_trajectory_errors():
    with pytest.raises(SaemuiError, match="missing column"):
        classify_trajectory(_long().drop(columns="mui"))
    dup = pd.concat([_long(), _long().iloc[:1]])
    with pytest.raises(SaemuiError, match="more than once"):
        classify_trajectory(dup)


# ----- Study v2 §8.1: seed band, C1, baseline agreement, item bootstrap -------------------------------------


def _band_table(p, m, mt, tau, families=("A",)):
    """Long table from arrays seeds × steps (same values for every family unless given per family)."""
    rows = []
    for fam in families:
        for s in range(len(p)):
            for j, step in enumerate([0, 10, 20, 40][: len(p[0])]):
                rows.append(
                    {
                        "family": fam,
                        "seed": s,
                        "step": step,
                        "P": p[s][j],
                        "mui": m[s][j],
                        "mui_T": mt[s][j],
                        "tau": tau[s][j],
                    }
                )
    return pd.DataFrame(rows)


P3 = [[10, 20, 21, 15], [11, 22, 19, 14], [9, 21, 20, 16]]
M3 = [[5.0, 6.0, 5.5, 4.0], [5.0, 6.2, 5.4, 4.1], [5.0, 5.9, 5.7, 3.8]]
MT3 = [[2.0, 2.5, 2.4, 1.5], [2.0, 2.6, 2.6, 1.6], [2.0, 2.4, 2.3, 1.4]]
TAU3 = [[10.0, 8.0, 8.0, 9.0], [10.0, 8.5, 7.9, 9.5], [10.0, 7.8, 8.1, 8.8]]


def test_seed_band_matches_hand_t_interval_and_labels():
    band = seed_band(_band_table(P3, M3, MT3, TAU3))
    q = student_t.ppf(0.975, 2)
    assert q == pytest.approx(4.303, abs=1e-3)
    for k, arr, f in (("dP", P3, None), ("dMUI", M3, None), ("dMUI_T", MT3, None), ("dlntau", TAU3, np.log)):
        v = np.asarray(arr, dtype=float)
        d = np.diff(f(v) if f else v, axis=1)
        for j in range(3):
            mean = d[:, j].mean()
            half = q * d[:, j].std(ddof=1) / np.sqrt(3)
            assert band.loc[j, k] == pytest.approx(mean)
            assert band.loc[j, f"{k}_lo"] == pytest.approx(mean - half)
            assert band.loc[j, f"{k}_hi"] == pytest.approx(mean + half)
    # j=1: P up (all seeds +10..+12), MUI up (+0.9..+1.2): both exclude 0; j=2: ΔP = 1, -3, -1 crosses 0;
    # j=3: P down, MUI down, both tight
    assert band["phase"].tolist() == ["Accumulating", NOISE, "Coarsening"]
    assert band["step_from"].tolist() == [0, 10, 20] and band["step_to"].tolist() == [10, 20, 40]
    assert band["mui_t_same_sign"].tolist() == [True, False, True]
    # τ falls on j=1 (Accumulating with MUI up becomes P↑ τ↓ = Evolving), rises on j=3 (P↓ τ↑ = Collapsing)
    assert band["phase_tau"].tolist() == ["Evolving", NOISE, "Collapsing"]


def test_c1_verdicts_and_label_agreement():
    two = seed_band(_band_table(P3, M3, MT3, TAU3, families=("A", "B")))
    v = c1_verdict(two)
    assert v.verdict == "supported" and v.estimate == 4 and v.n == 6
    # family B's MUI_T flat with noise in every transition: no qualifying transition in B, but A's exclude 0
    flat = [[2.0, 2.1, 1.9, 2.0], [2.0, 1.9, 2.1, 2.0], [2.0, 2.0, 2.0, 2.0]]
    df = pd.concat(
        [_band_table(P3, M3, MT3, TAU3, ("A",)), _band_table(P3, M3, flat, TAU3, ("B",))], ignore_index=True
    )
    assert c1_verdict(seed_band(df)).verdict == "inconclusive"
    df_none = pd.concat(
        [_band_table(P3, M3, flat, TAU3, ("A",)), _band_table(P3, M3, flat, TAU3, ("B",))], ignore_index=True
    )
    assert c1_verdict(seed_band(df_none)).verdict == "not supported"
    agree = label_agreement(two)
    # per family: labels (Acc, noise, Coars) vs (Evol, noise, Coll): only the "within noise" one is equal
    assert agree == {"n": 6, "same": 2, "same_labelled": 0, "labelled_mui": 4, "labelled_tau": 4}
    assert "C1" in str(v) and v.as_row()["verdict"] == "supported"


def test_seed_band_refuses_a_seed_missing_a_step():
    df = _band_table(P3, M3, MT3, TAU3).query("not (seed == 2 and step == 20)")
    with pytest.raises(SaemuiError, match="lacks a step"):
        seed_band(df)


def _items_run(seed):
    rng = np.random.default_rng(seed)
    cks = []
    for step in (0, 10, 20):
        keys = [np.unique(rng.integers(0, 30, size=rng.integers(0, 6))) for _ in range(8)]
        keys_t = [k[:2] for k in keys]
        pos = rng.integers(0, 5, size=8)
        cks.append(CheckpointItems(step, rng.integers(0, 2, size=8), keys, keys_t, pos))
    return cks


def test_item_bootstrap_equals_explicit_resampling_with_sets():
    cks = _items_run(3)
    n_units, n_boot, n = 40, 300, 8
    out = item_bootstrap_transitions(cks, n_units, n_boot=n_boot, seed=5)
    idx = np.random.default_rng(5).integers(0, n, size=(n_boot, n))

    def stats(ck, rows):
        k = sum(int(ck.correct[i]) for i in rows)
        p = 100 * (k + 0.5) / (n + 1)
        mui = 100 * len(set().union(*(set(ck.keys[i].tolist()) for i in rows))) / n_units
        mt = 100 * len(set().union(*(set(ck.keys_t[i].tolist()) for i in rows))) / n_units
        ne = [ck.positions[i] for i in rows if ck.positions[i] > 0]
        tau = np.log(np.mean(ne)) if ne else np.nan
        return {"dP": p, "dMUI": mui, "dMUI_T": mt, "dlntau": tau}

    for j in range(2):
        a, b = cks[j], cks[j + 1]
        full = {k: stats(b, range(n))[k] - stats(a, range(n))[k] for k in ("dP", "dMUI", "dMUI_T", "dlntau")}
        boot = {k: [] for k in full}
        for rows in idx:
            sa, sb = stats(a, rows), stats(b, rows)
            for k in full:
                boot[k].append(sb[k] - sa[k])
        for k in full:
            vals = np.asarray(boot[k])
            vals = vals[np.isfinite(vals)]
            assert out.loc[j, k] == pytest.approx(full[k])
            assert out.loc[j, f"{k}_lo"] == pytest.approx(np.percentile(vals, 2.5))
            assert out.loc[j, f"{k}_hi"] == pytest.approx(np.percentile(vals, 97.5))
    assert out["n_boot"].tolist() == [n_boot, n_boot]
