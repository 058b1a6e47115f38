"""Corollary 1: phase classification on constructed trajectories, including dead-band edges."""

import pandas as pd
import pytest

from saemui.analysis.training import classify_phases, classify_trajectory, phase_counts
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
