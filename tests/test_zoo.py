"""The zoo: spec validation, plan/cost, tiny end-to-end build, resumability, reproduce scripts."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from zoo_fixtures import load_script

from saemui.errors import SaemuiError
from saemui.reproduce import KINDS
from saemui.zoo import (
    Rates,
    TrainData,
    ZooModel,
    ZooSpec,
    ZooTask,
    format_plan,
    plan,
    real_zoo,
    tiny_zoo,
    training_pairs,
    validate,
)

REPO = Path(__file__).resolve().parents[1]

TASKS = (ZooTask("arith-1"), ZooTask("arith-2"))
ROOT = ZooModel("r", "some/model")


def _spec(*models: ZooModel, **kw) -> ZooSpec:
    return ZooSpec("t", (ROOT, *models), TASKS, n_items=4, **kw)


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (ZooModel("r", "x"), "appears twice"),
        (ZooModel("a b", "x"), "name may only use"),
        (ZooModel("a", "r", "distill"), "derivation 'distill' unknown"),
        (ZooModel("a", "nope", "lora-finetune", TrainData("arith"), steps=2), "base 'nope' is not a model"),
        (ZooModel("a", "r", "lora-finetune", steps=2), "needs training data"),
        (
            ZooModel("a", "r", "lora-finetune", TrainData("eval-items", tasks=("arith-1",)), steps=2),
            "go together",
        ),
        (
            ZooModel("a", "r", "contaminated-finetune", TrainData("arith"), method="lora", steps=2),
            "go together",
        ),
        (
            ZooModel(
                "a",
                "r",
                "contaminated-finetune",
                TrainData("eval-items", tasks=("arc",)),
                method="lora",
                steps=2,
            ),
            "does not evaluate",
        ),
        (
            ZooModel("a", "r", "contaminated-finetune", TrainData("eval-items", tasks=("arith-1",)), steps=2),
            "method must be",
        ),
        (ZooModel("a", "r", "lora-finetune", TrainData("arith"), steps=0), "must be positive"),
        (ZooModel("a", "r", "lora-finetune", TrainData("arith", levels=(4,)), steps=2), "levels"),
        (ZooModel("a", "r", "full-finetune", TrainData("arith"), method="lora", steps=2), "contradicts"),
        (ZooModel("a", "r", "checkpoint-of", step=1), "needs a fine-tune"),
        (ZooModel("r2", "r", "none", TrainData("arith")), "no training data"),
    ],
)
def test_validation_errors(model, message):
    with pytest.raises(SaemuiError, match=message):
        validate(_spec(model))


def test_checkpoint_validation():
    ft = ZooModel("ft", "r", "lora-finetune", TrainData("arith"), steps=10, save_every=5)
    validate(_spec(ft, ZooModel("ft@5", "ft", "checkpoint-of", step=5)))
    with pytest.raises(SaemuiError, match="not saved"):
        validate(_spec(ft, ZooModel("ft@3", "ft", "checkpoint-of", step=3)))
    with pytest.raises(SaemuiError, match="between 1 and 9"):
        validate(_spec(ft, ZooModel("ft@10", "ft", "checkpoint-of", step=10)))
    with pytest.raises(SaemuiError, match="start from a root"):
        validate(_spec(ft, ZooModel("ft2", "ft", "lora-finetune", TrainData("arith"), steps=2)))
    with pytest.raises(SaemuiError, match="no models"):
        validate(ZooSpec("t", (), TASKS))
    with pytest.raises(SaemuiError, match="not a root model"):
        validate(_spec(ft, saes=(("ft", "saes/x"),)))


def test_real_zoo_spec_and_plan(tmp_path):
    spec = real_zoo()
    assert len(spec.models) >= 8 and len(spec.tasks) >= 3
    kinds = {m.derivation for m in spec.models}
    assert kinds == {"none", "lora-finetune", "full-finetune", "checkpoint-of", "contaminated-finetune"}
    stages = plan(spec, tmp_path / "results", tmp_path / "cache")
    assert sum(s.kind == "eval" for s in stages) == len(spec.models) * len(spec.tasks)
    assert {s.model for s in stages if s.kind == "train"} == {m.name for m in spec.models if m.trains}
    text = format_plan(spec, stages)
    assert "remaining:" in text and "eval:smollm2:arith-1" in text
    # a faster measured rate lowers the estimate proportionally for that root's stages
    fast = plan(
        spec, tmp_path / "results", tmp_path / "cache", Rates(fwd_tok_s=(("smollm2-135m-instruct", 900.0),))
    )
    slow_s = {s.id: s.cost_s for s in stages}
    assert fast[0].cost_s == pytest.approx(slow_s[fast[0].id] / 2)
    with pytest.raises(SaemuiError, match="matches no model"):
        plan(spec, tmp_path, tmp_path, only=["nothing*"])


def test_arith_training_data_never_contains_eval_questions():
    spec = tiny_zoo("a", "b")
    clean = spec.model("llama-lora-arith")
    pairs = training_pairs(spec, clean, "chat")
    from saemui.zoo import eval_items

    evalq = {it.fields["question"] for t in spec.tasks for it in eval_items(spec, t)}
    assert len(pairs) == clean.data.n and not evalq & {p for p, _ in pairs}
    base = training_pairs(spec, clean, "base")
    assert base[0][0].endswith("Answer:") and base[0][1].startswith(" The answer is")
    contam = training_pairs(spec, spec.model("llama-contam-arith1"), "chat")
    assert {p for p, _ in contam} <= evalq and len(contam) == spec.n_items


def test_tiny_zoo_end_to_end(tiny_zoo_build, tmp_path, capsys):
    results, cache, mod = tiny_zoo_build
    files = sorted(results.glob("*.json"))
    spec = mod.tiny_spec(cache)
    assert len(files) == len(spec.models) * len(spec.tasks)
    rec = json.loads(files[0].read_text())
    for key in (
        "mui",
        "per_layer",
        "accuracy",
        "n",
        "selection",
        "basis",
        "config",
        "correct",
        "set_sizes",
        "fingerprint",
    ):
        assert key in rec
    assert rec["n"] == spec.n_items and len(rec["correct"]) == rec["n"] and rec["sets"] is not None
    # one items file per task (text for the lexical baseline), matching the records' item ids
    for t in spec.tasks:
        items = json.loads((results / "items" / f"{t.name}.json").read_text())
        assert len(items["prompts"]) == spec.n_items and all(items["prompts"])
        assert items["ids"] == json.loads((results / f"tiny-llama__{t.name}.json").read_text())["ids"]
    assert "seconds" not in json.dumps(rec)  # committed files must be deterministic
    # weights live in the cache, LoRA checkpoints as adapters
    assert (
        cache / "zoo" / "tiny" / "weights" / "llama-lora-arith" / "step-8" / "adapter_model.safetensors"
    ).is_file()
    # contamination control reaches high accuracy on its own items
    c = json.loads((results / "llama-contam-arith1__arith-1.json").read_text())
    assert c["accuracy"] >= 0.5 and c["contaminated"] == ["arith-1"]

    # resumable: a second run does no work
    capsys.readouterr()
    assert mod.main(["--tiny", "--results", str(results), "--cache", str(cache)]) == 0
    assert "ran 0 stage(s)" in capsys.readouterr().out
    assert mod.main(["--tiny", "--plan", "--results", str(results), "--cache", str(cache)]) == 0
    assert "remaining: 0 of" in capsys.readouterr().out

    # every reproduce script writes its figure
    out = tmp_path / "figures"
    for kind in KINDS:
        assert (
            load_script(f"reproduce_{kind}").script_main(
                kind, ["--results", str(results), "--out", str(out), "--n-boot", "50"]
            )
            == 0
        )
    for stem in (
        "law",
        "tasks_mui",
        "training_llama-lora-arith",
        "contamination_llama-contam-arith1",
        "comparison",
        "diversity_tiny-llama",
        "diversity_tiny-gemma",
        "sensitivity",
    ):
        assert (out / f"{stem}.png").stat().st_size > 0 and (out / f"{stem}.pdf").is_file()
    summary = json.loads((out / "contamination_summary.json").read_text())
    assert summary["n_contaminated_points"] == 2
    text = (out / "zoo_summary.md").read_text()
    assert "AUROC" in text and "Kendall" in text and "## Diversity" in text
    assert json.loads((out / "zoo_summary.json").read_text())["contamination"]["auroc"] == summary["auroc"]


def test_changed_spec_reruns_only_affected_stages(tiny_zoo_build, tmp_path):
    results, cache, mod = tiny_zoo_build
    spec = mod.tiny_spec(cache)
    assert not any(s.needed for s in plan(spec, results, cache))
    models = tuple(replace(m, lr=m.lr * 2) if m.name == "llama-full-arith" else m for m in spec.models)
    changed = replace(spec, models=models)
    todo = {s.id for s in plan(changed, results, cache) if s.needed}
    assert todo == {"train:llama-full-arith"} | {f"eval:llama-full-arith:{t.name}" for t in spec.tasks}


def test_plot_cli(tiny_zoo_build, tmp_path):
    from saemui.cli import main

    results, _, _ = tiny_zoo_build
    assert main(["plot", "sensitivity", "--results", str(results), "--out", str(tmp_path)]) == 0
    assert (tmp_path / "sensitivity.png").is_file()
    assert main(["plot", "law", "--results", str(tmp_path / "missing"), "--out", str(tmp_path)]) == 2


def test_training_resumes_after_interruption(tmp_path, monkeypatch):
    import torch
    from safetensors.torch import load_file

    from saemui import zoo
    from saemui.models import load_model
    from saemui.testing import save_tiny_model
    from saemui.zoo import finetune

    # a fresh model: the session-wide tiny_llama may carry TransformerLens bridges from other tests
    tiny_llama = load_model(str(save_tiny_model(tmp_path, "llama")), device="cpu")

    spec = tiny_zoo("unused-llama", "unused-gemma")
    m = replace(
        spec.model("llama-full-arith"), method=None, steps=6, save_every=2, derivation="lora-finetune"
    )
    spec = replace(spec, models=(*spec.models[:2], m))
    # a clock that advances 1 s per reading: the resumed run must report the seconds the straight run does
    clock = {"t": 0.0}

    def tick():
        clock["t"] += 1.0
        return clock["t"]

    monkeypatch.setattr(finetune.time, "perf_counter", tick)
    straight = zoo.train(spec, m, tiny_llama, tmp_path / "straight", log_fn=lambda s: None)
    assert straight["resumed_at_step"] == 0

    calls = {"n": 0}
    real = finetune._save_state

    def crash_after_first(path, state):
        real(path, state)
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyboardInterrupt  # as if killed right after the step-2 state was written

    monkeypatch.setattr(finetune, "_save_state", crash_after_first)
    with pytest.raises(KeyboardInterrupt):
        zoo.train(spec, m, tiny_llama, tmp_path / "resumed", log_fn=lambda s: None)
    logs = []
    resumed = zoo.train(spec, m, tiny_llama, tmp_path / "resumed", log_fn=logs.append)
    assert any("resuming" in line and "step 2" in line for line in logs)
    assert resumed["resumed_at_step"] == 2 and resumed["seconds"] == straight["seconds"] > 0
    a = load_file(tmp_path / "straight" / "final" / "adapter_model.safetensors")
    b = load_file(tmp_path / "resumed" / "final" / "adapter_model.safetensors")
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert not (tmp_path / "resumed" / "train_state.pt").exists()


def test_evaluate_with_sae_bundle(tmp_path, tiny_llama):
    from saemui.testing import save_synthetic_sae
    from saemui.zoo import evaluate

    suite = tmp_path / "saes"
    for layer in range(tiny_llama.n_layers):
        save_synthetic_sae(suite / f"layer_{layer}", 64, 48, f"blocks.{layer}.hook_resid_post", seed=layer)
    root = ZooModel("r", tiny_llama.name)
    spec = validate(
        ZooSpec("t", (root,), (ZooTask("arith-1", max_new_tokens=6),), n_items=3, saes=(("r", str(suite)),))
    )
    rec, timing = evaluate(spec, root, spec.tasks[0], tiny_llama, tmp_path / "gen.jsonl")
    assert rec["n"] == 3 and rec["basis"].startswith("neurons")
    assert rec["sae"] is not None and 0 <= rec["sae"]["mui"] <= 1 and len(rec["sae"]["per_layer"]) == 3
    # SAE per-sample sets in global ids; their union is the SAE MUI numerator
    sae = rec["sae"]
    assert len(sae["sets"]) == 3 and [len(x) for x in sae["sets"]] == sae["set_sizes"]
    union = set().union(*map(set, sae["sets"]))
    assert len(union) == sae["union_size"] and max(union) < sae["n_units"] * sae["n_layers"]
    assert sae["mui"] == pytest.approx(len(union) / (sae["n_units"] * sae["n_layers"]))
    assert timing["n_generated"] == 3
    rec2, timing2 = evaluate(spec, root, spec.tasks[0], tiny_llama, tmp_path / "gen.jsonl")
    assert timing2["n_generated"] == 0 and rec2 == rec  # cached generations, deterministic record


@pytest.mark.parametrize("family", ["llama", "gemma", "gpt2"])
def test_response_loss_equals_hf_loss(tiny_models, family):
    """Logits only from the first labelled token on give exactly the HF loss over the labelled tokens."""
    import torch

    from saemui.zoo import response_loss

    model = tiny_models[family].model
    g = torch.Generator().manual_seed(0)
    inp = torch.randint(3, 200, (3, 12), generator=g)
    att = torch.ones_like(inp)
    att[2, 9:] = 0  # right padding
    lab = torch.full_like(inp, -100)
    lab[0, 5:12] = inp[0, 5:12]  # prompt lengths 5, 7, 4: the batch's first label is at 4
    lab[1, 7:10] = inp[1, 7:10]
    lab[2, 4:9] = inp[2, 4:9]
    with torch.no_grad():
        ref = model(input_ids=inp, attention_mask=att, labels=lab).loss
        ours = response_loss(model, inp, att, lab)
    assert torch.allclose(ours, ref, atol=1e-5), (float(ours), float(ref))
    with pytest.raises(SaemuiError, match="no labelled"):
        response_loss(model, inp, att, torch.full_like(inp, -100))


def test_build_locks_per_root(tmp_path):
    """A build holding root A's lock refuses a second build of A but not a build of root B only."""
    from saemui import zoo
    from saemui.zoo import builder

    spec = zoo.tiny_zoo("unused-llama", "unused-gemma")
    cache_root = zoo.zoo_cache(spec, tmp_path)
    cache_root.mkdir(parents=True)
    ran = []

    def fake_run(spec, stages, *a, **k):
        ran.append(sorted({spec.root_of(spec.model(s.model)).name for s in stages if s.needed}))

    import unittest.mock as um

    with (
        um.patch.object(builder, "_run_stages", fake_run),
        builder._build_lock(cache_root / "build-tiny-llama.lock"),
    ):
        with pytest.raises(SaemuiError, match="same root model"):
            zoo.build(spec, tmp_path / "res", tmp_path, only=["llama-lora-arith"])
        zoo.build(spec, tmp_path / "res", tmp_path, only=["tiny-gemma"])
    assert ran == [["tiny-gemma"]]


def test_committed_summary_regenerates_from_committed_results(tmp_path):
    """figures/zoo_summary.{md,json} are exactly what `saemui plot summary` computes from results/zoo (seeded
    bootstrap and random subsets), so the numbers quoted from them can be re-derived offline."""
    committed = REPO / "figures" / "zoo_summary.md"
    if not committed.is_file() or not any((REPO / "results" / "zoo").glob("*__*.json")):
        pytest.skip("no committed zoo results / summary")
    out = tmp_path / "figures"
    assert (
        load_script("reproduce_summary").script_main(
            "summary", ["--results", str(REPO / "results" / "zoo"), "--out", str(out)]
        )
        == 0
    )
    assert (out / "zoo_summary.md").read_text() == committed.read_text()
    assert (out / "zoo_summary.json").read_text() == (REPO / "figures" / "zoo_summary.json").read_text()
