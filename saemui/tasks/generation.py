"""Greedy generation of a task's responses: the model's own answers, scored, with a resumable cache.

>>> from saemui import load_model
>>> from saemui.tasks import get_task, generate_task
>>> lm, task = load_model(), get_task("arith-1")
>>> samples = generate_task(lm, task, task.load_items(limit=8), "auto", cache_path="runs/arith-1.gen.jsonl")

Generation is greedy (:func:`generate`: fixed, length-sorted batch order, left padding, no sampling) with the
task's stop sequences and ``max_new_tokens``. The prompt text comes from :meth:`Task.format_prompt`; it is
tokenized exactly as the engine will tokenize it (:func:`saemui.inputs.prompt_ids`): style ``"chat"`` goes through
the tokenizer's chat template (``prompt_format="chat"``), style ``"base"`` is fed as raw text
(``prompt_format="raw"``). :func:`prompt_format_for` gives the engine setting that matches a style;
:func:`saemui.tasks.pipeline.run_task` applies it.

Resumable: with a ``cache_path`` every finished batch is appended to a JSONL cache (one line per item, a single
``write`` + ``fsync`` per batch). A rerun reuses cached items whose configuration fingerprint (model weights,
task name and options, style, prompt format, ``max_new_tokens``, stops) matches and generates only the rest; a
cache written under another configuration is refused. Responses are cached raw and rescored on every run, so a
scorer fix never needs regeneration.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from saemui.errors import SaemuiError
from saemui.inputs import prompt_ids
from saemui.models import LoadedModel
from saemui.provenance import model_fingerprint
from saemui.records import Sample, assign_ids
from saemui.tasks.base import Item, Task, check_style, get_task, task_options, truncate_at_stop
from saemui.tasks.responses import make_sample

log = logging.getLogger(__name__)

#: version of the cache line layout; bump when the meaning of a cached response changes
CACHE_VERSION = 1
#: bytes read from each end of a weight file for the quick local-weights digest


@torch.inference_mode()
def generate(
    lm: LoadedModel,
    prompts: Sequence[str],
    max_new_tokens: int = 64,
    stop: Sequence[str] = (),
    prompt_format: str = "auto",
    batch_size: int = 16,
    progress: bool = True,
    around_batch: Callable[[list[int]], AbstractContextManager] | None = None,
) -> list[str]:
    """Greedy responses for ``prompts``; left padding (generation appends on the right).

    around_batch: called with a batch's prompt indices, returns a context manager the batch is generated in
    (e.g. :func:`saemui.ablation.ablated` with that batch's per-row unit sets)."""
    tok = lm.tokenizer
    ids = [prompt_ids(tok, p, prompt_format) for p in prompts]
    order = sorted(range(len(ids)), key=lambda i: (-len(ids[i]), i))
    out: list[str] = [""] * len(ids)
    eos = tok.eos_token_id
    for start in tqdm(range(0, len(order), batch_size), desc="generate", disable=not progress):
        idx = order[start : start + batch_size]
        T = max(len(ids[i]) for i in idx)
        inp = torch.full((len(idx), T), tok.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(idx), T), dtype=torch.long)
        for b, i in enumerate(idx):
            inp[b, T - len(ids[i]) :] = torch.tensor(ids[i])
            mask[b, T - len(ids[i]) :] = 1
        with around_batch(idx) if around_batch is not None else contextlib.nullcontext():
            gen = lm.model.generate(
                input_ids=inp.to(lm.device),
                attention_mask=mask.to(lm.device),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                eos_token_id=eos,
                pad_token_id=tok.pad_token_id,
                stop_strings=list(stop) or None,
                tokenizer=tok if stop else None,
            )
        for b, i in enumerate(idx):
            text = tok.decode(gen[b, T:], skip_special_tokens=True)
            out[i] = truncate_at_stop(text, stop).strip()
    return out


def resolve_style(lm: LoadedModel, style: str) -> str:
    """``"auto"`` → ``"chat"`` when the tokenizer has a chat template, else ``"base"``; checks the others."""
    if style == "auto":
        return "chat" if lm.is_chat else "base"
    check_style(style)
    if style == "chat" and not lm.is_chat:
        raise SaemuiError(
            f"style 'chat' needs a chat template but the tokenizer of {lm.name!r} has none (use --style base)"
        )
    return style


def prompt_format_for(style: str) -> str:
    """The engine's ``prompt_format`` matching a task prompt style (the scored prompt must be the one answered)."""
    return "chat" if check_style(style) == "chat" else "raw"


def generation_fingerprint(lm: LoadedModel, task: Task, style: str) -> dict[str, Any]:
    """Everything that determines a cached response (batch size is left out: greedy output does not depend
    on it beyond float rounding, and resuming with another batch size should be allowed)."""
    return {
        "cache_version": CACHE_VERSION,
        "model": model_fingerprint(lm),
        "task": task.name,
        "options": json.loads(json.dumps(task_options(task), default=str)),
        "style": style,
        "prompt_format": prompt_format_for(style),
        "max_new_tokens": int(task.max_new_tokens),
        "stops": list(task.stop_sequences(style)),
        "decoding": "greedy",
    }


def fingerprint_id(fp: dict[str, Any]) -> str:
    """Short stable hash of a fingerprint (used in default cache file names)."""
    return hashlib.sha256(json.dumps(fp, sort_keys=True).encode()).hexdigest()[:12]


@dataclass
class GenerationCache:
    """A JSONL file of finished generations, one object per line: ``id``, ``prompt``, ``response``,
    ``fingerprint``. Appends are one ``write`` of whole lines followed by ``fsync``; a torn last line left
    by a crash is ignored and cut off before the next append.

    path: the cache file (created with its parent directories on first append).
    fingerprint: the configuration every line must carry.
    """

    path: Path
    fingerprint: dict[str, Any]
    entries: dict[str, dict] = field(default_factory=dict, init=False)
    _valid_bytes: int = field(default=0, init=False)

    def load(self) -> GenerationCache:
        """Read existing lines; refuse a cache written under another configuration."""
        if not self.path.exists():
            return self
        if not self.path.is_file():
            raise SaemuiError(f"{self.path}: generation cache path exists but is not a file")
        data = self.path.read_bytes()
        end = data.rfind(b"\n") + 1
        if end < len(data):
            log.warning("%s: ignoring a torn last line (interrupted write)", self.path)
        self._valid_bytes = end
        for n, raw in enumerate(data[:end].split(b"\n")[:-1], start=1):
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise SaemuiError(
                    f"{self.path}:{n}: corrupt generation cache line (delete the file)"
                ) from None
            if not isinstance(obj, dict) or not {"id", "prompt", "response", "fingerprint"} <= set(obj):
                raise SaemuiError(
                    f"{self.path}:{n}: not a saemui generation cache line (expected id/prompt/response/fingerprint)"
                )
            if obj["fingerprint"] != self.fingerprint:
                raise SaemuiError(
                    f"{self.path}: generation cache was written with a different configuration "
                    f"(differs in: {', '.join(_diff_keys(obj['fingerprint'], self.fingerprint))}); "
                    "delete it or pass another cache path"
                )
            self.entries.setdefault(str(obj["id"]), obj)
        return self

    def append(self, rows: Sequence[tuple[str, str, str]]) -> None:
        """Append ``(id, prompt, response)`` rows durably (one write, then fsync)."""
        if not rows:
            return
        lines = []
        for rid, prompt, response in rows:
            obj = {"id": rid, "prompt": prompt, "response": response, "fingerprint": self.fingerprint}
            lines.append(json.dumps(obj, ensure_ascii=False) + "\n")
            self.entries[rid] = obj
        data = "".join(lines).encode("utf-8")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            created = not self.path.exists()
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as e:
            raise SaemuiError(f"{self.path}: cannot write generation cache ({e.strerror})") from None
        try:
            if os.fstat(fd).st_size != self._valid_bytes:
                # drop a torn tail so the new lines start on a line boundary
                os.ftruncate(fd, self._valid_bytes)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
            self._valid_bytes += len(data)
        finally:
            os.close(fd)
        if created:
            _fsync_dir(self.path.parent)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _diff_keys(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            out += _diff_keys(a.get(k), b.get(k), f"{prefix}{k}.")
        return out
    return [] if a == b else [prefix.rstrip(".") or "fingerprint"]


@dataclass
class GenerationOutput:
    """Result of :func:`run_generation`.

    samples: scored records, one per item, in item order.
    style / prompt_format: the resolved prompt style and the engine ``prompt_format`` that matches it.
    fingerprint: the generation configuration (as stored in the cache).
    n_cached / n_generated: items taken from the cache / generated in this call.
    seconds: wall-clock time spent generating.
    """

    samples: list[Sample]
    style: str
    prompt_format: str
    fingerprint: dict[str, Any]
    n_cached: int
    n_generated: int
    seconds: float


def run_generation(
    lm: LoadedModel,
    task: Task | str,
    items: Sequence[Item],
    style: str = "auto",
    cache_path: str | os.PathLike | None = None,
    batch_size: int = 16,
    progress: bool = True,
    extraction: str = "corrected",
) -> GenerationOutput:
    """Like :func:`generate_task`, also reporting the resolved style, fingerprint and cache statistics.

    extraction: how the responses are scored, "corrected" or "official" (see :func:`make_sample`); the cache
    holds raw responses, so it is shared by both.
    """
    task = get_task(task)
    style = resolve_style(lm, style)
    fmt = prompt_format_for(style)
    if batch_size < 1:
        raise SaemuiError(f"batch_size must be >= 1, got {batch_size}")
    ids = [str(it.id) for it in items]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise SaemuiError(f"task {task.name}: duplicate item id {dup!r}")
    fp = generation_fingerprint(lm, task, style)
    cache = GenerationCache(Path(cache_path), fp).load() if cache_path is not None else None
    prompts = [task.format_prompt(it, style) for it in items]
    responses: dict[str, str] = {}
    if cache is not None:
        for rid, prompt in zip(ids, prompts):
            hit = cache.entries.get(rid)
            if hit is None:
                continue
            if hit["prompt"] != prompt:
                raise SaemuiError(
                    f"{cache.path}: item {rid!r} was cached with another prompt (other data source?); "
                    "delete the cache or pass another cache path"
                )
            responses[rid] = hit["response"]
    n_cached = len(responses)

    # Batches are planned over all items (longest prompts first, like generate()) and only their missing
    # members are generated: a run resumed after a crash regenerates exactly the batches it lost, with the same
    # padding, so its responses match an uninterrupted run.
    tok = lm.tokenizer
    lengths = [len(prompt_ids(tok, p, fmt)) for p in prompts]
    order = sorted(range(len(items)), key=lambda i: (-lengths[i], i))
    stops = task.stop_sequences(style)
    t0 = time.perf_counter()
    bar = tqdm(total=len(items) - n_cached, desc=f"generate {task.name}", unit="item", disable=not progress)
    n_generated = 0
    for start in range(0, len(order), batch_size):
        todo = [i for i in order[start : start + batch_size] if ids[i] not in responses]
        if not todo:
            continue
        out = generate(
            lm,
            [prompts[i] for i in todo],
            max_new_tokens=task.max_new_tokens,
            stop=stops,
            prompt_format=fmt,
            batch_size=len(todo),
            progress=False,
        )
        for i, r in zip(todo, out):
            responses[ids[i]] = r
        if cache is not None:
            cache.append([(ids[i], prompts[i], r) for i, r in zip(todo, out)])
        n_generated += len(todo)
        bar.update(len(todo))
    bar.close()
    seconds = time.perf_counter() - t0
    samples = assign_ids(
        make_sample(task, it, responses[rid], p, style, extraction) for it, rid, p in zip(items, ids, prompts)
    )
    return GenerationOutput(samples, style, fmt, fp, n_cached, n_generated, seconds)


def seed_generation_cache(
    lm: LoadedModel,
    task: Task | str,
    items: Sequence[Item],
    style: str,
    cache_path: str | os.PathLike,
    responses: Mapping[str, str],
) -> int:
    """Write kept responses (by item id) into the generation cache that :func:`run_generation` reads, under the
    fingerprint and prompts it would use, for the items the cache lacks; returns how many were written.

    For text generated earlier and kept elsewhere (a committed texts file) when the cache is gone, e.g. on a new
    machine: the caller vouches that the responses come from the same configuration (same model weights, task,
    style and generation settings), which the cache itself cannot check."""
    task = get_task(task)
    style = resolve_style(lm, style)
    cache = GenerationCache(Path(cache_path), generation_fingerprint(lm, task, style)).load()
    rows = [
        (str(it.id), task.format_prompt(it, style), responses[str(it.id)])
        for it in items
        if str(it.id) in responses and str(it.id) not in cache.entries
    ]
    cache.append(rows)
    return len(rows)


def generate_task(
    lm: LoadedModel,
    task: Task | str,
    items: Sequence[Item],
    style: str = "auto",
    cache_path: str | os.PathLike | None = None,
    batch_size: int = 16,
    progress: bool = True,
) -> list[Sample]:
    """Greedy responses of ``lm`` to ``items``, scored by ``task``: one :class:`Sample` per item, in item order.

    style: "chat" (chat template; needs one), "base" (raw few-shot text) or "auto" (chat when the tokenizer
        has a template). Pass ``prompt_format_for(style)`` as the engine's ``RunConfig.prompt_format``.
    cache_path: JSONL generation cache; items already in it (same configuration) are not regenerated.
    batch_size: prompts generated together.
    """
    return run_generation(lm, task, items, style, cache_path, batch_size, progress).samples


__all__ = [
    "CACHE_VERSION",
    "GenerationCache",
    "GenerationOutput",
    "fingerprint_id",
    "generate",
    "generate_task",
    "generation_fingerprint",
    "model_fingerprint",
    "prompt_format_for",
    "resolve_style",
    "run_generation",
    "seed_generation_cache",
]
