"""saemui.sae_data on a fake evals wheel (no network): selection, formatting, disjointness, determinism."""

from __future__ import annotations

import json
import zipfile

import pytest

from saemui import sae_data as sd
from saemui.tasks import arith

GSM_Q = "Janet has three ducks that lay sixteen eggs per day and she eats three of them for breakfast every morning."


def _chat(user: str, ideal: str, system: str = "Answer briefly.") -> dict:
    return {
        "input": [{"role": "system", "content": system}, {"role": "user", "content": user}],
        "ideal": ideal,
    }


def make_fake_wheel(tmp_path, monkeypatch, n: int = 20):
    """A wheel-shaped zip with general, chat Q&A, maths and code files, plus a shared-data dir with one GSM8K
    item; REGISTRY_SETS is pointed at the fake sets."""
    wheel = tmp_path / sd.EVALS_WHEEL_FILE
    reg = sd.REGISTRY
    general = [
        {"0": f"Document {i} talks about rivers and hills number {i}.", "1": "shuffled"} for i in range(n)
    ]
    maths = [_chat(f"What is {i} times {i + 1}?", str(i * (i + 1))) for i in range(n)]
    maths.append(_chat("What is 3 + 4?", "7"))  # an arith-1 item: must be dropped (whole match)
    qa = [_chat(f"Name river number {i}.", f"River {i}.") for i in range(n)]
    qa.append(
        _chat("Please solve: " + GSM_Q + " How many are left?", "13")
    )  # contains a GSM8K item (13-gram)
    code = [
        _chat(f"Write a list comprehension for squares up to {i}.", f"[x*x for x in range({i})]")
        for i in range(n)
    ]
    tc = [{"type": "codeparrot/github-code", "text": f"def f{i}():\n    return {i}\n"} for i in range(5)]
    tc.append({"type": "c4", "text": "not code"})
    with zipfile.ZipFile(wheel, "w") as z:
        for rel in sd.GENERAL_FILES.values():
            z.writestr(reg + rel, "\n".join(json.dumps(r) for r in general))
        z.writestr(reg + "m/samples.jsonl", "\n".join(json.dumps(r) for r in maths))
        z.writestr(reg + "q/samples.jsonl", "\n".join(json.dumps(r) for r in qa))
        z.writestr(reg + "c/samples.jsonl", "\n".join(json.dumps(r) for r in code))
        z.writestr(reg + sd.CODE_TEXT[0], "\n".join(json.dumps(r) for r in tc))
    monkeypatch.setattr(
        sd,
        "REGISTRY_SETS",
        {"chat_qa": ("q/samples.jsonl",), "maths": ("m/samples.jsonl",), "code": ("c/samples.jsonl",)},
    )
    shared = tmp_path / "shared"
    (shared / "gsm8k").mkdir(parents=True)
    (shared / "gsm8k" / "test.jsonl").write_text(json.dumps([{"question": GSM_Q, "answer": "#### 13"}]))
    return wheel, shared


@pytest.fixture
def fake(tmp_path, monkeypatch):
    return make_fake_wheel(tmp_path, monkeypatch)


def test_normalize_and_hash():
    assert sd.normalize("  What IS 3+4?\n") == "what is 3 4"
    assert sd.text_hash("What is 3 + 4?") == sd.text_hash("what is 3+4 ?")
    assert sd.text_hash("What is 3 + 4?") != sd.text_hash("What is 3 + 5?")


def test_arith_item_space_is_complete(tmp_path):
    idx = sd.task_item_hashes(None)
    # independent count of the three item spaces: 10·10 sums; 90·90 two-digit pairs (sum and difference
    # normalise alike: "+" / "-" are not words); templates × names × things × b-values × Σ_{a=5}^{20} a choices of c
    expect = 100 + 90 * 90 + len(arith.TEMPLATES) * 8 * 6 * 9 * sum(range(5, 21))
    assert idx.counts["arith"] == expect
    for level in (1, 2, 3):
        for seed in (0, 7):
            for it in arith.generate(level, 300, seed):
                assert sd.text_hash(it.fields["question"]) in idx.whole


def test_build_mix_drops_task_items_and_is_deterministic(fake, tiny_llama):
    wheel, shared = fake
    tok = tiny_llama.tokenizer
    mix, man = sd.build_mix(tok, wheel, shared, heldout_frac=0.2, keep_instruction_rows=2, seed=1)
    assert man["dropped_overlaps"]["count"] == 2
    assert {(r["file"], r["match"]) for r in man["dropped_overlaps"]["rows"]} == {
        ("m/samples.jsonl", "whole"),
        ("q/samples.jsonl", "13-gram"),
    }
    texts = [it.render(tok) for split in mix.values() for it in split]
    assert not any("3 + 4" in t or "sixteen eggs" in t for t in texts)
    # held-out: round(0.2 × usable rows) per file, never also in training
    held = {(it.source, it.row) for it in mix["heldout"]}
    train = {(it.source, it.row) for it in mix["train"]}
    assert not held & train
    assert sum(it.source == "m/samples.jsonl" for it in mix["heldout"]) == round(0.2 * 20)
    # chat formatting through the template; the instruction kept in 2 rows of each registry set only
    qa_rendered = [it.render(tok) for it in mix["train"] + mix["heldout"] if it.source == "q/samples.jsonl"]
    assert all(t.startswith("<|im_start|>user") and "<|im_start|>assistant" in t for t in qa_rendered)
    assert sum("Answer briefly." in t for t in qa_rendered) == 2
    # code from text_compression: only the codeparrot rows
    tc = [it for it in mix["train"] + mix["heldout"] if it.source.startswith(sd.CODE_TEXT[0])]
    assert len(tc) == 5 and all(it.text.startswith("def f") for it in tc)
    # token counts per kind equal an independent recount
    for split in ("train", "heldout"):
        for kind in sd.KINDS:
            n = sum(
                len(tok(it.render(tok), add_special_tokens=False)["input_ids"])
                for it in mix[split]
                if it.kind == kind
            )
            assert man["tokens"][split][kind] == n
    assert man["task_items_indexed"]["gsm8k"] == 1
    assert {f["file"]: f["sha256"] for f in man["files"]}["m/samples.jsonl"] == _member_sha(
        wheel, "m/samples.jsonl"
    )
    again, man2 = sd.build_mix(tok, wheel, shared, heldout_frac=0.2, keep_instruction_rows=2, seed=1)
    assert [it.render(tok) for it in again["train"]] == [it.render(tok) for it in mix["train"]]
    other, _ = sd.build_mix(tok, wheel, shared, heldout_frac=0.2, keep_instruction_rows=2, seed=2)
    assert [it.row for it in other["train"]] != [it.row for it in mix["train"]]
    assert "Tokens (train / held-out)" in sd.manifest_text(man)


def test_budget_and_file_cap(fake, tiny_llama):
    wheel, shared = fake
    tok = tiny_llama.tokenizer
    row = max(
        len(tok(it.render(tok), add_special_tokens=False)["input_ids"]) for it in sd_rows(wheel, shared, tok)
    )
    _, man = sd.build_mix(tok, wheel, shared, tokens_per_kind={"maths": 3 * row}, max_tokens_per_file=10**6)
    t = man["tokens"]["train"]
    assert 3 * row <= t["maths"] < 4 * row  # stops at the first row that reaches the budget
    _, man = sd.build_mix(tok, wheel, shared, max_tokens_per_file=2 * row)
    t = man["tokens"]["train"]
    assert row <= t["chat_qa"] <= 2 * row and t["general"] > 2 * row  # general files are not capped


def sd_rows(wheel, shared, tok):
    mix, _ = sd.build_mix(tok, wheel, shared, tokens_per_kind={"maths": 10**6})
    return [it for it in mix["train"] if it.kind == "maths"]


def _member_sha(wheel, rel):
    import hashlib

    with zipfile.ZipFile(wheel) as z:
        return hashlib.sha256(z.read(sd.REGISTRY + rel)).hexdigest()
