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
from dataclasses import dataclass

import numpy as np
import pandas as pd

from saemui.analysis.corollary import (
    CorollaryVerdict,
    check_boot,
    interval_sign,
    need_columns,
    t_interval_mean,
    three_way,
)
from saemui.analysis.diversity import union_sizes
from saemui.analysis.stats import ArrayLike, as_1d, percentile_interval, same_length
from saemui.analysis.study import smoothed_perf
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


# ----- Study v2 §8.1: the seed band and the C1 verdict ------------------------------------------------------

#: §8.1: the label of a transition whose ΔP or ΔMUI interval over seeds contains 0
NOISE = "within noise"
#: §8.1: per-seed paired item bootstrap (secondary single-run intervals)
ITEM_BOOT = 2000
#: the deltas of §8.1, in output order: column stem → what it is
DELTAS: dict[str, str] = {
    "dP": "ΔP (points)",
    "dMUI": "ΔMUI (points of %)",
    "dMUI_T": "ΔMUI_T (points of %)",
    "dlntau": "Δln τ",
}


def _label(sign_p: np.ndarray, sign_m: np.ndarray) -> list[str]:
    return [_QUADRANT.get((int(a), int(b)), NOISE) for a, b in zip(sign_p, sign_m)]


def seed_band(
    df: pd.DataFrame,
    *,
    family_col: str = "family",
    seed_col: str = "seed",
    step_col: str = "step",
    perf_col: str = "P",
    mui_col: str = "mui",
    mui_t_col: str | None = "mui_T",
    tau_col: str | None = "tau",
    level: float = 0.95,
) -> pd.DataFrame:
    """§8.1 noise band from the seed spread: per family and transition j (consecutive steps), the mean over
    seeds of ΔP_j, ΔMUI_j, ΔMUI_T,j and Δln τ_j with the t-interval over seeds (df = seeds − 1).

    df: one row per (family, seed, step) checkpoint evaluation on task C, with every seed at every step of its
        family (repeat the base row, step 0, for each seed). mui_t_col / tau_col: None (or an absent column)
        leaves those deltas out.
    A transition gets a phase label (``docs/method.md`` §5.1) only if both the ΔP and the ΔMUI interval exclude
    0, else "within noise" (``phase``); ``phase_tau`` is the same rule with Δln τ in place of ΔMUI (the §8.1
    baseline); ``mui_t_same_sign`` = the ΔMUI_T interval excludes 0 with the sign of the ΔMUI interval.

    Returns one row per (family, transition): family, j (1-based), step_from, step_to, n_seeds, then for each
    delta ``<d>``, ``<d>_lo``, ``<d>_hi`` and ``<d>_sign`` (+1/−1 = interval above/below 0, 0 = contains it).
    """
    need_columns(df, [family_col, seed_col, step_col, perf_col, mui_col], "df")
    if df.duplicated([family_col, seed_col, step_col]).any():
        r = df[df.duplicated([family_col, seed_col, step_col])].iloc[0]
        raise SaemuiError(
            f"family {r[family_col]!r}, seed {r[seed_col]!r}: step {r[step_col]!r} appears more than once"
        )
    values = {"dP": perf_col, "dMUI": mui_col}
    if mui_t_col is not None and mui_t_col in df.columns:
        values["dMUI_T"] = mui_t_col
    if tau_col is not None and tau_col in df.columns:
        values["dlntau"] = tau_col
        if not (df[tau_col].astype(float) > 0).all():
            raise SaemuiError(f"column {tau_col}: τ must be > 0 (its logarithm is taken)")
    parts = []
    for fam, g in df.groupby(family_col, sort=True):
        wide = {
            k: g.pivot(index=seed_col, columns=step_col, values=c).sort_index(axis=1)
            for k, c in values.items()
        }
        w0 = wide["dP"]
        if w0.isna().any().any():
            seed = w0.index[w0.isna().any(axis=1)][0]
            raise SaemuiError(
                f"family {fam!r}: seed {seed!r} lacks a step that another seed has (repeat the base row, step 0, "
                "for every seed)"
            )
        if w0.shape[0] < 2 or w0.shape[1] < 2:
            raise SaemuiError(
                f"family {fam!r}: needs >= 2 seeds and >= 2 steps, got {w0.shape[0]} and {w0.shape[1]}"
            )
        steps = w0.columns.to_numpy()
        out = pd.DataFrame(
            {
                "family": fam,
                "j": np.arange(1, len(steps)),
                "step_from": steps[:-1],
                "step_to": steps[1:],
                "n_seeds": w0.shape[0],
            }
        )
        for k, w in wide.items():
            v = w.to_numpy(float)
            d = np.diff(np.log(v), axis=1) if k == "dlntau" else np.diff(v, axis=1)
            mean, lo, hi = t_interval_mean(d, level)
            out[k], out[f"{k}_lo"], out[f"{k}_hi"] = mean, lo, hi
            out[f"{k}_sign"] = interval_sign(lo, hi)
        out["phase"] = _label(out["dP_sign"], out["dMUI_sign"])
        if "dlntau" in out:
            out["phase_tau"] = _label(out["dP_sign"], out["dlntau_sign"])
        if "dMUI_T" in out:
            out["mui_t_same_sign"] = (out["dMUI_T_sign"] != 0) & (out["dMUI_T_sign"] == out["dMUI_sign"])
        parts.append(out)
    return pd.concat(parts, ignore_index=True)


def c1_verdict(band: pd.DataFrame, level: float = 0.95) -> CorollaryVerdict:
    """C1 (§8.1) from :func:`seed_band` output: **supported** iff in each family >= 1 transition is labelled
    and its ΔMUI_T interval excludes 0 with the same sign; **not supported** iff no transition in either family
    has a ΔMUI_T interval excluding 0; **inconclusive** otherwise. The estimate is the number of transitions
    that qualify; n is the number of transitions."""
    if "dMUI_T_sign" not in band.columns:
        raise SaemuiError("band: no ΔMUI_T columns (seed_band needs the MUI_T column for C1)")
    qual = (band["phase"] != NOISE) & band["mui_t_same_sign"]
    per_fam = qual.groupby(band["family"]).sum()
    supported = bool((per_fam >= 1).all())
    not_supported = bool((band["dMUI_T_sign"] == 0).all())
    note = ", ".join(f"{f}: {int(c)}" for f, c in per_fam.items())
    n_excl = int((band["dMUI_T_sign"] != 0).sum())
    return CorollaryVerdict(
        "C1",
        "transitions labelled with a same-sign ΔMUI_T interval",
        float(qual.sum()),
        (float("nan"), float("nan")),
        level,
        len(band),
        three_way(supported, not_supported),
        f"qualifying per family: {note}; ΔMUI_T intervals excluding 0: {n_excl}",
    )


def label_agreement(band: pd.DataFrame) -> dict[str, int]:
    """§8.1 baseline: how many transitions get the same label from (ΔP, ΔMUI) and from (ΔP, Δln τ).

    ``same`` counts equal labels including "within noise" both ways; ``same_labelled`` only transitions with a
    phase label both ways; ``labelled_mui`` / ``labelled_tau`` the labelled transitions of each; ``n`` all.
    """
    if "phase_tau" not in band.columns:
        raise SaemuiError("band: no phase_tau column (seed_band needs the τ column for the baseline)")
    a, b = band["phase"], band["phase_tau"]
    return {
        "n": len(band),
        "same": int((a == b).sum()),
        "same_labelled": int(((a == b) & (a != NOISE)).sum()),
        "labelled_mui": int((a != NOISE).sum()),
        "labelled_tau": int((b != NOISE).sum()),
    }


@dataclass(frozen=True)
class CheckpointItems:
    """Per-item data of one checkpoint on task C, for the §8.1 item bootstrap.

    step: training step (0 = base). correct: 0/1 per item. keys: per-item key-unit sets (as in
    :mod:`saemui.analysis.diversity`: id arrays, a boolean matrix or an ``MUIResult``). keys_t: the same over
    the first T scored positions (None: ΔMUI_T not computed). positions: scored positions per item, 0 = empty
    (None: Δln τ not computed).
    """

    step: float
    correct: np.ndarray
    keys: object
    keys_t: object | None = None
    positions: np.ndarray | None = None


def _item_stats(ck: CheckpointItems, w: np.ndarray, n_units: int, n: int) -> dict[str, np.ndarray]:
    correct = as_1d(ck.correct, "correct")
    if len(correct) != n or not np.isin(correct, [0, 1]).all():
        raise SaemuiError(f"step {ck.step}: correct must hold {n} values 0/1 (one per item)")
    out = {
        "dP": smoothed_perf(w @ correct, n),
        "dMUI": 100.0 * union_sizes(ck.keys, w) / n_units,
    }
    if ck.keys_t is not None:
        out["dMUI_T"] = 100.0 * union_sizes(ck.keys_t, w) / n_units
    if ck.positions is not None:
        pos = as_1d(ck.positions, "positions")
        if len(pos) != n:
            raise SaemuiError(f"step {ck.step}: positions must hold {n} values (one per item)")
        with np.errstate(invalid="ignore", divide="ignore"):
            out["dlntau"] = np.log((w @ pos) / (w @ (pos > 0).astype(float)))
    return out


def item_bootstrap_transitions(
    checkpoints: Sequence[CheckpointItems],
    n_units: int,
    *,
    n_boot: int = ITEM_BOOT,
    seed: int = 0,
    level: float = 0.95,
) -> pd.DataFrame:
    """§8.1 single-run intervals (secondary): a paired item bootstrap of ΔP, ΔMUI, ΔMUI_T and Δln τ for each
    transition of one seed's trajectory.

    checkpoints: the run's checkpoints in training order, all on the same N items. n_units: the MUI denominator
    (units per layer × layers). Each resample draws N item indices with replacement from
    ``numpy.random.default_rng(seed)``; the same draw serves every checkpoint, so each Δ is paired. P is the
    add-half smoothed accuracy of the drawn items, MUI the union of their key sets (a resample holds about 63 %
    distinct items, so its MUI sits below the full-N MUI: the paired Δ cancels most of that), τ the mean
    positions of the drawn non-empty items.

    Returns one row per transition: step_from, step_to, then ``<d>`` (full-data Δ), ``<d>_lo``, ``<d>_hi``
    (percentile interval at ``level``), n_items, n_boot.
    """
    cks = list(checkpoints)
    if len(cks) < 2:
        raise SaemuiError(f"checkpoints: expected at least 2 (one transition), got {len(cks)}")
    if not (isinstance(n_units, int | np.integer) and n_units > 0):
        raise SaemuiError(f"n_units: expected the number of units (a positive integer), got {n_units!r}")
    check_boot(n_boot, level)
    n = len(np.asarray(cks[0].correct))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    w = np.zeros((n_boot + 1, n))
    w[0] = 1.0  # row 0: the full data
    np.add.at(w, (np.arange(1, n_boot + 1)[:, None], idx), 1.0)
    stats = [_item_stats(ck, w, int(n_units), n) for ck in cks]
    keys = [k for k in DELTAS if all(k in s for s in stats)]
    rows = []
    for a, b, sa, sb in zip(cks[:-1], cks[1:], stats[:-1], stats[1:]):
        row: dict[str, object] = {"step_from": a.step, "step_to": b.step}
        for k in keys:
            d = sb[k] - sa[k]
            ok = np.isfinite(d[1:])
            lo, hi = percentile_interval(d[1:][ok], level) if ok.any() else (float("nan"), float("nan"))
            row.update({k: float(d[0]), f"{k}_lo": lo, f"{k}_hi": hi})
        row.update(n_items=n, n_boot=n_boot)
        rows.append(row)
    return pd.DataFrame(rows)
