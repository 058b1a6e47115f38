"""Study v2, part 2 (``docs/study/protocol.md`` §8.1-§8.5, W10): the corollary tests, the causal check and the
SAE-health table from zoo-v2 records, offline, no model. ``scripts/reproduce_study_corollaries.py`` is its command
line; a notebook calls the same functions::

    rep = report(Path("results/zoo-v2"), CorollaryOptions())  # refuses only without any v2 record
    markdown(rep.data)                                          # the generated docs/study/results_corollaries.md
    figures(rep)                                                # {file stem: Figure}

:func:`load_context` reads ``<results>/eligibility.json`` (task C and the law tasks of stage 0), the v2 records,
the causal records and the SAE-health records; each ``run_*`` builds its test's inputs with
:mod:`saemui.analysis.zoo_v2_corollaries` and runs:

- :func:`run_cor1`, §8.1 Cor. 1 on the R* seed trajectories on C: ``training.seed_band`` (t-interval over
  seeds), ``c1_verdict``, the (ΔP, Δln τ) label baseline ``label_agreement`` and the per-seed
  ``item_bootstrap_transitions``;
- :func:`run_cor2`, §8.2 Cor. 2 on the final points on C: ``contamination.detector_scores`` D1-D5,
  ``detector_auroc``, ``matched_accuracy`` / ``matched_dmui`` against the R* checkpoints, ``sign_table``,
  ``c2_verdict``;
- :func:`run_cor3`, §8.3 Cor. 3 on the independent runs: ``comparison.fair_comparison_cv`` (M0, M1, M2, Mτ),
  ``c3_verdict``;
- :func:`run_cor4`, §8.4 Cor. 4 on the clean law points: ``diversity.designed_datasets``, ``dataset_mui`` /
  ``dataset_ngrams`` / ``dataset_clusters`` (k-means over the embedder's pool embeddings),
  ``diversity_delta_tau``, ``c4a_verdict``, ``subset_selection``, ``c4b_verdict``;
- :func:`run_causal`, §8.5 the causal check: ``causal.causal_effect`` per point (log-prob arm, and the SAE arm
  beside it), ``accuracy_effect``, ``causal_verdict`` over the neuron points;
- :func:`run_health`, W10: per SmolLM2 point, median FVE and CE-loss recovered beside its base's.

A part whose records are missing is reported as "not run" with the stages that would make them (from the spec
named in ``eligibility.json``); a part that ran on a partial build names the records it lacked.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from saemui.analysis import causal as ca
from saemui.analysis import comparison as cmp
from saemui.analysis import contamination as ct
from saemui.analysis import diversity as dv
from saemui.analysis import training as tr
from saemui.analysis import zoo_v2_corollaries as zc
from saemui.analysis.corollary import BOOT_SEED, LEVEL, N_BOOT, CorollaryVerdict
from saemui.analysis.embed import KMEANS_K, KMEANS_RESTARTS, SVD_DIMS, embed
from saemui.analysis.study_report import (
    analysis_versions,
    command,
    deviation_line,
    fmt,
    id_head,
    json_num,
    json_table,
    spec_for,
)
from saemui.errors import SaemuiError
from saemui.readers import read_json
from saemui.zoo.record_v2 import (
    causal_path,
    eligibility_path,
    health_path,
    load_records_v2,
    record_path,
    study_records,
    study_tasks,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from saemui.zoo.spec_v2 import StudySpec

SCHEMA = "saemui-study-corollaries/1"
SCRIPT = "reproduce_study_corollaries.py"
#: the JSON document's file name under the results directory, and where the generated tables go
JSON_NAME = "study_corollaries.json"
DEFAULT_MD = "docs/study/results_corollaries.md"
#: §8.4's embedder rules (:func:`pick_embedder`)
EMBEDDERS: tuple[str, ...] = ("default", "tfidf", "minilm")

PARTS: dict[str, str] = {
    "cor1": "§8.1 Cor. 1, training diagnostics",
    "cor2": "§8.2 Cor. 2, contamination",
    "cor3": "§8.3 Cor. 3, fair comparison",
    "cor4": "§8.4 Cor. 4, diversity",
    "causal": "§8.5 causal check",
    "sae_health": "W10 SAE health",
}
#: the stage groups (docs/zoo.md) whose records each part reads
PART_GROUPS: dict[str, str] = {
    "cor1": "0, 2 and 4 (bases and R* seeds 0-2 with their checkpoints on C)",
    "cor2": "0, 2, 3, 4 and 5 (clean law points with twins on C, R* checkpoints, dose runs)",
    "cor3": "0, 2, 3 and 5 (bases, clean law finals and dose finals on C, the twins of every law task)",
    "cor4": "0 and 2 (bases and clean law finals on every law task, with key sets)",
    "causal": "6 (causal check at the bases and R* finals)",
    "sae_health": "2h (SAE health)",
}


# ----- the design: which records each part expects --------------------------------------------------------


def expected_records(
    spec: StudySpec, law: Sequence[str], results: Path
) -> dict[str, list[tuple[str, str, Path]]]:
    """part → (stage id, stage group, record path) of every record the part reads, from the spec's stages
    (``saemui.zoo.stages_v2``: the same ids as ``build_zoo.py --plan``)."""
    from saemui.zoo import stages_v2 as sv

    law = tuple(law)
    c = law[0]
    rstar = set(spec.rstar)
    out: dict[str, list[tuple[str, str, Path]]] = {k: [] for k in PARTS}
    for p in sv.points(spec):
        run = p.run
        role = "base" if run is None else run.role
        final = p.step is None
        of_rstar = run is not None and (
            run.name in rstar or (role == "seed" and run.name.rsplit("-seed", 1)[0] in rstar)
        )
        for e in sv.point_evals(spec, p, law):
            item = (
                f"eval:{p.name}:{e.task}:{e.item_set}",
                e.group,
                record_path(results, p.name, e.task, e.item_set),
            )
            on_c = e.task == c
            if on_c and e.item_set == "verbatim" and (role == "base" or of_rstar):
                out["cor1"].append(item)
            clean_final = final and role in ("base", "law")
            if on_c and e.item_set in ("verbatim", "twins") and (clean_final or role == "dose"):
                out["cor2"].append(item)
            elif on_c and e.item_set == "verbatim" and of_rstar:
                out["cor2"].append(item)  # the matching candidates (R* checkpoints of seeds 0-2)
            if (final and role in ("base", "law", "dose")) and (
                (on_c and e.item_set == "verbatim") or (e.item_set == "twins" and e.task in law)
            ):
                out["cor3"].append(item)
            if clean_final and e.item_set == "verbatim" and e.task in law:
                out["cor4"].append(item)
    for p in sv.causal_points(spec):
        for arm in sv.causal_arms(spec, p):
            out["causal"].append((f"causal:{p.name}:{c}:{arm}", "6", causal_path(results, p.name, c, arm)))
    for p in sv.health_points(spec):
        out["sae_health"].append((f"health:{p.name}:{c}", "2h", health_path(results, p.name)))
    return {k: sorted(set(v)) for k, v in out.items()}


def missing_stages(
    expected: Mapping[str, Sequence[tuple[str, str, Path]]] | None,
) -> dict[str, list[str] | None]:
    """part → the expected stage ids without a record (None when the spec is unknown)."""
    if expected is None:
        return {k: None for k in PARTS}
    return {k: [sid for sid, _, p in v if not p.is_file()] for k, v in expected.items()}


def _missing_s(ids: Sequence[str] | None, n_show: int = 4) -> str:
    if ids is None:
        return "unknown spec: missing stages not listed"
    if not ids:
        return "no record missing"
    return f"{len(ids)} record(s) missing ({id_head(ids, n_show)})"


def _not_run(part: str, why: str, missing: Sequence[str] | None) -> dict[str, Any]:
    return {
        "status": "not run",
        "not_run": f"stage groups {PART_GROUPS[part]}: {why}; {_missing_s(missing)}",
        "missing_stages": None if missing is None else list(missing),
    }


# ----- JSON helpers ----------------------------------------------------------------------------------------


def _verdict_json(v: CorollaryVerdict) -> dict[str, Any]:
    out = json_num(v.as_row())
    if hasattr(v, "signature"):
        out["signature"] = v.signature
    return out


# ----- the embedder of §8.4 ---------------------------------------------------------------------------------


def pick_embedder(which: str) -> tuple[Callable[[Sequence[str]], np.ndarray], dict[str, Any]]:
    """(embedder, its description) for a rule of :data:`EMBEDDERS`: ``default`` = §8.4's rule (all-MiniLM-L6-v2 when its
    package is installed, else TF-IDF + SVD), ``minilm`` requires the package, ``tfidf`` forces the fallback."""
    from saemui.analysis.embed import MINILM_PACKAGE, minilm_available, minilm_embedder, tfidf_svd_embed

    if which == "minilm" or (which == "default" and minilm_available()):
        return minilm_embedder(), {
            "name": "all-MiniLM-L6-v2",
            "package": MINILM_PACKAGE,
            "version": metadata.version(MINILM_PACKAGE) if minilm_available() else None,
            "rule": which,
        }
    return tfidf_svd_embed, {
        "name": f"tfidf-svd{SVD_DIMS}",
        "package": None,
        "version": None,
        "rule": which,
        "detail": f"TF-IDF over token 1-2-grams, exact truncated SVD to {SVD_DIMS} dimensions",
    }


# ----- the parts -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CorollaryOptions:
    """The sizes of the resampling and of §8.4's designed datasets (the registered values by default; tests of
    tiny zoos lower them), and §8.4's embedder rule (see :func:`pick_embedder`)."""

    n_boot: int = N_BOOT  # run and item bootstraps of §8.2-§8.5
    n_item_boot: int = tr.ITEM_BOOT  # §8.1 per-seed item bootstrap
    n_random: int = dv.N_RANDOM_SUBSETS  # §8.4 random subsets per cell
    dataset_n: int = dv.DATASET_N  # §8.4 items per designed dataset
    draws: int = dv.DATASET_DRAWS  # §8.4 datasets per level
    kmeans_k: int = KMEANS_K  # §8.4 k-means clusters over the pool
    embedder: str = "default"  # default, tfidf or minilm


@dataclass
class Context:
    """What every part reads (from :func:`load_context`), and the fitted objects the figures need (``fig``,
    filled by the ``run_*`` functions)."""

    results: Path
    options: CorollaryOptions = field(default_factory=CorollaryOptions)
    records: list[dict] = field(default_factory=list)
    causal: list[dict] = field(default_factory=list)
    health: list[dict] = field(default_factory=list)
    #: eligibility.json ({} while stage 0 is incomplete)
    eligibility: dict[str, Any] = field(default_factory=dict)
    C: str | None = None
    law: list[str] = field(default_factory=list)
    #: the tasks whose twins give Cor. 3's reference R: every law task, or C alone under §9's cut 3
    twin_tasks: list[str] = field(default_factory=list)
    rstar: dict[str, str] = field(default_factory=dict)
    #: part → the expected stage ids without a record (None: the spec is unknown)
    missing: dict[str, list[str] | None] = field(default_factory=lambda: {k: None for k in PARTS})
    #: the neuron points §8.5's verdict counts (the spec's causal points; 4 when the spec is unknown)
    causal_points: int = 4
    fig: dict[str, Any] = field(default_factory=dict)


def run_cor1(cx: Context) -> dict[str, Any]:
    miss = cx.missing["cor1"]
    traj, notes = zc.cor1_trajectories(cx.records, cx.C, cx.rstar)
    if traj.empty:
        return _not_run("cor1", "no family has 2 R* seeds with records on C (" + "; ".join(notes) + ")", miss)
    band = tr.seed_band(traj, perf_col="P", mui_col="mui", mui_t_col="mui_T", tau_col="tau", level=LEVEL)
    v = tr.c1_verdict(band, LEVEL)
    design = sorted({r["root"] for r in cx.records})
    absent = [f for f in design if f not in set(band["family"])]
    vj = _verdict_json(v)
    if absent and v.verdict == "supported":
        # "in each family": a family without seed trajectories cannot meet the rule (§11)
        vj["verdict"] = "inconclusive"
        vj["note"] += f"; family {', '.join(absent)} without seed trajectories: not every family can qualify"
    items, notes_i = zc.cor1_checkpoint_items(cx.records, cx.C, traj)
    boot = []
    for (fam, run), (cks, n_units) in items.items():
        b = tr.item_bootstrap_transitions(cks, n_units, n_boot=cx.options.n_item_boot, seed=0, level=LEVEL)
        seed = int(traj.loc[traj["run_id"] == run, "seed"].iloc[0])
        boot.append({"family": fam, "run_id": run, "seed": seed, "n_units": n_units, "table": json_table(b)})
    cx.fig["cor1"] = (band, vj)
    return {
        "status": "run",
        "missing_stages": miss,
        "notes": notes + notes_i,
        "families_without_seeds": absent,
        "trajectories": json_table(traj),
        "band": json_table(band),
        "verdict": vj,
        "label_agreement": tr.label_agreement(band),
        "item_bootstrap": {"n_boot": cx.options.n_item_boot, "seed": 0, "runs": boot},
    }


def run_cor2(cx: Context) -> dict[str, Any]:
    miss = cx.missing["cor2"]
    inp = zc.cor2_inputs(cx.records, cx.C, cx.rstar)
    fin = inp.finals
    n_pos, n_neg = int(fin["contaminated"].sum()), int((~fin["contaminated"]).sum())
    if n_pos == 0 or n_neg == 0:
        why = f"{n_pos} contaminated and {n_neg} clean final point(s) usable on C"
        if inp.notes:
            why += " (" + "; ".join(inp.notes) + ")"
        return _not_run("cor2", why, miss)
    scores = ct.detector_scores(fin)
    auroc = ct.detector_auroc(scores, n_boot=cx.options.n_boot, seed=BOOT_SEED, level=LEVEL)
    out: dict[str, Any] = {
        "status": "run",
        "missing_stages": miss,
        "notes": list(inp.notes),
        "scores": json_table(scores),
        "auroc": json_table(auroc),
        "n_pos": n_pos,
        "n_neg": n_neg,
        "contaminated_checkpoints": json_table(inp.contaminated),
        "clean_candidates": json_table(inp.clean),
    }
    contam = inp.contaminated[inp.contaminated["family"].isin(set(inp.clean["family"]))]
    dm = None
    if len(contam):
        matches = ct.matched_accuracy(contam, inp.clean)
        out["matches"] = json_table(matches)
        try:
            dm = ct.matched_dmui(matches, n_boot=cx.options.n_boot, seed=BOOT_SEED, level=LEVEL)
            out["dmui_match"] = json_num(
                {
                    "estimate": dm.estimate,
                    "lo": dm.lo,
                    "hi": dm.hi,
                    "level": dm.level,
                    "n": dm.n,
                    "n_boot": dm.n_boot,
                }
            )
        except SaemuiError as e:
            out["dmui_match"] = {"error": str(e)}
    else:
        matches = None
        out["matches"] = None
        out["dmui_match"] = {"error": "no clean R* checkpoint of a contaminated run's family"}
    # every dose final whose root and R* were measured, also of a family too small for the detectors
    finals = inp.contaminated[
        ~inp.contaminated["checkpoint"]
        & inp.contaminated["family"].isin(set(inp.root_mui) & set(inp.rstar_mui))
    ]
    out["sign_table"] = json_table(ct.sign_table(finals, inp.root_mui, inp.rstar_mui, matches))
    v = ct.c2_verdict(auroc, dm)
    out["verdict"] = _verdict_json(v)
    cx.fig["cor2"] = (auroc, out["verdict"])
    return out


def run_cor3(cx: Context) -> dict[str, Any]:
    miss = cx.missing["cor3"]
    pts, notes = zc.cor3_points(cx.records, cx.C, cx.twin_tasks)
    if len(pts) < 5:
        where = "every law task" if cx.twin_tasks == cx.law else "C (§9 cut 3)"
        return _not_run("cor3", f"{len(pts)} run(s) with P, MUI, τ on C and twins on {where}, 5 needed", miss)
    cv = cmp.fair_comparison_cv(pts, n_boot=cx.options.n_boot, seed=BOOT_SEED, level=LEVEL)
    v = cmp.c3_verdict(cv)
    cx.fig["cor3"] = (cv, _verdict_json(v))
    return {
        "status": "run",
        "missing_stages": miss,
        "notes": notes,
        "points": json_table(pts),
        "predictions": json_table(cv.predictions),
        "table": json_table(cv.table),
        "n": cv.n,
        "n_boot": cv.n_boot,
        "boot_seed": cv.seed,
        "twin_tasks": list(cx.twin_tasks),
        "alpha_grid": [float(a) for a in cmp.ALPHA_GRID],
        "length_matches_mui": cv.length_matches_mui,
        "verdict": _verdict_json(v),
    }


def run_cor4(cx: Context) -> dict[str, Any]:
    miss = cx.missing["cor4"]
    a = cx.options
    items = zc.load_items(cx.results, cx.law)
    if len(items) < len(cx.law):
        return _not_run("cor4", "an items file of a law task is missing", miss)
    inp = zc.cor4_inputs(cx.records, items, cx.law)
    if len(inp.points) < 3 or not inp.selectors or inp.points["is_base"].all():
        why = (
            f"{len(inp.points)} clean law point(s), {int((~inp.points['is_base']).sum())} of them fine-tuned, and "
            f"{len(inp.selectors)} base(s) with key sets on every law task"
        )
        return _not_run("cor4", why, miss)
    fn, emb_desc = pick_embedder(a.embedder)
    pool = [p for t in cx.law for p in inp.prompts[t]]
    emb = embed(pool, fn)
    emb_by_task, o = {}, 0
    for t in cx.law:
        emb_by_task[t], o = emb[o : o + len(inp.prompts[t])], o + len(inp.prompts[t])
    out: dict[str, Any] = {
        "status": "run",
        "missing_stages": miss,
        "notes": list(inp.notes),
        "embedder": emb_desc,
        "points": json_table(inp.points),
    }
    sizes = {t: len(items[t]["ids"]) for t in cx.law}
    try:
        datasets = dv.designed_datasets(sizes, n_items=a.dataset_n, draws=a.draws, seed=0)
        mui = np.array([dv.dataset_mui(datasets, inp.keys[m], inp.n_units[m]) for m in inp.points["model"]])
        ng = dv.dataset_ngrams(datasets, inp.prompts)
        labels = dv.pool_clusters(
            inp.prompts, embedder=lambda texts: emb, k=a.kmeans_k, n_init=KMEANS_RESTARTS, seed=0
        )
        cl = dv.dataset_clusters(datasets, labels)
        taus = dv.diversity_delta_tau(
            datasets,
            inp.points,
            mui,
            {"n-grams": ng, "k-means": cl},
            n_boot=a.n_boot,
            seed=BOOT_SEED,
            level=LEVEL,
        )
        v4a = dv.c4a_verdict(taus)
        levels = datasets.groupby("dataset", sort=True)["level"].first().to_numpy()
        per_ds = pd.DataFrame(
            {"dataset": np.arange(len(levels)), "level": levels, "n-grams": ng, "k-means": cl}
        )
        for i, m in enumerate(inp.points["model"]):
            per_ds[f"mui:{m}"] = mui[i]
        d = taus.delta
        out["c4a"] = {
            "n_datasets": taus.n_datasets,
            "dataset_n": a.dataset_n,
            "draws": a.draws,
            "kmeans_k": a.kmeans_k,
            "kmeans_restarts": KMEANS_RESTARTS,
            "datasets": json_table(datasets),
            "measures": json_table(per_ds),
            "baseline_tau": json_num(taus.baseline_tau),
            "per_point": json_table(taus.per_point),
            "delta": json_num(
                {
                    "estimate": d.estimate,
                    "lo": d.lo,
                    "hi": d.hi,
                    "level": d.level,
                    "n": d.n,
                    "n_boot": d.n_boot,
                }
            ),
            "verdict": _verdict_json(v4a),
        }
        cx.fig["cor4"] = (datasets, mui, ng, cl, out["c4a"]["verdict"], len(inp.points))
    except SaemuiError as e:
        out["c4a"] = {"error": str(e)}
    try:
        cells = dv.subset_selection(
            inp.acc,
            inp.points,
            inp.selectors,
            inp.prompts,
            emb_by_task,
            n_random=a.n_random,
            kmeans_restarts=KMEANS_RESTARTS,
            seed=0,
            n_boot=a.n_boot,
            boot_seed=BOOT_SEED,
            level=LEVEL,
        )
        v4b = dv.c4b_verdict(cells)
        adv = cells.advantage
        out["c4b"] = {
            "fractions": list(dv.SUBSET_FRACTIONS),
            "n_random": a.n_random,
            "cells": json_table(cells.cells),
            "c": dv.binomial_min_count(len(cells.cells)),
            "advantage": json_num(
                {
                    "estimate": adv.estimate,
                    "lo": adv.lo,
                    "hi": adv.hi,
                    "level": adv.level,
                    "n": adv.n,
                    "n_boot": adv.n_boot,
                }
            ),
            "subsets": [
                {"task": t, "fraction": f, "method": m, "items": [int(i) for i in s]}
                for (t, f, m), s in cells.subsets.items()
            ],
            "verdict": _verdict_json(v4b),
        }
    except SaemuiError as e:
        out["c4b"] = {"error": str(e)}
    return out


def _effect_json(e: ca.CausalEffect) -> dict[str, Any]:
    return json_num(
        {
            "E": e.e,
            "lo": e.lo,
            "hi": e.hi,
            "dlogp_key": e.mean_key,
            "dlogp_random": e.mean_random,
            "n": e.n,
            "n_draws": e.n_draws,
            "level": e.level,
            "n_boot": e.n_boot,
            "seed": e.seed,
        }
    )


def _acc_json(a: ca.AccuracyEffect) -> dict[str, Any]:
    return json_num(
        {
            "dAcc": a.d_acc,
            "lo": a.lo,
            "hi": a.hi,
            "acc_clean": a.acc_clean,
            "acc_key": a.acc_key,
            "acc_random": a.acc_random,
            "drop_key": list(a.drop_key),
            "drop_random": list(a.drop_random),
            "n": a.n,
            "n_draws": a.n_draws,
            "level": a.level,
            "n_boot": a.n_boot,
            "seed": a.seed,
        }
    )


def run_causal(cx: Context) -> dict[str, Any]:
    miss = cx.missing["causal"]
    arr = zc.causal_arrays(cx.causal, cx.C)
    if not arr.logprob and not arr.accuracy and not arr.sae:
        return _not_run("causal", f"no causal record on {cx.C}", miss)
    n = cx.options.n_boot
    effects = {p: ca.causal_effect(*v, n_boot=n, seed=0, level=LEVEL) for p, v in arr.logprob.items()}
    acc = {p: ca.accuracy_effect(*v, n_boot=n, seed=0, level=LEVEL) for p, v in arr.accuracy.items()}
    sae = {p: ca.causal_effect(*v, n_boot=n, seed=0, level=LEVEL) for p, v in arr.sae.items()}
    n_points = cx.causal_points
    v = ca.causal_verdict(effects, n_points=n_points)
    cx.fig["causal"] = (effects, acc, sae, v)
    return {
        "status": "run",
        "missing_stages": miss,
        "n_points": n_points,
        "logprob": {p: _effect_json(e) for p, e in effects.items()},
        "accuracy": {p: _acc_json(e) for p, e in acc.items()},
        "sae_logprob": {p: _effect_json(e) for p, e in sae.items()},
        "meta": json_num(arr.meta),
        "table": json_table(ca.causal_table(effects, acc)) if effects else None,
        "verdict": {
            "label": v.label,
            "n_given": v.n_given,
            "n_points": v.n_points,
            "n_positive": v.n_positive,
            "n_nonpositive": v.n_nonpositive,
        },
    }


def run_health(cx: Context) -> dict[str, Any]:
    miss = cx.missing["sae_health"]
    if not cx.health:
        return _not_run("sae_health", "no SAE-health record", miss)
    return {"status": "run", "missing_stages": miss, "table": json_table(zc.sae_health_table(cx.health))}


@dataclass(frozen=True)
class CorollaryReport:
    """The corollaries report of a results directory: ``data`` is the JSON document (every number; what
    :func:`markdown` reads), ``context`` what the parts read and the fitted objects :func:`figures` draws."""

    data: dict[str, Any]
    context: Context


# ----- markdown --------------------------------------------------------------------------------------------


def _f(x: Any, nd: int = 3) -> str:
    return ("yes" if x else "no") if isinstance(x, bool) else fmt(x, nd)


def _ci_s(lo: Any, hi: Any) -> str:
    return f"[{_f(lo)}, {_f(hi)}]"


def _sign_s(s: int) -> str:
    return {1: "+", -1: "−", 0: "0"}[int(s)]


def _rows(t: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    if not t:
        return []
    return [dict(zip(t["columns"], r)) for r in t["rows"]]


def _v_s(v: Mapping[str, Any]) -> str:
    est = f"{v['statistic']} = {_f(v['estimate'])}"
    if v.get("lo") is not None or v.get("hi") is not None:
        est += f" {_ci_s(v['lo'], v['hi'])} ({_f(v['level'])})"
    return f"**{v['verdict']}**: {est}, n = {v['n']}; {v['note']}"


def _status(part: Mapping[str, Any]) -> list[str]:
    if part["status"] == "not run":
        return [f"**Not run**: {part['not_run']}."]
    if part["status"] == "error":
        return [f"**Not computed**: {part['error']} ({_missing_s(part.get('missing_stages'))})."]
    lines = []
    miss = part.get("missing_stages")
    if miss:
        lines.append(
            f"Partial build: {_missing_s(miss)}; the numbers below use the records present, and any verdict below "
            "is **interim**, not a result of the study (the registered test is over the whole design)."
        )
    for n in part.get("notes") or []:
        lines.append(f"- {n}")
    return lines


def _check_parts(parts: Sequence[str] | None) -> tuple[str, ...]:
    if parts is None:
        return tuple(PARTS)
    bad = [k for k in parts if k not in PARTS]
    if bad or not parts:
        raise SaemuiError(f"parts: expected some of {', '.join(PARTS)}; got {list(parts)!r}")
    return tuple(parts)


def _md_cor1(rep: Mapping[str, Any]) -> list[str]:
    lines: list[str] = []
    c1 = rep["cor1"]
    lines += ["", "## §8.1 Cor. 1, training diagnostics", ""]
    lines += _status(c1)
    if c1["status"] == "run":
        lines += [
            "",
            f"C1: {_v_s(c1['verdict'])}",
            "",
            "Seed band: per transition the mean over seeds with its 95 % t-interval over seeds (df = seeds − 1); a "
            'phase label needs the ΔP and ΔMUI intervals both to exclude 0, else "within noise". ΔP in points, '
            "ΔMUI and ΔMUI_T in points of %.",
            "",
            "| family | transition | seeds | ΔP | ΔMUI | ΔMUI_T | Δln τ | label | label (ΔP, Δln τ) | ΔMUI_T same sign |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in _rows(c1["band"]):
            cells = [str(r["family"]), f"{_f(r['step_from'])}→{_f(r['step_to'])}", str(r["n_seeds"])]
            for d in ("dP", "dMUI", "dMUI_T", "dlntau"):
                cells.append(f"{_f(r.get(d))} {_ci_s(r.get(d + '_lo'), r.get(d + '_hi'))}" if d in r else "–")
            cells += [str(r["phase"]), str(r.get("phase_tau", "–")), _f(r.get("mui_t_same_sign"))]
            lines.append("| " + " | ".join(cells) + " |")
        la = c1["label_agreement"]
        lines += [
            "",
            f"Baseline (§8.1): {la['same']} of {la['n']} transitions get the same label from (ΔP, ΔMUI) and from "
            f'(ΔP, Δln τ) ("within noise" both ways counts; {la["same_labelled"]} of them labelled both ways; '
            f"labelled: {la['labelled_mui']} with ΔMUI, {la['labelled_tau']} with Δln τ).",
            "",
            f"Per-seed paired item bootstrap (secondary, B = {c1['item_bootstrap']['n_boot']}, percentile 95 %; no "
            "Δln τ: the records keep no per-sample positions):",
            "",
            "| family | run (seed) | transition | ΔP | ΔMUI | ΔMUI_T |",
            "|---|---|---|---|---|---|",
        ]
        for b in c1["item_bootstrap"]["runs"]:
            for r in _rows(b["table"]):
                cells = [
                    b["family"],
                    f"{b['run_id']} ({b['seed']})",
                    f"{_f(r['step_from'])}→{_f(r['step_to'])}",
                ]
                for d in ("dP", "dMUI", "dMUI_T"):
                    cells.append(
                        f"{_f(r.get(d))} {_ci_s(r.get(d + '_lo'), r.get(d + '_hi'))}" if d in r else "–"
                    )
                lines.append("| " + " | ".join(cells) + " |")
    return lines


def _md_cor2(rep: Mapping[str, Any]) -> list[str]:
    lines: list[str] = []
    c2 = rep["cor2"]
    lines += ["", "## §8.2 Cor. 2, contamination", ""]
    lines += _status(c2)
    if c2["status"] == "run":
        v = c2["verdict"]
        lines += [
            "",
            f"C2: {_v_s(v)}",
            "",
            f"Paper signature (mean ΔMUI_match > 0): **{v['signature']}**. With {c2['n_pos']} contaminated against "
            f"{c2['n_neg']} clean final points, every AUROC interval is wide.",
            "",
            "| detector | kind | estimate | 95 % interval (run bootstrap by label) |",
            "|---|---|---|---|",
        ]
        for r in _rows(c2["auroc"]):
            lines.append(f"| {r['what']} | {r['kind']} | {_f(r['estimate'])} | {_ci_s(r['lo'], r['hi'])} |")
        lines += [
            "",
            "Scores per final point on C (positive = suspicious; D1/D2 standardised residuals of the family's clean "
            "points with the run left out, D3 z(P), D4 P − P_twin in points, D5 = D1 + z(D4)):",
            "",
            "| point | family | dose | P | P_twin | MUI (%) | D1 | D2 | D3 | D4 | D5 |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in _rows(c2["scores"]):
            lines.append(
                f"| {r['model']} | {r['family']} | {_f(r['dose'])} | {_f(r['P'])} | {_f(r['P_twin'])} | {_f(r['mui'])} | "
                + " | ".join(_f(r[d]) for d in ct.DETECTORS)
                + " |"
            )
        dm = c2["dmui_match"]
        lines += [
            "",
            "Matched accuracy (closest verbatim P among the clean R* checkpoints, |ΔP| ≤ 3 points):",
            "",
        ]
        if c2.get("matches"):
            lines += [
                "| contaminated checkpoint | P | matched (seed, step) | ΔP | ΔMUI_match |",
                "|---|---|---|---|---|",
            ]
            for r in _rows(c2["matches"]):
                lines.append(
                    f"| {r['model']} | {_f(r['P'])} | {r['match_seed']}, {r['match_step']} | {_f(r['dP_match'])} | "
                    f"{_f(r['dMUI_match']) if r['matched'] else 'unmatched'} |"
                )
        lines.append("")
        lines.append(
            f"Mean ΔMUI_match over runs: {dm['error']}"
            if "error" in dm
            else f"Mean ΔMUI_match over runs: {_f(dm['estimate'])} {_ci_s(dm['lo'], dm['hi'])} (n = {dm['n']} runs, "
            f"B = {dm['n_boot']})"
        )
        lines += ["", "Sign table (final checkpoint; ΔMUI in points of %):", ""]
        lines += ["| run | family | vs root | vs R* seed 0 | vs matched |", "|---|---|---|---|---|"]
        for r in _rows(c2["sign_table"]):
            lines.append(
                f"| {r['run_id']} | {r['family']} | {_f(r['dMUI_root'])} ({_sign_s(r['sign_root'])}) | "
                f"{_f(r['dMUI_rstar'])} ({_sign_s(r['sign_rstar'])}) | {_f(r['dMUI_match'])} ({_sign_s(r['sign_match'])}) |"
            )
    return lines


def _md_cor3(rep: Mapping[str, Any]) -> list[str]:
    lines: list[str] = []
    c3 = rep["cor3"]
    lines += ["", "## §8.3 Cor. 3, fair comparison", ""]
    lines += _status(c3)
    if c3["status"] == "run":
        lines += [
            "",
            f"C3: {_v_s(c3['verdict'])}",
            "",
            f"Outer leave-one-run-out CV over n = {c3['n']} runs; R = "
            + (
                "P on the twins of C only (§9 cut 3; points); "
                if len(c3.get("twin_tasks") or [None, None]) == 1
                else "mean P on the twins of the law tasks (points); "
            )
            + f"ρ = 1 − MSE/MSE(M0) with a paired run bootstrap (B = {c3['n_boot']}).",
            "",
            "| model | CV MSE (points²) | ρ | 95 % interval | Kendall τ-b (CV prediction vs R) |",
            "|---|---|---|---|---|",
        ]
        for r in _rows(c3["table"]):
            lines.append(
                f"| {r['model']} | {_f(r['mse'])} | {_f(r['rho'])} | {_ci_s(r['rho_lo'], r['rho_hi'])} | {_f(r['tau_b'])} |"
            )
        if c3["length_matches_mui"]:
            lines += ["", "ρ(Mτ) ≥ ρ(M1): response length predicts R as well as MUI does."]
    return lines


def _md_cor4(rep: Mapping[str, Any]) -> list[str]:
    lines: list[str] = []
    c4 = rep["cor4"]
    lines += ["", "## §8.4 Cor. 4, diversity", ""]
    lines += _status(c4)
    if c4["status"] == "run":
        e = c4["embedder"]
        lines += [
            "",
            f"Embedder: {e['name']}"
            + (f" ({e['package']} {e['version']})" if e.get("package") else "")
            + ".",
        ]
        a = c4["c4a"]
        lines += ["", "### C4a: does MUI track the designed diversity level?", ""]
        if "error" in a:
            lines.append(f"Not computed: {a['error']}.")
        else:
            lines += [
                f"C4a: {_v_s(a['verdict'])}",
                "",
                f"{a['n_datasets']} datasets of {a['dataset_n']} items; baselines (model-free): "
                + ", ".join(f"τ({k}) = {_f(x)}" for k, x in a["baseline_tau"].items()),
                "",
                "| point | family | τ-b(level, MUI) | Δτ |",
                "|---|---|---|---|",
            ]
            for r in _rows(a["per_point"]):
                mdl = next(x["model"] for x in _rows(c4["points"]) if x["run_id"] == r["run_id"])
                lines.append(f"| {mdl} | {r['family']} | {_f(r['tau_mui'])} | {_f(r['delta_tau'])} |")
        b = c4["c4b"]
        lines += ["", "### C4b: subset selection for evaluation", ""]
        if "error" in b:
            lines.append(f"Not computed: {b['error']}.")
        else:
            lines += [
                f"C4b: {_v_s(b['verdict'])}",
                "",
                f"Per cell: Kendall τ-b between subset and full accuracy over the clean law points; random: "
                f"{b['n_random']} draws per (task, fraction); c = {b['c']}.",
                "",
                "| task | fraction | items | selector | τ MUI-greedy | random q95 | percentile | reaches | τ kMQ | τ lexical | τ random mean |",
                "|---|---|---|---|---|---|---|---|---|---|---|",
            ]
            for r in _rows(b["cells"]):
                lines.append(
                    f"| {r['task']} | {_f(r['fraction'])} | {r['n_items']} | {r['selector']} | {_f(r['tau_greedy'])} | "
                    f"{_f(r['q95_random'])} | {_f(r['percentile'])} | {_f(r['reaches'])} | {_f(r['tau_kmq'])} | "
                    f"{_f(r['tau_lexical'])} | {_f(r['tau_random_mean'])} |"
                )
    return lines


def _md_causal(rep: Mapping[str, Any]) -> list[str]:
    lines: list[str] = []
    cs = rep["causal"]
    lines += ["", "## §8.5 Causal check", ""]
    lines += _status(cs)
    if cs["status"] == "run":
        v = cs["verdict"]
        lines += [
            "",
            f"Causal: **{v['label']}** ({v['n_positive']} of {v['n_points']} neuron points with E's lower bound > 0, "
            f"{v['n_nonpositive']} with its upper bound ≤ 0; {v['n_given']} point(s) measured).",
        ]
        if v["label"] == "not supported":
            lines += ["", "Key units matter no more than random ones, which undercuts every corollary."]
        lines += [
            "",
            "| point | arm | E (nats) | 95 % interval | Δlogp key | Δlogp random | ΔAcc (pp) | 95 % interval | "
            "acc clean / key / random (%) | n |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        pts = list(dict.fromkeys([*cs["logprob"], *cs["accuracy"], *cs["sae_logprob"]]))
        for pt in pts:
            e, ac = cs["logprob"].get(pt), cs["accuracy"].get(pt)
            ecells = (
                [_f(e["E"]), _ci_s(e["lo"], e["hi"]), _f(e["dlogp_key"]), _f(e["dlogp_random"])]
                if e
                else ["–"] * 4
            )
            acells = (
                [
                    _f(100 * ac["dAcc"]),
                    _ci_s(100 * ac["lo"], 100 * ac["hi"]),
                    f"{_f(100 * ac['acc_clean'])} / {_f(100 * ac['acc_key'])} / {_f(100 * ac['acc_random'])}",
                ]
                if ac
                else ["–"] * 3
            )
            n = e["n"] if e else ac["n"] if ac else "–"
            if e or ac:
                lines.append(f"| {pt} | neurons (P0) | " + " | ".join(ecells + acells) + f" | {n} |")
            s = cs["sae_logprob"].get(pt)
            if s:
                lines.append(
                    f"| {pt} | SAE features (sae-0.9; not in the verdict) | {_f(s['E'])} | {_ci_s(s['lo'], s['hi'])} | "
                    f"{_f(s['dlogp_key'])} | {_f(s['dlogp_random'])} | – | – | – | {s['n']} |"
                )
    return lines


def _md_sae_health(rep: Mapping[str, Any]) -> list[str]:
    lines: list[str] = []
    h = rep["sae_health"]
    lines += ["", "## W10 SAE health on the fine-tuned points", ""]
    lines += _status(h)
    if h["status"] == "run":
        lines += [
            "",
            "Medians over every layer on all responses to C (pooled FVE, L0, dead and dense shares; `tokens`: "
            "response tokens after the sink rule) and over the CE layers on the first responses (CE-loss "
            "recovered, KL); Δ = point − its base. Each point is measured on its own responses, so Δ mixes the "
            "model's residuals with its text, and `dead` grows as `tokens` shrink.",
            "",
            *zc.health_table_md(_rows(h["table"])),
        ]
    return lines


_MD = {
    "cor1": _md_cor1,
    "cor2": _md_cor2,
    "cor3": _md_cor3,
    "cor4": _md_cor4,
    "causal": _md_causal,
    "sae_health": _md_sae_health,
}


def markdown(rep: Mapping[str, Any], parts: Sequence[str] | None = None) -> str:
    """The generated tables (``docs/study/results_corollaries.md``) from the JSON document:
    :attr:`CorollaryReport.data`, or ``study_corollaries.json`` read back. ``parts`` (keys of :data:`PARTS`, default
    all) limits the summary and the sections to those parts, e.g. one corollary in its notebook."""
    parts = _check_parts(parts)
    p = rep["protocol"]
    lines = [
        "# Study v2: the corollaries and the causal check, generated tables",
        "",
        f"Generated by `{rep['command']}` from the records in `{rep['results']}` (zoo `{rep['zoo']}`); do not edit "
        f"by hand. Protocol: `docs/study/protocol.md` §8.1-§8.5 (and W10); every number is in "
        f"`{rep['results']}/study_corollaries.json`. Each test is at 95 % with two-sided intervals, no correction "
        "across corollaries; verdicts follow each section's inequalities.",
        "",
        *deviation_line(rep.get("deviation")),
        f"- task C: {rep['task_C'] or '–'}; law tasks: {', '.join(rep['law_tasks']) or '–'}; R*: "
        + (", ".join(f"{f} {r}" for f, r in rep["rstar"].items()) or "–"),
        f"- run bootstraps B = {p['n_boot']}, seed {p['boot_seed']}; per-seed item bootstrap B = {p['n_item_boot']}; "
        f"Cor. 4: datasets of {p['dataset_n']} items, {p['draws']} draws per level, k-means k = {p['kmeans_k']} "
        f"({p['kmeans_restarts']} restarts), {p['n_random']} random subsets per cell",
        "",
        "| part | status | verdict |",
        "|---|---|---|",
    ]
    for k in parts:
        name, part = PARTS[k], rep[k]
        verdict = "–"
        if k == "cor4" and part["status"] == "run":
            verdict = ", ".join(
                f"C{c[1:]}: {part[c]['verdict']['verdict'] if 'verdict' in part[c] else 'not computed'}"
                for c in ("c4a", "c4b")
            )
        elif k == "causal" and part["status"] == "run":
            verdict = part["verdict"]["label"]
        elif part["status"] == "run" and "verdict" in part:
            verdict = part["verdict"]["verdict"]
        if part.get("interim") and verdict != "–":
            verdict = f"interim, partial build ({len(part['missing_stages'])} records missing): {verdict}"
        lines.append(f"| {name} | {part['status']} | {verdict} |")

    for k in parts:
        lines += _MD[k](rep)

    # a section whose status adds no line would leave two blank lines in a row
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines) + "\n")


# ----- figures ---------------------------------------------------------------------------------------------


def figures(report: CorollaryReport) -> dict[str, Figure]:
    """The figures of the parts that ran, by file stem (``cor1_seed_band``, ``cor2_detectors``, ``cor3_cv``,
    ``cor4_diversity``, ``causal``); the script saves them under ``figures/study/``."""
    from saemui.plots import (
        plot_causal,
        plot_cv_errors,
        plot_detector_auroc,
        plot_diversity_levels,
        plot_seed_band,
    )

    cx = report.context
    out: dict[str, Figure] = {}

    def interim(part: str) -> str:
        # the figure of a part that ran on a partial build says so in its title, as its table does
        return "; INTERIM, partial build" if report.data.get(part, {}).get("interim") else ""

    if "cor1" in cx.fig:
        band, v = cx.fig["cor1"]
        fig = plot_seed_band(
            band,
            title=f"Cor. 1: R* checkpoint transitions on {cx.C}, mean over seeds (C1: {v['verdict']}{interim('cor1')})",
        )
        out["cor1_seed_band"] = fig
    if "cor2" in cx.fig:
        auroc, v = cx.fig["cor2"]
        fig = plot_detector_auroc(
            auroc, title=f"Cor. 2: contamination detectors on {cx.C} (C2: {v['verdict']}{interim('cor2')})"
        )
        out["cor2_detectors"] = fig
    if "cor3" in cx.fig:
        cv, v = cx.fig["cor3"]
        fig = plot_cv_errors(
            cv, title=f"Cor. 3: predicting the twin accuracy R (C3: {v['verdict']}{interim('cor3')})"
        )
        out["cor3_cv"] = fig
    if "cor4" in cx.fig:
        datasets, mui, ng, cl, v, n_pts = cx.fig["cor4"]
        measures = {"MUI (mean over points)": mui.mean(axis=0), "n-grams": ng, "k-means": cl}
        ylabels = {
            "MUI (mean over points)": f"MUI at P0, mean over {n_pts} points (%)",
            "n-grams": "distinct token 1- and 2-grams (count)",
            "k-means": "k-means clusters covered (count)",
        }
        n_ds = len(datasets["dataset"].unique())
        fig = plot_diversity_levels(
            datasets,
            measures,
            ylabels,
            title=f"Cor. 4: diversity measures against the designed level (C4a: {v['verdict']}{interim('cor4')})",
            caption=f"n = {n_ds} datasets of {cx.options.dataset_n} items, {n_pts} clean law points; τ-b: Kendall rank "
            f"correlation with the level of the values shown (for MUI, of the mean over points; C4a tests the mean over "
            f"points of each point's τ(MUI) − max τ(baselines), here {v['estimate']:.3g}, with a run bootstrap, "
            f"B = {cx.options.n_boot})",
        )
        out["cor4_diversity"] = fig
    if "causal" in cx.fig:
        effects, acc, sae, v = cx.fig["causal"]
        both = {**effects, **{f"{p} (SAE arm)": e for p, e in sae.items()}}
        if both:
            fig = plot_causal(
                both,
                acc,
                v,
                title=f"Causal check on {cx.C}: key units vs random units of the same size{interim('causal')}",
            )
            out["causal"] = fig
    return out


# ----- the report ------------------------------------------------------------------------------------------


def load_context(results: Path, options: CorollaryOptions | None = None) -> Context:
    """What every part reads from a results directory: the v2, causal and SAE-health records, task C and the law
    tasks (``eligibility.json``), each family's R*, and from the spec the stages each part misses. Raises
    :class:`SaemuiError` (one line) when the directory holds no v2 record at all."""
    results = Path(results)
    cx = Context(results, options or CorollaryOptions())
    cx.records = load_records_v2(results)
    cx.causal = zc.load_causal(results)
    cx.health = zc.load_sae_health(results)
    if not cx.records and not cx.causal and not cx.health:
        raise SaemuiError(f"{results} holds no v2 record: build the zoo with scripts/build_zoo.py --spec v2")
    if eligibility_path(results).is_file():
        cx.eligibility = read_json(eligibility_path(results), dict, "eligibility file")
    cx.records = study_records(cx.records, cx.eligibility)
    cx.causal = study_records(cx.causal, cx.eligibility)
    cx.health = study_records(cx.health, cx.eligibility)
    cx.law, cx.C = study_tasks(cx.eligibility)
    spec = spec_for(cx.eligibility.get("zoo"))
    cx.twin_tasks = cx.law if spec is None or spec.twins_on == "law" else cx.law[:1]
    if cx.C is not None and spec is not None:
        cx.missing = missing_stages(expected_records(spec, cx.law, results))
    names = tuple(spec.rstar) if spec is not None else zc.RSTAR_NAMES
    cx.rstar = zc.rstar_runs(cx.records, names)
    if spec is not None:
        from saemui.zoo.stages_v2 import causal_points

        cx.causal_points = len(causal_points(spec))
    return cx


#: part → the function that runs it
RUNS: dict[str, Callable[[Context], dict[str, Any]]] = {
    "cor1": run_cor1,
    "cor2": run_cor2,
    "cor3": run_cor3,
    "cor4": run_cor4,
    "causal": run_causal,
    "sae_health": run_health,
}


def run_part(cx: Context, part: str) -> dict[str, Any]:
    """One part's entry of the report: its numbers and verdict, or "not run" with the stages that would make its
    records, or "error" with the reason a test cannot be computed on these records."""
    if part != "sae_health" and cx.C is None:
        why = (
            "no eligibility.json (stage 0 incomplete): task C is not known"
            if not cx.eligibility
            else "no law task (§3.2)"
        )
        return _not_run(part, why, None)
    try:
        out = RUNS[part](cx)
        # a verdict on a partial build is interim: the registered test is over the whole design
        out["interim"] = out.get("status") == "run" and bool(out.get("missing_stages"))
        return out
    except SaemuiError as e:
        # a test that cannot be computed on these records is reported with its reason, never guessed
        return {"status": "error", "error": str(e), "missing_stages": cx.missing[part]}


def report(
    results: Path, options: CorollaryOptions | None = None, parts: Sequence[str] | None = None
) -> CorollaryReport:
    """Every part from a results directory (:func:`load_context`, then :func:`run_part` for each of
    :data:`PARTS`); ``data`` is JSON-ready (NaN as None). ``parts`` (default all) runs only those parts, the
    others get status "not requested" (a notebook showing one corollary; the script always runs all)."""
    want = _check_parts(parts)
    cx = load_context(results, options)
    parts = {k: run_part(cx, k) if k in want else {"status": "not requested"} for k in PARTS}
    o = cx.options
    rep: dict[str, Any] = {
        "schema": SCHEMA,
        "command": command(SCRIPT, cx.results),
        "results": str(cx.results),
        "zoo": cx.eligibility.get("zoo"),
        "deviation": cx.eligibility.get("deviation"),
        "versions": analysis_versions(),
        "protocol": {
            "level": LEVEL,
            "n_boot": o.n_boot,
            "boot_seed": BOOT_SEED,
            "n_item_boot": o.n_item_boot,
            "item_boot_seed": 0,
            "match_dp": ct.MATCH_DP,
            "dataset_n": o.dataset_n,
            "draws": o.draws,
            "kmeans_k": o.kmeans_k,
            "kmeans_restarts": KMEANS_RESTARTS,
            "n_random": o.n_random,
            "subset_fractions": list(dv.SUBSET_FRACTIONS),
            "embedder_rule": o.embedder,
            "causal_points": cx.causal_points,
        },
        "task_C": cx.C,
        "law_tasks": cx.law,
        "rstar": cx.rstar,
        **parts,
    }
    return CorollaryReport(json_num(rep), cx)


__all__ = [
    "DEFAULT_MD",
    "EMBEDDERS",
    "JSON_NAME",
    "PARTS",
    "PART_GROUPS",
    "RUNS",
    "SCHEMA",
    "Context",
    "CorollaryOptions",
    "CorollaryReport",
    "expected_records",
    "figures",
    "load_context",
    "markdown",
    "missing_stages",
    "pick_embedder",
    "report",
    "run_causal",
    "run_cor1",
    "run_cor2",
    "run_cor3",
    "run_cor4",
    "run_health",
    "run_part",
    "spec_for",
]
