"""Zoo analysis glue on hand-made result records: each number equals the analysis function on the same inputs."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from saemui.analysis import zoo as az
from saemui.analysis.comparison import utility_adjusted_score
from saemui.analysis.contamination import contamination_scores
from saemui.analysis.law import fit_law
from saemui.analysis.stats import auroc, kendall_tau
from saemui.errors import SaemuiError

N = 9
# model: (derivation, parent, step, contaminated tasks, in-domain, {task: (n_correct, mui)})
MODELS = {
    "a": ("none", None, None, [], [], {"t1": (1, 0.050), "t2": (2, 0.040)}),
    "b": ("none", None, None, [], [], {"t1": (3, 0.035), "t2": (4, 0.030)}),
    "c": ("lora-finetune", "a", 30, [], ["t1"], {"t1": (6, 0.020), "t2": (5, 0.025)}),
    "c@10": ("checkpoint-of", "c", 10, [], ["t1"], {"t1": (2, 0.045), "t2": (2, 0.038)}),
    "c@20": ("checkpoint-of", "c", 20, [], ["t1"], {"t1": (4, 0.030), "t2": (2, 0.030)}),
    "d": ("full-finetune", "b", 20, [], ["t2"], {"t1": (5, 0.028), "t2": (7, 0.018)}),
    "x": ("contaminated-finetune", "a", 20, ["t1"], ["t1"], {"t1": (9, 0.060), "t2": (2, 0.041)}),
}


def _records():
    out = []
    for name, (der, parent, step, cont, ind, tasks) in MODELS.items():
        for task, (k, mui) in tasks.items():
            base = 0 if task == "t1" else 20
            sets = [[base + i % 3, base + 3 + i % 3] for i in range(N)]
            out.append(
                {
                    "schema": az.RESULT_SCHEMA,
                    "model": name,
                    "task": task,
                    "root": "a" if name in ("a", "c", "c@10", "c@20", "x") else "b",
                    "derivation": der,
                    "parent": parent,
                    "step": step,
                    "train_steps": 30 if name.startswith("c") else None,
                    "in_domain": ind,
                    "contaminated": cont,
                    "n": N,
                    "n_correct": k,
                    "accuracy": k / N,
                    "mui": mui,
                    "mui_correct": None,
                    "selection": "topk:k=1",
                    "basis": "neurons:down_input",
                    "n_units": 10,
                    "n_layers": 8,
                    "sets": sets,
                    "sensitivity": [
                        {"threshold": "topk:0.001", "mui": mui},
                        {"threshold": "topk:0.002", "mui": mui * 1.5 + (0.01 if name == "b" else 0)},
                    ],
                }
            )
    return out


@pytest.fixture
def recs():
    return _records()


@pytest.fixture
def df(recs):
    return az.load_zoo(recs)


def test_load_from_directory(tmp_path, recs):
    for r in recs:
        (tmp_path / f"{r['model']}__{r['task']}.json").write_text(json.dumps(r))
    df = az.load_zoo(tmp_path)
    assert len(df) == len(recs)
    row = df[(df.model == "x") & (df.task == "t1")].iloc[0]
    assert row.contaminated and row.contaminated_model and row.in_domain
    assert row.perf == pytest.approx(100 * 9.5 / 10) and row.mui == pytest.approx(6.0)
    with pytest.raises(SaemuiError, match="no zoo results"):
        az.load_records(tmp_path / "none")
    (tmp_path / "bad__t.json").write_text(json.dumps({"schema": "other"}))
    with pytest.raises(SaemuiError, match="not a zoo result"):
        az.load_records(tmp_path)


def test_law_equals_fit_law(df):
    res = az.law_analysis(df, "all", n_boot=100)
    pts = res["points"]
    exp_perf = [np.mean([100 * (k + 0.5) / (N + 1) for k, _ in MODELS[m][5].values()]) for m in pts["model"]]
    exp_mui = [np.mean([100 * v for _, v in MODELS[m][5].values()]) for m in pts["model"]]
    for form in ("mui_from_perf", "perf_from_mui"):
        ref = fit_law(exp_perf, exp_mui, form=form)
        got = res["fits"][form]
        assert got.slope == pytest.approx(ref.slope) and got.intercept == pytest.approx(ref.intercept)
        assert got.r2 == pytest.approx(ref.r2)
    clean = az.law_analysis(df, "clean", n_boot=100)
    assert "x" not in set(clean["points"]["model"]) and clean["fits"]["mui_from_perf"].n == 6
    t = clean["table"]
    assert (t["slope_lo"] <= t["slope"]).all() and (t["slope"] <= t["slope_hi"]).all()


def test_law_independent_subset_and_per_task_by_hand(df):
    """'independent' drops contaminated models and intermediate checkpoints; per-task fits are an OLS of P on
    ln MUI over that task's clean points (numpy polyfit by hand)."""
    ind = az.law_analysis(df, "independent", n_boot=50)
    assert sorted(ind["points"]["model"]) == ["a", "b", "c", "d"]
    pt = az.law_per_task(df, "clean", n_boot=50)["table"]
    assert sorted(set(pt["task"])) == ["t1", "t2"] and len(pt) == 4
    for task in ("t1", "t2"):
        names = [m for m in MODELS if m != "x"]
        perf = [100 * (MODELS[m][5][task][0] + 0.5) / (N + 1) for m in names]
        mui = [100 * MODELS[m][5][task][1] for m in names]
        slope, intercept = np.polyfit(np.log(mui), perf, 1)
        row = pt[(pt.task == task) & (pt.form == "perf_from_mui")].iloc[0]
        assert row.slope == pytest.approx(slope) and row.intercept == pytest.approx(intercept)
        assert row.n_models == 6 and row.slope_lo <= row.slope <= row.slope_hi
    with pytest.raises(SaemuiError, match="subset: expected one of"):
        az.law_analysis(df, "some")
    # a task where every clean model scores the same has no slope: skipped with the reason, others still fit
    flat = df.copy()
    flat.loc[flat.task == "t2", "perf"] = 50.0
    res = az.law_per_task(flat, "clean", n_boot=20)
    assert set(res["fits"]) == {"t1"} and "all values are equal" in res["skipped"]["t2"]
    flat.loc[:, "perf"] = 50.0
    with pytest.raises(SaemuiError, match="no per-task law fit possible"):
        az.law_per_task(flat, "clean", n_boot=20)


def test_model_points_refuse_unequal_n(df):
    bad = df.copy()
    bad.loc[0, "n"] = N + 1
    with pytest.raises(SaemuiError, match="only comparable at equal n_samples"):
        az.model_points(bad)
    with pytest.raises(SaemuiError, match="lacks task"):
        az.model_points(df[~((df.model == "b") & (df.task == "t2"))])


def test_training_phases(df):
    ph = az.training_analysis(df, dead_band=(0.0, 0.0))
    t1 = ph[(ph.series == "c") & (ph.task == "t1")]
    # a (step 0) -> c@10 -> c@20 -> c (30): P 1,2,4,6 correct; MUI 5.0, 4.5, 3.0, 2.0 %
    assert list(t1["checkpoint_from"]) == ["0", "10", "20"]
    assert list(t1["phase"]) == ["Evolving", "Evolving", "Evolving"]
    t2 = ph[(ph.series == "c") & (ph.task == "t2")]
    # t2: correct 2,2,2,5 -> the first two steps have dP = 0 -> Stable
    assert list(t2["phase"]) == ["Stable", "Stable", "Evolving"]
    assert set(ph["task"]) == {"t1", "t2", "overall"}


def test_contamination_matches_leave_one_out_scores(df):
    res = az.contamination_analysis(df)
    s = res["scores"]
    t1 = df[df.task == "t1"]
    ref = t1[~t1.contaminated_model]
    fit = fit_law(ref["perf"], ref["mui"], form="perf_from_mui")
    x = t1[t1.model == "x"].iloc[0]
    exp = contamination_scores(fit, [x.perf], [x.mui])[0]
    assert s[(s.model == "x") & (s.task == "t1")]["score"].iloc[0] == pytest.approx(exp)
    a_ref = ref[ref.model != "a"]
    fit_a = fit_law(a_ref["perf"], a_ref["mui"], form="perf_from_mui")
    a = t1[t1.model == "a"].iloc[0]
    assert s[(s.model == "a") & (s.task == "t1")]["score"].iloc[0] == pytest.approx(
        contamination_scores(fit_a, [a.perf], [a.mui])[0]
    )
    assert res["auroc"] == pytest.approx(auroc(s["score"], s["contaminated"]))
    sh = res["shifts"]
    assert set(sh["model"]) == {"c", "d", "x"}
    row = sh[(sh.model == "x") & (sh.task == "t1")].iloc[0]
    assert row.domain == "in" and row.p_up_mui_up  # P and MUI both up: the signature


def test_contamination_accuracy_only_baseline_by_hand(df):
    """The sceptic's baseline: P's z-score against the same leave-one-out clean reference, MUI ignored."""
    res = az.contamination_analysis(df)
    s = res["scores"]
    for r in s.itertuples():
        g = df[(df.task == r.task) & ~df.contaminated_model & (df.model != r.model) & (df.mui > 0)]
        p = [float(v) for v in g["perf"]]
        mean = sum(p) / len(p)
        sd = (sum((v - mean) ** 2 for v in p) / (len(p) - 1)) ** 0.5
        exp = (r.perf - mean) / sd if sd > 1e-12 else r.perf - mean
        assert r.accuracy_only_score == pytest.approx(exp)
    y = s["contaminated"].tolist()
    pairs = [
        (a > b) + 0.5 * (a == b)
        for a, ya in zip(s["accuracy_only_score"], y)
        for b, yb in zip(s["accuracy_only_score"], y)
        if ya and not yb
    ]
    assert res["auroc_accuracy_only"] == pytest.approx(sum(pairs) / len(pairs))


def test_comparison(df):
    res = az.comparison_analysis(df, alpha=0.5, n_boot=100)
    pts = az.model_points(df)
    exp = utility_adjusted_score(pts["perf"], pts["mui"], 0.5)
    got = res["ranks"].set_index("model").loc[list(pts["model"]), "score"].to_numpy()
    assert np.allclose(got, exp)
    assert -1 <= res["tau"].tau <= 1 and len(res["sweep"]) == 11


def test_diversity_and_sensitivity(recs):
    div = az.diversity_analysis(recs, model="a", n_perm=20)
    assert set(div["jaccard"].index) == {"t1", "t2"} and div["jaccard"].loc["t1", "t1"] == 1.0
    a1 = next(r for r in recs if r["model"] == "a" and r["task"] == "t1")
    union = len({u for s in a1["sets"] for u in s})
    assert div["curves"]["t1 (random)"].mean[-1] == pytest.approx(100 * union / 80)
    mix = div["mix"].set_index("model")
    # each task reuses 6 units; 4 + 4 mixed samples cover 12, 8 samples of one task only 6
    assert mix.loc["a", "mixed_gt_single"]
    sens = az.sensitivity_analysis(recs)
    assert list(sens["model_means"].columns) == ["k=0.001", "k=0.002"]
    assert sens["taus"].iloc[0]["tau_vs_main"] == pytest.approx(1.0)
    assert isinstance(sens["table"], pd.DataFrame)
    # points also measured in an SAE basis get a row of their own in that basis (width from the record)
    sae_mui = {"a": 0.011, "b": 0.013, "c": 0.012}
    with_sae = [
        dict(
            r,
            sae={"basis": "bundle-x", "selection": "topscore:0.9", "n_units": 64, "mui": sae_mui[r["model"]]},
        )
        if r["model"] in sae_mui
        else r
        for r in recs
    ]
    sens = az.sensitivity_analysis(with_sae)
    row = sens["table"].loc[("b", "t1", "bundle-x", 64, "-")]
    assert row["eta=0.9"] == pytest.approx(1.3) and np.isnan(row["k=0.001"])
    taus = sens["taus"].set_index("selection")
    wide = sens["model_means"]
    assert taus.loc["eta=0.9", "n_models"] == 3
    # a point's SAE row does not depend on an earlier record having neuron sensitivity entries
    first = dict(with_sae[0], sensitivity=None)
    assert (first["model"], first["task"]) == ("a", "t1")
    table = az.sensitivity_analysis([first, *with_sae[1:]])["table"]
    assert table.loc[("a", "t1", "bundle-x", 64, "-"), "eta=0.9"] == pytest.approx(1.1)
    assert taus.loc["eta=0.9", "tau_vs_main"] == pytest.approx(
        kendall_tau([1.1, 1.3, 1.2], wide.loc[["a", "b", "c"], "k=0.001"])
    )
    bad = [dict(r, sets=None) for r in recs]
    with pytest.raises(SaemuiError, match="not kept"):
        az.diversity_analysis(bad, model="a")


def _subset_records(tmp_path):
    """4 models × 10 items of task t; the root r's key sets and the prompts make greedy orders known by hand."""
    r_sets = [[0, 1, 2, 3], [0, 1], [4, 5, 6], [2], [7], [], [], [], [], []]
    correct = {
        "r": [1, 0, 1, 0, 0, 1, 0, 0, 1, 0],
        "m1": [1, 1, 1, 0, 1, 1, 0, 1, 1, 0],
        "m2": [0, 0, 1, 1, 0, 0, 0, 0, 0, 1],
        "m3": [1, 1, 0, 1, 1, 1, 1, 1, 0, 0],
    }
    ids = [f"q{i}" for i in range(10)]
    recs = [
        {
            "model": m,
            "task": "t",
            "derivation": "none" if m == "r" else "lora-finetune",
            "ids": ids,
            "correct": c,
            "sets": r_sets if m == "r" else None,
            "sae": {"sets": [[x + 100 for x in s] for s in r_sets]} if m == "r" else None,
        }
        for m, c in correct.items()
    ]
    prompts = ["x y"] * 8 + ["g h i j", "a b c d e f"]
    (tmp_path / "items").mkdir()
    (tmp_path / "items" / "t.json").write_text(json.dumps({"ids": ids, "prompts": prompts}))
    return recs, correct


def test_subset_analysis_against_hand_computation(tmp_path):
    from scipy.stats import kendalltau

    recs, correct = _subset_records(tmp_path)
    acc = np.array(list(correct.values()), dtype=float)
    full = acc.mean(1)
    # greedy by hand: units 0-3 (q0), 4-6 (q2), 7 (q4), then nothing new; bigrams: q9 (5), q8 (3), q0 (x y)
    mui_pick = {0.2: [0, 2], 0.5: [0, 2, 4, 1, 3]}
    lex_pick = {0.2: [9, 8], 0.5: [9, 8, 0, 1, 2]}
    for basis in ("neurons", "sae"):
        t = az.subset_analysis(recs, tmp_path, fractions=(0.2, 0.5), basis=basis, n_random=0)
        assert list(t["selector"]) == ["r", "r"] and list(t["n_items"]) == [2, 5]
        for row in t.itertuples():
            want_mui = kendalltau(full, acc[:, mui_pick[row.fraction]].mean(1)).statistic
            want_lex = kendalltau(full, acc[:, lex_pick[row.fraction]].mean(1)).statistic
            assert row.tau_mui == pytest.approx(want_mui) and row.tau_lexical == pytest.approx(want_lex)
            assert np.isnan(row.tau_random_mean)
        assert t["cov_mui"].tolist() == pytest.approx([7 / 8, 1.0])
        assert t["cov_lexical"].tolist() == pytest.approx([0.0, 7 / 8])  # q9, q8 have no units; q0,q1,q2 7
    rnd = az.subset_analysis(recs, tmp_path, fractions=(0.5,), n_random=30)
    assert rnd["tau_random_lo"].iloc[0] <= rnd["tau_random_mean"].iloc[0] <= rnd["tau_random_hi"].iloc[0]


def test_subset_analysis_refuses_bad_inputs(tmp_path):
    recs, _ = _subset_records(tmp_path)
    with pytest.raises(SaemuiError, match="other items"):
        az.subset_analysis([*recs[:-1], dict(recs[-1], ids=list("abcdefghij"))], tmp_path)
    with pytest.raises(SaemuiError, match="no per-sample neurons key sets"):
        az.subset_analysis(recs, tmp_path, selectors=["m1"])
    with pytest.raises(SaemuiError, match="no items file"):
        az.subset_analysis(recs, tmp_path / "elsewhere")
