"""Inputs of the Study v2 corollaries and the causal check from zoo-v2 records (``docs/study/protocol.md``
§8.1-§8.5, W10) **[OURS]**.

Each function turns the records of ``results/zoo-v2`` (:func:`saemui.zoo.record_v2.load_records_v2`, the causal and
SAE-health files) into the arrays and tables that :mod:`saemui.analysis.training`, ``contamination``,
``comparison``, ``diversity`` and ``causal`` take; ``scripts/reproduce_study_corollaries.py`` runs the tests on
them. Everything is a pure function of the records except the three readers :func:`load_items`,
:func:`load_causal` and :func:`load_sae_health`.

Units as everywhere in the study: P = 100·(k + 0.5)/(N + 1) (§1, %), MUI and MUI_T in % (records store
fractions), τ = mean scored positions per non-empty sample. MUI is P0's; MUI_T is the record's first-T setting
(``mui_t_setting``, §7.2). A point that lacks a record an input needs is left out and named in the ``notes``
the function returns (never imputed, §6.5).

R* of a family (:func:`rstar_runs`) is the clean law run named in ``names`` (the spec's ``StudySpec.rstar``);
seed and dose runs name it too (``<R*>-seed<s>``, ``<R*>-dose<d>``), which is checked.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from saemui.analysis.study import smoothed_perf
from saemui.analysis.training import CheckpointItems
from saemui.analysis.zoo_v2 import recipe_of
from saemui.errors import SaemuiError
from saemui.readers import read_json
from saemui.zoo.record_v2 import HEALTH_SCHEMA_V2, items_path, read_causal, read_items_file

#: the R* runs of the v2 spec (``StudySpec.rstar``): the reference recipe of §4 in each family
RSTAR_NAMES: tuple[str, ...] = ("S1", "G1")
#: §8.2: the detectors need 3 clean reference points after leaving one run out
MIN_CLEAN_REFERENCE = 4
#: §8.3: nested leave-one-run-out CV leaves two runs of a family out at once, and one must remain
MIN_RUNS_PER_FAMILY_CV = 3

TRAJECTORY_COLUMNS: tuple[str, ...] = (
    "family",
    "run_id",
    "seed",
    "step",
    "model",
    "k",
    "N",
    "P",
    "mui",
    "mui_T",
    "tau",
)
FINAL_COLUMNS: tuple[str, ...] = (
    "run_id",
    "family",
    "model",
    "role",
    "dose",
    "step",
    "checkpoint",
    "k",
    "N",
    "P",
    "mui",
    "tau",
    "P_twin",
    "mui_twin",
    "contaminated",
    "is_base",
)


# ----- small pieces ------------------------------------------------------------------------------------------


def _role(rec: Mapping[str, Any]) -> str:
    return rec.get("role") or "base"


def run_id(rec: Mapping[str, Any]) -> str:
    """The training run of a record, or for a base its root (§2: one point per run)."""
    return rec.get("run") or rec["root"]


def _is_final(rec: Mapping[str, Any]) -> bool:
    return not rec.get("checkpoint")


def _p(rec: Mapping[str, Any]) -> float:
    if rec.get("n_correct") is None:
        raise SaemuiError(f"record {rec['model']}/{rec['task']}/{rec['set']}: no accuracy (n_correct)")
    return float(smoothed_perf(int(rec["n_correct"]), int(rec["n"])))


def _setting(rec: Mapping[str, Any], name: str | None) -> Mapping[str, Any] | None:
    return (rec.get("settings") or {}).get(name) if name else None


def _mui_pct(rec: Mapping[str, Any] | None, name: str = "P0") -> float:
    e = _setting(rec, name) if rec is not None else None
    return 100.0 * float(e["mui"]) if e is not None and e.get("mui") is not None else float("nan")


def _mui_t_name(rec: Mapping[str, Any]) -> str | None:
    return rec.get("mui_t_setting")


def index_records(records: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str, str], Mapping[str, Any]]:
    """(model, task, set) → record."""
    return {(r["model"], r["task"], r["set"]): r for r in records}


def _sets(entry: Mapping[str, Any] | None) -> list[np.ndarray] | None:
    if entry is None or entry.get("sets") is None:
        return None
    return [np.asarray(s, dtype=np.int64) for s in entry["sets"]]


def _n_units(entry: Mapping[str, Any]) -> int:
    # global key-unit ids are row * n_units + unit, so the MUI denominator is n_units × n_layers
    return int(entry["n_units"]) * int(entry["n_layers"])


def bases(records: Iterable[Mapping[str, Any]], task: str) -> dict[str, Mapping[str, Any]]:
    """family → its base's verbatim record on ``task``."""
    return {
        r["root"]: r
        for r in records
        if _role(r) == "base" and r["task"] == task and r["set"] == "verbatim" and r.get("settings")
    }


def rstar_runs(records: Iterable[Mapping[str, Any]], names: Sequence[str] = RSTAR_NAMES) -> dict[str, str]:
    """family → the name of its R* run: the clean law run named in ``names``; a family whose R* has no record
    yet takes the name its seed or dose runs carry. Raises when the two disagree."""
    recs = list(records)
    out: dict[str, str] = {}
    for r in recs:
        if _role(r) == "law" and r.get("run") in names:
            out.setdefault(r["root"], r["run"])
    for r in recs:
        role = _role(r)
        if role not in ("seed", "dose"):
            continue
        named = r["run"].rsplit("-seed" if role == "seed" else "-dose", 1)[0]
        if out.setdefault(r["root"], named) != named:
            raise SaemuiError(
                f"run {r['run']!r} of family {r['root']!r} names R* {named!r}, but R* is {out[r['root']]!r}"
            )
    return dict(sorted(out.items()))


def _row(rec: Mapping[str, Any]) -> dict[str, Any]:
    role = _role(rec)
    return {
        "run_id": run_id(rec),
        "family": rec["root"],
        "model": rec["model"],
        "role": role,
        "dose": float(rec.get("dose") or 0.0),
        "step": int(rec.get("step") or 0),
        "checkpoint": bool(rec.get("checkpoint")),
        "k": int(rec["n_correct"]),
        "N": int(rec["n"]),
        "P": _p(rec),
        "mui": _mui_pct(rec),
        "tau": float(rec["tau"]) if rec.get("tau") is not None else float("nan"),
        "contaminated": role == "dose",
        "is_base": role == "base",
    }


# ----- §8.1 Cor. 1: R* seed trajectories on C ------------------------------------------------------------


def cor1_trajectories(
    records: Sequence[Mapping[str, Any]], task: str, rstar: Mapping[str, str]
) -> tuple[pd.DataFrame, list[str]]:
    """One row per (family, seed, step) checkpoint of R* seeds 0-2 on ``task`` (verbatim items), the base as
    step 0 of every seed (§11: the base row enters every seed's trajectory); columns
    :data:`TRAJECTORY_COLUMNS`, the input of :func:`saemui.analysis.training.seed_band`.

    A family is kept with at least 2 seeds and 2 steps; its steps are those every kept seed has (a step some
    seed lacks is left out and noted: never imputed). Returns (rows, notes)."""
    notes: list[str] = []
    rows: list[dict[str, Any]] = []
    base = bases(records, task)
    for fam, rs in rstar.items():
        runs: dict[str, dict[int, Mapping[str, Any]]] = {}
        for r in records:
            if r["task"] != task or r["set"] != "verbatim" or r["root"] != fam or not r.get("settings"):
                continue
            role = _role(r)
            if (role == "law" and r.get("run") == rs) or (role == "seed" and recipe_of(r["run"], role) == rs):
                runs.setdefault(r["run"], {})[int(r["step"])] = r
        if len(runs) < 2:
            notes.append(f"{fam}: {len(runs)} R* seed(s) with records on {task}, 2 needed")
            continue
        common = set.intersection(*(set(v) for v in runs.values()))
        left = sorted(set.union(*(set(v) for v in runs.values())) - common)
        if left:
            notes.append(f"{fam}: steps {', '.join(map(str, left))} left out (not measured for every seed)")
        steps = sorted(common)
        b = base.get(fam)
        if b is None:
            notes.append(f"{fam}: no base record on {task}, so no step 0")
        else:
            steps = [0, *steps]
        if len(steps) < 2:
            notes.append(f"{fam}: fewer than 2 steps common to every seed")
            continue
        seeds = {run: int(next(iter(v.values()))["seed"]) for run, v in runs.items()}
        if len(set(seeds.values())) != len(seeds):
            raise SaemuiError(f"{fam}: two R* runs carry the same seed ({seeds})")
        for run in sorted(runs, key=seeds.__getitem__):
            for s in steps:
                rec = b if s == 0 else runs[run][s]
                rows.append(
                    {
                        "family": fam,
                        "run_id": run,
                        "seed": seeds[run],
                        "step": s,
                        "model": rec["model"],
                        "k": int(rec["n_correct"]),
                        "N": int(rec["n"]),
                        "P": _p(rec),
                        "mui": _mui_pct(rec),
                        "mui_T": _mui_pct(rec, _mui_t_name(rec)),
                        "tau": float(rec["tau"]),
                    }
                )
    return pd.DataFrame(rows, columns=list(TRAJECTORY_COLUMNS)), notes


def cor1_checkpoint_items(
    records: Sequence[Mapping[str, Any]], task: str, trajectories: pd.DataFrame
) -> tuple[dict[tuple[str, str], tuple[list[CheckpointItems], int]], list[str]]:
    """(family, run) → (the run's checkpoints in step order as :class:`saemui.analysis.training.CheckpointItems`,
    the MUI denominator) for the §8.1 per-seed item bootstrap. ``positions`` stay None: the records keep no
    per-sample position counts, so Δln τ has no single-run interval. A run whose records kept no key sets
    (P0 or first-T) is left out and noted."""
    by = index_records(records)
    out: dict[tuple[str, str], tuple[list[CheckpointItems], int]] = {}
    notes: list[str] = []
    for (fam, run), g in trajectories.groupby(["family", "run_id"], sort=True):
        cks, units, ids = [], set(), set()
        for row in g.sort_values("step").itertuples():
            rec = by[(row.model, task, "verbatim")]
            p0, ft = _setting(rec, "P0"), _setting(rec, _mui_t_name(rec))
            keys, keys_t = _sets(p0), _sets(ft)
            if keys is None or keys_t is None:
                cks = None
                break
            units.add(_n_units(p0))
            ids.add(tuple(rec["ids"]))
            cks.append(CheckpointItems(float(row.step), np.asarray(rec["correct"]), keys, keys_t))
        if cks is None:
            notes.append(f"{fam}/{run}: a checkpoint kept no key sets, no item bootstrap")
            continue
        if len(units) != 1 or len(ids) != 1:
            raise SaemuiError(f"{fam}/{run}: checkpoints on {task} differ in items or units")
        out[(fam, run)] = (cks, units.pop())
    return out, notes


# ----- §8.2 Cor. 2: contamination ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Cor2Inputs:
    """§8.2 inputs on task C.

    finals: the final points (clean law points and contaminated finals) with a twin record, columns
        :data:`FINAL_COLUMNS`, of the families with enough clean points for the detectors.
    contaminated: every checkpoint of the dose runs (verbatim P and MUI, twin P and MUI where measured).
    clean: the clean R* checkpoints of seeds 0-2 at steps > 0 (family, seed, step, P, mui, model).
    root_mui, rstar_mui: family → MUI (%) of its base and of its R* seed-0 final on C.
    """

    finals: pd.DataFrame
    contaminated: pd.DataFrame
    clean: pd.DataFrame
    root_mui: dict[str, float]
    rstar_mui: dict[str, float]
    notes: list[str] = field(default_factory=list)


def _with_twin(row: dict[str, Any], twin: Mapping[str, Any] | None) -> dict[str, Any]:
    row["P_twin"] = _p(twin) if twin is not None else float("nan")
    row["mui_twin"] = _mui_pct(twin) if twin is not None else float("nan")
    return row


def cor2_inputs(records: Sequence[Mapping[str, Any]], task: str, rstar: Mapping[str, str]) -> Cor2Inputs:
    """The §8.2 inputs (see :class:`Cor2Inputs`). A final point without a twin record on C is left out (D4
    needs it); a family with fewer than :data:`MIN_CLEAN_REFERENCE` clean points is left out (each detector
    fits its reference on the family's other clean points, at least 3)."""
    by = index_records(records)
    notes: list[str] = []
    finals, contaminated, clean = [], [], []
    for r in records:
        if r["task"] != task or r["set"] != "verbatim" or not r.get("settings"):
            continue
        role = _role(r)
        twin = by.get((r["model"], task, "twins"))
        if role == "dose":
            contaminated.append(_with_twin(_row(r), twin))
        if role in ("base", "law", "dose") and _is_final(r):
            if twin is None:
                notes.append(f"{r['model']}: no twin record on {task}, left out of the detectors")
            else:
                finals.append(_with_twin(_row(r), twin))
        fam = r["root"]
        if int(r.get("step") or 0) > 0 and fam in rstar:
            if (role == "law" and r.get("run") == rstar[fam]) or (
                role == "seed" and recipe_of(r["run"], role) == rstar[fam]
            ):
                clean.append(
                    {
                        "family": fam,
                        "run_id": r["run"],
                        "seed": int(r["seed"]),
                        "step": int(r["step"]),
                        "model": r["model"],
                        "P": _p(r),
                        "mui": _mui_pct(r),
                    }
                )
    fin = pd.DataFrame(finals, columns=list(FINAL_COLUMNS))
    keep = []
    for fam, g in fin.groupby("family", sort=True):
        n_clean = int((~g["contaminated"]).sum())
        if n_clean < MIN_CLEAN_REFERENCE:
            notes.append(
                f"{fam}: {n_clean} clean final point(s) with twins, {MIN_CLEAN_REFERENCE} needed; family left out"
            )
        else:
            keep.append(fam)
    fin = fin[fin["family"].isin(keep)].sort_values(["family", "contaminated", "model"], kind="stable")
    base = bases(records, task)
    rstar_mui = {}
    for fam, rs in rstar.items():
        rec = next(
            (
                r
                for r in records
                if r["root"] == fam
                and r.get("run") == rs
                and r["task"] == task
                and r["set"] == "verbatim"
                and _is_final(r)
            ),
            None,
        )
        if rec is not None:
            rstar_mui[fam] = _mui_pct(rec)
    cols = ["family", "run_id", "seed", "step", "model", "P", "mui"]
    return Cor2Inputs(
        fin.reset_index(drop=True),
        pd.DataFrame(contaminated, columns=[*FINAL_COLUMNS])
        .sort_values(["family", "run_id", "step"], kind="stable")
        .reset_index(drop=True),
        pd.DataFrame(clean, columns=cols)
        .sort_values(["family", "seed", "step"], kind="stable")
        .reset_index(drop=True),
        {f: _mui_pct(r) for f, r in sorted(base.items())},
        rstar_mui,
        notes,
    )


# ----- §8.3 Cor. 3: fair comparison ----------------------------------------------------------------------------


def cor3_points(
    records: Sequence[Mapping[str, Any]], task: str, law_tasks: Sequence[str]
) -> tuple[pd.DataFrame, list[str]]:
    """One row per independent run (bases, clean law finals, contaminated finals) with P, MUI (%) and τ on C's
    verbatim items and R = the mean over the law tasks of P on their twins (§8.3; P rather than raw accuracy:
    with one N it is an affine map of it, so ρ and τ-b do not change). A run without a twin record on every law
    task is left out; so is a family with fewer than :data:`MIN_RUNS_PER_FAMILY_CV` runs (the nested CV needs
    them). Returns (rows: run_id, family, model, role, contaminated, P, mui, tau, R, notes)."""
    by = index_records(records)
    notes: list[str] = []
    rows = []
    for r in records:
        role = _role(r)
        if (
            r["task"] != task
            or r["set"] != "verbatim"
            or role not in ("base", "law", "dose")
            or not _is_final(r)
            or not r.get("settings")
        ):
            continue
        twins = [by.get((r["model"], t, "twins")) for t in law_tasks]
        missing = [t for t, x in zip(law_tasks, twins) if x is None]
        if missing:
            notes.append(f"{r['model']}: no twin record on {', '.join(missing)}, left out")
            continue
        row = _row(r)
        row["R"] = float(np.mean([_p(x) for x in twins]))
        rows.append(row)
    cols = ["run_id", "family", "model", "role", "contaminated", "P", "mui", "tau", "R"]
    df = pd.DataFrame(rows, columns=[*cols, "is_base"])[cols]
    keep = []
    for fam, g in df.groupby("family", sort=True):
        if len(g) < MIN_RUNS_PER_FAMILY_CV:
            notes.append(
                f"{fam}: {len(g)} run(s), {MIN_RUNS_PER_FAMILY_CV} needed for the nested CV; left out"
            )
        else:
            keep.append(fam)
    df = df[df["family"].isin(keep)].sort_values(["family", "contaminated", "model"], kind="stable")
    return df.reset_index(drop=True), notes


# ----- §8.4 Cor. 4: diversity -----------------------------------------------------------------------------------


def load_items(results: str | Path, tasks: Sequence[str]) -> dict[str, dict[str, Any]]:
    """task → its items file (:func:`saemui.zoo.record_v2.read_items_file`); a missing file is left out."""
    out = {}
    for t in tasks:
        p = items_path(Path(results), t)
        if p.is_file():
            out[t] = read_items_file(p)
    return out


@dataclass(frozen=True)
class Cor4Inputs:
    """§8.4 inputs: the clean law points with P0 key sets on every law task.

    points: run_id, family, model, is_base (one row per point, the order of every per-point array).
    keys: model → task → per-item P0 key sets (global ids) in item order. n_units: model → MUI denominator.
    acc: task → (points × items) 0/1 correctness. prompts: task → eval prompts (the pool, item order).
    selectors: base model → task → its key sets (the MUI-greedy selectors).
    """

    points: pd.DataFrame
    keys: dict[str, dict[str, list[np.ndarray]]]
    n_units: dict[str, int]
    acc: dict[str, np.ndarray]
    prompts: dict[str, list[str]]
    selectors: dict[str, dict[str, list[np.ndarray]]]
    notes: list[str] = field(default_factory=list)


def cor4_inputs(
    records: Sequence[Mapping[str, Any]], items: Mapping[str, Mapping[str, Any]], law_tasks: Sequence[str]
) -> Cor4Inputs:
    """The §8.4 inputs (see :class:`Cor4Inputs`) over the clean law points (bases and clean law finals). A point
    without a verbatim record with P0 key sets on every law task is left out; records must list the items
    file's ids in its order (the pool)."""
    by = index_records(records)
    notes: list[str] = []
    missing_items = [t for t in law_tasks if t not in items]
    if missing_items:
        raise SaemuiError(f"no items file for {', '.join(missing_items)}: the datasets' pool is unknown")
    cands = sorted(
        {
            (r["root"], _role(r) != "base", r["model"])
            for r in records
            if _role(r) in ("base", "law")
            and _is_final(r)
            and r["set"] == "verbatim"
            and r["task"] in law_tasks
        }
    )
    rows, keys, units, acc_rows = [], {}, {}, []
    for fam, tuned, model in cands:
        recs = [by.get((model, t, "verbatim")) for t in law_tasks]
        if any(r is None for r in recs):
            notes.append(f"{model}: no verbatim record on every law task, left out")
            continue
        sets = [_sets(_setting(r, "P0")) for r in recs]
        if any(s is None for s in sets):
            notes.append(f"{model}: a record kept no P0 key sets, left out")
            continue
        for t, r in zip(law_tasks, recs):
            if list(r["ids"]) != list(items[t]["ids"]):
                raise SaemuiError(f"record {model}/{t}: its ids are not the items file's ids in order")
        n_u = {_n_units(_setting(r, "P0")) for r in recs}
        if len(n_u) != 1:
            raise SaemuiError(f"{model}: P0 unit counts differ across tasks ({sorted(n_u)})")
        rows.append({"run_id": run_id(recs[0]), "family": fam, "model": model, "is_base": not tuned})
        keys[model] = dict(zip(law_tasks, sets))
        units[model] = n_u.pop()
        acc_rows.append([np.asarray(r["correct"], dtype=float) for r in recs])
    pts = pd.DataFrame(rows, columns=["run_id", "family", "model", "is_base"])
    acc = {t: np.array([a[j] for a in acc_rows]) for j, t in enumerate(law_tasks)} if acc_rows else {}
    return Cor4Inputs(
        pts,
        keys,
        units,
        acc,
        {t: [str(p) for p in items[t]["prompts"]] for t in law_tasks},
        {m: keys[m] for m in pts.loc[pts["is_base"], "model"]},
        notes,
    )


# ----- §8.5 causal check -----------------------------------------------------------------------------------------


def load_causal(results: str | Path) -> list[dict[str, Any]]:
    """Every causal record under ``<results>/causal`` (:func:`saemui.zoo.record_v2.read_causal`), by file name."""
    d = Path(results) / "causal"
    return [read_causal(p) for p in sorted(d.glob("*__*__*.json"))] if d.is_dir() else []


@dataclass(frozen=True)
class CausalArrays:
    """Per point (bases first, then fine-tuned points, each by family) the per-item arrays of each arm.

    logprob, sae: point → (Δlogp_key [N], Δlogp_random [N, R]) in nats, Δ = clean − ablated.
    accuracy: point → (correct_clean [N], correct_key [N], correct_random [N, R]).
    meta: point → arm → {task, role, root, n, n_draws, key_mui (%), mean key units, shortfall}.
    """

    logprob: dict[str, tuple[np.ndarray, np.ndarray]]
    accuracy: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]
    sae: dict[str, tuple[np.ndarray, np.ndarray]]
    meta: dict[str, dict[str, dict[str, Any]]]


def causal_arrays(causal: Sequence[Mapping[str, Any]], task: str | None = None) -> CausalArrays:
    """The arrays of :class:`CausalArrays` from causal records (on ``task`` only, when given)."""
    recs = [r for r in causal if task is None or r["task"] == task]
    recs.sort(key=lambda r: (_role(r) != "base", r["root"], r["model"], r["arm"]))
    logprob, acc, sae, meta = {}, {}, {}, {}
    for r in recs:
        clean = np.asarray(r["clean"], dtype=float)
        key = np.asarray(r["key"], dtype=float)
        rnd = np.asarray(r["random"], dtype=float)
        p = r["model"]
        if r["arm"] == "accuracy":
            acc[p] = (clean, key, rnd)
        else:
            (sae if r["arm"] == "sae-logprob" else logprob)[p] = (clean - key, clean[:, None] - rnd)
        short = np.asarray(r.get("shortfall") or [], dtype=float)
        meta.setdefault(p, {})[r["arm"]] = {
            "task": r["task"],
            "role": _role(r),
            "root": r["root"],
            "n": int(r["n"]),
            "n_draws": int(r["n_draws"]),
            "key_mui": 100.0 * float(r["key_mui"]) if r.get("key_mui") is not None else None,
            "mean_key_units": float(np.mean(r["n_key"])) if r.get("n_key") else None,
            "shortfall": int(short.sum()) if short.size else 0,
        }
    return CausalArrays(logprob, acc, sae, meta)


# ----- W10 SAE health ---------------------------------------------------------------------------------------------


def load_sae_health(results: str | Path) -> list[dict[str, Any]]:
    """Every SAE-health record under ``<results>/sae_health``, schema-checked, by file name."""
    d = Path(results) / "sae_health"
    out = []
    for p in sorted(d.glob("*.json")) if d.is_dir() else []:
        out.append(
            read_json(p, dict, "zoo SAE-health record", schema=HEALTH_SCHEMA_V2, kind="v2 SAE-health record")
        )
    return out


HEALTH_COLUMNS: tuple[str, ...] = (
    "model",
    "root",
    "role",
    "run",
    "task",
    "n",
    "tokens",
    "fve_pooled",
    "fve_token_median",
    "min_fve_pooled",
    "l0",
    "dead_frac",
    "dense_frac",
    "ce_layers",
    "ce_samples",
    "ce_loss_recovered",
    "kl_spliced",
    "fve_pooled_gold",
    "d_fve_pooled",
    "d_ce_loss_recovered",
    "d_fve_pooled_gold",
)


def _f(x: Any) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return float("nan")
    return v if math.isfinite(v) else float("nan")


def _median_tokens(h: Mapping[str, Any]) -> float:
    per = ((h.get("all_layers") or {}).get("per_layer") or {}).values()
    n = [float(x["n_tokens"]) for x in per if isinstance(x, Mapping) and "n_tokens" in x]
    return float(np.median(n)) if n else float("nan")


def sae_health_table(health: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """W10: one row per point: the medians over every layer (evaluated tokens after the sink rule, pooled FVE,
    per-token FVE median, L0, dead and dense shares; all responses) and over the CE layers (CE-loss recovered, KL;
    the first responses), the pooled FVE on the gold responses (set G, the same text at every point; NaN in
    records without it), and Δ = point − its root's base for the three (NaN without a base record). Bases
    first."""
    rows = []
    for h in health:
        a = (h.get("all_layers") or {}).get("medians") or {}
        c = (h.get("ce") or {}).get("medians") or {}
        rows.append(
            {
                "model": h["model"],
                "root": h["root"],
                "role": _role(h),
                "run": h.get("run"),
                "task": h["task"],
                "n": int(h["n"]),
                "tokens": _median_tokens(h),
                "fve_pooled": _f(a.get("fve_pooled")),
                "fve_token_median": _f(a.get("fve_token_median")),
                "min_fve_pooled": _f((h.get("all_layers") or {}).get("min_fve_pooled")),
                "l0": _f(a.get("l0")),
                "dead_frac": _f(a.get("dead_frac")),
                "dense_frac": _f(a.get("dense_frac")),
                "ce_layers": ",".join(map(str, h.get("ce_layers") or [])),
                "ce_samples": int(h.get("ce_samples") or 0),
                "ce_loss_recovered": _f(c.get("ce_loss_recovered")),
                "kl_spliced": _f(c.get("kl_spliced")),
                "fve_pooled_gold": _f(((h.get("gold") or {}).get("medians") or {}).get("fve_pooled")),
            }
        )
    df = pd.DataFrame(rows, columns=list(HEALTH_COLUMNS[:-3]))
    base = {r["root"]: r for r in rows if r["role"] == "base"}
    for col in ("fve_pooled", "ce_loss_recovered", "fve_pooled_gold"):
        df[f"d_{col}"] = [r[col] - base[r["root"]][col] if r["root"] in base else float("nan") for r in rows]
    if df.empty:
        return df
    df["_b"] = df["role"] != "base"
    return df.sort_values(["root", "_b", "model"], kind="stable").drop(columns="_b").reset_index(drop=True)


#: the markers around the section :func:`fidelity_section` writes into a bundle's ``card.md``
FIDELITY_MARKER = "zoo-v2 fidelity"


def health_table_md(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """The markdown table of :func:`sae_health_table` rows (dicts; NaN or None shown as "–"), shared by the
    corollaries report's W10 section and the cards' fidelity section."""

    def f(x: Any, d: int = 3, sign: str = "") -> str:
        v = _f(x)
        return f"{v:{sign}.{d}f}" if math.isfinite(v) else "–"

    lines = [
        "| model | role | run | n | tokens | pooled FVE | Δ FVE | min FVE | L0 | dead | dense | CE-loss recovered "
        "(layers; responses) | Δ CE rec. | KL | FVE, gold text | Δ FVE, gold text |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        run = r["run"] if isinstance(r.get("run"), str) else "–"
        lines.append(
            f"| {r['model']} | {r['role']} | {run} | {r['n']} | {f(r.get('tokens'), 0)} | {f(r['fve_pooled'])} | "
            f"{f(r['d_fve_pooled'], sign='+')} | {f(r['min_fve_pooled'])} | {f(r['l0'], 1)} | {f(r['dead_frac'])} | "
            f"{f(r['dense_frac'])} | {f(r['ce_loss_recovered'])} ({r['ce_layers']}; {r['ce_samples']}) | "
            f"{f(r['d_ce_loss_recovered'], sign='+')} | {f(r['kl_spliced'])} | {f(r.get('fve_pooled_gold'))} | "
            f"{f(r.get('d_fve_pooled_gold'), sign='+')} |"
        )
    return lines


def fidelity_section(health: Sequence[Mapping[str, Any]], suite: str) -> str:
    """The "fidelity on the zoo's models" section of SAE bundle ``suite``'s card (issue 17): one row per zoo point
    whose SAE-health record used that bundle (:func:`sae_health_table`), and the spread of Δ over the fine-tuned
    points. One record per point, so the rows are descriptive (no interval); Δ is against the base row (the model
    the SAEs were trained on, on its own responses to the same items; every row reads its own model's responses,
    so Δ mixes residuals and text). Raises when no record used ``suite``."""
    recs = [h for h in health if h.get("suite") == suite]
    if not recs:
        raise SaemuiError(f"SAE-health records: none used bundle {suite!r}")
    t = sae_health_table(recs)
    tasks = ", ".join(sorted(set(t["task"])))

    lines = [
        "## Fidelity on the zoo's models (zoo v2)",
        "",
        "Generated by `scripts/reproduce_study_corollaries.py` from `results/zoo-v2/sae_health/` (W10 of "
        "`docs/study/protocol.md`); edits here are overwritten. These SAEs were trained on the base model's "
        f"residuals. Each row encodes one zoo model's own residuals on **its own responses** to the items of {tasks} "
        "(response tokens after the sink rule; `tokens` = median over layers): medians over every layer of pooled "
        "FVE, L0, dead and dense shares; CE-loss recovered and KL over the CE layers named. Δ = row − base row. "
        "Two things move Δ together: the model's residuals and the text it wrote (fine-tuned models answer in far "
        "fewer tokens). `dead` counts features that never fire on the row's tokens, so it grows as the tokens "
        "shrink and is not comparable across rows with different `tokens`. The last two columns separate the "
        "two: pooled FVE on the gold responses of the same items (one template, identical text for every model), "
        "so their Δ is the residuals' alone. One record per model: descriptive, no interval.",
        "",
    ]
    lines += health_table_md(t.to_dict("records"))
    tuned = t[t["role"] != "base"]
    d_fve = tuned["d_fve_pooled"].dropna().to_numpy()
    d_ce = tuned["d_ce_loss_recovered"].dropna().to_numpy()
    d_gold = tuned["d_fve_pooled_gold"].dropna().to_numpy()
    lines.append("")
    if d_fve.size:
        spread = [
            ("Δ pooled FVE", d_fve),
            ("Δ CE-loss recovered", d_ce),
            ("Δ pooled FVE on the gold text", d_gold),
        ]
        lines.append(
            f"Over the {d_fve.size} non-base model(s) with a base row: "
            + "; ".join(
                f"{what} median {np.median(d):+.3f} (range {d.min():+.3f} to {d.max():+.3f}; {d.size} models)"
                for what, d in spread
                if d.size
            )
            + "."
        )
    else:
        lines.append("No fine-tuned model with a base row yet: the zoo build has not measured one.")
    return "\n".join(lines) + "\n"


__all__ = [
    "CausalArrays",
    "Cor2Inputs",
    "Cor4Inputs",
    "FIDELITY_MARKER",
    "FINAL_COLUMNS",
    "HEALTH_COLUMNS",
    "MIN_CLEAN_REFERENCE",
    "MIN_RUNS_PER_FAMILY_CV",
    "RSTAR_NAMES",
    "TRAJECTORY_COLUMNS",
    "bases",
    "causal_arrays",
    "cor1_checkpoint_items",
    "cor1_trajectories",
    "cor2_inputs",
    "cor3_points",
    "cor4_inputs",
    "fidelity_section",
    "health_table_md",
    "index_records",
    "load_causal",
    "load_items",
    "load_sae_health",
    "rstar_runs",
    "run_id",
    "sae_health_table",
]
