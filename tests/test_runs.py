"""saemui.runs (load_runs, equalize_n, fit_law_runs), equal-N compare_runs and the ``saemui law`` / ``saemui plot
law --runs`` commands: on hand-made result directories against hand computations, and end to end on tiny
models run with ``saemui run --task``."""

from __future__ import annotations

import json
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from run_fixtures import hand_union, make_result, save_run
from scipy.stats import linregress
from scipy.stats import t as t_dist

from saemui.analysis import zoo as az
from saemui.cli import main
from saemui.compare import compare_runs
from saemui.errors import SaemuiError
from saemui.result import load_result, wilson_interval
from saemui.runs import equalize_n, fit_law_runs, load_runs

U = 4
# three "models": 4, 5 and 6 samples with 2 layers each, accuracies 1/4, 3/5, 5/6
RUNS = {
    "/models/a": (
        [[[0], [1]], [[1], [1]], [[0, 2], []], [[3], [0]]],
        [True, False, False, False],
    ),
    "/models/b": (
        [[[0], [0]], [[1], [2]], [[2], [3]], [[0], [1]], [[1, 3], [0]]],
        [True, True, False, True, False],
    ),
    "/models/c": (
        [[[0], [0]], [[0], [1]], [[1], [0]], [[0], [0]], [[1], [1]], [[0], []]],
        [True, True, True, False, True, True],
    ),
}


@pytest.fixture
def run_dirs(tmp_path) -> list[Path]:
    return [
        save_run(tmp_path / Path(m).name, make_result(sets, U, corr, model=m, task="arith-1"))
        for m, (sets, corr) in RUNS.items()
    ]


def _hand_mui_at(sets, n) -> float:
    vals = [len(hand_union(sets, c)) / (2 * U) for c in combinations(range(len(sets)), n)]
    return 100 * sum(vals) / len(vals)


def test_load_runs_row_by_hand(run_dirs):
    df = load_runs(run_dirs)
    assert list(df.columns) == list(az.TABLE_COLUMNS)
    assert df["model"].tolist() == ["a", "b", "c"]  # model directories shown by their name
    b = df.iloc[1]
    sets, corr = RUNS["/models/b"]
    assert (b.n, b.n_labelled, b.n_correct, b.task) == (5, 5, 3, "arith-1")
    assert b.accuracy == pytest.approx(0.6) and (b.acc_lo, b.acc_hi) == pytest.approx(wilson_interval(3, 5))
    assert b.perf == pytest.approx(100 * 3.5 / 6)
    assert b.mui == pytest.approx(100 * len(hand_union(sets, range(5))) / (2 * U))
    assert b.layers == (0, 1) and b.alignment == "predicting" and b.units == "neurons"
    assert b.tokens_per_item == 5 and b.model_id == "/models/b" and b.model_sha256 == "sha-/models/b"
    assert b.source == "run" and b.path == str(run_dirs[1]) and b.derivation == "none"
    assert b.saemui_version == "0.0-test" and b.first_tokens is None


def test_load_runs_refuses_non_runs(tmp_path, run_dirs):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SaemuiError, match=f"{empty}: not a saemui run directory") as e:
        load_runs([run_dirs[0], empty])
    assert "\n" not in str(e.value)
    with pytest.raises(SaemuiError, match=r"it holds run directories \(a, b, c\): pass them"):
        load_runs(tmp_path)
    with pytest.raises(SaemuiError, match="no such run directory"):
        load_runs(tmp_path / "nope")
    other = tmp_path / "x.json"
    other.write_text(json.dumps({"schema": "something"}))
    with pytest.raises(SaemuiError, match=f"{other}: neither a saemui run directory nor a zoo record"):
        load_runs(other)


def test_load_runs_skips_the_generation_cache_beside_runs(tmp_path, run_dirs):
    # `saemui run --task --out runs/M` caches answers in runs/generations: `saemui law runs/*` passes it too
    cache = tmp_path / "generations"
    cache.mkdir()
    (cache / "m-arith-1-abc.jsonl").write_text("{}\n")
    with pytest.warns(UserWarning, match="generation cache"):
        df = load_runs([*run_dirs, cache])
    assert df["model"].tolist() == ["a", "b", "c"]
    with pytest.raises(SaemuiError, match="not a saemui run directory"):
        load_runs(cache)  # alone it is still refused


def test_short_names_keep_full_path_on_collision(tmp_path):
    sets, corr = RUNS["/models/a"]
    p1 = save_run(tmp_path / "1", make_result(sets, U, corr, model="/x/m"))
    p2 = save_run(tmp_path / "2", make_result(sets, U, corr, model="/y/m"))
    assert load_runs([p1, p2])["model"].tolist() == ["/x/m", "/y/m"]


def test_equalize_n_by_hand(run_dirs):
    eq = equalize_n(load_runs(run_dirs))
    assert eq.attrs["n_mui"] == 4 and eq.attrs["note"].startswith("subsampled to N = 4 (exact")
    for row, (sets, _) in zip(eq.itertuples(), RUNS.values()):
        assert row.mui == pytest.approx(_hand_mui_at(sets, 4))
        assert row.mui_full == pytest.approx(100 * len(hand_union(sets, range(len(sets)))) / (2 * U))
        assert row.mui_lo <= row.mui <= row.mui_hi and row.n_mui == 4
    assert eq.iloc[0].mui_lo == eq.iloc[0].mui_hi  # the smallest run is its own value
    sampled = equalize_n(load_runs(run_dirs), n=2, n_sub=3, seed=5)
    assert "3 random 2-sample subsets" in sampled.attrs["note"] and not sampled["mui_exact"].any()
    with pytest.raises(SaemuiError, match="expected 1..4"):
        equalize_n(load_runs(run_dirs), n=5)


def test_fit_law_runs_matches_hand_ols(run_dirs):
    res = fit_law_runs(run_dirs, n_boot=300)
    perf = [100 * (sum(c) + 0.5) / (len(c) + 1) for _, c in RUNS.values()]
    mui = [_hand_mui_at(s, 4) for s, _ in RUNS.values()]
    ref = linregress(np.log(perf), mui)
    fit, test = res.fits["mui_from_perf"], res.tests["mui_from_perf"]
    assert fit.slope == pytest.approx(ref.slope) and fit.intercept == pytest.approx(ref.intercept)
    q = t_dist.ppf(0.975, 1)
    assert test.ci == pytest.approx((ref.slope - q * ref.stderr, ref.slope + q * ref.stderr))
    assert test.p == pytest.approx(ref.pvalue) and test.df == 1
    inv = linregress(np.log(mui), perf)
    assert res.fits["perf_from_mui"].slope == pytest.approx(inv.slope)
    assert res.tests["perf_from_mui"].p == pytest.approx(inv.pvalue)
    assert res.n_mui == 4 and "subsampled to N = 4" in res.note
    pts = res.points.set_index("model")
    assert pts.loc["b", "acc_lo"] == pytest.approx(wilson_interval(3, 5)[0])
    s = res.summary
    assert set(s["form"]) == {"mui_from_perf", "perf_from_mui"} and (s["slope_t_lo"] <= s["slope"]).all()


def test_fit_law_runs_refusals(tmp_path, run_dirs):
    sets, corr = RUNS["/models/a"]
    odd = {
        "alignment": {"alignment": "current"},
        "layers": {"layers": [0, 2], "layer_selection": [0, 2]},
        "basis": {"basis": "bundle"},
        "first_tokens": {"first_tokens": 8},
    }
    for key, kw in odd.items():
        path = save_run(tmp_path / f"odd-{key}", make_result(sets, U, corr, model="/models/d", **kw))
        with pytest.raises(SaemuiError, match=rf"model 'd' has {key}=.* only comparable at equal {key}"):
            fit_law_runs([*run_dirs, path])
    nolab = save_run(tmp_path / "nolab", make_result(sets, U, None, model="/models/e", task=None))
    with pytest.raises(SaemuiError, match="nolab: no sample is labelled"):
        fit_law_runs([*run_dirs, nolab])
    with pytest.raises(SaemuiError, match="model 'a' has task 'arith-1' twice"):
        fit_law_runs([*run_dirs, run_dirs[0]])


def test_fit_law_runs_two_models_keeps_intervals_without_a_fit(run_dirs):
    """Two models: nothing is fitted (a line through two points has no residual, no interval, no test), but
    each point keeps its Wilson and over-subsets intervals, and the text and the plot say so."""
    from saemui.reproduce import plot_law_runs
    from saemui.runs import format_law

    res = fit_law_runs(run_dirs[1:], n=3, n_sub=50)
    assert res.fits == {} and res.tests == {} and res.summary.empty
    assert res.no_fit.startswith("no law fitted: 2 model point(s)") and "subsampled to N = 3" in res.note
    pts = res.points.set_index("model")
    for name, m in (("b", "/models/b"), ("c", "/models/c")):
        sets, corr = RUNS[m]
        assert (pts.loc[name, "acc_lo"], pts.loc[name, "acc_hi"]) == pytest.approx(
            wilson_interval(sum(corr), len(corr))
        )
        per_subset = [100 * len(hand_union(sets, c)) / (2 * U) for c in combinations(range(len(sets)), 3)]
        assert min(per_subset) <= pts.loc[name, "mui_lo"] <= pts.loc[name, "mui_hi"] <= max(per_subset)
    assert pts.loc["c", "mui_lo"] < pts.loc["c", "mui_hi"]  # 6 samples at N = 3: a real interval
    text = format_law(res)
    assert res.no_fit in text and "slope" not in text
    ax = plot_law_runs(res).axes[0]
    assert "no law fitted" in ax.get_title() and len(ax.containers) == 1  # one errorbar set: both points


def test_fit_law_runs_across_depths_and_sae_bundles(tmp_path):
    """Models of different depth measured on all their layers compare (MUI is a fraction); SAE runs of different
    models use their own bundles; one model measured in two bundles is refused."""
    paths = []
    for i, (m, (sets, corr)) in enumerate(RUNS.items()):
        res = make_result(sets, U, corr, model=m, layers=[0, 1 + i], basis=f"sae-bundle-{i}")
        paths.append(save_run(tmp_path / f"sae{i}", res))
    res = fit_law_runs(paths, n_boot=50)
    assert res.fits["mui_from_perf"].n == 3 and res.table["layer_selection"].eq("all").all()
    sets, corr = RUNS["/models/a"]
    other = make_result(sets, U, corr, model="/models/a", task="other-task", basis="sae-bundle-9")
    with pytest.raises(SaemuiError, match="model 'a' is measured in several bases"):
        fit_law_runs([*paths, save_run(tmp_path / "a-other", other)], n_boot=50)


def _zoo_record(model: str, sets, corr) -> dict:
    return {
        "schema": az.RESULT_SCHEMA,
        "model": model,
        "task": "arith-1",
        "root": model,
        "derivation": "none",
        "n": len(sets),
        "n_correct": sum(corr),
        "accuracy": sum(corr) / len(corr),
        "mui": len(hand_union(sets, range(len(sets)))) / (2 * U),
        "selection": "topk:0.001",
        "basis": "neurons:down_input",
        "layers": [0, 1],
        "config": {"units": "neurons", "alignment": "predicting", "threshold": "topk:0.001"},
        "n_units": U,
        "n_layers": 2,
        # zoo records keep global ids row * n_units + unit
        "sets": [sorted(r * U + u for r, us in enumerate(s) for u in us) for s in sets],
    }


def test_zoo_records_share_the_table_and_subsample(tmp_path, run_dirs):
    zoo = tmp_path / "zoo"
    zoo.mkdir()
    sets, corr = RUNS["/models/c"]
    (zoo / "z__arith-1.json").write_text(json.dumps(_zoo_record("z", sets, corr)))
    df = load_runs([run_dirs[0], zoo])
    assert list(df.columns) == list(az.load_zoo(zoo).columns)
    z = df.iloc[1]
    assert z.source == "zoo" and z.layers == (0, 1) and z.alignment == "predicting"
    eq = equalize_n(df)
    assert eq.iloc[1].mui == pytest.approx(_hand_mui_at(sets, 4))
    # the zoo table itself: same columns and values as load_runs gives for the record file
    direct = load_runs(zoo / "z__arith-1.json").iloc[0]
    assert direct.mui == pytest.approx(z.mui) and direct.path == str(zoo / "z__arith-1.json")


def test_compare_runs_equal_n(tmp_path):
    sets_a, _ = RUNS["/models/c"]  # 6 samples
    sets_b, _ = RUNS["/models/a"]  # 4 samples
    a = make_result(sets_a, U, ids=[f"q{i}" for i in range(6)])
    # b holds items q1, q3, q4, q5 of a: a is cut to exactly those samples
    b = make_result(sets_b, U, ids=["q1", "q3", "q4", "q5"])
    df = compare_runs(a, b)
    ua, ub = hand_union(sets_a, [1, 3, 4, 5]), hand_union(sets_b, range(4))
    assert df.attrs["n"] == 4 and "subsampled to N = 4" in df.attrs["note"] and "ids" in df.attrs["how_a"]
    allrow = df[df.layer == "all"].iloc[0]
    assert allrow[["n_a", "n_b", "shared"]].tolist() == [len(ua), len(ub), len(ua & ub)]
    assert allrow["jaccard"] == pytest.approx(len(ua & ub) / len(ua | ub)) and (df["n_samples"] == 4).all()
    # other items: counts are means over random 4-subsets of a, which lie between the hand extremes
    c = make_result(sets_b, U, ids=["x1", "x2", "x3", "x4"])
    rnd = compare_runs(a, c, n_sub=400, seed=1)
    shared = [len(hand_union(sets_a, s) & ub) for s in combinations(range(6), 4)]
    got = rnd[rnd.layer == "all"].iloc[0]["shared"]
    assert min(shared) <= got <= max(shared) and abs(got - np.mean(shared)) < 4 * np.std(shared) / 20
    assert "400 random 4-subsets of 6" in rnd.attrs["note"]
    same = compare_runs(b, b)
    assert same.attrs["note"] == "both runs at N = 4" and same["n_a"].dtype.kind == "i"


# ----- end to end: tiny models, `saemui run --task`, then `saemui law` and `saemui plot law --runs` ----------


@pytest.fixture(scope="module")
def task_runs(tmp_path_factory):
    """Three tiny llama models (seeds 0-2) on arith-1 with 4, 5 and 6 items; item i is marked correct when
    i < (1, 3, 5)[seed], so accuracies differ (a random model never answers right)."""
    from saemui.tasks.arith import Arith
    from saemui.testing import save_tiny_model

    root = tmp_path_factory.mktemp("law-runs")
    mp = pytest.MonkeyPatch()
    dirs = []
    try:
        for seed, (limit, ok) in enumerate(((4, 1), (5, 3), (6, 5))):
            model = save_tiny_model(root, "llama", seed=seed)
            mp.setattr(
                Arith, "is_correct", lambda self, pred, item, ok=ok: int(item.id.rsplit("-", 1)[1]) < ok
            )
            out = root / f"run{seed}"
            argv = ["run", "--task", "arith-1", "--limit", str(limit), "--model", str(model), "--neurons",
                    "--max-new-tokens", "4", "--out", str(out), "--quiet"]  # fmt: skip
            assert main(argv) == 0
            dirs.append(out)
    finally:
        mp.undo()
    return root, dirs


def test_law_cli_on_task_runs(task_runs, capsys):
    root, dirs = task_runs
    capsys.readouterr()
    assert main(["law", *map(str, dirs), "--n-boot", "200", "--csv", str(root / "law.csv")]) == 0
    out = capsys.readouterr().out
    assert "subsampled to N = 4" in out and "tasks arith-1" in out
    # independent: the union of every 4-subset of each run's kept sets, and OLS of MUI on ln(smoothed P)
    perf, mui = [], []
    for d in dirs:
        res = load_result(d)
        n = len(res.samples)
        k = sum(r["correct"] for r in res.samples)
        perf.append(100 * (k + 0.5) / (n + 1))
        vals = []
        for c in combinations(range(n), 4):
            u = {(r, int(x)) for s in c for r, arr in enumerate(res.sample_sets(s)) for x in arr}
            vals.append(len(u) / (len(res.layers) * res.n_units))
        mui.append(100 * np.mean(vals))
    ref = linregress(np.log(perf), mui)
    assert f"slope {ref.slope:.4f}:" in out
    table = pd.read_csv(root / "law.csv")
    assert table["mui"].to_numpy() == pytest.approx(mui, abs=1e-5) and (table["n_mui"] == 4).all()


def test_plot_law_runs_cli(task_runs, tmp_path, capsys):
    _, dirs = task_runs
    out = tmp_path / "fig"
    assert main(["plot", "law", "--runs", *map(str, dirs), "--out", str(out), "--n-boot", "100"]) == 0
    assert (out / "law_runs.png").stat().st_size > 1000 and (out / "law_runs.pdf").is_file()
    notes = json.loads((out / "law_runs_notes.json").read_text())
    assert notes["n_mui"] == 4 and notes["note"].startswith("subsampled to N = 4")
    fits = pd.read_csv(out / "law_runs_fits.csv")
    assert (fits["n_mui"] == 4).all() and (fits["slope_t_lo"] <= fits["slope_t_hi"]).all()
    capsys.readouterr()
    assert main(["plot", "training", "--runs", *map(str, dirs), "--out", str(out)]) == 2
    assert "kinds with --runs: law, comparison" in capsys.readouterr().err


def test_law_and_plot_cli_on_two_runs_at_smaller_n(task_runs, tmp_path, capsys):
    """Issue 20: two models' task runs to a law plot with intervals, in one command each."""
    _, dirs = task_runs
    two = [str(d) for d in dirs[1:]]  # 5 and 6 items
    capsys.readouterr()
    assert main(["law", *two, "--n", "3", "--n-sub", "50"]) == 0
    out = capsys.readouterr().out
    assert "subsampled to N = 3 (" in out and "no law fitted: 2 model point(s)" in out
    fig = tmp_path / "fig"
    assert main(["plot", "law", "--runs", *two, "--n", "3", "--out", str(fig)]) == 0
    assert (fig / "law_runs.png").stat().st_size > 1000
    table = pd.read_csv(fig / "law_runs_table.csv")
    assert (table["n_mui"] == 3).all() and (table["mui_lo"] < table["mui_hi"]).all()
    assert json.loads((fig / "law_runs_notes.json").read_text())["n_mui"] == 3
    capsys.readouterr()
    assert main(["plot", "law", "--n", "3", "--out", str(fig)]) == 2
    assert "--n applies to --runs only" in capsys.readouterr().err


def test_law_cli_refuses_other_layers(task_runs, capsys):
    root, dirs = task_runs
    odd = root / "odd-layers"
    argv = ["run", "--task", "arith-1", "--limit", "4", "--model", str(root / "tiny-llama-0"), "--neurons",
            "--max-new-tokens", "4", "--layers", "0-1", "--out", str(odd), "--quiet"]  # fmt: skip
    assert main(argv) == 0
    capsys.readouterr()
    assert main(["law", *map(str, dirs[1:]), str(odd)]) == 2
    err = capsys.readouterr().err
    assert (
        "has layers='0-1' but 'tiny-llama-1' has layers='all'" in err
        and "only comparable at equal layers" in err
        and err.count("\n") == 1
    )
    assert main(["law", *map(str, dirs), str(root)]) == 2
    assert "not a saemui run directory" in capsys.readouterr().err
