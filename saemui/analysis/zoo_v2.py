"""Study v2 points table from zoo-v2 records (``docs/study/protocol.md`` §1, §5-§7) **[OURS]**.

:func:`study_points` turns the records of ``results/zoo-v2`` (:func:`saemui.zoo.record_v2.load_records_v2`) into
the table :mod:`saemui.analysis.study` takes: one row per (point, task, setting) on the verbatim item set, with
the columns of that module's docstring and the §7 control columns. :func:`add_nstar_mui` adds §6.5's sensitivity-B
MUI, which depends on every point of a task (n*). :func:`baseline_fit`, :func:`r_squared` and :func:`reading` are
the §7.3 length and lexical baselines and the reading rule. Everything here is a pure function of the records, except
:func:`load_texts`, the one reader (a point's generated text, for the lexical baseline).

Columns of :func:`study_points` (MUI columns in %, as ``study`` expects; records store fractions):

- ``run_id`` the training run (record ``run``) or, for a base, its root; ``family`` the root; ``task``;
  ``setting`` (a §5 name); ``model`` the point's name; ``step``; ``role`` (``base``, ``law``, ``seed``, ``dose``);
- ``mui`` (%) at the row's setting; ``k``, ``N`` correct answers and items;
- ``is_checkpoint``; ``contaminated`` (a dose run, §8.2: never a law point); ``replicate`` (R* seeds 1-2, role
  ``seed``); ``recipe`` (a seed run shares its R*'s name: ``<R*>-seed<s>`` → ``<R*>``); ``is_base``;
- ``tokens_per_item`` τ (mean scored positions per non-empty sample at P0, §1); ``n_empty``, ``n_nonempty``
  (samples with and without a scored position, §6.5); ``n_at_max_new_tokens`` (§6.5, counted only);
- ``mui_G``, ``mui_B`` (%): teacher-forced MUI of the same point on sets G and B at the row's setting (§7.1;
  measured at P0 only, so NaN elsewhere);
- ``mui_T`` (%): on the P0 row, MUI over the first T positions (the task's ``P0-first<T>`` setting, §7.2), NaN on
  other rows; ``short``: more than 10 % of samples have fewer than T positions (nullable: None when the record
  cannot tell, see :func:`short_bounds`); ``short_lo``, ``short_hi``: the share of such samples (equal when
  known exactly);
- ``mui_random`` (%): random-unit MUI from the row's stored set sizes (§7.3, mean of 20 seeded draws), NaN when
  the record kept no key sets;
- ``lexical``: mean number of distinct word bigrams per response (§7.3; words as in
  :func:`saemui.analysis.diversity.ngram_sets`, every response counted, an empty one as 0), NaN without texts;
- ``has_sets``: the record kept this setting's key sets (needed for ``mui_random`` and ``mui_nstar``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from saemui.analysis.diversity import ngram_sets
from saemui.analysis.random_units import N_DRAWS, layer_set_sizes, random_unit_mui
from saemui.analysis.study import (
    EMPTY_SHARE,
    FEFit,
    alpha_prime,
    fit_fe,
    law_points,
    run_bootstrap,
    t_interval,
)
from saemui.errors import SaemuiError
from saemui.zoo.record_v2 import read_texts, texts_path
from saemui.zoo.settings import SETTING_NAMES, mui_t_setting

#: §6.5 sensitivity B: random subsets per point and the seed of each point's draws
N_SUBSETS = 200
NSTAR_SEED = 0
#: §7.3 random units: draws per point and their seed
RANDOM_SEED = 0
#: §7.2: a point is "short" when more than this share of its samples have fewer than T scored positions
SHORT_SHARE = EMPTY_SHARE

POINT_COLUMNS: tuple[str, ...] = (
    "run_id",
    "family",
    "task",
    "setting",
    "model",
    "step",
    "role",
    "mui",
    "k",
    "N",
    "is_checkpoint",
    "contaminated",
    "replicate",
    "recipe",
    "is_base",
    "tokens_per_item",
    "n_empty",
    "n_nonempty",
    "n_at_max_new_tokens",
    "mui_G",
    "mui_B",
    "mui_T",
    "short",
    "short_lo",
    "short_hi",
    "mui_random",
    "lexical",
    "has_sets",
)


# ----- small pieces ------------------------------------------------------------------------------------------


def lexical_bigrams(responses: Sequence[str]) -> float:
    """Mean number of distinct word bigrams per response (§7.3 lexical baseline); NaN for no response."""
    if not len(responses):
        return float("nan")
    return float(np.mean([len(s) for s in ngram_sets(list(responses), 2)]))


def short_bounds(n: int, n_empty: int, n_tokens_t: int, t: int) -> tuple[int, int]:
    """Least and most samples with fewer than ``t`` scored positions, knowing only the sample count ``n``, the
    empty count and ``n_tokens_t`` = Σ min(positions, t) (a first-T setting's token count).

    Empty samples are short and miss t positions each; every other short sample misses 1 to t − 1, so the
    remaining deficit D = t·n − n_tokens_t − t·n_empty splits into at least ⌈D/(t − 1)⌉ and at most D samples.
    """
    deficit = t * n - int(n_tokens_t) - t * n_empty
    if deficit < 0 or n_empty > n:
        raise SaemuiError(
            f"first-{t} token count {n_tokens_t} is inconsistent with {n} samples ({n_empty} empty)"
        )
    if t == 1:
        if deficit:
            raise SaemuiError(f"first-1 token count {n_tokens_t} should equal the non-empty samples")
        return n_empty, n_empty
    lo = n_empty + -(-deficit // (t - 1))
    hi = n_empty + deficit
    if lo > n:
        raise SaemuiError(
            f"first-{t} token count {n_tokens_t} is inconsistent with {n} samples ({n_empty} empty)"
        )
    return lo, min(hi, n)


def _nonempty_samples(rec: Mapping[str, Any]) -> np.ndarray | None:
    """Indices of the samples with a scored position: at P0 (top-k per (sample, layer), so a sample has key units
    iff it has a scored position) the samples with a non-empty key set; None when P0 kept no sets."""
    p0 = (rec.get("settings") or {}).get("P0")
    if p0 is None or p0.get("sets") is None:
        return None
    idx = np.flatnonzero([len(s) > 0 for s in p0["sets"]])
    if len(idx) != int(rec["n"]) - int(rec["n_empty"]):
        raise SaemuiError(
            f"record {rec['model']}/{rec['task']}: {len(idx)} samples have P0 key units but "
            f"{int(rec['n']) - int(rec['n_empty'])} are non-empty"
        )
    return idx


def recipe_of(run: str, role: str) -> str:
    """A seed replicate of R* (``<R*>-seed<s>``, role ``seed``) shares R*'s recipe (§2); any other run is its own."""
    if role == "seed" and "-seed" in run:
        return run.rsplit("-seed", 1)[0]
    return run


def load_texts(results: str | Path, records: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], list[str]]:
    """(model, task) → responses, from each verbatim record's texts file ``items/<model>__<task>__verbatim.json``
    (a missing file is left out: that point's lexical value is NaN)."""
    out: dict[tuple[str, str], list[str]] = {}
    for rec in records:
        if rec.get("set") != "verbatim":
            continue
        p = texts_path(Path(results), rec["model"], rec["task"], "verbatim")
        if p.is_file():
            d = read_texts(p)
            if list(d["ids"]) != list(rec["ids"]):
                raise SaemuiError(f"{p}: its ids differ from the record's (a stale texts file?)")
            out[(rec["model"], rec["task"])] = list(d["responses"])
    return out


# ----- the points table --------------------------------------------------------------------------------------


def _pct(x: Any) -> float:
    return 100.0 * float(x) if x is not None else float("nan")


def setting_order(name: str) -> tuple[int, str]:
    """Sort key of a setting name: §5's order (:data:`saemui.zoo.settings.SETTING_NAMES`), unknown names last."""
    return (SETTING_NAMES.index(name) if name in SETTING_NAMES else len(SETTING_NAMES), name)


def _short(rec: Mapping[str, Any], entry: Mapping[str, Any] | None, t: int) -> tuple[Any, float, float]:
    """(short flag or None, least share, most share) of samples with fewer than ``t`` positions (§7.2)."""
    n = int(rec["n"])
    if entry is None:
        return None, float("nan"), float("nan")
    ss = entry.get("short_samples")
    if ss is not None and int(ss.get("first_tokens", t)) == t:
        share = int(ss["n"]) / n
        return bool(share > SHORT_SHARE), share, share
    lo, hi = short_bounds(n, int(rec["n_empty"]), int(entry["n_tokens"]), t)
    flag: Any = None
    if lo / n > SHORT_SHARE:
        flag = True
    elif hi / n <= SHORT_SHARE:
        flag = False
    return flag, lo / n, hi / n


def study_points(
    records: Sequence[Mapping[str, Any]],
    texts: Mapping[tuple[str, str], Sequence[str]] | None = None,
    *,
    random_draws: int = N_DRAWS,
    random_seed: int = RANDOM_SEED,
) -> pd.DataFrame:
    """One row per (point, task, setting) of the verbatim records, columns :data:`POINT_COLUMNS` (module
    docstring). ``texts``: (model, task) → responses (:func:`load_texts`) for the lexical column."""
    by_key = {(r["model"], r["task"], r["set"]): r for r in records}
    # random-unit MUI depends on the set sizes only, and top-k gives most points the same sizes: compute once
    random_cache: dict[tuple, float] = {}

    def random_pct(entry: Mapping[str, Any]) -> float:
        U, L = int(entry["n_units"]), int(entry["n_layers"])
        sizes = layer_set_sizes(entry["sets"], U, L)
        key = (U, sizes.shape, sizes.tobytes())
        if key not in random_cache:
            random_cache[key] = 100.0 * random_unit_mui(sizes, U, random_draws, random_seed).mean
        return random_cache[key]

    rows = []
    for rec in records:
        if rec.get("set") != "verbatim" or not rec.get("settings"):
            continue
        if rec.get("n_correct") is None:
            raise SaemuiError(f"record {rec['model']}/{rec['task']}: a verbatim record without n_correct")
        role = rec.get("role") or "base"
        run = rec.get("run") or rec["root"]
        n, n_empty = int(rec["n"]), int(rec["n_empty"])
        tf = {s: by_key.get((rec["model"], rec["task"], s)) for s in ("G", "B")}
        t_name = rec.get("mui_t_setting") or mui_t_setting(rec["task"])
        t_entry = rec["settings"].get(t_name)
        t_len = int(t_name.removeprefix("P0-first"))
        short, short_lo, short_hi = _short(rec, t_entry, t_len)
        resp = (texts or {}).get((rec["model"], rec["task"]))
        lexical = lexical_bigrams(resp) if resp is not None else float("nan")
        for name in sorted(rec["settings"], key=setting_order):
            entry = rec["settings"][name]
            has_sets = entry.get("sets") is not None
            rnd = random_pct(entry) if has_sets else float("nan")
            tf_mui = {
                s: _pct(((r or {}).get("settings") or {}).get(name, {}).get("mui")) for s, r in tf.items()
            }
            is_p0 = name == "P0"
            rows.append(
                {
                    "run_id": run,
                    "family": rec["root"],
                    "task": rec["task"],
                    "setting": name,
                    "model": rec["model"],
                    "step": int(rec["step"]),
                    "role": role,
                    "mui": _pct(entry["mui"]),
                    "k": int(rec["n_correct"]),
                    "N": n,
                    "is_checkpoint": bool(rec.get("checkpoint")),
                    "contaminated": role == "dose" or bool(rec.get("contaminated")),
                    "replicate": role == "seed",
                    "recipe": recipe_of(run, role),
                    "is_base": role == "base",
                    "tokens_per_item": float(rec["tau"]),
                    "n_empty": n_empty,
                    "n_nonempty": n - n_empty,
                    "n_at_max_new_tokens": rec.get("n_at_max_new_tokens"),
                    "mui_G": tf_mui["G"],
                    "mui_B": tf_mui["B"],
                    "mui_T": _pct(t_entry["mui"]) if is_p0 and t_entry is not None else float("nan"),
                    "short": short if is_p0 else None,
                    "short_lo": short_lo if is_p0 else float("nan"),
                    "short_hi": short_hi if is_p0 else float("nan"),
                    "mui_random": rnd,
                    "lexical": lexical,
                    "has_sets": has_sets,
                }
            )
    df = pd.DataFrame(rows, columns=list(POINT_COLUMNS))
    if df.empty:
        return df
    df["short"] = df["short"].astype("boolean")
    df["_o"] = [setting_order(s)[0] for s in df["setting"]]
    df = df.sort_values(["task", "_o", "setting", "family", "is_base", "model"], ascending=[1, 1, 1, 1, 0, 1])
    return df.drop(columns="_o").reset_index(drop=True)


def primary_mask(points: pd.DataFrame) -> pd.Series:
    """The rows a primary law fit may use (as :func:`saemui.analysis.study.law_points` selects them): no
    checkpoint, contaminated run or replicate seed."""
    return ~(points["is_checkpoint"] | points["contaminated"] | points["replicate"]).astype(bool)


def subset_mui(sets: Sequence[Sequence[int]], n_units: int, n_layers: int, subsets: np.ndarray) -> np.ndarray:
    """MUI (fraction) of each row of ``subsets`` (sample indices): the union of those samples' key sets / (L·U)."""
    ids = sorted(set().union(*map(set, sets))) if len(sets) else []
    col = {u: j for j, u in enumerate(ids)}
    member = np.zeros((len(sets), max(len(ids), 1)), dtype=np.float32)
    for i, s in enumerate(sets):
        member[i, [col[u] for u in s]] = 1.0
    pick = np.zeros((len(subsets), len(sets)), dtype=np.float32)
    np.put_along_axis(pick, np.asarray(subsets, dtype=np.int64), 1.0, axis=1)
    covered = (pick @ member) > 0
    return covered.sum(axis=1) / float(n_units * n_layers)


def add_nstar_mui(
    points: pd.DataFrame,
    records: Sequence[Mapping[str, Any]],
    *,
    n_subsets: int = N_SUBSETS,
    seed: int = NSTAR_SEED,
    min_nstar: int = 1,
) -> pd.DataFrame:
    """§6.5 sensitivity B: a copy of ``points`` with ``nstar`` and ``mui_nstar`` (%).

    n* of a (task, setting) = the smallest ``n_nonempty`` among its primary points (those
    :func:`saemui.analysis.study.law_points` keeps); a row's ``mui_nstar`` is the mean MUI over ``n_subsets``
    random subsets of n* of its non-empty samples (each drawn without replacement by
    ``numpy.random.default_rng(seed)``, one generator per row, subsets in order). NaN when the record kept no
    key sets at that setting or the row has fewer than n* non-empty samples, and for every row of a (task,
    setting) whose n* is below ``min_nstar`` (§6.5 does not run sensitivity B there: pass
    :data:`saemui.analysis.study.MIN_NSTAR` to skip that work).
    """
    out = points.copy()
    out["nstar"] = pd.Series(pd.NA, index=out.index, dtype="Int64")
    out["mui_nstar"] = np.nan
    if out.empty:
        return out
    by_key = {(r["model"], r["task"]): r for r in records if r.get("set") == "verbatim"}
    prim = primary_mask(out)
    for (task, setting), g in out.groupby(["task", "setting"], sort=False):
        base = g.loc[prim.loc[g.index]]
        if base.empty:
            continue
        nstar = int(base["n_nonempty"].min())
        for i, row in g.iterrows():
            out.at[i, "nstar"] = nstar
            rec = by_key[(row["model"], task)]
            entry = rec["settings"][setting]
            nonempty = _nonempty_samples(rec)
            if (
                entry.get("sets") is None
                or nonempty is None
                or len(nonempty) < nstar
                or nstar < max(min_nstar, 1)
            ):
                continue
            rng = np.random.default_rng(seed)
            subsets = np.stack(
                [nonempty[rng.choice(len(nonempty), nstar, replace=False)] for _ in range(n_subsets)]
            )
            vals = subset_mui(entry["sets"], int(entry["n_units"]), int(entry["n_layers"]), subsets)
            out.at[i, "mui_nstar"] = 100.0 * float(vals.mean())
    return out


# ----- §7.3 length baseline and reading ---------------------------------------------------------------------


def r_squared(fit: FEFit, y: np.ndarray, groups: np.ndarray) -> dict[str, float]:
    """``r2`` = 1 − RSS/TSS about the grand mean (the family intercepts count as explained) and ``r2_within`` =
    1 − RSS/TSS about each family's mean (what the slope(s) explain beyond the intercepts)."""
    y = np.asarray(y, dtype=float)
    g = np.asarray([str(v) for v in groups])
    tss = float(((y - y.mean()) ** 2).sum())
    tss_w = float(sum(((y[g == k] - y[g == k].mean()) ** 2).sum() for k in set(g)))
    return {
        "r2": 1 - fit.rss / tss if tss > 0 else float("nan"),
        "r2_within": 1 - fit.rss / tss_w if tss_w > 0 else float("nan"),
    }


def baseline_fit(
    df: pd.DataFrame,
    task: str,
    setting: str,
    m: int,
    column: str,
    *,
    log: bool,
    n_boot: int,
    seed: int = 0,
) -> dict[str, Any]:
    """A §7.3 baseline on H1's points (:func:`saemui.analysis.study.law_points` at ``setting``): P = α_f + θ·x
    with x = ln(``column``) (``log``) or the column itself, θ's t-interval and run-bootstrap interval at 1 − α′
    (as §6.2 for H1) and both R² of :func:`r_squared`.

    Length alone is ``column="tokens_per_item", log=True`` (P = α_f + θ ln τ); the lexical baseline is
    ``column="lexical", log=False`` (a mean count of distinct bigrams, 0 for one-word answers, so not logged).
    """
    alpha = alpha_prime(m)
    pts = law_points(df, task, setting)
    if column not in pts:
        raise SaemuiError(f"{task} at {setting}: column {column} is missing")
    v = pts[column].to_numpy(float)
    ok = np.isfinite(v) & (v > 0) if log else np.isfinite(v)
    if not ok.all():
        what = "positive numbers" if log else "numbers"
        raise SaemuiError(
            f"{task} at {setting}: {column} must be {what} at every point ({int((~ok).sum())} not)"
        )
    y, x, g = pts["P"].to_numpy(float), (np.log(v) if log else v)[:, None], pts["family"].to_numpy()
    fit = fit_fe(y, x, g)
    boot = run_bootstrap(
        y, x, g, strata=g, clusters=pts["run_id"].to_numpy(), level=1 - alpha, n_boot=n_boot, seed=seed
    )
    return {
        "regressor": f"ln {column}" if log else column,
        "slope": fit.slope,
        "se": fit.se,
        "df": fit.df,
        "t_ci": list(t_interval(fit, alpha)),
        "boot_ci": list(boot.ci),
        "n_boot": n_boot,
        "boot_seed": seed,
        "n_redrawn": boot.n_redrawn,
        "n": fit.n,
        **r_squared(fit, y, g),
    }


READINGS = {
    "beyond": "the law holds beyond length and format",
    "carried": "the association is carried by response length or format",
}


def reading(h1: str, h1_l: str, h1_tf_g: str) -> str:
    """§7.3's reading from the verdict labels of H1, H1-L and H1-TF-G. The protocol fixes two readings when H1 is
    supported; any other combination is stated as having no registered reading."""
    if h1 != "supported":
        return f"H1 {h1}: the controls are reported without a reading"
    if h1_l == "supported" and h1_tf_g == "supported":
        return READINGS["beyond"]
    if h1_l == "not supported" or h1_tf_g == "not supported":
        return READINGS["carried"]
    return f"no registered reading (H1 supported; H1-L {h1_l}, H1-TF-G {h1_tf_g})"


def finite(x: Any) -> float | None:
    """``x`` as a float, or None when it is missing or not finite (JSON has no NaN)."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


__all__ = [
    "N_SUBSETS",
    "NSTAR_SEED",
    "POINT_COLUMNS",
    "RANDOM_SEED",
    "READINGS",
    "SHORT_SHARE",
    "add_nstar_mui",
    "finite",
    "baseline_fit",
    "lexical_bigrams",
    "load_texts",
    "primary_mask",
    "r_squared",
    "reading",
    "recipe_of",
    "setting_order",
    "short_bounds",
    "study_points",
    "subset_mui",
]
