"""Study v2, the law (``docs/study/protocol.md`` §3.2, §6, §7): every registered test from zoo-v2 records,
offline, no model. ``scripts/reproduce_study_law.py`` is its command line; a notebook calls the same functions::

    rep = report(Path("results/zoo-v2"))       # refuses (SaemuiError, one line) while records are missing
    markdown(rep.data)                           # the generated docs/study/results_law.md
    figures(rep)                                 # {file stem: Figure}

:func:`report` reads ``<results>/eligibility.json`` (the law tasks of stage 0) and the v2 records
(:func:`saemui.zoo.record_v2.load_records_v2`), builds the points table (:mod:`saemui.analysis.zoo_v2`) and runs,
with :mod:`saemui.analysis.study`:

- §3.2 after training: a law task keeps a family's points only if the SD of P over them is >= ``min_sd``
  points; m = the law tasks left, α′ = 0.05/m;
- per law task × hypothesis (H1, H1b, H1-L, H1-TF-G, H1-TF-B; the TF ones in H1's form on the teacher-forced
  MUI) × setting (P0 primary, every other §5 setting secondary): ``law_test`` with its §6.4 verdict;
- the overall verdict per hypothesis at P0, the §6.6 secondary fits (per family, without α_f, with R* seeds
  1-2) and the pooled fit at P0, robust across shares;
- §7.2 H1 on MUI_T with and without short points; §7.3 beside every H1 fit: length alone (P = α_f + θ ln τ)
  and lexical (P = α_f + λ·bigrams) with their R² and intervals, random-unit MUI through ``law_test``; §7.3's
  reading.

Its JSON document holds every number, the settings, m, α′, seeds and versions. It refuses while the directory
holds no law-task record of a fine-tuned run, naming the stages that are missing. A fit that cannot be made
(too few points, a regressor constant within a family, a missing value) is reported with its reason; a missing
point is never imputed, and a test without a fit counts as "inconclusive" in the overall verdict.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from saemui.analysis import study
from saemui.analysis import zoo_v2 as zv
from saemui.analysis.eligibility import MIN_SD_POINTS, training_moves
from saemui.analysis.random_units import N_DRAWS
from saemui.analysis.study_report import (
    analysis_versions,
    command,
    deviation_line,
    fmt,
    id_head,
    json_num,
    json_table,
    one_family_line,
    spec_for,
)
from saemui.errors import SaemuiError
from saemui.readers import read_json
from saemui.zoo.record_v2 import (
    NOT_TESTABLE,
    eligibility_path,
    load_records_v2,
    record_path,
    study_records,
    study_tasks,
)
from saemui.zoo.settings import SETTING_NAMES, TOKEN_CURVE

if TYPE_CHECKING:
    from matplotlib.figure import Figure

SCHEMA = "saemui-study-law/1"
SCRIPT = "reproduce_study_law.py"
#: the JSON document's file name under the results directory, and where the generated tables go
JSON_NAME = "study_law.json"
DEFAULT_MD = "docs/study/results_law.md"
#: hypothesis → (the form study.law_test fits, the MUI column it reads); TF ones are H1 on teacher-forced MUI
HYPOTHESES: dict[str, tuple[str, str]] = {
    "H1": ("H1", "mui"),
    "H1b": ("H1b", "mui"),
    "H1-L": ("H1-L", "mui"),
    "H1-TF-G": ("H1", "mui_G"),
    "H1-TF-B": ("H1", "mui_B"),
}
#: §7.3 baselines as plain fits P = α_f + θ·x: name → (column, logged)
BASELINE_FITS: dict[str, tuple[str, bool]] = {
    "length": ("tokens_per_item", True),
    "lexical": ("lexical", False),
}
SHARES: tuple[str, ...] = ("P0", "share-1/256", "share-1/128")
#: the points-table columns written to the JSON
JSON_POINT_COLUMNS: tuple[str, ...] = (*zv.POINT_COLUMNS, "nstar", "mui_nstar")

#: (task, setting, hypothesis) → (the fitted test, the points it used): what the figures draw
Fits = dict[tuple[str, str, str], tuple[study.LawTest, pd.DataFrame]]


@dataclass(frozen=True)
class LawReport:
    """The law report of a results directory: ``data`` is the JSON document (every number; what
    :func:`markdown` reads), ``fits`` and ``points`` the fitted tests and the points table :func:`figures` draws."""

    data: dict[str, Any]
    fits: Fits
    points: pd.DataFrame


# ----- inputs ----------------------------------------------------------------------------------------------


def read_law_tasks(results: Path) -> dict[str, Any]:
    """``eligibility.json`` (stage 0's outcome, §3.2); refuses when stage 0 is incomplete."""
    p = eligibility_path(results)
    if not p.is_file():
        raise SaemuiError(
            f"{results}: no eligibility.json: stage 0 (group 0, the bases on every candidate) is incomplete, so "
            "the law tasks are not known; run scripts/build_zoo.py --spec v2"
        )
    return read_json(p, dict, "eligibility file")


def check_ready(records: Sequence[Mapping[str, Any]], law: Sequence[str], results: Path) -> None:
    """Refuse (one line) while no law task has a verbatim record of a fine-tuned clean run, naming what is
    missing; otherwise return (partial builds are analysed with n reported)."""
    if not law:
        raise SaemuiError(f"{results}: eligibility.json names no law task (§3.2): there is no law to test")
    tuned = {
        r["task"]
        for r in records
        if r.get("set") == "verbatim" and r.get("role") == "law" and not r.get("checkpoint")
    }
    if not tuned & set(law):
        bases = sorted({r["task"] for r in records if r.get("set") == "verbatim" and r.get("role") == "base"})
        have = f"only stage 0 records (bases on {', '.join(bases)})" if bases else "no verbatim record"
        raise SaemuiError(
            f"{results} holds no law-task records yet ({have}): stage groups 1 (law trainings) and 2 (law evals "
            f"with G and B) are missing for the law tasks {', '.join(law)}; run scripts/build_zoo.py --spec v2"
        )


def missing_records(records: Sequence[Mapping[str, Any]], law: Sequence[str]) -> list[str]:
    """Teacher-forced records (G, B) missing for a clean point with a verbatim record on a law task."""
    have = {(r["model"], r["task"], r["set"]) for r in records}
    out = []
    for r in records:
        if (
            r.get("set") != "verbatim"
            or r["task"] not in law
            or r.get("checkpoint")
            or r.get("role") not in ("law", "base")  # seeds and doses are not law points (§2)
        ):
            continue
        for s in ("G", "B"):
            if (r["model"], r["task"], s) not in have:
                out.append(f"eval:{r['model']}:{r['task']}:{s}")
    return sorted(out)


def law_build(elig: Mapping[str, Any], law: Sequence[str], results: Path) -> dict[str, Any] | None:
    """What the law fits read that the spec plans: the verbatim, G and B records of the law tasks at the bases and
    the clean law finals (``build_zoo.py --plan`` stage ids), and those without a record. None when the spec
    named in ``eligibility.json`` is unknown or there is no law task."""
    from saemui.zoo import stages_v2 as sv
    from saemui.zoo.spec_v2 import one_family

    spec = spec_for(elig.get("zoo"))
    if spec is None or not law:
        return None
    one = elig.get("one_family_study")
    if one and spec.family is None:
        spec = one_family(spec, one["family"])
    law = tuple(law)
    expected = []
    for p in sv.points(spec):
        if p.step is not None or (p.run is not None and p.run.role != "law") or not spec.studied(p.root):
            continue
        for e in sv.point_evals(spec, p, law):
            if e.task in law and e.item_set in ("verbatim", "G", "B"):
                expected.append(
                    (f"eval:{p.name}:{e.task}:{e.item_set}", record_path(results, p.name, e.task, e.item_set))
                )
    missing = sorted(sid for sid, path in expected if not path.is_file())
    return {"expected": len(expected), "missing": missing}


def _build_line(b: Mapping[str, Any] | None, n_show: int = 4) -> list[str]:
    if b is None:
        return []
    if not b["missing"]:
        return [
            f"- Build complete for the law fits: all {b['expected']} planned records (verbatim, G, B) present."
        ]
    head = id_head(b["missing"], n_show)
    return [
        f"- **Partial build**: {len(b['missing'])} of the {b['expected']} records the law fits read are missing "
        f"({head}); every number below uses the records present and will change as the build completes, and "
        "every verdict below is **interim**, not a result of the study."
    ]


# ----- JSON helpers ----------------------------------------------------------------------------------------


def _ci(ci: Sequence[float]) -> list[Any]:
    return [json_num(ci[0]), json_num(ci[1])]


def _verdict(v: study.Verdict) -> dict[str, Any]:
    return {
        "label": v.label,
        "supported": v.supported,
        "contradicted": v.contradicted,
        "absent": v.absent,
        "downgraded": list(v.downgraded),
    }


# ----- one test --------------------------------------------------------------------------------------------


def _frame(points: pd.DataFrame, task: str, setting: str, col: str, families: Sequence[str] | None) -> tuple:
    """The rows a test on ``col`` reads: the task at the setting, its kept families, rows with a value of ``col``
    (a missing point is left out, never imputed). Returns (frame, missing primary points, note on sensitivity
    B or None)."""
    g = points[(points["task"] == task) & (points["setting"] == setting)]
    if families is not None:
        g = g[g["family"].isin(families)]
    prim = zv.primary_mask(g)
    has = g[col].notna()
    n_missing = int((prim & ~has).sum())
    g = g[has]
    note_b = None
    if col != "mui":
        g = g.drop(columns=["mui_nstar"])
        note_b = f"not applicable: sensitivity B re-samples the free-generated responses' MUI, not {col}"
    else:
        used = g.loc[zv.primary_mask(g)]
        # below MIN_NSTAR law_test itself says "not run: n* < 100"; above it a point without key sets blocks B
        if len(used) and used["n_nonempty"].min() >= study.MIN_NSTAR and used["mui_nstar"].isna().any():
            g = g.drop(columns=["mui_nstar"])
            note_b = "not run: a point kept no key sets at this setting"
    return g, n_missing, note_b


def _law_json(lt: study.LawTest, name: str, col: str, role: str, pts: pd.DataFrame) -> dict[str, Any]:
    y, _ = study.regressors(pts, lt.hypothesis)
    return {
        "hypothesis": name,
        "form": lt.hypothesis,
        "mui_col": col,
        "task": lt.task,
        "setting": lt.setting,
        "role": role,
        "alpha": lt.alpha,
        "slope": lt.fit.slope,
        "se": lt.fit.se,
        "df": lt.fit.df,
        "coef": [float(c) for c in lt.fit.coef],
        "intercept_groups": list(lt.fit.groups),
        "t_ci": _ci(lt.t_ci),
        "boot_ci": _ci(lt.boot.ci),
        "n_boot": lt.boot.n_boot,
        "boot_seed": lt.boot.seed,
        "n_redrawn": lt.boot.n_redrawn,
        "n_redrawn_rank": lt.boot.n_redrawn_rank,
        "delta": lt.delta,
        "raw_verdict": _verdict(lt.raw_verdict),
        "verdict": _verdict(lt.verdict),
        "seed_verdicts": {str(s): v.label for s, v in lt.seed_verdicts.items()},
        "sensitivity": {
            k: None if v is None else {"t_ci": _ci(v[0]), "boot_ci": _ci(v[1])}
            for k, v in lt.sensitivity.items()
        },
        "notes": dict(lt.notes),
        "n": lt.n,
        "n_by_family": dict(lt.n_by_family),
        **_r2(lt, pts, y),
    }


def _r2(lt: study.LawTest, pts: pd.DataFrame, y: np.ndarray) -> dict[str, Any]:
    return {k: json_num(v) for k, v in zv.r_squared(lt.fit, y, pts["family"].to_numpy()).items()}


class _Runner:
    """Runs the tests and keeps both their JSON and, for the figures, the fitted objects."""

    def __init__(self, points: pd.DataFrame, m: int, n_boot: int, families: Mapping[str, Sequence[str]]):
        self.points = points
        self.m = m
        self.n_boot = n_boot
        self.families = families  # task → kept families (§3.2 after training)
        self.fits: dict[tuple[str, str, str], tuple[study.LawTest, pd.DataFrame]] = {}

    def test(
        self,
        task: str,
        setting: str,
        name: str,
        form: str,
        col: str,
        role: str,
        drop: pd.Series | None = None,
    ) -> dict[str, Any]:
        g, n_missing, note_b = _frame(self.points, task, setting, col, self.families.get(task))
        if drop is not None:
            g = g[~drop.reindex(g.index, fill_value=False).astype(bool)]
        base = {
            "hypothesis": name,
            "form": form,
            "mui_col": col,
            "task": task,
            "setting": setting,
            "role": role,
        }
        try:
            lt = study.law_test(g, task, setting, form, self.m, mui_col=col, n_boot=self.n_boot)
            pts = study.law_points(g, task, setting, mui_col=col)
        except SaemuiError as e:
            return {**base, "error": str(e), "n_missing": n_missing}
        self.fits[(task, setting, name)] = (lt, pts)
        out = _law_json(lt, name, col, role, pts)
        out["n_missing"] = n_missing
        if note_b is not None:
            out["notes"]["B"] = note_b
        return out


def _label(t: Mapping[str, Any] | None) -> str:
    # a test without a fit cannot support anything: it counts as inconclusive (reported with its reason)
    if not t or "error" in t:
        return "inconclusive"
    return t["verdict"]["label"]


def _as_verdict(t: Mapping[str, Any] | None) -> study.Verdict:
    if not t or "error" in t:
        return study.Verdict("inconclusive", False, False, False, ("no fit",))
    v = t["verdict"]
    return study.Verdict(v["label"], v["supported"], v["contradicted"], v["absent"], tuple(v["downgraded"]))


def _secondary_json(fits: Mapping[str, study.SecondaryFit]) -> dict[str, Any]:
    return {
        k: {
            "slope": f.slope,
            "t_ci": _ci(f.t_ci),
            "boot_ci": _ci(f.boot.ci),
            "n_boot": f.boot.n_boot,
            "n_redrawn": f.boot.n_redrawn,
            "verdict": f.verdict.label,
            "n": f.n,
            "df": f.df,
        }
        for k, f in fits.items()
    }


# ----- the analysis ----------------------------------------------------------------------------------------


def analyse(
    points: pd.DataFrame, eligible: Sequence[str], *, n_boot: int, min_sd: float
) -> tuple[dict[str, Any], Fits]:
    """Every registered number of §3.2 (after training), §6 and §7 on the law tasks of a points table (see the
    module docstring): (the report's analysis entries, the fitted tests the figures draw)."""
    # §3.2 after training: SD of P over each family's clean points (P does not depend on the setting: P0 rows)
    moves: dict[str, Any] = {}
    kept: dict[str, list[str]] = {}
    for task in eligible:
        rows = points[(points["task"] == task) & (points["setting"] == "P0") & zv.primary_mask(points)]
        per = {}
        for fam, g in rows.groupby("family", sort=True):
            perf = study.smoothed_perf(g["k"], g["N"])
            sd = float(np.std(perf, ddof=1)) if len(g) >= 2 else None
            per[str(fam)] = {
                "n": len(g),
                "sd_P": sd,
                "moves": bool(len(g) >= 2 and training_moves(perf, min_sd)),
            }
        kept[task] = [f for f, v in per.items() if v["moves"]]
        moves[task] = {
            "families": per,
            "class": {2: "law", 1: "one-family", 0: "out"}[min(len(kept[task]), 2)],
        }
    law = [t for t in eligible if moves[t]["class"] == "law"]
    one_family = [t for t in eligible if moves[t]["class"] == "one-family"]
    m = len(law)
    out: dict[str, Any] = {
        "eligible_law_tasks": list(eligible),
        "training_moves": moves,
        "law_tasks": law,
        "one_family_tasks": one_family,
        "m": m,
        "alpha_prime": study.alpha_prime(m) if m else None,
    }
    # one-family tasks are fitted within their family at the law tasks' α′ (secondary); with no law task left
    # α′ is that of the eligible tasks
    runner = _Runner(points, m or max(len(eligible), 1), n_boot, {t: kept[t] for t in eligible})
    tests: list[dict[str, Any]] = []
    settings_of = {
        t: sorted(set(points.loc[points["task"] == t, "setting"]), key=zv.setting_order) for t in eligible
    }
    # every registered fit, control and baseline runs on the one-family tasks too (secondary): under §11 case (3)
    # they are the study's only fits, and §7.3 puts the sceptic baselines beside every H1 fit
    fitted = [*law, *one_family]
    out["settings"] = {t: settings_of[t] for t in fitted}
    for task in fitted:
        for setting in settings_of[task]:
            for name, (form, col) in HYPOTHESES.items():
                has = points.loc[(points["task"] == task) & (points["setting"] == setting), col].notna().any()
                if col != "mui" and not has:
                    continue  # teacher-forced MUI is measured at the TF settings only (P0)
                role = "primary" if setting == "P0" and task in law else "secondary"
                tests.append(runner.test(task, setting, name, form, col, role))
    out["tests"] = tests
    get = {(t["task"], t["setting"], t["hypothesis"]): t for t in tests}

    out["overall"] = {}
    for name in HYPOTHESES:
        per_task = {t: _label(get.get((t, "P0", name))) for t in law}
        out["overall"][name] = {
            "verdict": study.overall_verdict([_as_verdict(get.get((t, "P0", name))) for t in law], m)
            if m
            else None,
            "tasks": per_task,
        }

    # §6.6 secondary fits and the pooled fit, at P0
    secondary = []
    for task in law:
        for name, (form, col) in HYPOTHESES.items():
            g, _, _ = _frame(points, task, "P0", col, kept[task])
            try:
                fits = study.secondary_fits(g, task, "P0", form, m, mui_col=col, n_boot=n_boot)
                secondary.append({"task": task, "hypothesis": name, "fits": _secondary_json(fits)})
            except SaemuiError as e:
                secondary.append({"task": task, "hypothesis": name, "error": str(e)})
    out["secondary_fits"] = secondary
    pooled = []
    if m >= 2:
        for name, (form, col) in HYPOTHESES.items():
            g = pd.concat([_frame(points, t, "P0", col, kept[t])[0] for t in law])
            try:
                f = study.pooled_fit(g, law, "P0", form, m, mui_col=col, n_boot=n_boot)
                pooled.append({"hypothesis": name, **_secondary_json({"pooled": f})["pooled"]})
            except SaemuiError as e:
                pooled.append({"hypothesis": name, "error": str(e)})
    out["pooled"] = pooled

    # §6.6 robust across shares (a primary "supported" only)
    robust = {}
    for name in ("H1", "H1b", "H1-L"):
        robust[name] = {}
        for task in fitted:
            ts = {s: get.get((task, s, name)) for s in SHARES}
            if any(t is None or "error" in t for t in ts.values()):
                robust[name][task] = None
                continue
            robust[name][task] = study.robust_across_shares(
                _as_verdict(ts["P0"]),
                {s: t["slope"] for s, t in ts.items()},
                {s: _as_verdict(t) for s, t in ts.items()},
            )
    out["robust_across_shares"] = robust

    # §7.2 H1 on MUI_T (secondary) with and without short points; §7.3 baselines beside every H1 fit
    mui_t = []
    for task in fitted:
        mui_t.append(runner.test(task, "P0", "H1-MUI_T", "H1", "mui_T", "secondary"))
        rows = points[(points["task"] == task) & (points["setting"] == "P0")]
        drop_short = rows["short"].fillna(True).astype(bool)  # unknown counts as short: it may be
        r = runner.test(task, "P0", "H1-MUI_T-no-short", "H1", "mui_T", "secondary", drop=drop_short)
        r["n_short_dropped"] = int((drop_short & zv.primary_mask(rows)).sum())
        mui_t.append(r)
    out["mui_T"] = mui_t
    baselines = []
    for task in fitted:
        for setting in settings_of[task]:
            if (task, setting, "H1") not in runner.fits:
                continue
            b: dict[str, Any] = {"task": task, "setting": setting}
            g, _, _ = _frame(points, task, setting, "mui", kept[task])
            for bname, (col, log) in BASELINE_FITS.items():
                try:
                    b[bname] = zv.baseline_fit(g, task, setting, runner.m, col, log=log, n_boot=n_boot)
                except SaemuiError as e:
                    b[bname] = {"error": str(e)}
            h1 = get[(task, setting, "H1")]
            b["H1_r2"] = h1.get("r2")
            b["H1_r2_within"] = h1.get("r2_within")
            b["random_units"] = runner.test(task, setting, "H1-random_units", "H1", "mui_random", "baseline")
            baselines.append(b)
    out["baselines"] = baselines

    # §7.3 reading, per task and overall, at P0; the random-units sentence where H1 and random units give U < 0
    def u_neg(t: Mapping[str, Any] | None) -> bool:
        return bool(t and "error" not in t and t["t_ci"][1] < 0 and t["boot_ci"][1] < 0)

    rnd = {b["task"]: b["random_units"] for b in baselines if b["setting"] == "P0"}
    out["reading"] = {
        "tasks": {
            t: {
                "reading": zv.reading(
                    _label(get.get((t, "P0", "H1"))),
                    _label(get.get((t, "P0", "H1-L"))),
                    _label(get.get((t, "P0", "H1-TF-G"))),
                ),
                "random_units_add_nothing": u_neg(get.get((t, "P0", "H1"))) and u_neg(rnd.get(t)),
                "role": "primary" if t in law else "secondary (one-family)",
            }
            for t in fitted
        },
        "overall": zv.reading(
            *(out["overall"][h]["verdict"] or "inconclusive" for h in ("H1", "H1-L", "H1-TF-G"))
        )
        if m
        else None,
    }
    return out, runner.fits


# ----- markdown --------------------------------------------------------------------------------------------


def _ci_s(ci: Sequence[Any] | None) -> str:
    return "–" if not ci else f"[{fmt(ci[0])}, {fmt(ci[1])}]"


def _verdict_s(t: Mapping[str, Any]) -> str:
    if "error" in t:
        return f"no fit ({t['error']})"
    v = t["verdict"]
    s = f"**{v['label']}**"
    if v["label"] == "supported" and v["absent"]:
        s += " (below δ)"
    if v["downgraded"]:
        s += f" (downgraded: {'; '.join(v['downgraded'])})"
    return s


def _n_s(t: Mapping[str, Any]) -> str:
    if "error" in t:
        return "–"
    fams = ", ".join(f"{k} {v}" for k, v in t["n_by_family"].items())
    miss = f"; {t['n_missing']} missing" if t.get("n_missing") else ""
    return f"{t['n']} ({fams}{miss})"


def _test_rows(tests: Sequence[Mapping[str, Any]], with_setting: bool) -> list[str]:
    head = (
        "| task | "
        + ("setting | " if with_setting else "")
        + "hypothesis | n runs | estimate | t-interval | "
    )
    head += "bootstrap interval | δ | verdict | sensitivity A / B |"
    rows = [head, "|" + "---|" * (head.count("|") - 1)]
    for t in tests:
        sens = "–"
        if "error" not in t:
            sens = " / ".join(
                "not run"
                if t["sensitivity"].get(k) is None
                else f"U = {fmt(t['sensitivity'][k]['t_ci'][1])}, {fmt(t['sensitivity'][k]['boot_ci'][1])}"
                for k in ("A", "B")
            )
        cells = [t["task"], *([t["setting"]] if with_setting else []), t["hypothesis"], _n_s(t)]
        if "error" in t:
            cells += ["–", "–", "–", "–", _verdict_s(t), sens]
        else:
            cells += [
                fmt(t["slope"]),
                _ci_s(t["t_ci"]),
                _ci_s(t["boot_ci"]),
                fmt(t["delta"]),
                _verdict_s(t),
                sens,
            ]
        rows.append("| " + " | ".join(cells) + " |")
    return rows


def markdown(rep: Mapping[str, Any]) -> str:
    """The generated tables (``docs/study/results_law.md``) from the JSON document: :attr:`LawReport.data`, or
    ``study_law.json`` read back."""
    p = rep["protocol"]
    lines = [
        "# Study v2: the law, generated tables",
        "",
        f"Generated by `{rep['command']}` from the records in `{rep['results']}` (zoo `{rep['zoo']}`); do not edit "
        "by hand. Protocol: `docs/study/protocol.md` §3.2, §6, §7; every number is in "
        f"`{rep['results']}/study_law.json`. Verdicts follow §6.4; tests labelled secondary or baseline do not "
        "enter the overall verdict.",
        "",
        *deviation_line(rep.get("deviation")),
        *one_family_line(rep.get("one_family_study")),
        *_build_line(rep.get("build")),
        f"- eligible law tasks (stage 0): {', '.join(rep['eligible_law_tasks']) or 'none'}; after the §3.2 "
        f"training-moves rule (SD of P ≥ {p['min_sd']} points): law tasks {', '.join(rep['law_tasks']) or 'none'}"
        f" (m = {rep['m']}), one-family {', '.join(rep['one_family_tasks']) or 'none'}",
        f"- α′ = 0.05/m = {fmt(rep['alpha_prime'], 4)}; intervals at 1 − α′; run bootstrap B = {p['n_boot']}, seed "
        f"{p['boot_seed']} (downgrade check seeds {', '.join(map(str, p['robustness_seeds']))}); δ(H1) = "
        f"{fmt(p['delta_h1'], 4)}",
        f"- random units: {p['random_draws']} draws, seed {p['random_seed']}; sensitivity B: {p['nstar_subsets']} "
        f"subsets of n* samples, seed {p['nstar_seed']} (run only when n* ≥ {p['min_nstar']})",
        "",
        "## §3.2 after training: does training move accuracy?",
        "",
        "| task | family | clean points | SD of P (points) | keeps its points |",
        "|---|---|---|---|---|",
    ]
    for task, v in rep["training_moves"].items():
        for fam, f in v["families"].items():
            lines.append(
                f"| {task} | {fam} | {f['n']} | {fmt(f['sd_P'])} | {'yes' if f['moves'] else 'no'} |"
            )
    lines += ["", "## Primary tests at P0", ""]
    prim = [t for t in rep["tests"] if t["role"] == "primary"]
    untestable = (rep.get("two_family") or {}).get("verdict")
    none_left = (
        f"H1/H1b are {untestable}: no primary test."
        if untestable
        else "No law task is left: no primary test."
    )
    lines += _test_rows(prim, False) if prim else [none_left]
    lines += ["", "## Overall verdict per hypothesis at P0 (§6.4)", "", "| hypothesis | per task | overall |"]
    lines.append("|---|---|---|")
    for name, v in rep["overall"].items():
        per = ", ".join(f"{t}: {lab}" for t, lab in v["tasks"].items()) or "–"
        lines.append(f"| {name} | {per} | **{v['verdict'] or untestable or '–'}** |")
    one = list(rep["one_family_tasks"])
    if one:
        fam = (rep.get("one_family_study") or {}).get("family", "one family")
        get = {(t["task"], t["hypothesis"]): t for t in rep["tests"] if t["setting"] == "P0"}
        lines += [
            "",
            f"## One-family fits at P0 (secondary: within {fam}, §6.6; no overall verdict on the law)",
            "",
            "| hypothesis | " + " | ".join(one) + " |",
            "|---|" + "---|" * len(one),
        ]
        for name in HYPOTHESES:
            lines.append(f"| {name} | " + " | ".join(_label(get.get((t, name))) for t in one) + " |")
    lines += ["", "## §7.3 reading (P0)", ""]
    rd = rep["reading"]
    lines.append(f"- overall: {rd['overall'] or '–'}")
    for task, v in rd["tasks"].items():
        s = f"- {task} ({v.get('role', 'primary')}): {v['reading']}"
        if v["random_units_add_nothing"]:
            s += "; random units also give U < 0: the unit identities add nothing beyond set sizes and token counts"
        lines.append(s)
    lines += [
        "",
        "## §7.3 baselines beside H1 (they do not change a verdict)",
        "",
        "Length alone: P = α_f + θ ln τ; lexical: P = α_f + λ·(distinct word bigrams per response); R² about the "
        "grand mean (within families in brackets); random units: H1 on random-unit MUI, same test as H1.",
        "",
        "| task | setting | H1 R² | length θ | θ t-interval | θ bootstrap | length R² | lexical λ | "
        "λ t-interval | λ bootstrap | lexical R² | random units |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def fit_cells(f: Mapping[str, Any]) -> list[str]:
        if "error" in f:
            return ["–", "–", "–", f"no fit ({f['error']})"]
        return [
            fmt(f["slope"]),
            _ci_s(f["t_ci"]),
            _ci_s(f["boot_ci"]),
            f"{fmt(f['r2'])} ({fmt(f['r2_within'])})",
        ]

    for b in rep["baselines"]:
        r = b["random_units"]
        rnd = (
            f"no fit ({r['error']})"
            if "error" in r
            else f"{fmt(r['slope'])}, t {_ci_s(r['t_ci'])}, boot {_ci_s(r['boot_ci'])}: {_verdict_s(r)}"
        )
        cells = [b["task"], b["setting"], f"{fmt(b['H1_r2'])} ({fmt(b['H1_r2_within'])})"]
        cells += fit_cells(b["length"]) + fit_cells(b["lexical"]) + [rnd]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "## §7.2 H1 on MUI_T (secondary)", ""]
    lines += _test_rows(rep["mui_T"], False)
    lines += [
        "",
        "## §6.6 secondary fits at P0",
        "",
        "| task | hypothesis | fit | n | estimate | t-interval | ",
    ]
    lines[-1] += "bootstrap interval | verdict |"
    lines.append("|---|---|---|---|---|---|---|---|")
    for s in rep["secondary_fits"]:
        if "error" in s:
            lines.append(f"| {s['task']} | {s['hypothesis']} | – | – | – | – | – | no fit ({s['error']}) |")
            continue
        for what, f in s["fits"].items():
            lines.append(
                f"| {s['task']} | {s['hypothesis']} | {what} | {f['n']} | {fmt(f['slope'])} | {_ci_s(f['t_ci'])} | "
                f"{_ci_s(f['boot_ci'])} | {f['verdict']} |"
            )
    lines += ["", "Pooled fit over the law tasks (CR1 t-interval, cluster bootstrap over runs):", ""]
    if rep["pooled"]:
        lines += [
            "| hypothesis | n | estimate | CR1 t-interval | bootstrap interval | verdict |",
            "|---|---|---|---|---|---|",
        ]
        for f in rep["pooled"]:
            if "error" in f:
                lines.append(f"| {f['hypothesis']} | – | – | – | – | no fit ({f['error']}) |")
            else:
                lines.append(
                    f"| {f['hypothesis']} | {f['n']} | {fmt(f['slope'])} | {_ci_s(f['t_ci'])} | "
                    f"{_ci_s(f['boot_ci'])} | {f['verdict']} |"
                )
    else:
        lines.append("not run (fewer than 2 law tasks)")
    lines += ["", "Robust across shares (§6.6; – = a share has no fit):", ""]
    for name, v in rep["robust_across_shares"].items():
        lines.append(f"- {name}: " + (", ".join(f"{t}: {fmt(x)}" for t, x in v.items()) or "–"))
    lines += ["", "## Every setting (secondary except P0)", ""]
    lines += _test_rows([t for t in rep["tests"] if t["role"] != "primary"], True)
    if rep["missing_records"]:
        lines += ["", f"Missing teacher-forced records: {', '.join(rep['missing_records'])}."]
    return "\n".join(lines) + "\n"


# ----- figures ---------------------------------------------------------------------------------------------


def _panel(lt: study.LawTest, pts: pd.DataFrame, x_label: str) -> dict[str, Any]:
    icpt = dict(zip(lt.fit.groups, lt.fit.coef[-len(lt.fit.groups) :]))
    fams = ", ".join(f"{k} {v}" for k, v in lt.n_by_family.items())
    note = (
        f"n = {lt.n} ({fams}); β = {lt.fit.slope:.3g}, t {_ci_s(lt.t_ci)}, bootstrap {_ci_s(lt.boot.ci)} at "
        f"{1 - lt.alpha:.4g}; {lt.verdict.label}"
    )
    return {
        "points": pts.assign(x=pts["M"]),
        "slope": lt.fit.slope,
        "intercepts": icpt,
        "x_label": x_label,
        "note": note,
    }


def figures(report: LawReport) -> dict[str, Figure]:
    """The report's figures by file stem (``law_P0``, ``controls_<task>``, ``slopes_<H>``, ``mui_tokens``), each
    drawn only when it has something to show; the script saves them under ``figures/study/``."""
    from saemui.plots import plot_mui_tokens, plot_study_law, plot_study_slopes

    rep, fits, points = report.data, report.fits, report.points
    out: dict[str, Figure] = {}
    tasks = [*rep["law_tasks"], *rep["one_family_tasks"]]
    # the titles say which fits are primary: law tasks are, one-family tasks (§6.6) are secondary
    role = (
        "secondary, one-family"
        if not rep["law_tasks"]
        else "primary"
        if not rep["one_family_tasks"]
        else f"primary on {', '.join(rep['law_tasks'])}, secondary one-family on {', '.join(rep['one_family_tasks'])}"
    )
    scope = f"P0 {role}; other settings secondary" if rep["law_tasks"] else "every fit secondary, one-family"
    # the divisor analyse() gave the runner: the law tasks, or the eligible tasks when none is left
    n_alpha = rep["m"] or max(len(rep["eligible_law_tasks"]), 1)
    boot = f"B = {rep['protocol']['n_boot']} run resamples within family"
    panels = {t: _panel(*fits[(t, "P0", "H1")], "MUI at P0 (%)") for t in tasks if (t, "P0", "H1") in fits}
    if panels:
        fig = plot_study_law(
            panels,
            title=f"H1 at P0: accuracy P against MUI per task ({role})",
            caption=f"OLS with a family intercept, one slope; two-sided intervals at 1 − α′, α′ = 0.05/{n_alpha}; {boot}",
        )
        out["law_P0"] = fig
    controls = {
        "H1-TF-G": "teacher-forced MUI on gold set G (%)",
        "H1-TF-B": "teacher-forced MUI on base set B (%)",
        "H1-MUI_T": "MUI over the first T positions (%)",
        "H1-random_units": "random-unit MUI (%)",
    }
    for t in tasks:
        pc = {"H1 (P0)": _panel(*fits[(t, "P0", "H1")], "MUI at P0 (%)")} if (t, "P0", "H1") in fits else {}
        for name, xl in controls.items():
            if (t, "P0", name) in fits:
                pc[name] = _panel(*fits[(t, "P0", name)], xl)
        if pc:
            fig = plot_study_law(
                pc,
                title=f"{t}: H1 and its §7 controls at P0 (secondary and baselines)",
                caption=f"each panel: P = α_f + β ln x on the same points; intervals at 1 − α′; {boot}",
            )
            out[f"controls_{t}"] = fig
    for name in ("H1", "H1b", "H1-L"):
        rows = [
            {
                "task": t["task"],
                "setting": t["setting"],
                "slope": t["slope"],
                "t_lo": t["t_ci"][0],
                "t_hi": t["t_ci"][1],
                "b_lo": t["boot_ci"][0],
                "b_hi": t["boot_ci"][1],
                "delta": t["delta"],
                "verdict": t["verdict"]["label"],
                "n": t["n"],
            }
            for t in rep["tests"]
            if t["hypothesis"] == name and "error" not in t and t["task"] in tasks
        ]
        if rows:
            unit = (
                "a (points of MUI % per unit of ln P)"
                if name == "H1b"
                else "β (points of P per unit of ln MUI)"
            )
            fig = plot_study_slopes(
                pd.DataFrame(rows),
                title=f"{name}: slope per task and setting ({scope})",
                caption=f"intervals at 1 − α′, α′ = 0.05/{n_alpha}; {boot}; dashed: −δ of §6.3",
                x_label=unit,
            )
            out[f"slopes_{name}"] = fig
    curve_settings = {f"P0-first{t}": float(t) for t in TOKEN_CURVE} | {"P0": math.inf}
    c = points[points["task"].isin(tasks) & points["setting"].isin(curve_settings) & ~points["contaminated"]]
    c = c[~c["replicate"] & ~c["is_checkpoint"]]
    if c["setting"].str.startswith("P0-first").any():
        curves = c.assign(t=c["setting"].map(curve_settings))[
            ["task", "model", "family", "is_base", "t", "mui"]
        ]
        fig = plot_mui_tokens(
            curves,
            title="MUI against the first t scored positions, clean points of the fitted tasks (§7.2)",
            caption="t = all: MUI at P0; lines join one point's first-T settings",
        )
        out["mui_tokens"] = fig
    return out


# ----- the report ------------------------------------------------------------------------------------------


def report(results: Path, n_boot: int = study.N_BOOT, min_sd: float = MIN_SD_POINTS) -> LawReport:
    """The whole analysis from a results directory (``n_boot`` run-bootstrap resamples, ``min_sd`` the §3.2
    training-moves threshold in points of P). Raises :class:`SaemuiError` (one line, naming the missing stages)
    while stage 0 is incomplete or no law task has a record of a fine-tuned run."""
    results = Path(results)
    elig = read_law_tasks(results)
    records = study_records(load_records_v2(results), elig)
    eligible, _ = study_tasks(elig)
    one = elig.get("one_family_study")
    check_ready(records, eligible, results)
    texts = zv.load_texts(results, records)
    points = zv.add_nstar_mui(zv.study_points(records, texts), records, min_nstar=study.MIN_NSTAR)
    body, fits = analyse(points, eligible, n_boot=n_boot, min_sd=min_sd)
    law_pts = points[points["task"].isin(eligible)]
    rep: dict[str, Any] = {
        "schema": SCHEMA,
        "command": command(SCRIPT, results),
        "results": str(results),
        "zoo": elig.get("zoo"),
        "deviation": elig.get("deviation"),
        # §11 case (3): stage 0 left no two-family task, so H1/H1b have no primary test; the fits below are the
        # registered one-family fits within one family (secondary)
        "two_family": {"m": len(elig.get("law_tasks") or []), "verdict": NOT_TESTABLE if one else None},
        "one_family_study": one,
        "versions": analysis_versions(),
        "protocol": {
            "family_alpha": study.FAMILY_ALPHA,
            "n_boot": n_boot,
            "boot_seed": study.BOOT_SEED,
            "robustness_seeds": list(study.ROBUSTNESS_SEEDS),
            "delta_h1": study.DELTA_H1,
            "delta_h1b_factor": study.DELTA_H1B_FACTOR,
            "empty_share": study.EMPTY_SHARE,
            "min_nstar": study.MIN_NSTAR,
            "nstar_subsets": zv.N_SUBSETS,
            "nstar_seed": zv.NSTAR_SEED,
            "random_draws": N_DRAWS,
            "random_seed": zv.RANDOM_SEED,
            "short_share": zv.SHORT_SHARE,
            "min_sd": min_sd,
            "hypotheses": {k: {"form": f, "mui_col": c} for k, (f, c) in HYPOTHESES.items()},
            "setting_names": list(SETTING_NAMES),
        },
        **body,
        "missing_records": missing_records(records, eligible),
        "build": law_build(elig, eligible, results),
        "points": json_table(law_pts[list(JSON_POINT_COLUMNS)]),
    }
    # strict JSON: a statistic that could not be computed is null, not NaN
    return LawReport(json_num(rep), fits, points)


__all__ = [
    "BASELINE_FITS",
    "DEFAULT_MD",
    "HYPOTHESES",
    "JSON_NAME",
    "JSON_POINT_COLUMNS",
    "SCHEMA",
    "SHARES",
    "Fits",
    "LawReport",
    "analyse",
    "check_ready",
    "figures",
    "markdown",
    "law_build",
    "missing_records",
    "read_law_tasks",
    "report",
]
