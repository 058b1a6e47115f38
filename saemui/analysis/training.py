"""Corollary 1, training diagnostics: classify consecutive checkpoints by the signs of ΔP and ΔMUI.

Phase names:

* **Accumulating** = P↑ MUI↑ and **Evolving** = P↑ MUI↓: defined in the MoE-MUI follow-up [X].
* **Coarsening** = P↓ MUI↓ and **Collapsing** = P↓ MUI↑: [INF] named by symmetry, not from the paper.
* **Stable** [OURS]: ``|ΔP| <= dp`` or ``|ΔMUI| <= dm`` (either change inside its dead band). A quadrant label
  needs a sign for both quantities, so a move of only one of them is not given one; the per-quantity
  directions are still reported (``p_dir``, ``mui_dir``) so such moves are visible.

Dead-band edges are inclusive: a change equal to the band (up to floating rounding, rel. 1e-9) is Stable, so
``0.3 - 0.2`` against a band of ``0.1`` does not flip on the last bit.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from saemui.analysis.stats import ArrayLike, as_1d, same_length
from saemui.errors import SaemuiError

PHASES: tuple[str, ...] = ("Accumulating", "Evolving", "Coarsening", "Collapsing", "Stable")
OVERALL = "overall"

_QUADRANT = {(1, 1): "Accumulating", (1, -1): "Evolving", (-1, -1): "Coarsening", (-1, 1): "Collapsing"}


def _direction(delta: np.ndarray, band: float) -> np.ndarray:
    inside = (np.abs(delta) <= band) | np.isclose(np.abs(delta), band, rtol=1e-9, atol=0.0)
    return np.where(inside, 0, np.sign(delta)).astype(int)


def _check_band(dead_band: tuple[float, float]) -> tuple[float, float]:
    try:
        dp, dm = (float(v) for v in dead_band)
    except (TypeError, ValueError):
        raise SaemuiError(
            f"dead_band: expected a pair (dp, dm) of non-negative numbers, got {dead_band!r}"
        ) from None
    if not (dp >= 0 and dm >= 0):
        raise SaemuiError(f"dead_band: expected non-negative (dp, dm), got ({dp}, {dm})")
    return dp, dm


def classify_phases(
    perf_series: ArrayLike,
    mui_series: ArrayLike,
    dead_band: tuple[float, float] = (0.0, 0.0),
    checkpoints: Sequence[object] | None = None,
) -> pd.DataFrame:
    """Phase of each step between consecutive checkpoints of one trajectory.

    perf_series, mui_series: P and MUI at checkpoints in training order (at least 2).
    dead_band: (dp, dm); a change with ``|ΔP| <= dp`` or ``|ΔMUI| <= dm`` is "Stable". Choose them from the
        measurement noise (e.g. a bootstrap SD of P and MUI over samples).
    checkpoints: optional names (e.g. "0.5T"); default 0..n-1.

    Returns one row per step: step and step_to (positions of the two checkpoints), checkpoint_from, checkpoint_to, perf_from, perf_to, mui_from, mui_to,
    dP, dMUI, p_dir, mui_dir (+1 / 0 / -1 after the dead band) and phase.
    """
    p = as_1d(perf_series, "perf_series", min_len=2)
    m = as_1d(mui_series, "mui_series", min_len=2)
    n = same_length(perf_series=p, mui_series=m)
    dp, dm = _check_band(dead_band)
    names = list(range(n)) if checkpoints is None else list(checkpoints)
    if len(names) != n:
        raise SaemuiError(f"checkpoints: expected {n} names (one per point), got {len(names)}")
    d_p, d_m = np.diff(p), np.diff(m)
    p_dir, m_dir = _direction(d_p, dp), _direction(d_m, dm)
    phase = [_QUADRANT.get((int(a), int(b)), "Stable") for a, b in zip(p_dir, m_dir)]
    return pd.DataFrame(
        {
            "step": np.arange(n - 1),
            "step_to": np.arange(1, n),
            "checkpoint_from": names[:-1],
            "checkpoint_to": names[1:],
            "perf_from": p[:-1],
            "perf_to": p[1:],
            "mui_from": m[:-1],
            "mui_to": m[1:],
            "dP": d_p,
            "dMUI": d_m,
            "p_dir": p_dir,
            "mui_dir": m_dir,
            "phase": phase,
        }
    )


def classify_trajectory(
    df: pd.DataFrame,
    dead_band: tuple[float, float] = (0.0, 0.0),
    *,
    checkpoint_col: str = "checkpoint",
    task_col: str = "task",
    perf_col: str = "perf",
    mui_col: str = "mui",
    overall: bool = True,
) -> pd.DataFrame:
    """Per-task and overall phases from a long table (one row per checkpoint × task).

    Checkpoint order is the order of first appearance in ``df`` (sort it by training tokens first). The
    ``overall`` trajectory [OURS] is the unweighted mean of P and of MUI over tasks at each checkpoint; it needs
    every task at every checkpoint. A true pooled MUI (union over all tasks' samples) cannot be derived from
    per-task MUIs: if you have it, put it in ``df`` as its own task and pass ``overall=False``.

    Returns the ``classify_phases`` columns with a leading ``task`` column; overall rows have task "overall".
    """
    need = [checkpoint_col, task_col, perf_col, mui_col]
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise SaemuiError(f"df: missing column(s) {', '.join(missing)} (expected {', '.join(need)})")
    if df.duplicated([task_col, checkpoint_col]).any():
        row = df[df.duplicated([task_col, checkpoint_col])].iloc[0]
        raise SaemuiError(f"df: task {row[task_col]!r} has checkpoint {row[checkpoint_col]!r} more than once")
    order = list(dict.fromkeys(df[checkpoint_col].tolist()))
    pos = {c: i for i, c in enumerate(order)}
    parts = []
    for task, g in df.groupby(task_col, sort=False):
        g = g.assign(_pos=g[checkpoint_col].map(pos)).sort_values("_pos")
        if len(g) < 2:
            raise SaemuiError(f"task {task!r}: needs at least 2 checkpoints, got {len(g)}")
        out = classify_phases(g[perf_col], g[mui_col], dead_band, checkpoints=g[checkpoint_col].tolist())
        # steps are positions in the global checkpoint order so tasks with gaps still line up on one axis
        out["step"] = g["_pos"].to_numpy()[:-1]
        out["step_to"] = g["_pos"].to_numpy()[1:]
        out.insert(0, "task", task)
        parts.append(out)
    if overall:
        if OVERALL in set(df[task_col]):
            raise SaemuiError(f"df: a task is named {OVERALL!r}; rename it or pass overall=False")
        wide_p = df.pivot(index=checkpoint_col, columns=task_col, values=perf_col).reindex(order)
        wide_m = df.pivot(index=checkpoint_col, columns=task_col, values=mui_col).reindex(order)
        if wide_p.isna().any().any():
            ck = wide_p.index[wide_p.isna().any(axis=1)][0]
            raise SaemuiError(
                f"checkpoint {ck!r}: not every task is present, so the overall mean is undefined"
            )
        out = classify_phases(wide_p.mean(axis=1), wide_m.mean(axis=1), dead_band, checkpoints=order)
        out.insert(0, "task", OVERALL)
        parts.append(out)
    return pd.concat(parts, ignore_index=True)


def phase_counts(phases: pd.DataFrame) -> pd.DataFrame:
    """Number of steps in each phase per task (rows: task, columns: the five phases)."""
    return (
        pd.crosstab(phases["task"], pd.Categorical(phases["phase"], categories=PHASES))
        .reindex(columns=list(PHASES), fill_value=0)
        .rename_axis(columns="phase")
    )
