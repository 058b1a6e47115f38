"""scripts/sae_recipes.py end to end on a tiny random model and a fake evals wheel (no network)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
from test_sae_data import make_fake_wheel

from saemui import sae_data as sd
from saemui import sae_train
from saemui.testing import save_tiny_model

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def load_script(name: str = "sae_recipes"):
    """A module of scripts/ loaded from its file (scripts/ is no package)."""
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def tiny_args(tmp_path: Path, wheel: Path, model: Path) -> list[str]:
    """The options both SAE scripts share, sized for a tiny model (seconds, not hours)."""
    return [
        "--model", str(model),
        "--width", "128",
        "--train-tokens", "1500",
        "--eval-seqs", "12",
        "--ce-seqs", "6",
        "--eval-source", "mix",
        "--workdir", str(tmp_path / "wd"),
        "--wheel-dir", str(wheel.parent),
    ]  # fmt: skip


def test_plan_prints_every_stage(capsys):
    mod = load_script()
    assert mod.main(["--plan"]) == 0
    out = capsys.readouterr().out
    assert "capture 300,000 tokens × 3 layers" in out and "total on 1 thread" in out
    assert all(r.name in out for r in mod.DEFAULT_RECIPES)
    cfg, _ = mod.parse_args(["--layers", "5", "15", "25"])
    rows = dict(mod.plan(cfg))
    # the v1 recipe (1 epoch at batch 512) trains on half the samples of a 2-epoch recipe at the same k
    v1 = next(s for n, s in rows.items() if n.startswith("train v1-topk-k32-b512-e1"))
    e2 = next(s for n, s in rows.items() if n.startswith("train topk-k32-b256-e2"))
    assert e2 == pytest.approx(2 * v1)


def test_end_to_end_tiny_and_resume(tmp_path, monkeypatch, tiny_dir):
    mod = load_script()
    wheel, shared = make_fake_wheel(tmp_path, monkeypatch, n=60)
    monkeypatch.setattr(sd, "EVALS_WHEEL_SHA256", sd_sha(wheel))
    monkeypatch.setattr(mod, "SHARED_DATA", shared)
    model = save_tiny_model(tiny_dir, "llama")
    args = tiny_args(tmp_path, wheel, model) + [
        "--layers", "0", "2",
        "--recipes", "topk-k32-b256-e2", "batchtopk-k32-b256-e2",
        "--out", str(tmp_path / "res.json"),
    ]  # fmt: skip
    assert mod.main(args) == 0
    res = json.loads((tmp_path / "res.json").read_text())
    assert {(r["recipe"], r["layer"]) for r in res["rows"]} == {
        (n, layer) for n in ("topk-k32-b256-e2", "batchtopk-k32-b256-e2") for layer in (0, 2)
    }
    for r in res["rows"]:
        assert r["n_tokens"] > 0 and r["ce_sequences"] == 6
        assert r["train_steps"] >= 2 and r["train_seconds"] > 0
        for k in (
            "fve_pooled",
            "fve_token_median",
            "ce_loss_recovered",
            "kl_spliced",
            "dead_frac",
            "dense_frac",
        ):
            assert k in r
    assert res["capture_sinks"]["0"]["dropped"]["position0"] > 0
    # the default run's MUI per recipe and threshold; a stricter η keeps fewer units per (sample, layer)
    mui = {(m["basis"], m["eta"]): m for m in res["default_run_mui"]}
    assert set(mui) == {(n, e) for n in ("topk-k32-b256-e2", "batchtopk-k32-b256-e2") for e in (0.9, 0.95)}
    for n in ("topk-k32-b256-e2", "batchtopk-k32-b256-e2"):
        assert 0 < mui[(n, 0.95)]["mui"] <= mui[(n, 0.9)]["mui"] <= 100
        assert (
            mui[(n, 0.9)]["l0"] == 32 and mui[(n, 0.9)]["width"] == 128 and mui[(n, 0.9)]["layers"] == [0, 2]
        )
    from saemui.testing import tiny_tokenizer

    tok = tiny_tokenizer()
    assert (
        tok.decode(sae_train.chat_prefix(tok)) == "<|im_start|>user\n"
    )  # the shared start of every chat row
    # resume: every stage is skipped (the trained SAEs are not touched), the result is identical
    sae_file = tmp_path / "wd" / "saes" / "topk-k32-b256-e2" / "L00" / "sae_weights.safetensors"
    mtime = sae_file.stat().st_mtime_ns
    assert mod.main(args) == 0
    res2 = json.loads((tmp_path / "res.json").read_text())
    assert sae_file.stat().st_mtime_ns == mtime
    assert res2["rows"] == res["rows"]
    # a killed evaluation (missing eval file) is redone alone
    (tmp_path / "wd" / "eval" / "topk-k32-b256-e2" / "L02.json").unlink()
    assert mod.main(args) == 0
    res3 = json.loads((tmp_path / "res.json").read_text())
    assert res3["rows"] == res["rows"]


def run_workers(main, args: list[str], n: int = 2) -> list[int | None]:
    """Exit codes of ``n`` forked copies of ``main(args + --workers n)`` run side by side (monkeypatches carry)."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=main, args=(args + ["--workers", str(n)],)) for _ in range(n)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(300)
    return [p.exitcode for p in procs]


def test_workers_share_the_comparison(tmp_path, monkeypatch, tiny_dir):
    """Two workers on one workdir give the rows and MUI of one process (training time aside), each unit once."""
    mod = load_script()
    wheel, shared = make_fake_wheel(tmp_path, monkeypatch, n=60)
    monkeypatch.setattr(sd, "EVALS_WHEEL_SHA256", sd_sha(wheel))
    monkeypatch.setattr(mod, "SHARED_DATA", shared)
    monkeypatch.setattr(sae_train, "POLL_SECONDS", 0.05)
    model = save_tiny_model(tiny_dir, "llama")

    def args(name: str) -> list[str]:
        return tiny_args(tmp_path / name, wheel, model) + [
            "--layers", "0", "2",
            "--recipes", "topk-k32-b256-e2", "batchtopk-k32-b256-e2",
            "--out", str(tmp_path / name / "res.json"),
        ]  # fmt: skip

    assert mod.main(args("one")) == 0
    assert run_workers(mod.main, args("two")) == [0, 0]
    one, two = (json.loads((tmp_path / n / "res.json").read_text()) for n in ("one", "two"))

    def strip(rows):
        return [{k: v for k, v in r.items() if k != "train_seconds"} for r in rows]

    assert strip(two["rows"]) == strip(one["rows"])
    assert two["default_run_mui"] == one["default_run_mui"]
    assert not list((tmp_path / "two" / "wd" / "locks").glob("*"))


def sd_sha(wheel):
    from saemui.models import sha256_file

    return sha256_file(wheel)


def test_sensitivity_grid_is_one_factor_at_a_time():
    base = sae_train.recipe_named("topk-k32-b256-e2")
    grid = sae_train.grid_recipes(base)
    assert [(r.width, r.k) for r in grid] == [(512, 32), (1024, 32), (2048, 32), (1024, 16), (1024, 64)]
    assert grid[1] is base  # the base keeps its name, so its trained SAEs are reused
    assert grid[0].name == "topk-k32-b256-e2-w512-k32" and grid[0].batch_size == 256 and grid[0].epochs == 2
    assert grid[4] is sae_train.recipe_named("topk-k64-b256-e2")  # same fields: the compared recipe's SAEs
    mod = load_script()
    cfg, _ = mod.parse_args(["--sensitivity", "topk-k32-b256-e2"])
    assert [r.name for r in cfg.recipes] == [r.name for r in grid]
    # the grid writes its own file, never over the recipe comparison's committed result
    assert (
        cfg.out == "results/sae_sensitivity.json" and mod.parse_args([])[0].out == "results/sae_recipes.json"
    )
    assert mod.parse_args(["--sensitivity", "topk-k32-b256-e2", "--out", "x.json"])[0].out == "x.json"
    # the grid is recorded as one, and its report names no "chosen recipe" (the rule is the comparison's)
    assert cfg.grid_of == "topk-k32-b256-e2" and mod.parse_args([])[0].grid_of is None
    assert mod.main(["--sensitivity", "topk-k32-b256-e2", "--recipes", "topk-k32-b128-e2", "--plan"]) == 2


def test_choose_recipe_rule():
    mod = load_script()

    def row(name, layer, fve, secs, dead=0.0):
        return {"recipe": name, "layer": layer, "fve_pooled": fve, "train_seconds": secs, "dead_frac": dead}

    rows = [
        row("a", 5, 0.70, 100), row("a", 15, 0.60, 100),  # mean 0.650
        row("b", 5, 0.71, 300), row("b", 15, 0.62, 300),  # mean 0.665: best
        row("c", 5, 0.70, 50), row("c", 15, 0.625, 50),  # mean 0.6625: within 0.005 of b, cheaper
        row("d", 5, 0.90, 10), row("d", 15, 0.90, 10, dead=0.2),  # too many dead features
    ]  # fmt: skip
    assert mod.choose_recipe(rows) == "c"
    assert mod.choose_recipe([r for r in rows if r["recipe"] != "c"]) == "b"
    with pytest.raises(mod.SaemuiError, match="dead"):
        mod.choose_recipe([r for r in rows if r["recipe"] == "d"])


def test_report_of_a_grid_chooses_nothing(capsys):
    mod = load_script()
    row = {
        "recipe": "a",
        "layer": 5,
        "fve_pooled": 0.8,
        "fve_token_median": 0.8,
        "ce_loss_recovered": 0.9,
        "kl_spliced": 0.1,
        "dead_frac": 0.0,
        "dense_frac": 0.0,
        "train_seconds": 1.0,
    }
    mod.report({"rows": [row], "config": {"grid_of": "a"}})
    assert "chosen recipe" not in capsys.readouterr().out
    mod.report({"rows": [row], "config": {"grid_of": None}})
    assert "chosen recipe (rule fixed before the results): a" in capsys.readouterr().out
