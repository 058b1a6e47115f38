"""The v2 zoo (docs/study/protocol.md §3–§5, §7–§9): spec = §4's table, item sets, training mixtures and dose
mixing, the stage-0 law-task rule, the §9 plan, a tiny end-to-end build (stage 0, law evals, twins, G, B,
checkpoints, a dose run) and its resumability."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from zoo_fixtures import build_tiny_v2, load_script

from saemui.errors import SaemuiError
from saemui.tasks.base import Item
from saemui.tasks.itemsets import normalize_prompt, shuffled_option_twins
from saemui.tasks.sources import find_data_file
from saemui.zoo.data_v2 import (
    candidate_sets,
    check_sets,
    excluded_prompts,
    exemplar_items,
    gold_samples,
    sets_digest,
    styled_pairs,
    task_of,
    training_examples,
)
from saemui.zoo.spec_v2 import (
    CANDIDATES,
    StudyRun,
    allocate,
    apply_cuts,
    one_family,
    resolve_sources,
    validate_v2,
    zoo_v2,
)
from saemui.zoo.stages_v2 import EvalSpec, StudyRates, eval_items, format_plan_v2, law_outcome, plan_v2

REPO = Path(__file__).resolve().parents[1]
LAW3 = ("arith-1", "arith-2", "arith-3")

# §4's table, transcribed by hand: run, family root, method, r, lr, data, steps, seed
TABLE = [
    ("S1", "smollm2", "lora", 8, 2e-4, (("mix", 1.0),), 120, 0),
    ("S2", "smollm2", "lora", 8, 2e-4, (("mix", 1.0),), 40, 3),
    ("S3", "smollm2", "lora", 4, 1e-4, (("E1", 1.0),), 80, 4),
    ("S4", "smollm2", "lora", 32, 5e-4, (("E2+E3", 1.0),), 80, 5),
    ("S5", "smollm2", "lora", 8, 5e-5, (("mix", 1.0),), 60, 6),
    ("S6", "smollm2", "lora", 16, 2e-4, (("mix", 0.5), ("arc-train", 0.5)), 120, 7),
    ("S7", "smollm2", "lora", 8, 2e-4, (("arc-train", 1.0),), 60, 8),
    ("S8", "smollm2", "lora", 8, 2e-4, (("E3", 1.0),), 120, 11),
    ("S9", "smollm2", "full", None, 2e-5, (("mix", 1.0),), 60, 9),
    ("S10", "smollm2", "full", None, 1e-5, (("mix", 0.5), ("arc-train", 0.5)), 120, 10),
    ("G1", "gemma3", "lora", 8, 2e-4, (("mix", 1.0),), 120, 0),
    ("G2", "gemma3", "lora", 4, 1e-4, (("E1", 1.0),), 40, 3),
    ("G3", "gemma3", "lora", 32, 5e-4, (("E2+E3", 1.0),), 60, 4),
    ("G4", "gemma3", "lora", 8, 5e-5, (("mix", 1.0),), 60, 5),
    ("G5", "gemma3", "lora", 16, 2e-4, (("mix", 0.5), ("arc-train", 0.5)), 80, 6),
    ("G6", "gemma3", "full", None, 2e-5, (("mix", 1.0),), 60, 7),
]


def _arith_spec():
    """The registered v2 spec (two families, no D1) with candidates 1-5 only (no ARC data needed)."""
    return validate_v2(replace(zoo_v2(cuts=0, d1=False, family=None), candidates=CANDIDATES[:5]))


def test_spec_is_the_protocol_table():
    spec = zoo_v2(cuts=0, family=None)
    law = [r for r in spec.runs if r.role == "law"]
    assert [(r.name, r.root, r.method, r.lora_r, r.lr, r.data, r.steps, r.seed) for r in law] == TABLE
    assert all(r.lora_alpha == (None if r.lora_r is None else 2 * r.lora_r) for r in spec.runs)
    for fam, rstar in (("smollm2", "S1"), ("gemma3", "G1")):
        r = spec.run(rstar)
        assert r.checkpoints == (10, 20, 40, 60, 90) and r.steps == 120
        seeds = [x for x in spec.runs if x.role == "seed" and x.root == fam]
        assert sorted(x.seed for x in seeds) == [1, 2]
        assert all(replace(x, name=rstar, seed=0, role="law") == r for x in seeds)
        doses = [x for x in spec.runs if x.role == "dose" and x.root == fam]
        assert sorted(x.dose for x in doses) == [0.1, 0.3, 1.0]
        assert all(
            x.checkpoints == (60,) and x.seed == 0 and x.data == r.data and x.steps == 120 for x in doses
        )
    assert (spec.n_items, spec.n_pairs, spec.batch_size, spec.max_length) == (200, 600, 8, 256)
    assert [t.name for t in spec.candidates] == [
        "arith-1",
        "arith-2",
        "arith-3",
        "arith-2d1d",
        "arith-larger",
        "arc",
        "gsm8k",
    ]
    assert dict(spec.candidates[0].options) == {"distinct": True, "operand_max": 29}
    assert [t.max_new_tokens for t in spec.candidates] == [48] * 5 + [64, 256]
    assert [r.style for r in spec.roots] == ["chat", "base"]


def test_case3_spec_is_the_registered_smollm2_half():
    """§11 case (3): the default spec keeps SmolLM2's runs of §4's table unchanged (S1-S10, R* seeds and doses)
    and both roots (Gemma's stage 0 decided the case); a Gemma run in it, or an unknown family, is refused."""
    two, one = zoo_v2(cuts=0, family=None), zoo_v2(cuts=0)
    assert one.family == "smollm2" and [r.name for r in one.roots] == ["smollm2", "gemma3"]
    assert one.runs == tuple(r for r in two.runs if r.root == "smollm2") and len(one.runs) == 15
    assert one.rstar == ("S1",) and two.rstar == ("S1", "G1")
    assert replace(one, family=None, runs=two.runs, rstar=two.rstar) == two
    with pytest.raises(SaemuiError, match="has runs of that root only"):
        validate_v2(replace(one, runs=two.runs))
    with pytest.raises(SaemuiError, match="family 'llama' is not a root"):
        validate_v2(replace(one, family="llama"))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"method": "adam"}, "method must be"),
        ({"lora_r": None}, "lora_r is given"),
        ({"data": (("E9x", 1.0),)}, "unknown"),
        ({"data": (("mix", 0.4),)}, "sum to 1"),
        ({"checkpoints": (120,)}, "checkpoints"),
        ({"dose": 0.2}, "dose run"),
        ({"root": "llama"}, "not a root"),
    ],
)
def test_run_validation(change, message):
    spec = zoo_v2()
    bad = replace(spec.runs[1], **change)
    with pytest.raises(SaemuiError, match=message):
        validate_v2(replace(spec, runs=(*spec.runs, replace(bad, name="X1"))))


def test_source_resolution_and_allocation():
    # m = 3: the table's sources; shares by hand
    assert allocate(600, resolve_sources((("mix", 1.0),), LAW3)) == [(t, 200) for t in LAW3]
    mixed = allocate(600, resolve_sources((("mix", 0.5), ("arc-train", 0.5)), LAW3))
    assert mixed == [("arith-1", 100), ("arith-2", 100), ("arith-3", 100), ("arc-train", 300)]
    assert allocate(600, resolve_sources((("E2+E3", 1.0),), LAW3)) == [("arith-2", 300), ("arith-3", 300)]
    # m < 3 (§4): "E2 + E3" = the law tasks other than E1; E3 falls back to the last law task
    two = ("arith-1", "arith-2d1d")
    assert allocate(600, resolve_sources((("E2+E3", 1.0),), two)) == [("arith-2d1d", 600)]
    assert allocate(600, resolve_sources((("E3", 1.0),), two)) == [("arith-2d1d", 600)]
    assert allocate(600, resolve_sources((("E2+E3", 1.0),), ("arith-1",))) == [("arith-1", 600)]
    # largest remainder: 7 pairs over thirds -> 3, 2, 2
    assert allocate(7, resolve_sources((("mix", 1.0),), LAW3)) == [(t, n) for t, n in zip(LAW3, (3, 2, 2))]
    with pytest.raises(SaemuiError, match="no law tasks"):
        resolve_sources((("mix", 1.0),), ())


def test_items_distinct_and_disjoint_across_tasks_twins_and_training():
    spec = _arith_spec()
    sets = candidate_sets(spec)
    evals = {name: [normalize_prompt(it.fields["question"]) for it in s.items] for name, s in sets.items()}
    twins = {name: [normalize_prompt(it.fields["question"]) for it in s.twins] for name, s in sets.items()}
    for name in sets:
        assert len(evals[name]) == len(set(evals[name])) == 200
        assert len(twins[name]) == len(set(twins[name])) == 200
    every = [p for v in (*evals.values(), *twins.values()) for p in v]
    assert len(every) == len(set(every))  # no prompt twice anywhere: eval/eval, eval/twin, twin/twin
    # arith-1 at 0–29 shares prompts with arith-2d1d's space: the lower-priority task skips them
    overlap = {f"what is {a} + {b}?" for a in range(10, 30) for b in range(1, 10)}
    assert set(evals["arith-1"]) & overlap  # arith-1 does draw from the shared region
    # twins: same operation, operands redrawn, gold recomputed
    for it, tw in zip(sets["arith-2"].items, sets["arith-2"].twins):
        assert tw.fields["op"] == it.fields["op"]
        assert tw.gold == (
            tw.fields["a"] + tw.fields["b"] if tw.fields["op"] == "+" else tw.fields["a"] - tw.fields["b"]
        )
    banned = set(every)
    assert excluded_prompts(sets) == frozenset(banned)
    for run in spec.runs:
        if "arc-train" in {s for s, _ in run.data}:
            continue
        ex = training_examples(spec, run, LAW3, sets)
        assert len(ex) == 600
        clean = [normalize_prompt(e.prompt) for e in ex if not e.source.endswith(":eval")]
        assert not set(clean) & banned, run.name
        # generator seeds >= 1000, offset by the run's seed
        assert all(e.id.split("-")[-2] == str(1000 + run.seed) for e in ex if e.task and ":" not in e.source)
    counts = check_sets(spec, sets)
    assert counts["arith-1"]["n_distinct_prompts"] == 200 and counts["arith-1"]["n_twins"] == 200
    # the canonical count is reported: unordered sums collapse a + b and b + a
    canon = {tuple(sorted((it.fields["a"], it.fields["b"]))) for it in sets["arith-1"].items}
    assert counts["arith-1"]["n_canonical"] == len(canon) < 200


def test_check_stops_on_an_eval_prompt_in_training():
    spec = _arith_spec()
    sets = candidate_sets(spec)
    ex = training_examples(spec, spec.run("S2"), LAW3, sets)
    leaked = ex[:-1] + [replace(ex[-1], prompt=sets["arith-2"].items[5].fields["question"])]
    with pytest.raises(SaemuiError, match="arith-2: 1 eval prompt"):
        check_sets(spec, sets, {"smollm2-S2": leaked})


def test_dose_mixing_counts():
    spec = _arith_spec()
    sets = candidate_sets(spec)
    rstar = training_examples(spec, spec.run("S1"), LAW3, sets)
    c_clean = [e for e in rstar if e.source == "arith-1"]
    assert len(c_clean) == 200
    for d, k in ((0.1, 20), (0.3, 60), (1.0, 200)):
        run = spec.run(f"S1-dose{round(100 * d)}")
        ex = training_examples(spec, run, LAW3, sets)
        contam = [e for e in ex if e.source == "arith-1:eval"]
        assert len(ex) == 600 and len(contam) == k
        # the first k eval items of C with their gold in the training template, replacing the last k clean pairs
        assert [e.id for e in contam] == [str(it.id) for it in sets["arith-1"].items[:k]]
        assert all(e.response == f"The answer is {it.gold}." for e, it in zip(contam, sets["arith-1"].items))
        assert [e.id for e in ex if e.source == "arith-1"] == [e.id for e in c_clean[: 200 - k]]
        others = [e.id for e in ex if e.source in ("arith-2", "arith-3")]
        assert others == [e.id for e in rstar if e.source in ("arith-2", "arith-3")]
    # Gemma's dose runs mix the same way, in base style: "Answer:" prompts and a spaced answer
    g = training_examples(spec, spec.run("G1-dose30"), LAW3, sets)
    pairs = styled_pairs(spec, g, "base")
    assert sum(e.source == "arith-1:eval" for e in g) == 60
    assert pairs[0][0].endswith("\nAnswer:") and pairs[0][1].startswith(" The answer is ")


def test_d1_exemplars_gemma_only_disjoint_and_fingerprinted():
    """Deviation D1 (§11): 5 in-task exemplars in the base root's arith prompts, drawn from the generator at seed
    999 outside every eval and twin prompt and kept out of training; the chat root's prompts and fingerprints,
    and the registered spec's, do not change; the base root's arith fingerprints do."""
    from saemui.tasks.arith import BASE_EXEMPLAR
    from saemui.zoo.data_v2 import exemplar_items, exemplar_prompts, root_task
    from saemui.zoo.stages_v2 import Point, eval_fingerprint_v2, generation_key_v2, train_fingerprint_v2

    reg = _arith_spec()
    d1 = replace(reg, base_shots=5)
    sets = candidate_sets(d1)
    assert candidate_sets(reg) == sets  # D1 changes no eval item or twin
    used = excluded_prompts(sets)
    for t in d1.candidates:
        ex = exemplar_items(d1, t)
        keys = {normalize_prompt(it.fields["question"]) for it in ex}
        assert len(ex) == len(keys) == 5 and not keys & used, t.name
        assert exemplar_items(reg, t) == ()
        item = sets[t.name].items[0]
        base = root_task(d1, "gemma3", t).format_prompt(item, "base")
        shots = "".join(f"Question: {it.fields['question']}\nAnswer: {int(it.gold)}\n\n" for it in ex)
        assert base == shots + "Question: " + item.fields["question"] + "\nAnswer:"
        assert root_task(d1, "smollm2", t).format_prompt(item, "chat") == item.fields["question"]
        assert root_task(d1, "smollm2", t) == task_of(t) == root_task(reg, "gemma3", t)
    assert (
        root_task(reg, "gemma3", d1.candidate("arith-2"))
        .format_prompt(item, "base")
        .startswith(BASE_EXEMPLAR)
    )
    # training: no exemplar prompt among any run's examples; the §3.3 check covers them
    law = ("arith-1", "arith-2d1d")
    shots = exemplar_prompts(d1)
    assert len(shots) == 25
    for name in ("S1", "G1", "G1-dose100"):
        ex = training_examples(d1, d1.run(name), law, sets)
        assert not {normalize_prompt(e.prompt) for e in ex} & shots
    check_sets(d1, sets)
    g1 = training_examples(d1, d1.run("G1"), law, sets)
    for e, (prompt, _) in zip(g1, styled_pairs(d1, g1, "base", "gemma3")):
        first = exemplar_items(d1, d1.candidate(e.task))[0].fields["question"]
        assert prompt.startswith(f"Question: {first}\n") and prompt.endswith(e.prompt + "\nAnswer:")
    # fingerprints: the chat root's are unchanged, the base root's arith ones move
    t = d1.candidate("arith-1")
    fp = sets_digest(sets["arith-1"].items)
    for root, moves in (("smollm2", False), ("gemma3", True)):
        pt = Point(root, root)
        keys = [generation_key_v2(sp, pt, t, "verbatim", fp, {}) for sp in (reg, d1)]
        e = EvalSpec("0", "arith-1", "verbatim", "settings")
        fps = [eval_fingerprint_v2(sp, pt, t, e, fp, {}) for sp in (reg, d1)]
        assert (keys[0] != keys[1]) is moves and (fps[0] != fps[1]) is moves, root
    run = d1.run("G2")
    assert train_fingerprint_v2(reg, run, "x") != train_fingerprint_v2(d1, run, "x")
    assert train_fingerprint_v2(reg, d1.run("S2"), "x") == train_fingerprint_v2(d1, d1.run("S2"), "x")
    # eligibility.json names the deviation, so a D1 outcome is never read as the registered one
    from saemui.zoo.stages_v2 import LawOutcome, eligibility_summary

    out = LawOutcome((), [], {})
    assert "deviation" not in eligibility_summary(reg, out)
    assert eligibility_summary(d1, out)["deviation"] == {"D1": {"base_shots": 5, "shot_seed": 999}}
    with pytest.raises(SaemuiError, match="base_shots must be >= 1"):
        validate_v2(replace(reg, base_shots=0))


def test_gold_set_and_option_twins():
    spec = _arith_spec()
    t = spec.candidate("arith-2")
    items = candidate_sets(spec)["arith-2"].items[:3]
    chat = gold_samples(t, items, "chat")
    assert [s.response for s in chat] == [f"The answer is {it.gold}." for it in items]
    assert [s.prompt for s in chat] == [it.fields["question"] for it in items]
    base = gold_samples(t, items, "base")
    assert base[0].prompt.endswith(items[0].fields["question"] + "\nAnswer:") and base[0].response[0] == " "
    # multiple choice: options shuffled, labels kept, the gold label follows its option text
    mc = [
        Item(
            f"q{i}",
            {"question": f"Q{i}?", "labels": ["A", "B", "C", "D"], "options": ["w", "x", "y", "z"]},
            "B",
        )
        for i in range(20)
    ]
    tw = shuffled_option_twins(mc, seed=1)
    assert all(x.fields["options"] != ["w", "x", "y", "z"] for x in tw)
    assert all(sorted(x.fields["options"]) == ["w", "x", "y", "z"] for x in tw)
    assert all(x.fields["options"][["A", "B", "C", "D"].index(x.gold)] == "x" for x in tw)
    assert tw == shuffled_option_twins(mc, seed=1) and tw != shuffled_option_twins(mc, seed=2)


def test_candidate7_gsm8k_pilot_leaves_1_to_6_unchanged():
    """gsm8k (candidate 7, §11) is drawn after 1-6: their items and twins (hence their stage-0 records) do not
    move; it has 200 distinct eval items and no twins, and an eval that needs its twins stops with one line."""
    for f in ("arc/test.jsonl", "gsm8k/test.jsonl"):
        if find_data_file(f) is None:
            pytest.skip(f"shared data {f} (candidates 6-7) not available")
    full = zoo_v2(cuts=0)
    assert full.candidates[-1].name == "gsm8k"
    six = candidate_sets(validate_v2(replace(full, candidates=CANDIDATES[:6])))
    seven = candidate_sets(full)
    assert {k: v.digest for k, v in six.items()} == {k: v.digest for k, v in seven.items() if k != "gsm8k"}
    g = seven["gsm8k"]
    keys = {normalize_prompt(it.fields["question"]) for it in g.items}
    assert len(g.items) == len(keys) == 200 and g.twins == ()
    assert eval_items(seven, EvalSpec("0", "gsm8k", "verbatim", "settings")) == g.items
    with pytest.raises(SaemuiError, match="task gsm8k: stage 3 needs its twins set"):
        eval_items(seven, EvalSpec("3", "gsm8k", "twins", "settings"))
    counts = check_sets(full, seven)
    assert counts["gsm8k"]["n_distinct_prompts"] == 200


def _fake_stage0(results: Path, spec, correct: dict[tuple[str, str], int]) -> None:
    for (root, task), k in correct.items():
        f = results / f"{root}__{task}__verbatim.json"
        rec = json.loads(f.read_text())
        rec["n_correct"] = k
        f.write_text(json.dumps(rec))


def test_plan_before_stage0_and_costs_by_hand(tmp_path):
    spec = _arith_spec()
    plan = plan_v2(spec, tmp_path / "res", tmp_path / "cache")
    assert plan.outcome.law is None and len(plan.outcome.missing) == 10
    by = {s.id: s for s in plan.stages}
    groups = {}
    for s in plan.stages:
        groups[s.group] = groups.get(s.group, 0) + 1
    # 5 candidates x 2 bases; 16 law trainings; 16 finals x 3 tasks x (verbatim, G, B) + 2 bases x 3 x (G, B);
    # 18 points x 3 twins; 4 seed trainings + 34 checkpoint evals; 6 dose trainings + 6 x 2 x 2 + 6 x 2 twins
    # 2h: SmolLM2 base + S1..S10 finals; 6: 4 points x (log-prob, accuracy) + the SAE arm at the SmolLM2 base
    assert groups == {"items": 5, "0": 10, "1": 16, "2": 156, "2h": 11, "3": 54, "4": 38, "5": 42, "6": 9}
    assert not any(s.needed for s in plan.stages if s.group not in ("items", "0"))
    assert by["eval:smollm2-S2:E1:verbatim"].blocked and by["train:smollm2-S1"].blocked
    # costs by hand (§9 rates): training steps x s/step (x1.5 full); an eval: generation + 2 passes (neurons,
    # SAE) for SmolLM2, 1 for Gemma; arith prompts costed at 45 tokens
    assert by["train:smollm2-S1"].cost_s == pytest.approx(120 * 3.7)
    assert by["train:gemma3-G6"].cost_s == pytest.approx(60 * 7.5 * 1.5)
    gen = 200 * 16 / (450 / 4) + 200 * 45 / 450
    assert by["eval:smollm2-S2:E1:verbatim"].cost_s == pytest.approx(gen + 2 * 200 * (45 + 16) / 450)
    g_gen = 200 * 8 / (225 / 4) + 200 * 45 / 225
    assert by["eval:gemma3-G2:E1:verbatim"].cost_s == pytest.approx(g_gen + 200 * (45 + 8) / 225)
    assert by["eval:gemma3-G2:E1:twins"].cost_s == pytest.approx(g_gen + 200 * (45 + 8) / 225)  # C: with MUI
    assert by["eval:gemma3-G2:E2:twins"].cost_s == pytest.approx(g_gen)  # accuracy only
    assert by["eval:gemma3-G2:E1:G"].cost_s == pytest.approx(200 * (45 + 6) / 225)
    # a long-form task is costed at its budget (answer lengths were measured on ≤ 64-token tasks)
    assert (
        StudyRates().answer("gemma3-270m", False, 256) == 256
        and StudyRates().answer("gemma3-270m", False, 48) == 8
    )
    text = format_plan_v2(plan)
    assert "law tasks: unknown" in text and "2 law evals" in text and "§9" in text
    # one root per core (§9): the per-root split covers every stage and load once
    from saemui.zoo.stages_v2 import remaining_by_root, remaining_seconds

    per = remaining_by_root(plan)
    assert set(per) == {"smollm2", "gemma3"} and sum(per.values()) == pytest.approx(remaining_seconds(plan))
    assert per["gemma3"] > by["train:gemma3-G6"].cost_s > 0
    # a measured rate scales that root's stages
    fast = plan_v2(
        spec, tmp_path / "res", tmp_path / "cache", StudyRates(fwd_tok_s=(("gemma3-270m", 450.0),))
    )
    assert {s.id: s for s in fast.stages}["eval:gemma3-G2:E1:G"].cost_s == pytest.approx(200 * 51 / 450)
    with pytest.raises(SaemuiError, match="matches no model point"):
        plan_v2(spec, tmp_path / "res", tmp_path / "cache", only=["nothing*"])


def test_section9_cuts_by_hand(tmp_path):
    """§9's cuts in order: 1 one accuracy draw, 2 no Gemma 10 % dose, 3 twins on C only, 4 TF-B on C only."""
    base = _arith_spec()

    def plan(n):
        spec = apply_cuts(base, n)
        p = plan_v2(spec, tmp_path / "res", tmp_path / "cache")
        groups = {}
        for s in p.stages:
            groups[s.group] = groups.get(s.group, 0) + 1
        return spec, p, groups

    s0, p0, g0 = plan(0)
    assert s0.cuts == () and g0 == {
        "items": 5,
        "0": 10,
        "1": 16,
        "2": 156,
        "2h": 11,
        "3": 54,
        "4": 38,
        "5": 42,
        "6": 9,
    }
    s1, p1, g1 = plan(1)
    assert s1.cuts == (1,) and s1.causal_acc_draws == 1 and g1 == g0
    acc0 = {s.id: s for s in p0.stages}["causal:gemma3:E1:accuracy"]
    acc1 = {s.id: s for s in p1.stages}["causal:gemma3:E1:accuracy"]
    # one ablated generation fewer: 200 prompts prefilled, then 48 tokens (the task budget) at generation speed
    t = base.candidate("arith-1")
    gen = 200 * t.prompt_tokens / 225 + 200 * t.max_new_tokens / (225 / 4)
    assert acc0.cost_s - acc1.cost_s == pytest.approx(gen)
    s2, _, g2 = plan(2)
    assert [r.model for r in s1.runs if r not in s2.runs] == ["gemma3-G1-dose10"]
    # its training, and its evals: final (C verbatim, C twins, E2/E3 twins) and @60 (C verbatim, C twins)
    assert g2 == {**g1, "5": 42 - 7}
    s3, _, g3 = plan(3)
    # 18 points lose the E2/E3 twins; 5 dose finals lose the E2/E3 twins
    assert s3.twins_on == "C" and g3 == {**g2, "3": 54 - 36, "5": 35 - 10}
    s4, _, g4 = plan(4)
    assert s4.tf_b_on == "C" and s4.cuts == (1, 2, 3, 4) and g4 == {**g3, "2": 156 - 36}
    with pytest.raises(SaemuiError, match="cuts must be §9's first n cuts"):
        validate_v2(replace(base, cuts=(2,)))
    with pytest.raises(SaemuiError, match="§9 has cuts 1-4"):
        apply_cuts(base, 5)


def test_plan_cli_full_spec(tmp_path, capsys):
    for f in ("arc/test.jsonl", "arc/train.jsonl", "gsm8k/test.jsonl"):
        if find_data_file(f) is None:
            pytest.skip(f"shared data {f} (candidates 6-7) not available")
    mod = load_script("build_zoo")
    args = ["--spec", "v2", "--plan", "--results", str(tmp_path / "r"), "--cache", str(tmp_path / "c")]
    assert mod.main(args) == 0
    out = capsys.readouterr().out
    assert "0 eligibility          14" in out and "items:gsm8k" in out and "12.20 h" in out
    # §11 case (3): SmolLM2's base and R* only in the causal check
    assert "6 causal                5" in out and "2h SAE health          11" in out
    assert "15 runs (all smollm2)" in out
    assert "§9 cuts (applied now: " in out and "+ cut 4: TF-B only on task C" in out
    assert "not a zoo stage" not in out
    assert not (tmp_path / "r").exists()  # --plan writes nothing


@pytest.fixture(scope="module")
def tiny_v2(tmp_path_factory):
    return build_tiny_v2(tmp_path_factory.mktemp("tiny-zoo-v2"))


def test_tiny_v2_end_to_end(tiny_v2, capsys):
    results, cache, mod = tiny_v2
    spec = mod.tiny_spec_v2(cache)
    elig = json.loads((results / "eligibility.json").read_text())
    assert elig["law_tasks"] == ["arith-1", "arith-2d1d"] and elig["C"] == "arith-1"
    for t in spec.candidates:
        items = json.loads((results / "items" / f"{t.name}.json").read_text())
        assert len(items["items"]) == len(items["twins"]) == spec.n_items and 0 < items["chance"]["p0"] <= 1
        for root in ("tiny-llama", "tiny-gemma"):  # stage 0: every base on every candidate, with MUI
            rec = json.loads((results / f"{root}__{t.name}__verbatim.json").read_text())
            assert rec["n"] == spec.n_items and rec["settings"]["P0"]["sets"] is not None
    law = json.loads((results / "tiny-llama-S1__arith-1__verbatim.json").read_text())
    assert law["role"] == "law" and law["law_tasks"] == ["arith-1", "arith-2d1d"]
    assert law["P"] == pytest.approx(100 * (law["n_correct"] + 0.5) / (law["n"] + 1))
    p0 = law["settings"]["P0"]
    union = set().union(*map(set, p0["sets"]))
    assert law["mui"] == p0["mui"] == pytest.approx(len(union) / (p0["n_units"] * p0["n_layers"]))
    assert law["settings_omitted"] == [] and law["settings"]["P0-first4"]["mui"] > 0  # first-T from one pass
    assert "seconds" not in json.dumps(law)
    # G: gold answers in the template; B: the base's own responses; both forward only, P0
    g = json.loads((results / "tiny-llama-S1__arith-1__G.json").read_text())
    b = json.loads((results / "tiny-llama-S1__arith-1__B.json").read_text())
    assert g["accuracy"] is None and list(g["settings"]) == ["P0"] and g["n"] == spec.n_items
    assert (
        b["ids"] == json.loads((results / "items" / "tiny-llama__arith-1__verbatim.json").read_text())["ids"]
    )
    # twins: C with MUI, the other law task accuracy only
    assert json.loads((results / "tiny-llama-S1__arith-1__twins.json").read_text())["mui"] is not None
    other = json.loads((results / "tiny-llama-S1__arith-2d1d__twins.json").read_text())
    assert other["mui"] is None and other["settings"] == {} and other["accuracy"] is not None
    # Cor. 1 checkpoint on C only; Cor. 2 dose run: C verbatim + twins at 2 and final, others' twins at the final
    assert (results / "tiny-llama-S1@2__arith-1__verbatim.json").is_file()
    assert not (results / "tiny-llama-S1@2__arith-2d1d__verbatim.json").exists()
    dose = sorted(p.name for p in results.glob("tiny-llama-S1-dose50*__*.json"))
    assert dose == sorted(
        [
            "tiny-llama-S1-dose50@2__arith-1__twins.json",
            "tiny-llama-S1-dose50@2__arith-1__verbatim.json",
            "tiny-llama-S1-dose50__arith-1__twins.json",
            "tiny-llama-S1-dose50__arith-1__verbatim.json",
            "tiny-llama-S1-dose50__arith-2d1d__twins.json",
        ]
    )
    assert json.loads((results / dose[3]).read_text())["contaminated"] == ["arith-1"]
    # a full fine-tune of the Gemma root (base style)
    assert json.loads((results / "tiny-gemma-G1__arith-2d1d__verbatim.json").read_text())["style"] == "base"

    # resumable: a second build runs nothing, the plan has nothing left
    capsys.readouterr()
    args = ["--spec", "v2", "--tiny", "--results", str(results), "--cache", str(cache)]
    assert mod.main(args) == 0
    assert "ran 0 stage(s)" in capsys.readouterr().out
    assert mod.main([*args, "--plan"]) == 0
    out = capsys.readouterr().out
    assert "law tasks (stage 0, §3.2): arith-1, arith-2d1d; C = arith-1" in out
    kinds = ("items:", "train:", "eval:", "health:", "causal:")
    rows = [line.split() for line in out.splitlines() if line.startswith(kinds)]
    assert rows and all(r[2] == "done" for r in rows)
    assert {r[0].split(":")[0] for r in rows} == {k[:-1] for k in kinds}


def test_tiny_v2_law_rule_and_reruns(tiny_v2, tmp_path):
    """§3.2 on stage-0 counts set by hand; a changed run re-runs its training and its points only."""
    results, cache, mod = tiny_v2
    spec = replace(mod.tiny_spec_v2(cache), eligibility_alpha=0.05, eligibility_margin=0.05)
    res = tmp_path / "res"
    shutil.copytree(results, res)
    n = spec.n_items
    # arith-1: only llama n/n (one-family); arith-2d1d and arith-larger: both bases n/n
    _fake_stage0(
        res,
        spec,
        {
            ("tiny-llama", "arith-1"): n,
            ("tiny-gemma", "arith-1"): 0,
            ("tiny-llama", "arith-2d1d"): n,
            ("tiny-gemma", "arith-2d1d"): n,
            ("tiny-llama", "arith-larger"): n,
            ("tiny-gemma", "arith-larger"): n,
        },
    )
    sets = candidate_sets(spec)
    out = law_outcome(spec, res, sets)
    # n/n correct against chance p0: exact one-sided p-value p0^n; above iff p0^n < 0.05 and 1 >= p0 + 0.05.
    # With 8 items arith-larger's chance is high (the first number is the larger in most items): 0.75^8 = 0.10
    p0 = {t: json.loads((res / "items" / f"{t}.json").read_text())["chance"]["p0"] for t in out.table}
    above = {t: p0[t] ** n < 0.05 and 1 >= p0[t] + 0.05 for t in p0}
    assert above == {"arith-1": True, "arith-2d1d": True, "arith-larger": False}, p0
    assert out.table["arith-2d1d"]["bases"]["tiny-gemma"]["p_value"] == pytest.approx(p0["arith-2d1d"] ** n)
    assert [out.table[t]["class"] for t in p0] == ["one-family", "two-family", "out"]
    assert out.law == ("arith-2d1d",)  # the first two-family candidate; the one-family arith-1 is skipped
    # k = 0 everywhere: nothing is above chance
    _fake_stage0(res, spec, {(r, t.name): 0 for r in ("tiny-llama", "tiny-gemma") for t in spec.candidates})
    assert law_outcome(spec, res, sets).law == ()
    # §3.2: once fine-tuned results exist, the law tasks fixed in eligibility.json cannot change
    with pytest.raises(SaemuiError, match="allows no change"):
        plan_v2(spec, res, cache)
    # accuracy is all the rule reads: other MUI settings leave stage 0 deciding (its MUI is re-measured) ...
    other = replace(mod.tiny_spec_v2(cache), settings=("P0", "share-1/256"))
    plan = plan_v2(other, results, cache)
    assert plan.outcome.law == ("arith-1", "arith-2d1d")
    assert all(s.needed for s in plan.stages if s.group == "0")
    # ... while other generated text (another style for a base) leaves the law tasks unknown
    roots = (plan.spec.roots[0], replace(plan.spec.roots[1], style="chat"))
    assert law_outcome(replace(other, roots=roots), results, sets).law is None

    base = mod.tiny_spec_v2(cache)
    runs = tuple(replace(r, lr=r.lr * 2) if r.name == "G1" else r for r in base.runs)
    todo = {s.id for s in plan_v2(replace(base, runs=runs), results, cache).stages if s.needed}
    assert "train:tiny-gemma-G1" in todo
    assert {s.split(":")[1] for s in todo if s.startswith("eval:")} == {"tiny-gemma-G1"}
    only = plan_v2(base, results, cache, only=["tiny-gemma*"])
    assert {s.point for s in only.stages if s.kind == "eval"} == {"tiny-gemma", "tiny-gemma-G1"}


def test_tiny_v2_one_family_study(tiny_v2, tmp_path):
    """§11 case (3) on stage-0 counts set by hand: no two-family task, so the study's tasks are the llama base's
    one-family candidates (priority order), C the first; the other root keeps its stage-0 evals only; the
    two-family outcome stays m = 0 in eligibility.json; a two-family candidate refuses the one-family spec."""
    from saemui.zoo.record_v2 import study_tasks
    from saemui.zoo.stages_v2 import causal_points, eligibility_summary, health_points

    results, cache, mod = tiny_v2
    tiny = replace(mod.tiny_spec_v2(cache), eligibility_alpha=0.05, eligibility_margin=0.05)
    spec = one_family(tiny, "tiny-llama")
    assert spec.rstar == ("S1",) and {r.root for r in spec.runs} == {"tiny-llama"}
    res = tmp_path / "res"
    shutil.copytree(
        results, res, ignore=shutil.ignore_patterns("tiny-llama-*", "tiny-gemma-*", "eligibility.json")
    )
    n = spec.n_items
    counts = {(r, t.name): 0 for r in ("tiny-llama", "tiny-gemma") for t in spec.candidates}
    counts |= {("tiny-llama", "arith-1"): n, ("tiny-llama", "arith-2d1d"): n}
    _fake_stage0(res, spec, counts)
    sets = candidate_sets(spec)
    out = law_outcome(spec, res, sets)
    assert out.two_family == () and out.law == ("arith-1", "arith-2d1d")
    assert law_outcome(tiny, res, sets).law == ()  # the two-family spec: nothing qualifies
    elig = eligibility_summary(spec, out)
    assert elig["law_tasks"] == [] and elig["m"] == 0 and elig["C"] is None
    assert elig["one_family_study"]["family"] == "tiny-llama"
    assert study_tasks(elig) == (["arith-1", "arith-2d1d"], "arith-1")
    assert study_tasks(eligibility_summary(tiny, law_outcome(tiny, res, sets))) == ([], None)

    plan = plan_v2(spec, res, cache)
    gemma = {s.id for s in plan.stages if s.root == "tiny-gemma"}
    assert gemma == {f"eval:tiny-gemma:{t.name}:verbatim" for t in spec.candidates}
    assert {s.id for s in plan.stages if s.kind == "train"} == {
        "train:tiny-llama-S1",
        "train:tiny-llama-S1-dose50",
    }
    assert {p.name for p in causal_points(spec)} == {"tiny-llama", "tiny-llama-S1"}
    assert {p.name for p in health_points(spec)} <= {"tiny-llama", "tiny-llama-S1"}
    law_evals = {s.id for s in plan.stages if s.id.startswith("eval:tiny-llama-S1:")}
    assert law_evals >= {"eval:tiny-llama-S1:arith-1:verbatim", "eval:tiny-llama-S1:arith-2d1d:verbatim"}
    assert (
        "one-family study (§11 case (3)) within tiny-llama: arith-1, arith-2d1d; C = arith-1"
        in format_plan_v2(plan)
    )
    # a two-family candidate: case (3) does not apply
    _fake_stage0(res, spec, {("tiny-gemma", "arith-2d1d"): n})
    with pytest.raises(SaemuiError, match="applies only when no candidate is two-family"):
        law_outcome(spec, res, sets)


def test_measure_settings_equals_single_runs(tiny_llama):
    from saemui.engine import compute_mui
    from saemui.records import Sample
    from saemui.zoo.settings import measure_settings, setting_configs

    samples = [Sample("What is 2 + 3?", "The answer is 5."), Sample("What is 7 + 1?", "8")]
    cfgs = setting_configs(["P0", "share-1/128", "paper-1/512", "P0-first4"], "chat")
    got = measure_settings(tiny_llama, samples, cfgs)
    assert list(got) == list(cfgs)
    for name, cfg in cfgs.items():
        ref = compute_mui(tiny_llama, samples, cfg, progress=False)
        assert got[name].mui == ref.mui and got[name].summary["selection"] == ref.summary["selection"]
    assert got["paper-1/512"].summary["units"]["basis"].endswith("gate_act")


def test_settings_data():
    from saemui.rules import KeyRule
    from saemui.zoo.settings import SETTINGS, mui_t_setting, setting

    names = [s.name for s in SETTINGS]
    assert len(names) == len(set(names)) and names[0] == "P0"
    # §5: shares 1/512, 1/256, 1/128 give k = 3/6/12 of 1536 and 4/8/16 of 2048; the paper's 1 ‰ gives 1 and 2
    for name, ks in (
        ("P0", (3, 4)),
        ("share-1/256", (6, 8)),
        ("share-1/128", (12, 16)),
        ("paper-1/1000", (1, 2)),
    ):
        rule = KeyRule.parse(setting(name).threshold)
        assert (rule.k_for(1536), rule.k_for(2048)) == ks, name
    assert (setting("paper-1/512").neuron_site, setting("paper-1/512").alignment) == ("gate_act", "response")
    assert {s.threshold for s in SETTINGS if s.units == "sae"} == {"topscore:0.9", "topscore:0.95"}
    assert [s.first_tokens for s in SETTINGS if s.first_tokens] == [1, 2, 4, 8, 16, 32]
    assert mui_t_setting("arith-2d1d") == "P0-first4" and mui_t_setting("arc") == "P0-first8"
    spec = zoo_v2()
    assert spec.settings == tuple(names) and spec.tf_settings == ("P0",)


def test_v1_fingerprints_unchanged():
    """The v2 changes leave every committed v1 record current (nothing of results/zoo would rebuild)."""
    from saemui.zoo import plan, real_zoo

    if not any((REPO / "results" / "zoo").glob("*__*.json")):
        pytest.skip("no committed v1 results")
    stages = plan(real_zoo(), REPO / "results" / "zoo", REPO / "nonexistent-cache")
    evals = [s for s in stages if s.kind == "eval"]
    assert evals and all(s.done for s in evals)


def test_committed_stage0_is_current_under_the_case3_spec():
    """The committed zoo-v2 stage 0 (both bases, candidates 1-7) stays done under the one-family spec, and
    eligibility.json is what that spec writes (two-family m = 0, the SmolLM2 study named beside it)."""
    from saemui.zoo.stages_v2 import eligibility_summary

    res = REPO / "results" / "zoo-v2"
    if not (res / "eligibility.json").is_file():
        pytest.skip("no committed zoo-v2 results")
    for f in ("arc/test.jsonl", "arc/train.jsonl", "gsm8k/test.jsonl"):
        if find_data_file(f) is None:
            pytest.skip(f"shared data {f} (candidates 6-7) not available")
    spec = zoo_v2()
    plan = plan_v2(spec, res, REPO / "nonexistent-cache")
    stage0 = [s for s in plan.stages if s.group == "0"]
    assert len(stage0) == 14 and all(s.done for s in stage0)
    assert plan.outcome.two_family == () and plan.outcome.law == ("arith-1", "arith-2d1d")
    committed = json.loads((res / "eligibility.json").read_text())
    assert committed == json.loads(json.dumps(eligibility_summary(spec, plan.outcome)))


def test_stage_run_validation_names():
    spec = zoo_v2()
    with pytest.raises(SaemuiError, match="appears twice"):
        validate_v2(replace(spec, runs=(*spec.runs, spec.runs[0])))
    with pytest.raises(SaemuiError, match="name may only use"):
        validate_v2(replace(spec, runs=(StudyRun("a b", "smollm2", "lora", 1e-4, (("mix", 1.0),), 2, 0),)))


# ----- causal check (§8.5, W9) and SAE health (W10) as stages -------------------------------------------------


def test_plan_causal_and_health_costs_by_hand(tmp_path):
    spec = _arith_spec()
    plan = plan_v2(spec, tmp_path / "res", tmp_path / "cache")
    by = {s.id: s for s in plan.stages}
    causal = {s.id for s in plan.stages if s.group == "6"}
    assert causal == {
        f"causal:{p}:E1:{arm}"
        for p in ("smollm2", "gemma3", "smollm2-S1", "gemma3-G1")
        for arm in ("logprob", "accuracy")
    } | {"causal:smollm2:E1:sae-logprob"}
    health = {s.point for s in plan.stages if s.group == "2h"}
    assert health == {"smollm2"} | {f"smollm2-S{i}" for i in range(1, 11)}
    assert all(by[x].blocked and not by[x].needed for x in causal)
    # §9 rates; task C costed as arith-1 (45 prompt tokens), N = 200, gold 6 tokens
    fwd, gfwd, n = 450, 225, 200

    def gen(rate, tokens):  # one generation of N items: generated tokens at rate/4 + the prompts' forward
        return n * tokens / (rate / 4) + n * 45 / rate

    # log-prob: the G pass + clean, key and 5 random conditions; the SAE arm adds the active-feature pass and its
    # 6 ablated conditions cost 2 forwards each (encode and decode at every layer)
    assert by["causal:smollm2:E1:logprob"].cost_s == pytest.approx(8 * n * 51 / fwd)
    assert by["causal:gemma3-G1:E1:logprob"].cost_s == pytest.approx(8 * n * 51 / gfwd)
    assert by["causal:smollm2:E1:sae-logprob"].cost_s == pytest.approx((3 + 6 * 2) * n * 51 / fwd)
    # accuracy: the P0 pass over the own text, clean generation at the answer length, key + 2 random at 48 tokens
    assert by["causal:smollm2:E1:accuracy"].cost_s == pytest.approx(
        n * (45 + 48) / fwd + gen(fwd, 48) + 3 * gen(fwd, 48)
    )
    assert by["causal:smollm2-S1:E1:accuracy"].cost_s == pytest.approx(
        n * (45 + 16) / fwd + gen(fwd, 16) + 3 * gen(fwd, 48)
    )
    assert by["causal:gemma3-G1:E1:accuracy"].cost_s == pytest.approx(
        n * (45 + 8) / gfwd + gen(gfwd, 8) + 3 * gen(gfwd, 48)
    )
    # health: one pass over the 200 responses + (capture, clean, 3 x (spliced, zero)) over the first 50 + one pass
    # over the 200 gold responses (45 + 6 tokens)
    gold = n * 51 / fwd
    assert by["health:smollm2:E1"].cost_s == pytest.approx(n * 93 / fwd + 8 * 50 * 93 / fwd + gold)
    assert by["health:smollm2-S4:E1"].cost_s == pytest.approx(n * 61 / fwd + 8 * 50 * 61 / fwd + gold)
    text = format_plan_v2(plan)
    row = next(line for line in text.splitlines() if line.startswith("6 causal"))
    total = sum(by[x].cost_s for x in causal)
    assert row.split()[2:6] == ["9", "9", f"{total / 3600:.2f}", "h"]
    assert next(line for line in text.splitlines() if line.startswith("2h SAE health")).split()[3] == "11"


def _strict(path: Path) -> dict:
    def bad(x):
        raise AssertionError(f"{path.name}: {x} is not JSON")

    return json.loads(path.read_text(), parse_constant=bad)


def test_tiny_v2_causal_records(tiny_v2):
    """Every causal arm's record recomputes its stored effect with saemui.analysis.causal; the key sets are those
    of the G record (log-prob) and of the verbatim record (accuracy); the clean arm reproduces the free
    generation; clean log-probs equal a hand loop over single-sample forwards."""
    import numpy as np
    import torch

    from saemui.ablation import load_logprob_arm
    from saemui.analysis.causal import accuracy_effect, causal_effect
    from saemui.inputs import encode_samples
    from saemui.models import load_model
    from saemui.zoo.record_v2 import read_causal

    results, cache, mod = tiny_v2
    spec = mod.tiny_spec_v2(cache)
    files = sorted(p.name for p in (results / "causal").iterdir())
    points = ("tiny-llama", "tiny-gemma", "tiny-llama-S1", "tiny-gemma-G1")
    want = [f"{p}__arith-1__{arm}.json" for p in points for arm in ("logprob", "accuracy")]
    assert files == sorted([*want, "tiny-llama__arith-1__sae-logprob.json"])
    for p in points:
        lp_path = results / "causal" / f"{p}__arith-1__logprob.json"
        rec = read_causal(lp_path)
        arm = load_logprob_arm(lp_path)  # also an ablation log-prob record
        assert rec["n_draws"] == arm.random.shape[1] == spec.causal_draws and rec["n"] == spec.n_items
        eff = causal_effect(arm.delta_key, arm.delta_random)
        assert rec["effect"] == json.loads(json.dumps(eff.__dict__))
        by_hand = np.mean((arm.clean - arm.key) - (arm.clean[:, None] - arm.random).mean(axis=1))
        assert rec["effect"]["e"] == pytest.approx(by_hand, abs=1e-12)
        g = _strict(results / f"{p}__arith-1__G.json")
        assert rec["key_mui"] == g["mui"] and rec["n_key"] == g["settings"]["P0"]["set_sizes"]
        assert rec["ids"] == g["ids"] and rec["basis"] == "neurons"

        acc = read_causal(results / "causal" / f"{p}__arith-1__accuracy.json")
        texts = _strict(results / "items" / f"{p}__arith-1__verbatim.json")
        verb = _strict(results / f"{p}__arith-1__verbatim.json")
        assert acc["responses"]["clean"] == texts["responses"] and acc["clean"] == texts["correct"]
        assert acc["key_mui"] == verb["mui"] and acc["n_key"] == verb["settings"]["P0"]["set_sizes"]
        rnd = np.array(acc["random"])
        assert rnd.shape == (spec.n_items, spec.causal_acc_draws)
        a = accuracy_effect(acc["clean"], acc["key"], rnd)
        assert acc["effect"] == json.loads(json.dumps(a.__dict__))
        assert acc["effect"]["d_acc"] == pytest.approx(np.mean(rnd.mean(axis=1) - np.array(acc["key"])))
        assert set(acc["responses"]) == {"clean", "key", "random0", "random1"}

    sae = read_causal(results / "causal" / "tiny-llama__arith-1__sae-logprob.json")
    assert sae["basis"] == "sae" and sae["setting"] == "sae-0.9" and 0 < sae["key_mui"] <= 1
    assert np.array(sae["shortfall"]).shape == (spec.n_items, spec.causal_draws)

    # clean log p(gold | prompt) of the base by hand: one unbatched forward per G sample, predicting positions
    from saemui.zoo.data_v2 import candidate_sets, gold_samples

    lm = load_model(spec.root("tiny-llama").base, device="cpu")
    t = spec.candidate("arith-1")
    samples = gold_samples(t, candidate_sets(spec)["arith-1"].items, "chat")
    rec = read_causal(results / "causal" / "tiny-llama__arith-1__logprob.json")
    for e, clean in zip(encode_samples(lm.tokenizer, samples, "predicting", "chat"), rec["clean"]):
        with torch.no_grad():
            logits = lm.model(input_ids=torch.as_tensor(e.ids)[None].long()).logits[0].double()
        lp = torch.log_softmax(logits, -1)[torch.as_tensor(e.score_pos), torch.as_tensor(e.target)].sum()
        assert clean == pytest.approx(float(lp), abs=1e-4)


def test_tiny_v2_sae_health_records(tiny_v2):
    from saemui.inputs import encode_samples
    from saemui.models import load_model
    from saemui.zoo.data_v2 import base_samples, candidate_sets, gold_samples

    results, cache, mod = tiny_v2
    spec = mod.tiny_spec_v2(cache)
    assert sorted(p.name for p in (results / "sae_health").iterdir()) == [
        "tiny-llama-S1.json",
        "tiny-llama.json",
    ]
    for p in ("tiny-llama", "tiny-llama-S1"):
        f = results / "sae_health" / f"{p}.json"
        rec = _strict(f)
        assert rec["schema"] == "saemui-zoo-sae-health/2" and rec["task"] == "arith-1"
        assert "provenance" not in f.read_text() and "suite_source" not in f.read_text()
        allx, ce = rec["all_layers"], rec["ce"]
        # FVE etc. at every layer on all responses, no CE there; CE/KL at the chosen layers on the first ones
        assert sorted(allx["per_layer"]) == ["0", "1", "2"] and allx["n_samples"] == spec.n_items
        assert allx["n_ce_samples"] == 0 and allx["medians"]["ce_loss_recovered"] is None
        assert sorted(ce["per_layer"], key=int) == [str(x) for x in spec.health_layers]
        assert ce["n_samples"] == ce["n_ce_samples"] == spec.health_ce_samples == rec["ce_samples"]
        assert all(isinstance(r["ce_loss_recovered"], float) for r in ce["per_layer"].values())
        # the point's own responses: evaluated + sink-dropped tokens = its response tokens (MUI's paper alignment)
        texts = _strict(results / "items" / f"{p}__arith-1__verbatim.json")
        lm = load_model(spec.root("tiny-llama").base, device="cpu")
        own = base_samples(spec.candidate("arith-1"), candidate_sets(spec)["arith-1"].items, texts, "chat")
        n_resp = sum(len(e.score_pos) for e in encode_samples(lm.tokenizer, own, "response", "chat"))
        for row in allx["per_layer"].values():
            assert row["n_tokens"] + sum(row["sinks"]["dropped"].values()) == n_resp
        # the gold responses of set G: the same text (same token count) at every point, no CE
        gold = rec["gold"]
        g = gold_samples(spec.candidate("arith-1"), candidate_sets(spec)["arith-1"].items, "chat")
        n_gold = sum(len(e.score_pos) for e in encode_samples(lm.tokenizer, g, "response", "chat"))
        assert sorted(gold["per_layer"]) == ["0", "1", "2"] and gold["n_samples"] == spec.n_items
        assert gold["n_ce_samples"] == 0 and gold["medians"]["ce_loss_recovered"] is None
        for row in gold["per_layer"].values():
            assert row["n_tokens"] + sum(row["sinks"]["dropped"].values()) == n_gold


def test_tiny_v2_causal_and_health_fingerprints(tiny_v2):
    """Changing the causal draws re-runs the log-prob arms only; the CE sample count, the health stages only."""
    results, cache, mod = tiny_v2
    spec = mod.tiny_spec_v2(cache)
    todo = {s.id for s in plan_v2(replace(spec, causal_draws=3), results, cache).stages if s.needed}
    assert todo == {
        f"causal:{p}:arith-1:logprob" for p in ("tiny-llama", "tiny-gemma", "tiny-llama-S1", "tiny-gemma-G1")
    } | {"causal:tiny-llama:arith-1:sae-logprob"}
    todo = {s.id for s in plan_v2(replace(spec, health_ce_samples=2), results, cache).stages if s.needed}
    assert todo == {"health:tiny-llama:arith-1", "health:tiny-llama-S1:arith-1"}
    todo = {s.id for s in plan_v2(replace(spec, causal_acc_draws=1), results, cache).stages if s.needed}
    assert {x.rsplit(":", 1)[1] for x in todo} == {"accuracy"} and len(todo) == 4
    with pytest.raises(SaemuiError, match="not a clean law run"):
        validate_v2(replace(spec, rstar=("S1-dose50",)))


def test_tiny_v2_groups_stage0_alone(tmp_path, capsys):
    """--groups 0 runs stage 0 and stops: the law tasks are written, nothing is trained or evaluated after it."""
    mod = load_script("build_zoo")
    base = ["--spec", "v2", "--tiny", "--results", str(tmp_path / "r"), "--cache", str(tmp_path / "c")]
    assert mod.main([*base, "--groups", "0"]) == 0
    recs = sorted(p.name for p in (tmp_path / "r").glob("*__*__*.json"))
    assert recs and all(
        n.split("__")[0] in ("tiny-llama", "tiny-gemma") and n.endswith("__verbatim.json") for n in recs
    )
    assert (tmp_path / "r" / "eligibility.json").is_file()
    assert not list((tmp_path / "c").rglob("weights/*"))  # no training ran
    capsys.readouterr()
    assert mod.main([*base, "--groups", "0,9"]) == 2
    assert "stage group(s) 9 unknown" in capsys.readouterr().err


def test_bundle_identity_follows_the_manifest_not_the_path(tmp_path):
    """A bundle retrained under the same directory name must change every SAE stage's fingerprint."""
    from saemui.zoo.stages_v2 import bundle_identity

    b = tmp_path / "bundle"
    b.mkdir()
    (b / "manifest.json").write_text('{"saes": [{"files": {"w": "aaa"}}]}')
    first = bundle_identity(str(b))
    assert first["path"] == str(b) and len(first["manifest"]) == 64
    (b / "manifest.json").write_text('{"saes": [{"files": {"w": "bbb"}}]}')
    assert bundle_identity(str(b)) != first
    assert bundle_identity(None) is None


def test_tiny_v2_d1_rebuilds_the_base_root_only(tiny_v2, tmp_path):
    """D1 on the tiny zoo: the chat root's evaluations stay done (its trainings re-run only if an exemplar was a
    training prompt), the base root's stages re-run, and its records name the exemplars its prompts showed."""
    from saemui.zoo.builder_v2 import build_v2

    results, cache, mod = tiny_v2
    res = tmp_path / "res"
    shutil.copytree(results, res)
    d1 = replace(mod.tiny_spec_v2(cache), base_shots=2)
    todo = {s.id for s in plan_v2(d1, res, cache).stages if s.group == "0" and not s.done}
    assert todo == {f"eval:tiny-gemma:{t.name}:verbatim" for t in d1.candidates}
    report = build_v2(d1, res, cache, progress=False, log_fn=lambda _: None)
    assert all(s.done for s in plan_v2(d1, res, cache).stages)
    assert not [s for s in report.ran if s.startswith("eval:tiny-llama:")]
    assert "train:tiny-gemma-G1" in report.ran and "eval:tiny-gemma:arith-1:G" in report.ran
    rec = json.loads((res / "tiny-gemma__arith-1__verbatim.json").read_text())
    want = exemplar_items(d1, d1.candidate("arith-1"))
    assert len(want) == 2 and rec["exemplars"] == [[str(it.fields["question"]), it.gold] for it in want]
    assert "exemplars" not in json.loads((res / "tiny-llama__arith-1__verbatim.json").read_text())
    # a stage's timing keeps its thread count and load, so a re-plan can tell a loaded 1-thread stage apart
    timing = [json.loads(f.read_text()) for f in cache.rglob("eval__tiny-gemma__arith-1__verbatim.json")]
    assert timing and timing[0]["threads"] >= 1 and timing[0]["loadavg_1min"] >= 0


def test_tiny_v2_remeasure_uses_the_committed_text_not_a_new_generation(tiny_v2, tmp_path, monkeypatch):
    """A stage whose measurement changed (stale fingerprint) on a machine without the generation cache takes its
    responses from the committed texts file when the record's generation key is current: nothing is generated,
    and the record comes out as before. A record under another generation key is not reused."""
    from saemui.tasks import generation
    from saemui.zoo.builder_v2 import build_v2

    results, cache, mod = tiny_v2
    res = tmp_path / "res"
    shutil.copytree(results, res)
    spec = mod.tiny_spec_v2(cache)
    name = "tiny-llama__arith-1__verbatim.json"
    before = json.loads((res / name).read_text())
    (res / name).write_text(json.dumps({**before, "fingerprint": "stale"}))
    gens = next(cache.rglob("generations"))
    moved = tmp_path / "generations-moved"
    shutil.move(str(gens), str(moved))
    try:

        def no_generation(*a, **k):
            raise AssertionError("generated although the committed text was current")

        monkeypatch.setattr(generation, "generate", no_generation)
        report = build_v2(spec, res, cache, progress=False, log_fn=lambda _: None, groups=("0",))
        assert report.ran == ["eval:tiny-llama:arith-1:verbatim"]
        after = json.loads((res / name).read_text())
        # stage 0 ran before the law tasks were known; they are now
        assert after.pop("law_tasks") == ["arith-1", "arith-2d1d"] and before.pop("law_tasks") == []
        assert after == before
        assert (res / "items" / name).read_text() == (results / "items" / name).read_text()
        # another generation key: the kept text is not used (so the stage must generate)
        (res / name).write_text(json.dumps({**before, "fingerprint": "stale", "generation_key": "other"}))
        shutil.rmtree(gens)
        with pytest.raises(AssertionError, match="generated although"):
            build_v2(spec, res, cache, progress=False, log_fn=lambda _: None, groups=("0",))
    finally:
        shutil.rmtree(gens, ignore_errors=True)
        shutil.move(str(moved), str(gens))


def test_run_order_trains_each_run_then_evaluates_it_at_once(tiny_v2, monkeypatch):
    """The build goes run by run (training, then every point of that run) after the base's points, so a session
    that ends, or a machine that changes, never leaves trained weights whose evaluations wait on other runs."""
    import copy

    from saemui.zoo import builder_v2 as bv
    from saemui.zoo.builder import BuildReport

    results, cache, mod = tiny_v2
    spec = mod.tiny_spec_v2(cache)
    plan = plan_v2(spec, results, cache)
    stages = []
    for s in plan.stages:
        if s.root == "tiny-llama" and s.kind in ("train", "eval", "health", "causal"):
            s = copy.copy(s)
            s.needed = True
            stages.append(s)
    calls: list[tuple[str, object]] = []
    monkeypatch.setattr(bv, "_root_lm", lambda ctx, root: None)
    monkeypatch.setattr(bv, "_train", lambda ctx, run, lm, s, law: calls.append(("train", run.name)))
    monkeypatch.setattr(bv, "_evaluate_points", lambda ctx, names, *a: calls.append(("eval", tuple(names))))
    ctx = bv._Ctx(spec, plan, results, cache, BuildReport(), False, lambda _: None, None)
    bv._run(ctx, stages)
    by_point = {p.name: p for p in bv.points(spec)}
    assert calls[0][0] == "eval" and all(by_point[n].run is None for n in calls[0][1])
    runs = [r.name for r in spec.runs if r.root == "tiny-llama"]
    assert [c[1] for c in calls[1:] if c[0] == "train"] == runs
    for i, (kind, what) in enumerate(calls[1:], start=1):
        if kind == "train":  # the next call evaluates exactly this run's points
            nxt = calls[i + 1]
            assert nxt[0] == "eval" and nxt[1] and {by_point[n].run.name for n in nxt[1]} == {what}


def test_plan_measured_ratio_sum_and_median(tmp_path):
    """The plan's measured / estimated line: summed seconds (what the §9 cut table scales by) and the per-stage
    median and range, by hand on three stages given measured times."""
    from saemui.zoo.stages_v2 import measured_ratio

    plan = plan_v2(_arith_spec(), tmp_path / "res", tmp_path / "cache")
    assert measured_ratio(plan) == (None, 0)
    picked = [s for s in plan.stages if s.cost_s > 0][:3]
    for s, r in zip(picked, (1.0, 2.0, 10.0), strict=True):
        s.measured_s = r * s.cost_s
    ratio, n = measured_ratio(plan)
    want = sum(r * s.cost_s for s, r in zip(picked, (1.0, 2.0, 10.0), strict=True)) / sum(
        s.cost_s for s in picked
    )
    assert n == 3 and ratio == pytest.approx(want)
    assert (
        f"over 3 finished stage(s): {want:.2f} (summed seconds; per stage median 2.00, range 1.00–10.00"
        in (format_plan_v2(plan))
    )
