"""Study v2's law analysis (docs/study/protocol.md §3.2, §6, §7): the points table from zoo-v2 records
(saemui.analysis.zoo_v2) checked column by column against hand computations on the tiny v2 build, and
scripts/reproduce_study_law.py end to end (numbers equal direct study.law_test calls, every task × hypothesis
row in the markdown, deterministic output, the refusal without law-task records).

The tiny build's random models answer nothing, so every P is equal and each family has two clean points. The
fixture ``zoo`` therefore copies the build and varies it: accuracies are set per point, and each fine-tuned run's
records (verbatim, G, B, texts) are cloned into two more runs per family whose key sets gain units, whose τ grows
and one of which has two empty responses. The clones are written through the record format, so every column is
still derived from what a record holds."""

from __future__ import annotations

import copy
import itertools
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from zoo_fixtures import build_tiny_v2, load_script, one_family_copy

from saemui.analysis import study
from saemui.analysis import study_law_report as slr
from saemui.analysis import zoo_v2 as zv
from saemui.analysis.random_units import random_unit_mui_record
from saemui.errors import SaemuiError
from saemui.io import compact_json
from saemui.zoo.record_v2 import load_records_v2

LAW = ("arith-1", "arith-2d1d")
#: correct answers per point (out of 8) set by the fixture: they vary within each family
K = {
    "tiny-llama": 1,
    "tiny-llama-S1": 3,
    "tiny-llama-S2": 6,
    "tiny-llama-S3": 2,
    "tiny-gemma": 0,
    "tiny-gemma-G1": 4,
    "tiny-gemma-G2": 8,
    "tiny-gemma-G3": 1,
}
CLONES = {"S1": ("S2", "S3"), "G1": ("G2", "G3")}
EMPTY_CLONE = "S3"  # two empty responses: > 10 % of 8, so flagged (§6.5)


def _grow_sets(entry: dict, j: int) -> None:
    """Add a unit in layer 0 to the first 2j samples with key units (new ids raise MUI), then recompute the
    entry's counts from the sets."""
    U = entry["n_units"]
    sets = [list(s) for s in entry["sets"]]
    for i in range(min(2 * j, len(sets))):
        if sets[i]:
            u = (11 * i + 29 * j) % U
            sets[i] = sorted(set(sets[i]) | {u})
    _set_sets(entry, sets)


def _set_sets(entry: dict, sets: list[list[int]]) -> None:
    U, L = entry["n_units"], entry["n_layers"]
    entry["sets"] = sets
    union = set().union(*map(set, sets))
    entry["set_sizes"] = [len(s) for s in sets]
    entry["union_size"] = len(union)
    entry["mui"] = len(union) / (U * L)
    entry["per_layer"] = [sum(1 for u in union if u // U == layer) / U for layer in range(L)]


def _set_k(rec: dict, k: int) -> None:
    n = rec["n"]
    rec["correct"] = [1] * k + [0] * (n - k)
    rec["n_correct"] = k
    rec["accuracy"] = k / n
    rec["P"] = 100 * (k + 0.5) / (n + 1)


def _write(path: Path, obj: dict) -> None:
    path.write_text(json.dumps(obj, indent=1))


def _vary(results: Path) -> None:
    recs = {p.name: json.loads(p.read_text()) for p in results.glob("*__*__*.json")}
    for name, rec in recs.items():
        if rec["set"] == "verbatim" and rec["model"] in K:
            _set_k(rec, K[rec["model"]])
            _write(results / name, rec)
    for name, rec in recs.items():
        if rec["run"] not in CLONES or rec["checkpoint"] or rec["set"] not in ("verbatim", "G", "B"):
            continue
        for j, new in enumerate(CLONES[rec["run"]], start=1):
            c = copy.deepcopy(rec)
            model = f"{rec['root']}-{new}"
            c.update(model=model, run=new, seed=rec["seed"] + 10 * j)
            for entry in c["settings"].values():
                _grow_sets(entry, j)
            if c["set"] == "verbatim":
                _set_k(c, K[model])
                texts = json.loads(
                    (results / "items" / f"{rec['model']}__{rec['task']}__verbatim.json").read_text()
                )
                texts["model"] = model
                # j more words on the first j answers: the lexical baseline varies within each family
                for i in range(j):
                    texts["responses"][i] += " so" + " the sum is" * j
                c["tau"] = rec["tau"] + 0.5 * j
                p0 = c["settings"]["P0"]
                first4 = c["settings"]["P0-first4"]
                if new == EMPTY_CLONE and first4["n_tokens"] == 4 * c["n"]:
                    # samples 0 and 1 answer nothing: no key units, no positions, wrong, short
                    for entry in c["settings"].values():
                        _set_sets(entry, [[] if i < 2 else s for i, s in enumerate(entry["sets"])])
                    c["n_empty"] = 2
                    c["correct"][:2] = [0, 0]
                    c["correct"][2 : 2 + K[model]] = [1] * K[model]
                    first4["n_tokens"] -= 8
                    first4["short_samples"] = {
                        **first4["short_samples"],
                        "n": first4["short_samples"]["n"] + 2,
                    }
                    texts["responses"][:2] = ["", ""]
                p0["n_tokens"] = round(c["tau"] * (c["n"] - c["n_empty"]))
                c["tau"] = p0["n_tokens"] / (c["n"] - c["n_empty"])  # as length_fields computes it
                c["mui"] = p0["mui"]
                _write(results / "items" / f"{model}__{rec['task']}__verbatim.json", texts)
            _write(results / name.replace(rec["model"], model, 1), c)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """The tiny v2 build as it comes (every P equal, so several statistics are undefined)."""
    return build_tiny_v2(tmp_path_factory.mktemp("tiny-v2-law"))[0]


@pytest.fixture(scope="module")
def zoo(built, tmp_path_factory) -> Path:
    results = tmp_path_factory.mktemp("law") / "results"
    shutil.copytree(built, results)
    _vary(results)
    return results


def test_undefined_statistics_are_null_in_strict_json(built, tmp_path):
    """On the raw build some slopes and intervals cannot be computed: they are written as null, never NaN."""
    assert _run(built, tmp_path, "--no-figures") == 0
    text = (tmp_path / "law.json").read_text()
    rep = json.loads(text, parse_constant=_no_nan)
    assert "null" in text and rep["law_tasks"]


@pytest.fixture(scope="module")
def records(zoo) -> list[dict]:
    return load_records_v2(zoo)


@pytest.fixture(scope="module")
def points(zoo, records) -> pd.DataFrame:
    return zv.add_nstar_mui(zv.study_points(records, zv.load_texts(zoo, records)), records)


def _by(records: list[dict]) -> dict[tuple[str, str, str], dict]:
    return {(r["model"], r["task"], r["set"]): r for r in records}


def _union_pct(entry: dict) -> float:
    return 100 * len(set().union(*map(set, entry["sets"]))) / (entry["n_units"] * entry["n_layers"])


def _bigrams(text: str) -> int:
    w = re.findall(r"\w+", text.lower())
    return len(set(zip(w, w[1:])))


# ----- the points table, column by column ------------------------------------------------------------------


def test_points_rows_and_identity_columns(points, records):
    verbatim = [r for r in records if r["set"] == "verbatim"]
    assert len(points) == sum(len(r["settings"]) for r in verbatim)
    assert list(points.columns[: len(zv.POINT_COLUMNS)]) == list(zv.POINT_COLUMNS)
    assert not points.duplicated(["model", "task", "setting"]).any()
    recs = _by(records)
    for row in points.itertuples():
        rec = recs[(row.model, row.task, "verbatim")]
        role = rec["role"]
        assert row.run_id == (rec["run"] if role != "base" else rec["root"])
        assert row.family == rec["root"] and row.is_base == (rec["run"] is None)
        assert row.is_checkpoint == ("@" in row.model)  # checkpoint points are named <run>@<step>
        assert row.contaminated == ("dose" in row.model) and not row.replicate
        assert row.recipe == row.run_id
    assert zv.recipe_of("S1-seed2", "seed") == "S1" and zv.recipe_of("S1-seed2", "law") == "S1-seed2"
    # the clones of the fixture are independent law points of their family
    assert set(points.loc[~points.is_checkpoint & ~points.contaminated, "run_id"]) == {
        "tiny-llama",
        "tiny-gemma",
        "S1",
        "S2",
        "S3",
        "G1",
        "G2",
        "G3",
    }


def test_points_mui_accuracy_tau_by_hand(points, records):
    recs = _by(records)
    for row in points.itertuples():
        rec = recs[(row.model, row.task, "verbatim")]
        entry = rec["settings"][row.setting]
        assert row.mui == pytest.approx(_union_pct(entry), rel=1e-12)  # MUI (%) = |∪ key sets| / (L·U)
        assert row.k == sum(rec["correct"]) and row.N == len(rec["ids"]) == 8
        if row.model in K:
            assert row.k == K[row.model]
        p0 = rec["settings"]["P0"]
        empty = sum(1 for s in p0["sets"] if not s)  # top-k: a sample has key units iff it has positions
        assert row.n_empty == empty and row.n_nonempty == 8 - empty
        assert row.tokens_per_item == pytest.approx(p0["n_tokens"] / (8 - empty))  # τ over non-empty samples
    s3 = points[(points.model == "tiny-llama-S3") & (points.setting == "P0")]
    assert (s3.n_empty == 2).all() and (study.empty_flags(s3)).all()  # 2 of 8 > 10 %: flagged (§6.5)
    # P of §1 from k and N, as study.law_points computes it
    lp = study.law_points(points, "arith-1", "P0")
    assert lp["P"].tolist() == pytest.approx([100 * (k + 0.5) / 9 for k in lp["k"]])


def test_points_controls_by_hand(points, records, zoo):
    recs = _by(records)
    for row in points.itertuples():
        rec = recs[(row.model, row.task, "verbatim")]
        for s, col in (("G", "mui_G"), ("B", "mui_B")):
            tf = recs.get((row.model, row.task, s))
            if tf is None or row.setting not in tf["settings"]:
                assert np.isnan(getattr(row, col))
            else:
                assert getattr(row, col) == pytest.approx(_union_pct(tf["settings"][row.setting]))
        if row.setting == "P0":
            first4 = rec["settings"]["P0-first4"]
            assert row.mui_T == pytest.approx(_union_pct(first4))  # arith: T = 4 (§7.2)
            n_short = first4["short_samples"]["n"]
            assert row.short_lo == row.short_hi == n_short / 8 and bool(row.short) == (n_short / 8 > 0.10)
        else:
            assert np.isnan(row.mui_T) and pd.isna(row.short)
        texts = json.loads((zoo / "items" / f"{row.model}__{row.task}__verbatim.json").read_text())[
            "responses"
        ]
        assert row.lexical == pytest.approx(np.mean([_bigrams(t) for t in texts]))
        # random units: the module's draws, and near the closed form computed here from the layer set sizes
        assert row.mui_random == pytest.approx(100 * random_unit_mui_record(rec, row.setting).mean)
        entry = rec["settings"][row.setting]
        U, L = entry["n_units"], entry["n_layers"]
        sizes = np.array(
            [[sum(1 for u in s if u // U == layer) for layer in range(L)] for s in entry["sets"]]
        )
        expected = sum(U * (1 - np.prod(1 - sizes[:, layer] / U)) for layer in range(L)) / (L * U)
        assert row.mui_random == pytest.approx(100 * expected, abs=1.5)
    s3 = points[(points.model == "tiny-llama-S3") & (points.setting == "P0")]
    assert s3["short"].all()  # two empty samples of 8 have fewer than 4 positions


def test_nstar_mui_by_hand(points, records):
    recs = _by(records)
    prim = points[~points.is_checkpoint & ~points.contaminated & ~points.replicate]
    for (task, setting), g in points.groupby(["task", "setting"]):
        nstar = int(prim[(prim.task == task) & (prim.setting == setting)]["n_nonempty"].min())
        assert nstar == 6 if task in LAW else nstar == 8
        assert (g["nstar"] == nstar).all()
        for row in g.itertuples():
            entry = recs[(row.model, task, "verbatim")]["settings"][setting]
            nonempty = [
                i for i, s in enumerate(recs[(row.model, task, "verbatim")]["settings"]["P0"]["sets"]) if s
            ]
            if len(nonempty) == nstar:  # every subset is all non-empty samples: MUI itself (empties add ∅)
                assert row.mui_nstar == pytest.approx(row.mui)
                continue
            rng = np.random.default_rng(0)
            vals = []
            for _ in range(200):
                pick = [nonempty[i] for i in rng.choice(len(nonempty), nstar, replace=False)]
                vals.append(
                    100
                    * len(set().union(*(set(entry["sets"][i]) for i in pick)))
                    / (entry["n_units"] * entry["n_layers"])
                )
            assert row.mui_nstar == pytest.approx(np.mean(vals))
            assert min(vals) - 1e-12 <= row.mui_nstar <= row.mui + 1e-12


def test_short_bounds_against_every_position_vector():
    # every vector of positions 0..5 for 4 samples: the bounds are exactly the least and most short samples
    # among the vectors with the same empty count and first-T token count
    for t in (1, 2, 4):
        seen: dict[tuple[int, int], list[int]] = {}
        for pos in itertools.product(range(6), repeat=4):
            key = (sum(p == 0 for p in pos), sum(min(p, t) for p in pos))
            seen.setdefault(key, []).append(sum(p < t for p in pos))
        for (n_empty, n_tok), shorts in seen.items():
            assert zv.short_bounds(4, n_empty, n_tok, t) == (min(shorts), max(shorts))
    with pytest.raises(SaemuiError):
        zv.short_bounds(4, 0, 17, 4)


def test_short_flag_from_bounds_when_the_record_has_no_count(records):
    rec = copy.deepcopy(next(r for r in records if r["model"] == "tiny-llama-S3" and r["set"] == "verbatim"))
    del rec["settings"]["P0-first4"]["short_samples"]
    row = zv.study_points([rec]).query("setting == 'P0'").iloc[0]
    # 2 empty samples and 24 of 24 further positions: exactly 2 short samples, known without the count
    assert (row.short_lo, row.short_hi) == (0.25, 0.25) and bool(row.short)
    rec["settings"]["P0-first4"]["n_tokens"] -= 1  # one more short sample, or not: 1 position missing
    row = zv.study_points([rec]).query("setting == 'P0'").iloc[0]
    assert (row.short_lo, row.short_hi) == (3 / 8, 3 / 8)
    rec["n_empty"] = 0
    for e in rec["settings"].values():
        e["sets"] = [s or [0] for s in e["sets"]]
    rec["settings"]["P0-first4"]["n_tokens"] = 30  # deficit 2 over non-empty samples: 1 or 2 short of 8
    row = zv.study_points([rec]).query("setting == 'P0'").iloc[0]
    assert (row.short_lo, row.short_hi) == (1 / 8, 2 / 8) and bool(row.short)
    rec["settings"]["P0-first4"]["n_tokens"] = 31  # 1 short of 8 = 12.5 % > 10 %
    assert bool(zv.study_points([rec]).query("setting == 'P0'").iloc[0].short)


def test_baseline_fit_and_r2_by_hand(points):
    pts = study.law_points(points, "arith-1", "P0")
    y = 100 * (pts["k"].to_numpy(float) + 0.5) / 9
    fam = pts["family"].to_numpy()
    for col, log in (("tokens_per_item", True), ("lexical", False)):
        x = pts[col].to_numpy(float)
        x = np.log(x) if log else x
        X = np.column_stack([x, fam == "tiny-gemma", fam == "tiny-llama"]).astype(float)
        coef, *_ = np.linalg.lstsq(X, y, rcond=None)
        rss = float(((y - X @ coef) ** 2).sum())
        got = zv.baseline_fit(points, "arith-1", "P0", 2, col, log=log, n_boot=200)
        assert got["slope"] == pytest.approx(coef[0]) and got["n"] == 8 and got["df"] == 5
        assert got["r2"] == pytest.approx(1 - rss / ((y - y.mean()) ** 2).sum())
        within = sum(((y[fam == f] - y[fam == f].mean()) ** 2).sum() for f in set(fam))
        assert got["r2_within"] == pytest.approx(1 - rss / within)
        from scipy.stats import t as student_t

        se = np.sqrt(rss / 5 * np.linalg.inv(X.T @ X)[0, 0])
        q = student_t.ppf(1 - 0.025 / 2, 5)
        assert got["t_ci"] == pytest.approx([coef[0] - q * se, coef[0] + q * se])


@pytest.mark.parametrize(
    ("h1", "h1l", "tfg", "expected"),
    [
        ("supported", "supported", "supported", zv.READINGS["beyond"]),
        ("supported", "not supported", "supported", zv.READINGS["carried"]),
        ("supported", "supported", "not supported", zv.READINGS["carried"]),
        ("supported", "inconclusive", "supported", "no registered reading"),
        ("not supported", "supported", "supported", "without a reading"),
        ("inconclusive", "supported", "supported", "without a reading"),
    ],
)
def test_reading_rule(h1, h1l, tfg, expected):
    assert expected in zv.reading(h1, h1l, tfg)


# ----- the script ------------------------------------------------------------------------------------------


def _run(zoo: Path, out: Path, *extra: str) -> int:
    mod = load_script("reproduce_study_law")
    args = ["--results", str(zoo), "--json", str(out / "law.json"), "--md", str(out / "law.md")]
    return mod.main([*args, "--figures", str(out / "fig"), "--n-boot", "200", "--min-sd", "0", *extra])


@pytest.fixture(scope="module")
def script_out(zoo, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("law-out")
    assert _run(zoo, out) == 0
    return out


def _no_nan(name):
    raise AssertionError(f"law.json holds {name}: not strict JSON")


def test_script_numbers_equal_direct_law_tests(script_out, points):
    rep = json.loads((script_out / "law.json").read_text(), parse_constant=_no_nan)
    assert rep["law_tasks"] == list(LAW) and rep["m"] == 2 and rep["alpha_prime"] == 0.025
    assert rep["protocol"]["n_boot"] == 200 and rep["protocol"]["robustness_seeds"] == [1, 2, 3, 4]
    forms = {"H1": ("H1", "mui"), "H1b": ("H1b", "mui"), "H1-L": ("H1-L", "mui")}
    forms |= {"H1-TF-G": ("H1", "mui_G"), "H1-TF-B": ("H1", "mui_B"), "H1-random_units": ("H1", "mui_random")}
    forms |= {"H1-MUI_T": ("H1", "mui_T")}
    checked = 0
    tests = rep["tests"] + rep["mui_T"] + [b["random_units"] for b in rep["baselines"]]
    for t in tests:
        if t["hypothesis"] not in forms or "error" in t:
            continue
        form, col = forms[t["hypothesis"]]
        df = points if col == "mui" else points.drop(columns="mui_nstar")
        df = df[df[col].notna()]
        lt = study.law_test(df, t["task"], t["setting"], form, 2, mui_col=col, n_boot=200)
        assert t["slope"] == lt.fit.slope and t["se"] == lt.fit.se
        assert t["t_ci"] == list(lt.t_ci) and t["boot_ci"] == list(lt.boot.ci)
        assert t["verdict"]["label"] == lt.verdict.label and t["delta"] == lt.delta and t["n"] == lt.n
        assert t["sensitivity"]["A"]["t_ci"] == list(lt.sensitivity["A"][0])
        checked += 1
    assert checked >= 2 * (5 + 3 + 2 + 1)  # every task: 5 at P0, 3 at P0-first4, random units twice, MUI_T
    # the primary slope is also the OLS slope with family dummies computed here
    h1 = next(
        t for t in rep["tests"] if (t["task"], t["setting"], t["hypothesis"]) == ("arith-1", "P0", "H1")
    )
    lp = study.law_points(points, "arith-1", "P0")
    X = np.column_stack([np.log(lp["mui"]), lp["family"] == "tiny-gemma", lp["family"] == "tiny-llama"])
    coef, *_ = np.linalg.lstsq(X.astype(float), 100 * (lp["k"] + 0.5) / 9, rcond=None)
    assert h1["slope"] == pytest.approx(coef[0]) and h1["role"] == "primary"
    # sensitivity A drops the one flagged point (S3, two empty responses)
    assert h1["notes"]["A"].startswith("1 flagged")
    assert "n* = 6 < 100" in h1["notes"]["B"]
    # overall verdicts (§6.4) from the per-task verdicts at P0
    for name, v in rep["overall"].items():
        per = [
            next(t for t in rep["tests"] if (t["task"], t["setting"], t["hypothesis"]) == (k, "P0", name))
            for k in LAW
        ]
        verdicts = [
            study.Verdict("inconclusive", False, False, False)
            if "error" in t
            else study.Verdict(
                t["verdict"]["label"],
                t["verdict"]["supported"],
                t["verdict"]["contradicted"],
                t["verdict"]["absent"],
            )
            for t in per
        ]
        assert v["verdict"] == study.overall_verdict(verdicts, 2)
        assert v["tasks"] == {k: x.label for k, x in zip(LAW, verdicts)}
    pooled = {p["hypothesis"]: p for p in rep["pooled"]}
    direct = study.pooled_fit(points, list(LAW), "P0", "H1", 2, n_boot=200)
    assert pooled["H1"]["slope"] == direct.slope and pooled["H1"]["boot_ci"] == list(direct.boot.ci)
    # the length baseline beside H1 equals a direct call
    b = next(x for x in rep["baselines"] if (x["task"], x["setting"]) == ("arith-1", "P0"))
    assert (
        b["length"]["slope"]
        == zv.baseline_fit(points, "arith-1", "P0", 2, "tokens_per_item", log=True, n_boot=200)["slope"]
    )
    assert b["H1_r2"] == h1["r2"]
    # MUI_T without short points leaves S3 out
    no_short = next(
        t for t in rep["mui_T"] if t["hypothesis"] == "H1-MUI_T-no-short" and t["task"] == "arith-1"
    )
    assert no_short["n"] == 7 and no_short["n_short_dropped"] == 1
    # the points table in the JSON is the table the tests read
    cols = rep["points"]["columns"]
    assert len(rep["points"]["rows"]) == int(points["task"].isin(LAW).sum())
    assert cols[: len(zv.POINT_COLUMNS)] == list(zv.POINT_COLUMNS)


def test_script_markdown_and_figures(script_out):
    md = (script_out / "law.md").read_text()
    assert (
        md.startswith("# Study v2: the law, generated tables")
        and "python scripts/reproduce_study_law.py" in md
    )
    assert "do not edit by hand" in md
    prim = md.split("## Primary tests at P0")[1].split("##")[0]
    for task in LAW:
        for hyp in ("H1", "H1b", "H1-L", "H1-TF-G", "H1-TF-B"):
            row = [ln for ln in prim.splitlines() if ln.startswith(f"| {task} | {hyp} |")]
            assert len(row) == 1, (task, hyp)
            assert re.search(r"\*\*(supported|not supported|inconclusive)\*\*|no fit \(", row[0])
    assert "## Overall verdict per hypothesis at P0" in md and "## §7.3 reading" in md
    figs = sorted(p.name for p in (script_out / "fig").glob("*.png"))
    assert figs == sorted(
        ["law_P0.png", "controls_arith-1.png", "controls_arith-2d1d.png", "mui_tokens.png"]
        + [f"slopes_{h}.png" for h in ("H1", "H1b", "H1-L")]
    )


def test_report_functions_give_the_script_outputs(zoo, script_out):
    """What a notebook calls gives what the script writes: report() the JSON document, markdown() the tables
    from that document alone (read back from the file), figures() one figure per file the script saved."""
    rep = slr.report(zoo, n_boot=200, min_sd=0.0)
    assert compact_json(rep.data) == (script_out / "law.json").read_text()
    md = slr.markdown(json.loads((script_out / "law.json").read_text()))
    assert md == (script_out / "law.md").read_text()
    assert sorted(slr.figures(rep)) == sorted(p.stem for p in (script_out / "fig").glob("*.png"))


def test_a_deviation_is_labelled_in_the_tables(script_out):
    """Registered stage 0: no deviation key and no label; a D1 stage 0 (eligibility.json's ``deviation``) puts a
    one-line label above every generated table."""
    rep = json.loads((script_out / "law.json").read_text())
    assert rep["deviation"] is None and "Deviation" not in slr.markdown(rep)
    rep["deviation"] = {"D1": {"base_shots": 5, "shot_seed": 999}}
    md = slr.markdown(rep)
    assert "- **Deviation D1 (base_shots 5, shot_seed 999)**, decided after stage 0 of the bases" in md


def test_script_is_deterministic(zoo, script_out, tmp_path):
    assert _run(zoo, tmp_path, "--no-figures") == 0
    assert (tmp_path / "law.json").read_bytes() == (script_out / "law.json").read_bytes()
    assert (tmp_path / "law.md").read_bytes() == (script_out / "law.md").read_bytes()


def test_script_refuses_without_law_records(zoo, tmp_path, capsys):
    only0 = tmp_path / "stage0"
    only0.mkdir()
    shutil.copy(zoo / "eligibility.json", only0)
    for p in zoo.glob("*__*__*.json"):
        if json.loads(p.read_text())["role"] == "base":
            shutil.copy(p, only0)
    assert _run(only0, tmp_path) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no law-task records yet" in err
    assert "stage groups 1 (law trainings) and 2 (law evals" in err and "arith-1, arith-2d1d" in err
    assert not (tmp_path / "law.json").exists()
    (only0 / "eligibility.json").unlink()
    assert _run(only0, tmp_path) == 2
    assert "stage 0" in capsys.readouterr().err


def test_one_family_study_reports_h1_not_testable(zoo, tmp_path):
    """§11 case (3): eligibility.json keeps the two-family outcome (m = 0) and names a one-family study; the
    report has no primary test, says H1/H1b are not testable on two families, and fits the family's tasks as
    secondary one-family fits (the other family's fine-tuned points are not part of such a zoo)."""
    one = tmp_path / "one"
    tasks = one_family_copy(zoo, one, "tiny-llama", "tiny-gemma")
    rep = slr.report(one, n_boot=200, min_sd=0.0).data
    assert rep["two_family"] == {"m": 0, "verdict": "not testable on two families (m = 0)"}
    assert rep["eligible_law_tasks"] == tasks and rep["law_tasks"] == [] and rep["m"] == 0
    assert rep["one_family_tasks"] == tasks
    for t in tasks:  # the other root's stage-0 records take no part: one family, so the task is one-family
        assert list(rep["training_moves"][t]["families"]) == ["tiny-llama"]
        assert rep["training_moves"][t]["families"]["tiny-llama"]["moves"]
        assert rep["training_moves"][t]["class"] == "one-family"
    fam = rep["points"]["columns"].index("family")
    assert {r[fam] for r in rep["points"]["rows"]} == {"tiny-llama"}
    assert rep["tests"] and all(t["role"] == "secondary" for t in rep["tests"])
    h1 = {t["task"]: t for t in rep["tests"] if t["hypothesis"] == "H1" and t["setting"] == "P0"}
    assert set(h1) == set(tasks) and all("error" not in t for t in h1.values())
    assert all(v["verdict"] is None for v in rep["overall"].values())
    md = slr.markdown(rep)
    assert "**H1 / H1b: not testable on two families (m = 0).**" in md
    assert "H1/H1b are not testable on two families (m = 0): no primary test." in md
    assert "| H1 | – | **not testable on two families (m = 0)** |" in md
    # §7.3 puts the sceptic baselines beside every H1 fit, and §7.2's MUI_T is registered: with no law task they
    # run on the one-family tasks, which are then the study's only fits
    assert {(b["task"], b["setting"]) for b in rep["baselines"]} >= {(t, "P0") for t in tasks}
    for b in rep["baselines"]:
        assert "error" not in b["length"] and "error" not in b["random_units"]
    assert {t["task"] for t in rep["mui_T"]} == set(tasks)
    assert {t: v["role"] for t, v in rep["reading"]["tasks"].items()} == dict.fromkeys(
        tasks, "secondary (one-family)"
    )
    assert rep["reading"]["overall"] is None
    assert (
        "## One-family fits at P0 (secondary: within tiny-llama, §6.6; no overall verdict on the law)" in md
    )
    assert f"| H1 | {h1[tasks[0]]['verdict']['label']} |" in md
    figs = slr.figures(slr.report(one, n_boot=200, min_sd=0.0))
    assert {"law_P0", "slopes_H1", "mui_tokens", *(f"controls_{t}" for t in tasks)} <= set(figs)
    assert "(secondary, one-family)" in " ".join(figs["law_P0"].get_suptitle().split())


def test_missing_records_counts_law_points_only():
    """Teacher-forced sets are planned for the bases and the clean law finals (§7.1): a replicate seed, a dose
    or a checkpoint without G/B is not missing anything."""
    recs = [
        {"model": m, "task": "t", "set": "verbatim", "role": role, "checkpoint": ck}
        for m, role, ck in [
            ("base", "base", False),
            ("S1", "law", False),
            ("S1-seed1", "seed", False),
            ("S1-dose30", "dose", False),
            ("S1@60", "law", True),
        ]
    ]
    recs += [{"model": "base", "task": "t", "set": s, "role": "base"} for s in ("G", "B")]
    recs.append({"model": "S1", "task": "t", "set": "G", "role": "law"})
    assert slr.missing_records(recs, ["t"]) == ["eval:S1:t:B"]
    assert slr.missing_records(recs, ["other"]) == []


def test_build_line_names_what_the_law_fits_lack(built, tmp_path):
    """The report says whether the law fits read a complete build: expected = the verbatim / G / B records of the
    law tasks at the bases and clean law finals (counted here from the record files), missing = those absent."""
    rep = slr.report(built, n_boot=200, min_sd=0.0).data
    law = rep["eligible_law_tasks"]
    recs = [json.loads(p.read_text()) for p in sorted(built.glob("*__*__*.json"))]
    planned = [
        r
        for r in recs
        if r["task"] in law
        and r["set"] in ("verbatim", "G", "B")
        and (r.get("role") == "base" or (r.get("role") == "law" and not r.get("checkpoint")))
    ]
    assert rep["build"] == {"expected": len(planned), "missing": []} and len(planned) > 6
    assert f"- Build complete for the law fits: all {len(planned)} planned records" in slr.markdown(rep)
    part = tmp_path / "partial"
    shutil.copytree(built, part)
    gone = next(r for r in planned if r["set"] == "G" and r.get("role") == "law")
    (part / f"{gone['model']}__{gone['task']}__G.json").unlink()
    rep = slr.report(part, n_boot=200, min_sd=0.0).data
    sid = f"eval:{gone['model']}:{gone['task']}:G"
    assert rep["build"] == {"expected": len(planned), "missing": [sid]}
    md = slr.markdown(rep)
    assert f"- **Partial build**: 1 of the {len(planned)} records the law fits read are missing ({sid})" in md
    assert "every verdict below is **interim**, not a result of the study." in md
