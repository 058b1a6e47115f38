"""Task generation on the tiny llama: determinism, item order, resumable cache, fingerprint refusal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import saemui.tasks.generation as generation
from saemui.errors import SaemuiError
from saemui.tasks import Item, get_task
from saemui.tasks.generation import (
    generate_task,
    prompt_format_for,
    resolve_style,
    run_generation,
)


def _task(max_new_tokens: int = 6):
    # short budgets: the random tiny model never emits EOS, so every response uses the whole budget
    return get_task("arith-1", max_new_tokens=max_new_tokens)


def _count_calls(monkeypatch) -> list[int]:
    sizes: list[int] = []
    real = generation.generate

    def counting(lm, prompts, *args, **kwargs):
        sizes.append(len(prompts))
        return real(lm, prompts, *args, **kwargs)

    monkeypatch.setattr(generation, "generate", counting)
    return sizes


def test_generation_is_deterministic_and_in_item_order(tiny_llama) -> None:
    task = _task()
    items = task.load_items(limit=4)
    a = generate_task(tiny_llama, task, items, "chat", batch_size=3, progress=False)
    b = generate_task(tiny_llama, task, items, "chat", batch_size=3, progress=False)
    assert [s.to_json() for s in a] == [s.to_json() for s in b]
    assert [s.id for s in a] == [it.id for it in items]
    assert [s.prompt for s in a] == [task.format_prompt(it, "chat") for it in items]
    assert all(isinstance(s.correct, bool) and s.meta["style"] == "chat" for s in a)
    assert all(s.response for s in a)


def test_style_resolution(tiny_llama, monkeypatch) -> None:
    assert resolve_style(tiny_llama, "auto") == "chat"
    assert prompt_format_for("chat") == "chat" and prompt_format_for("base") == "raw"
    monkeypatch.setattr(tiny_llama.tokenizer, "chat_template", None)
    assert resolve_style(tiny_llama, "auto") == "base"
    with pytest.raises(SaemuiError, match="needs a chat template"):
        resolve_style(tiny_llama, "chat")
    with pytest.raises(SaemuiError, match="prompt style"):
        resolve_style(tiny_llama, "fancy")


def test_resume_regenerates_only_missing_items(tiny_llama, tmp_path: Path, monkeypatch) -> None:
    task, cache = _task(), tmp_path / "gen.jsonl"
    items = task.load_items(limit=4)
    calls = _count_calls(monkeypatch)
    full = run_generation(tiny_llama, task, items, "chat", cache, batch_size=2, progress=False)
    assert full.n_generated == 4 and sum(calls) == 4
    lines = cache.read_text().splitlines(keepends=True)
    assert len(lines) == 4

    # a kill after the first batch: only its two lines reached the disk
    cache.write_text("".join(lines[:2]))
    calls.clear()
    resumed = run_generation(tiny_llama, task, items, "chat", cache, batch_size=2, progress=False)
    assert calls == [2] and (resumed.n_cached, resumed.n_generated) == (2, 2)
    assert [s.to_json() for s in resumed.samples] == [s.to_json() for s in full.samples]
    assert cache.read_text().splitlines() == [x.rstrip("\n") for x in lines]

    # a torn last line (crash inside a write) is ignored and cut off before the next append
    cache.write_text("".join(lines[:3]) + lines[3][:20])
    calls.clear()
    again = generate_task(tiny_llama, task, items, "chat", cache, batch_size=2, progress=False)
    assert calls == [1] and [s.to_json() for s in again] == [s.to_json() for s in full.samples]
    assert [json.loads(x)["id"] for x in cache.read_text().splitlines()] == [
        json.loads(x)["id"] for x in lines
    ]

    calls.clear()
    generate_task(tiny_llama, task, items, "chat", cache, batch_size=2, progress=False)
    assert calls == []


def test_cache_with_other_configuration_is_refused(tiny_llama, tmp_path: Path) -> None:
    cache = tmp_path / "gen.jsonl"
    items = _task().load_items(limit=2)
    generate_task(tiny_llama, _task(), items, "chat", cache, progress=False)
    with pytest.raises(SaemuiError, match=r"different configuration \(differs in: max_new_tokens") as e:
        generate_task(tiny_llama, _task(max_new_tokens=7), items, "chat", cache, progress=False)
    assert "\n" not in str(e.value)
    with pytest.raises(SaemuiError, match="differs in: prompt_format, stops, style"):
        generate_task(tiny_llama, _task(), items, "base", cache, progress=False)
    # same configuration, same ids, other questions: the cached responses answer something else
    other = [Item(it.id, {**it.fields, "question": "What is 1 + 1?"}, 2) for it in items]
    with pytest.raises(SaemuiError, match="cached with another prompt"):
        generate_task(tiny_llama, _task(), other, "chat", cache, progress=False)
    (tmp_path / "junk.jsonl").write_text('{"prompt": "p", "response": "r"}\n')
    with pytest.raises(SaemuiError, match="not a saemui generation cache line"):
        generate_task(tiny_llama, _task(), items, "chat", tmp_path / "junk.jsonl", progress=False)
