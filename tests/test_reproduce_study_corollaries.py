"""Study v2 part 2 (docs/study/protocol.md §8.1-§8.5, W10): scripts/reproduce_study_corollaries.py and its adapter
saemui.analysis.zoo_v2_corollaries on the tiny v2 build.

Every number of the JSON is checked against a direct call of the analysis function on inputs this file builds
from the record files itself (JSON read by hand, MUI as |∪ key sets| / (L·U), P = 100 (k + 0.5)/(N + 1)), not
through the adapter. Also: missing parts are reported as "not run" with the stages that would make them, two runs
write identical files, and a directory without any v2 record is refused.

The tiny build has one R* per family, one dose run and random models that answer nothing. The fixture ``zoo``
copies it and clones records through the record format: clean law runs S2, S3 / G2, G3, R* seeds 1-2 (checkpoints
included), a second dose run per family; each clone's key sets gain units and its τ grows; accuracies are set per
point, item set and task, with the correct items spread by a fixed permutation."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from zoo_fixtures import build_tiny_v2, load_script, one_family_copy

from saemui.analysis import causal as ca
from saemui.analysis import comparison as cmp
from saemui.analysis import contamination as ct
from saemui.analysis import diversity as dv
from saemui.analysis import study_corollaries_report as scr
from saemui.analysis import training as tr
from saemui.analysis import zoo_v2_corollaries as zc
from saemui.analysis.embed import kmeans, tfidf_svd_embed
from saemui.errors import SaemuiError
from saemui.io import compact_json

C, OTHER = "arith-1", "arith-2d1d"
LAW = (C, OTHER)
N_BOOT = 200
N_ITEM_BOOT = 150
DATASET_N = 4
KMEANS_K = 5
N_RANDOM = 300
#: clones: new model ← (source model, fields to set, growth j of its key sets)
CLONES: dict[str, tuple[str, dict, int]] = {
    "tiny-llama-S2": ("tiny-llama-S1", {"run": "S2", "seed": 12}, 1),
    "tiny-llama-S3": ("tiny-llama-S1", {"run": "S3", "seed": 13}, 2),
    "tiny-gemma-G2": ("tiny-gemma-G1", {"run": "G2", "seed": 22}, 1),
    "tiny-gemma-G3": ("tiny-gemma-G1", {"run": "G3", "seed": 23}, 2),
    "tiny-llama-S1-seed1": ("tiny-llama-S1", {"run": "S1-seed1", "role": "seed", "seed": 1}, 1),
    "tiny-llama-S1-seed1@2": ("tiny-llama-S1@2", {"run": "S1-seed1", "role": "seed", "seed": 1}, 2),
    "tiny-llama-S1-seed2": ("tiny-llama-S1", {"run": "S1-seed2", "role": "seed", "seed": 2}, 3),
    "tiny-llama-S1-seed2@2": ("tiny-llama-S1@2", {"run": "S1-seed2", "role": "seed", "seed": 2}, 1),
    "tiny-gemma-G1-seed1": ("tiny-gemma-G1", {"run": "G1-seed1", "role": "seed", "seed": 1}, 3),
    "tiny-gemma-G1-seed2": ("tiny-gemma-G1", {"run": "G1-seed2", "role": "seed", "seed": 2}, 4),
    "tiny-llama-S1-dose100": ("tiny-llama-S1-dose50", {"run": "S1-dose100", "dose": 1.0}, 2),
    "tiny-llama-S1-dose100@2": ("tiny-llama-S1-dose50@2", {"run": "S1-dose100", "dose": 1.0}, 1),
    "tiny-gemma-G1-dose50": (
        "tiny-gemma-G1",
        {"run": "G1-dose50", "role": "dose", "dose": 0.5, "contaminated": [C]},
        3,
    ),
}
#: correct answers of 8: (verbatim on C, twins on C); other law task: verbatim and twins from the rule in _k
K = {
    "tiny-llama": (1, 1),
    "tiny-llama-S1": (4, 3),
    "tiny-llama-S1@2": (2, None),
    "tiny-llama-S2": (6, 5),
    "tiny-llama-S3": (2, 3),
    "tiny-llama-S1-seed1": (5, None),
    "tiny-llama-S1-seed1@2": (3, None),
    "tiny-llama-S1-seed2": (4, None),
    "tiny-llama-S1-seed2@2": (1, None),
    "tiny-llama-S1-dose50": (7, 2),
    "tiny-llama-S1-dose50@2": (5, 3),
    "tiny-llama-S1-dose100": (8, 3),
    "tiny-llama-S1-dose100@2": (6, 2),
    "tiny-gemma": (0, 1),
    "tiny-gemma-G1": (3, 2),
    "tiny-gemma-G2": (5, 5),
    "tiny-gemma-G3": (2, 1),
    "tiny-gemma-G1-seed1": (4, None),
    "tiny-gemma-G1-seed2": (2, None),
    "tiny-gemma-G1-dose50": (7, 1),
}
RSTAR = {"tiny-llama": "S1", "tiny-gemma": "G1"}


def _k(model: str, task: str, item_set: str) -> int:
    if task == C and item_set in ("verbatim", "twins"):
        v, t = K[model]
        return v if item_set == "verbatim" else t
    return (sum(map(ord, model)) + (3 if item_set == "twins" else 0)) % 7


def _set_k(rec: dict, k: int) -> None:
    n = rec["n"]
    perm = np.random.default_rng(sum(map(ord, rec["model"] + rec["task"] + rec["set"]))).permutation(n)
    correct = np.zeros(n, dtype=int)
    correct[perm[:k]] = 1
    rec["correct"] = correct.tolist()
    rec["n_correct"] = k
    rec["accuracy"] = k / n
    rec["P"] = 100 * (k + 0.5) / (n + 1)


def _grow(entry: dict, j: int) -> None:
    """Add a unit to the first 2j samples with key units (new ids raise MUI); recompute the counts."""
    U, L = entry["n_units"], entry["n_layers"]
    sets = [list(s) for s in entry["sets"]]
    for i in range(min(2 * j, len(sets))):
        if sets[i]:
            sets[i] = sorted(set(sets[i]) | {(11 * i + 29 * j) % U + U * (j % L)})
    union = set().union(*map(set, sets))
    entry.update(
        sets=sets,
        set_sizes=[len(s) for s in sets],
        union_size=len(union),
        mui=len(union) / (U * L),
        per_layer=[sum(1 for u in union if u // U == layer) / U for layer in range(L)],
    )


def _write(path: Path, obj: dict) -> None:
    path.write_text(json.dumps(obj, indent=1))


def _vary(results: Path) -> None:
    recs = {p.name: json.loads(p.read_text()) for p in results.glob("*__*__*.json")}
    for new, (src, fields, j) in CLONES.items():
        # as in the design: seed runs are measured on C's verbatim items only
        sets = ("verbatim",) if fields.get("role") == "seed" else ("verbatim", "twins")
        for rec in [r for r in recs.values() if r["model"] == src and r["set"] in sets]:
            if fields.get("role") == "seed" and rec["task"] != C:
                continue
            c = copy.deepcopy(rec)
            c.update(model=new, **fields)
            for entry in c["settings"].values():
                _grow(entry, j)
            if c["settings"]:
                c["mui"] = c["settings"]["P0"]["mui"]
                p0 = c["settings"]["P0"]
                p0["n_tokens"] = round((c["tau"] + 0.5 * j) * (c["n"] - c["n_empty"]))
                c["tau"] = p0["n_tokens"] / (c["n"] - c["n_empty"])
            recs[f"{new}__{c['task']}__{c['set']}.json"] = c
    for name, rec in recs.items():
        if rec["model"] == "tiny-gemma" and rec["set"] == "verbatim" and rec["task"] in LAW:
            # the random Gemma root gives every answer the same key units: its MUI would not vary over datasets
            for entry in rec["settings"].values():
                _grow(entry, 2)
            rec["mui"] = rec["settings"]["P0"]["mui"]
        if rec["set"] in ("verbatim", "twins"):
            _set_k(rec, _k(rec["model"], rec["task"], rec["set"]))
        _write(results / name, rec)


@pytest.fixture(scope="module")
def zoo(tmp_path_factory) -> Path:
    built, _, _ = build_tiny_v2(tmp_path_factory.mktemp("tiny-v2-cor"))
    results = tmp_path_factory.mktemp("cor") / "results"
    shutil.copytree(built, results)
    _vary(results)
    return results


def _args(zoo: Path, out: Path, *extra: str) -> list[str]:
    return [
        "--results",
        str(zoo),
        "--json",
        str(out / "cor.json"),
        "--md",
        str(out / "cor.md"),
        "--figures",
        str(out / "fig"),
        "--n-boot",
        str(N_BOOT),
        "--n-item-boot",
        str(N_ITEM_BOOT),
        "--n-random",
        str(N_RANDOM),
        "--dataset-n",
        str(DATASET_N),
        "--kmeans-k",
        str(KMEANS_K),
        "--embedder",
        "tfidf",
        "--cards",
        str(out / "saes"),
        *extra,
    ]


def _options() -> scr.CorollaryOptions:
    """The sizes ``_args`` gives the script, for the report functions called directly."""
    return scr.CorollaryOptions(
        n_boot=N_BOOT,
        n_item_boot=N_ITEM_BOOT,
        n_random=N_RANDOM,
        dataset_n=DATASET_N,
        kmeans_k=KMEANS_K,
        embedder="tfidf",
    )


def _run(zoo: Path, out: Path, *extra: str) -> int:
    return load_script("reproduce_study_corollaries").main(_args(zoo, out, *extra))


@pytest.fixture(scope="module")
def script_out(zoo, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cor-out")
    assert _run(zoo, out) == 0
    return out


@pytest.fixture(scope="module")
def rep(script_out) -> dict:
    return json.loads((script_out / "cor.json").read_text())


# ----- independent inputs (the record files read here, no adapter) -------------------------------------------


@pytest.fixture(scope="module")
def files(zoo) -> dict[tuple[str, str, str], dict]:
    return {
        (d["model"], d["task"], d["set"]): d
        for d in (json.loads(p.read_text()) for p in sorted(zoo.glob("*__*__*.json")))
    }


def _P(rec: dict) -> float:
    return 100 * (sum(rec["correct"]) + 0.5) / (len(rec["correct"]) + 1)


def _mui(entry: dict) -> float:
    return 100 * len(set().union(*map(set, entry["sets"]))) / (entry["n_units"] * entry["n_layers"])


def _frame(t: dict) -> pd.DataFrame:
    return pd.DataFrame(t["rows"], columns=t["columns"])


def _close(got, want) -> None:
    """Equal numbers (NaN = null), floats to 1e-12 relative (MUI is summed in another order here)."""
    g = np.asarray([np.nan if v is None else v for v in np.ravel(got)], dtype=float)
    w = np.asarray(np.ravel(want), dtype=float)
    assert g.shape == w.shape
    assert np.array_equal(np.isnan(g), np.isnan(w))
    ok = ~np.isnan(w)
    np.testing.assert_allclose(g[ok], w[ok], rtol=1e-12, atol=1e-12)


# ----- the adapter, column by column ------------------------------------------------------------------------


def test_rstar_from_records(files):
    recs = list(files.values())
    assert zc.rstar_runs(recs) == RSTAR
    # without R*'s own records its seed and dose runs name it
    assert zc.rstar_runs([r for r in recs if r.get("run") not in ("S1", "G1")]) == RSTAR
    bad = copy.deepcopy(next(r for r in recs if r["model"] == "tiny-gemma-G1-seed1"))
    bad["run"] = "G9-seed1"
    with pytest.raises(Exception, match="names R\\*"):
        zc.rstar_runs([*recs, bad])


def _trajectories(files: dict) -> pd.DataFrame:
    rows = []
    for fam, rs in RSTAR.items():
        base = files[(fam, C, "verbatim")]
        runs = {}
        for (_, task, s), r in files.items():
            if task == C and s == "verbatim" and r["run"] in (rs, f"{rs}-seed1", f"{rs}-seed2"):
                runs.setdefault(r["run"], []).append(r)
        for recs in runs.values():
            for r in [base, *sorted(recs, key=lambda x: x["step"])]:
                rows.append(
                    {
                        "family": fam,
                        "seed": recs[0]["seed"],
                        "step": 0 if r is base else r["step"],
                        "P": _P(r),
                        "mui": _mui(r["settings"]["P0"]),
                        "mui_T": _mui(r["settings"]["P0-first4"]),
                        "tau": r["tau"],
                    }
                )
    return pd.DataFrame(rows)


def test_cor1_numbers_equal_direct_calls(rep, files):
    c1 = rep["cor1"]
    assert c1["status"] == "run" and c1["families_without_seeds"] == []
    traj = _trajectories(files)
    got_traj = _frame(c1["trajectories"])
    assert len(got_traj) == len(traj) == 3 * 3 + 3 * 2  # llama: steps 0, 2, 4; gemma: 0, 2; three seeds each
    band = tr.seed_band(traj)
    got = _frame(c1["band"])
    assert list(got.columns) == list(band.columns)
    for col in band.columns:
        if band[col].dtype.kind in "fi":
            _close(got[col], band[col])
        else:
            assert got[col].tolist() == band[col].tolist()
    v = tr.c1_verdict(band)
    assert c1["verdict"]["verdict"] == v.verdict and c1["verdict"]["estimate"] == v.estimate
    assert c1["label_agreement"] == tr.label_agreement(band)
    # the seed band's mean and t-interval of ΔP at the first llama transition, by hand (t(0.975; 2) = 4.303)
    t0 = traj[(traj.family == "tiny-llama")].pivot(index="seed", columns="step", values="P")
    d = (t0[2] - t0[0]).to_numpy()
    half = 4.302652729911275 * d.std(ddof=1) / np.sqrt(3)
    row = got[(got.family == "tiny-llama") & (got.j == 1)].iloc[0]
    assert row.dP == pytest.approx(d.mean()) and row.dP_lo == pytest.approx(d.mean() - half)
    # per-seed item bootstrap: the same checkpoints rebuilt here
    runs = {b["run_id"]: b for b in c1["item_bootstrap"]["runs"]}
    assert set(runs) == {"S1", "S1-seed1", "S1-seed2", "G1", "G1-seed1", "G1-seed2"}
    for run_name, b in runs.items():
        fam = b["family"]
        recs = sorted(
            [r for (m, t, s), r in files.items() if t == C and s == "verbatim" and r["run"] == run_name],
            key=lambda r: r["step"],
        )
        recs = [files[(fam, C, "verbatim")], *recs]
        cks = [
            tr.CheckpointItems(
                float(0 if i == 0 else r["step"]),
                np.array(r["correct"]),
                [np.array(s) for s in r["settings"]["P0"]["sets"]],
                [np.array(s) for s in r["settings"]["P0-first4"]["sets"]],
            )
            for i, r in enumerate(recs)
        ]
        p0 = recs[0]["settings"]["P0"]
        want = tr.item_bootstrap_transitions(cks, p0["n_units"] * p0["n_layers"], n_boot=N_ITEM_BOOT, seed=0)
        got_b = _frame(b["table"])
        for col in want.columns:
            _close(got_b[col], want[col])


def _finals(files: dict) -> pd.DataFrame:
    rows = []
    for (model, task, s), r in files.items():
        if task != C or s != "verbatim" or r["checkpoint"] or r["role"] == "seed":
            continue
        tw = files[(model, C, "twins")]
        rows.append(
            {
                "run_id": r["run"] or r["root"],
                "family": r["root"],
                "P": _P(r),
                "mui": _mui(r["settings"]["P0"]),
                "P_twin": _P(tw),
                "contaminated": r["role"] == "dose",
            }
        )
    return pd.DataFrame(rows)


def test_cor2_numbers_equal_direct_calls(rep, files):
    c2 = rep["cor2"]
    assert c2["status"] == "run" and (c2["n_pos"], c2["n_neg"]) == (3, 8)
    fin = _finals(files)
    scores = ct.detector_scores(fin)
    got = _frame(c2["scores"]).set_index("run_id").loc[scores["run_id"]]
    for d in (*ct.DETECTORS, "zD4"):
        _close(got[d], scores[d])
    # D4 by hand: the verbatim − twin gap in points
    _close(got["D4"], fin["P"] - fin["P_twin"])
    auroc = ct.detector_auroc(scores, n_boot=N_BOOT)
    ga = _frame(c2["auroc"])
    assert ga["what"].tolist() == auroc["what"].tolist()
    for col in ("estimate", "lo", "hi", "n_pos", "n_neg"):
        _close(ga[col], auroc[col])
    # matched accuracy against the clean R* checkpoints (seeds 0-2, steps > 0)
    contam, clean = [], []
    for (_, task, s), r in files.items():
        if task != C or s != "verbatim":
            continue
        row = {
            "run_id": r["run"],
            "family": r["root"],
            "step": r["step"],
            "P": _P(r),
            "mui": _mui(r["settings"]["P0"]),
        }
        if r["role"] == "dose":
            contam.append(row)
        elif r["run"] in ("S1", "G1", "S1-seed1", "S1-seed2", "G1-seed1", "G1-seed2"):
            clean.append({**row, "seed": r["seed"]})
    contam = pd.DataFrame(contam).sort_values(["family", "run_id", "step"]).reset_index(drop=True)
    matches = ct.matched_accuracy(contam, pd.DataFrame(clean))
    gm = _frame(c2["matches"]).sort_values(["family", "run_id", "step"]).reset_index(drop=True)
    for col in ("match_seed", "match_step", "dP_match", "dMUI_match"):
        _close(gm[col], matches[col])
    assert gm["matched"].tolist() == matches["matched"].tolist()
    dm = ct.matched_dmui(matches, n_boot=N_BOOT)
    assert [c2["dmui_match"][k] for k in ("estimate", "lo", "hi", "n")] == pytest.approx(
        [dm.estimate, dm.lo, dm.hi, dm.n]
    )
    v = ct.c2_verdict(auroc, dm)
    assert c2["verdict"]["verdict"] == v.verdict and c2["verdict"]["signature"] == v.signature
    # the sign table against the root's and R*'s MUI, read here
    st = _frame(c2["sign_table"]).set_index("run_id")
    for run, fam in (("S1-dose50", "tiny-llama"), ("S1-dose100", "tiny-llama"), ("G1-dose50", "tiny-gemma")):
        model = f"{fam}-{run}"
        mu = _mui(files[(model, C, "verbatim")]["settings"]["P0"])
        d_root = mu - _mui(files[(fam, C, "verbatim")]["settings"]["P0"])
        d_rstar = mu - _mui(files[(f"{fam}-{RSTAR[fam]}", C, "verbatim")]["settings"]["P0"])
        assert st.loc[run, "dMUI_root"] == pytest.approx(d_root) and st.loc[run, "sign_root"] == np.sign(
            d_root
        )
        assert st.loc[run, "dMUI_rstar"] == pytest.approx(d_rstar)


def test_cor3_numbers_equal_direct_calls(rep, files):
    c3 = rep["cor3"]
    assert c3["status"] == "run"
    rows = []
    for (model, task, s), r in files.items():
        if task != C or s != "verbatim" or r["checkpoint"] or r["role"] == "seed":
            continue
        rows.append(
            {
                "run_id": r["run"] or r["root"],
                "family": r["root"],
                "P": _P(r),
                "mui": _mui(r["settings"]["P0"]),
                "tau": r["tau"],
                "R": np.mean([_P(files[(model, t, "twins")]) for t in LAW]),
            }
        )
    pts = pd.DataFrame(rows)
    assert c3["n"] == len(pts) == 11
    cv = cmp.fair_comparison_cv(pts, n_boot=N_BOOT)
    got = _frame(c3["table"])
    assert got["model"].tolist() == list(cmp.CV_MODELS)
    for col in ("mse", "rho", "rho_lo", "rho_hi", "tau_b"):
        _close(got[col], cv.table[col])
    assert c3["verdict"]["verdict"] == cmp.c3_verdict(cv).verdict
    assert c3["length_matches_mui"] == cv.length_matches_mui
    # ρ by hand from the CV errors: 1 − MSE(M1)/MSE(M0)
    pred = _frame(c3["predictions"])
    rho = 1 - (pred["err_M1"] ** 2).mean() / (pred["err_M0"] ** 2).mean()
    assert got.set_index("model").loc["M1", "rho"] == pytest.approx(rho)


def test_cor4_numbers_equal_direct_calls(rep, files, zoo):
    c4 = rep["cor4"]
    assert c4["status"] == "run" and c4["embedder"]["name"] == "tfidf-svd64"
    items = {t: json.loads((zoo / "items" / f"{t}.json").read_text()) for t in LAW}
    prompts = {t: items[t]["prompts"] for t in LAW}
    pts = sorted(
        (r["root"], r["role"] != "base", m)
        for (m, t, s), r in files.items()
        if t == C and s == "verbatim" and not r["checkpoint"] and r["role"] in ("base", "law")
    )
    models = [m for _, _, m in pts]
    points = pd.DataFrame(
        {
            "run_id": [files[(m, C, "verbatim")]["run"] or f for f, _, m in pts],
            "family": [f for f, _, _ in pts],
        }
    )
    assert _frame(c4["points"])["model"].tolist() == models
    keys = {
        m: {t: [np.array(s) for s in files[(m, t, "verbatim")]["settings"]["P0"]["sets"]] for t in LAW}
        for m in models
    }
    units = {m: files[(m, C, "verbatim")]["settings"]["P0"]["n_units"] * 3 for m in models}
    datasets = dv.designed_datasets({t: 8 for t in LAW}, n_items=DATASET_N, draws=10, seed=0)
    mui = np.array([dv.dataset_mui(datasets, keys[m], units[m]) for m in models])
    # dataset 0's MUI of the first point by hand: the union of its items' key sets
    d0 = datasets[datasets.dataset == 0]
    u = set().union(*(set(keys[models[0]][t][i].tolist()) for t, i in zip(d0.task, d0.item)))
    assert mui[0, 0] == pytest.approx(100 * len(u) / units[models[0]])
    ng = dv.dataset_ngrams(datasets, prompts)
    emb = tfidf_svd_embed([p for t in LAW for p in prompts[t]])
    lab = kmeans(emb, KMEANS_K, n_init=20, seed=0).labels
    cl = dv.dataset_clusters(datasets, {C: lab[:8], OTHER: lab[8:]})
    taus = dv.diversity_delta_tau(datasets, points, mui, {"n-grams": ng, "k-means": cl}, n_boot=N_BOOT)
    a = c4["c4a"]
    assert "error" not in a, a
    meas = _frame(a["measures"])
    _close(meas["n-grams"], ng)
    _close(meas["k-means"], cl)
    _close(meas[[f"mui:{m}" for m in models]].to_numpy().T, mui)
    assert a["baseline_tau"] == pytest.approx(taus.baseline_tau)
    _close(_frame(a["per_point"])["delta_tau"], taus.per_point["delta_tau"])
    assert [a["delta"][k] for k in ("estimate", "lo", "hi")] == pytest.approx(
        [taus.delta.estimate, taus.delta.lo, taus.delta.hi]
    )
    assert a["verdict"]["verdict"] == dv.c4a_verdict(taus).verdict
    acc = {t: np.array([files[(m, t, "verbatim")]["correct"] for m in models], dtype=float) for t in LAW}
    bases = [m for f, tuned, m in pts if not tuned]
    cells = dv.subset_selection(
        acc,
        points,
        {b: keys[b] for b in bases},
        prompts,
        {C: emb[:8], OTHER: emb[8:]},
        n_random=N_RANDOM,
        n_boot=N_BOOT,
    )
    b = c4["c4b"]
    gc = _frame(b["cells"])
    assert len(gc) == len(LAW) * 2 * 2
    for col in ("tau_greedy", "q95_random", "percentile", "tau_kmq", "tau_lexical", "tau_random_mean"):
        _close(gc[col], cells.cells[col])
    adv = cells.advantage
    assert [b["advantage"][k] for k in ("estimate", "lo", "hi")] == pytest.approx(
        [adv.estimate, adv.lo, adv.hi], nan_ok=True
    )
    assert b["verdict"]["verdict"] == dv.c4b_verdict(cells).verdict


def test_causal_numbers_equal_direct_calls(rep, zoo):
    cs = rep["causal"]
    assert cs["status"] == "run" and cs["n_points"] == 4
    effects = {}
    for p in sorted((zoo / "causal").glob("*__logprob.json")):
        d = json.loads(p.read_text())
        clean, key, rnd = np.array(d["clean"]), np.array(d["key"]), np.array(d["random"])
        effects[d["model"]] = e = ca.causal_effect(clean - key, clean[:, None] - rnd, n_boot=N_BOOT)
        got = cs["logprob"][d["model"]]
        assert [got[k] for k in ("E", "lo", "hi", "dlogp_key", "dlogp_random")] == pytest.approx(
            [e.e, e.lo, e.hi, e.mean_key, e.mean_random]
        )
        # E by hand: mean over items of Δlogp_key − mean over draws of Δlogp_random
        assert got["E"] == pytest.approx(np.mean((clean - key) - (clean[:, None] - rnd).mean(axis=1)))
    assert set(effects) == {"tiny-llama", "tiny-gemma", "tiny-llama-S1", "tiny-gemma-G1"}
    for p in sorted((zoo / "causal").glob("*__accuracy.json")):
        d = json.loads(p.read_text())
        a = ca.accuracy_effect(d["clean"], d["key"], d["random"], n_boot=N_BOOT)
        assert cs["accuracy"][d["model"]]["dAcc"] == pytest.approx(a.d_acc)
    d = json.loads((zoo / "causal" / f"tiny-llama__{C}__sae-logprob.json").read_text())
    clean = np.array(d["clean"])
    s = ca.causal_effect(clean - np.array(d["key"]), clean[:, None] - np.array(d["random"]), n_boot=N_BOOT)
    assert cs["sae_logprob"]["tiny-llama"]["E"] == pytest.approx(s.e)
    v = ca.causal_verdict(effects, n_points=4)
    assert cs["verdict"]["label"] == v.label and cs["verdict"]["n_positive"] == v.n_positive


def test_sae_health_table_by_hand(rep, zoo):
    h = rep["sae_health"]
    assert h["status"] == "run"
    got = _frame(h["table"]).set_index("model")
    recs = {p.stem: json.loads(p.read_text()) for p in (zoo / "sae_health").glob("*.json")}
    assert list(got.index) == ["tiny-llama", "tiny-llama-S1"]  # the base first
    base = recs["tiny-llama"]
    for m, r in recs.items():
        fve = r["all_layers"]["medians"]["fve_pooled"]
        ce = r["ce"]["medians"]["ce_loss_recovered"]
        assert got.loc[m, "fve_pooled"] == fve and got.loc[m, "ce_loss_recovered"] == ce
        assert got.loc[m, "d_fve_pooled"] == pytest.approx(fve - base["all_layers"]["medians"]["fve_pooled"])
        assert got.loc[m, "d_ce_loss_recovered"] == pytest.approx(
            ce - base["ce"]["medians"]["ce_loss_recovered"]
        )


def test_fidelity_section_in_the_card(zoo, tmp_path):
    """The card of the bundle the health records used gets the zoo-fidelity section, its rows the records' own
    medians, Δ against the base by hand; a second run replaces the section instead of adding one."""
    recs = [json.loads(p.read_text()) for p in sorted((zoo / "sae_health").glob("*.json"))]
    suite = recs[0]["suite"]
    assert {r["suite"] for r in recs} == {suite}
    card = tmp_path / "saes" / suite / "card.md"
    card.parent.mkdir(parents=True)
    card.write_text("# card\n\nbody\n")
    assert _run(zoo, tmp_path) == 0
    text = card.read_text()
    assert text.startswith(
        "# card\n\nbody\n\n<!-- zoo-v2 fidelity: begin -->\n## Fidelity on the zoo's models"
    )
    rows = {
        ln.split(" | ")[0].lstrip("| "): ln.split(" | ")
        for ln in text.splitlines()
        if ln.startswith("| tiny")
    }
    base = next(r for r in recs if r["run"] is None)
    fb = base["all_layers"]["medians"]["fve_pooled"]
    for r in recs:
        fve = r["all_layers"]["medians"]["fve_pooled"]
        tokens = np.median([x["n_tokens"] for x in r["all_layers"]["per_layer"].values()])
        assert rows[r["model"]][4] == f"{tokens:.0f}"
        assert rows[r["model"]][5] == f"{fve:.3f}"
        assert rows[r["model"]][6] == f"{fve - fb:+.3f}"
        assert rows[r["model"]][2] == (r["run"] or "–")
        gold = r["gold"]["medians"]["fve_pooled"]
        assert rows[r["model"]][14] == f"{gold:.3f}"
        assert rows[r["model"]][15].rstrip(" |") == f"{gold - base['gold']['medians']['fve_pooled']:+.3f}"
    tuned = [r for r in recs if r["run"] is not None]
    d = [r["all_layers"]["medians"]["fve_pooled"] - fb for r in tuned]
    assert (
        f"Over the {len(tuned)} non-base model(s) with a base row: Δ pooled FVE median {np.median(d):+.3f}"
        in text
    )
    assert _run(zoo, tmp_path) == 0
    assert card.read_text() == text
    # no card directory: named, nothing written, exit 0
    assert _run(zoo, tmp_path / "elsewhere") == 0
    assert not (tmp_path / "elsewhere" / "saes").exists()


def test_splice_section():
    from saemui.io import splice_section

    once = splice_section("a\n", "m", "x")
    assert once == "a\n\n<!-- m: begin -->\nx\n<!-- m: end -->\n"
    assert splice_section(once + "tail\n", "m", "y") == "a\n\n<!-- m: begin -->\ny\n<!-- m: end -->\ntail\n"
    with pytest.raises(SaemuiError, match="expected one"):
        splice_section(once + once, "m", "y")


# ----- the script ------------------------------------------------------------------------------------------


def test_script_markdown_and_figures(script_out, rep):
    md = (script_out / "cor.md").read_text()
    assert md.startswith("# Study v2: the corollaries and the causal check, generated tables")
    assert "python scripts/reproduce_study_corollaries.py" in md and "do not edit by hand" in md
    for head in ("## §8.1", "## §8.2", "## §8.3", "## §8.4", "## §8.5", "## W10"):
        assert head in md
    for part in ("cor1", "cor2", "cor3"):
        assert f"**{rep[part]['verdict']['verdict']}**" in md
    assert f"Causal: **{rep['causal']['verdict']['label']}**" in md
    assert "\n\n\n" not in md
    figs = sorted(p.name for p in (script_out / "fig").glob("*.png"))
    assert figs == [
        "causal.png",
        "cor1_seed_band.png",
        "cor2_detectors.png",
        "cor3_cv.png",
        "cor4_diversity.png",
    ]


def test_report_functions_give_the_script_outputs(zoo, script_out):
    """What a notebook calls gives what the script writes: report() the JSON document, markdown() the tables
    from that document alone (read back from the file), figures() one figure per file the script saved."""
    rep = scr.report(zoo, _options())
    assert compact_json(rep.data) == (script_out / "cor.json").read_text()
    md = scr.markdown(json.loads((script_out / "cor.json").read_text()))
    assert md == (script_out / "cor.md").read_text()
    assert sorted(scr.figures(rep)) == sorted(p.stem for p in (script_out / "fig").glob("*.png"))


def test_a_deviation_is_labelled_in_the_tables(script_out):
    """The corollary tables carry the same deviation label as the law tables (text checked there)."""
    from saemui.analysis.study_report import deviation_line

    rep = json.loads((script_out / "cor.json").read_text())
    assert rep["deviation"] is None and not deviation_line(None)
    rep["deviation"] = {"D1": {"base_shots": 5}}
    assert deviation_line(rep["deviation"])[0] in scr.markdown(rep).splitlines()


def test_script_is_deterministic(zoo, script_out, tmp_path):
    assert _run(zoo, tmp_path, "--no-figures") == 0
    assert (tmp_path / "cor.json").read_bytes() == (script_out / "cor.json").read_bytes()
    assert (tmp_path / "cor.md").read_bytes() == (script_out / "cor.md").read_bytes()


def test_missing_parts_are_not_run(zoo, tmp_path):
    part = tmp_path / "results"
    shutil.copytree(zoo, part)
    shutil.rmtree(part / "causal")
    shutil.rmtree(part / "sae_health")
    for p in part.glob("*__*__*.json"):
        d = json.loads(p.read_text())
        if d["role"] in ("seed", "dose") or d["model"] == "tiny-llama-S1@2":
            p.unlink()
    assert _run(part, tmp_path, "--no-figures") == 0
    rep = json.loads((tmp_path / "cor.json").read_text())
    for k in ("cor1", "cor2", "causal", "sae_health"):
        assert rep[k]["status"] == "not run", k
    # the stages that would make the records are named, with the spec's stage ids
    assert "eval:tiny-llama-S1@2:arith-1:verbatim" in rep["cor1"]["missing_stages"]
    assert "eval:tiny-llama-S1@2:arith-1:verbatim" in rep["cor1"]["not_run"]
    assert rep["cor1"]["not_run"].startswith("stage groups 0, 2 and 4")
    assert "eval:tiny-llama-S1-dose50:arith-1:twins" in rep["cor2"]["missing_stages"]
    want = [
        f"causal:{p}:{C}:{a}"
        for p in ("tiny-llama", "tiny-gemma", "tiny-llama-S1", "tiny-gemma-G1")
        for a in ("logprob", "accuracy")
    ]
    assert sorted(rep["causal"]["missing_stages"]) == sorted([*want, f"causal:tiny-llama:{C}:sae-logprob"])
    assert set(rep["sae_health"]["missing_stages"]) == {f"health:tiny-llama:{C}", f"health:tiny-llama-S1:{C}"}
    # Cor. 3 and 4 still run on the clean points (no dose run in Cor. 3 now)
    assert rep["cor3"]["status"] == "run" and rep["cor3"]["n"] == 8
    assert rep["cor4"]["status"] == "run"
    md = (tmp_path / "cor.md").read_text()
    assert md.count("**Not run**: stage groups") == 4
    # a part that ran on a partial build gives an interim verdict, flagged in the JSON and the summary row
    assert rep["cor3"]["missing_stages"] and rep["cor3"]["interim"] is True
    n3 = len(rep["cor3"]["missing_stages"])
    assert f"| §8.3 Cor. 3, fair comparison | run | interim, partial build ({n3} records missing): " in md
    assert "any verdict below is **interim**, not a result of the study" in md


def test_a_complete_part_is_not_interim(rep):
    assert rep["causal"]["status"] == "run" and rep["causal"]["missing_stages"] == []
    assert rep["causal"]["interim"] is False


def test_interim_figure_titles(zoo, tmp_path):
    """A part's figure says INTERIM in its title exactly when the part ran on a partial build."""
    part = tmp_path / "results"
    shutil.copytree(zoo, part)
    gone = next(
        p for p in sorted(part.glob("*__*__twins.json")) if json.loads(p.read_text())["role"] == "law"
    )
    gone.unlink()
    rep = scr.report(part, _options())
    assert rep.data["cor3"]["interim"] and not rep.data["causal"]["interim"]
    figs = scr.figures(rep)
    assert "INTERIM, partial build" in figs["cor3_cv"].texts[0].get_text()
    assert "INTERIM" not in figs["causal"].texts[0].get_text()


def test_refuses_without_any_record(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _run(empty, tmp_path) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "holds no v2 record" in err
    assert not (tmp_path / "cor.json").exists()
    assert _run(tmp_path / "absent", tmp_path) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_stage0_only_runs_nothing(zoo, tmp_path):
    only0 = tmp_path / "stage0"
    shutil.copytree(zoo / "items", only0 / "items")
    shutil.copy(zoo / "eligibility.json", only0)
    for p in zoo.glob("*__*__*.json"):
        if json.loads(p.read_text())["role"] == "base":
            shutil.copy(p, only0)
    assert _run(only0, tmp_path, "--no-figures") == 0
    rep = json.loads((tmp_path / "cor.json").read_text())
    assert all(
        rep[k]["status"] == "not run" for k in ("cor1", "cor2", "cor3", "cor4", "causal", "sae_health")
    )
    assert "0 of them fine-tuned" in rep["cor4"]["not_run"]


def test_c1_needs_every_family(zoo, tmp_path, monkeypatch):
    # a "supported" C1 on the families present becomes inconclusive while a family has no seed trajectories
    part = tmp_path / "results"
    shutil.copytree(zoo, part)
    for p in part.glob("tiny-gemma-G1-seed*__*.json"):
        p.unlink()
    monkeypatch.setattr(
        tr,
        "c1_verdict",
        lambda band, level=0.95: tr.CorollaryVerdict(
            "C1", "s", 1.0, (np.nan, np.nan), level, len(band), "supported"
        ),
    )
    assert _run(part, tmp_path, "--no-figures") == 0
    c1 = json.loads((tmp_path / "cor.json").read_text())["cor1"]
    assert c1["families_without_seeds"] == ["tiny-gemma"]
    assert (
        c1["verdict"]["verdict"] == "inconclusive"
        and "tiny-gemma without seed trajectories" in c1["verdict"]["note"]
    )
    assert set(_frame(c1["band"])["family"]) == {"tiny-llama"}


def test_cut3_takes_the_reference_from_c_twins_only(zoo, files, monkeypatch):
    """§9 cut 3 drops the other law tasks' twins, so Cor. 3's reference R is P on C's twins alone."""
    from saemui.zoo.spec_v2 import apply_cuts

    cut = apply_cuts(scr.spec_for("tiny-v2"), 3)
    monkeypatch.setattr(scr, "spec_for", lambda zoo_name: cut)
    rep = scr.report(zoo, _options())
    c3 = rep.data["cor3"]
    assert rep.context.twin_tasks == [C] and rep.context.law == list(LAW)
    assert c3["status"] == "run" and c3["twin_tasks"] == [C]
    pts = _frame(c3["points"])
    assert len(pts) == 11
    for r in pts.itertuples():
        assert r.R == pytest.approx(_P(files[(r.model, C, "twins")]))
    assert "R = P on the twins of C only (§9 cut 3" in scr.markdown(rep.data)


def test_one_family_study_runs_within_the_family(zoo, tmp_path, monkeypatch):
    """§11 case (3): with a one-family eligibility.json and spec, every part reads the family's records only (the
    other root's stage-0 records take no part), C1 does not wait for the other family's seeds, and the causal
    check counts the family's base and R* only."""
    from saemui.zoo.spec_v2 import one_family

    one = tmp_path / "one"
    one_family_copy(zoo, one, "tiny-llama", "tiny-gemma")
    spec = one_family(scr.spec_for("tiny-v2"), "tiny-llama")
    assert spec.rstar == ("S1",)
    monkeypatch.setattr(scr, "spec_for", lambda zoo_name: spec)
    rep = scr.report(one, _options())
    cx = rep.context
    assert cx.law == list(LAW) and cx.C == C and cx.causal_points == 2
    assert {r["root"] for r in cx.records} == {"tiny-llama"}
    assert rep.data["cor1"]["status"] == "run" and rep.data["cor1"]["families_without_seeds"] == []
    assert set(_frame(rep.data["cor1"]["band"])["family"]) == {"tiny-llama"}
    for part in ("cor2", "cor3", "causal"):
        assert rep.data[part]["status"] == "run", (part, rep.data[part])
    assert set(_frame(rep.data["cor3"]["points"])["family"]) == {"tiny-llama"}


def test_report_and_markdown_of_one_part(zoo, rep):
    """A notebook's one-corollary view: report(parts=) runs only that part, with the numbers of the full report;
    markdown(parts=) has only its summary row and section; an unknown part is refused."""
    one = scr.report(zoo, _options(), parts=("sae_health",))
    assert one.data["sae_health"] == rep["sae_health"]
    assert {one.data[k]["status"] for k in scr.PARTS if k != "sae_health"} == {"not requested"}
    md = scr.markdown(one.data, parts=("sae_health",))
    assert "## W10 SAE health" in md and "## §8.1" not in md and "| §8.1 Cor. 1" not in md
    assert md.count("\n| W10 SAE health | run |") == 1
    full = scr.markdown(rep)
    assert md.split("## W10 SAE health")[1] == full.split("## W10 SAE health")[1]
    with pytest.raises(SaemuiError, match="parts: expected some of cor1"):
        scr.markdown(rep, parts=("cor9",))
