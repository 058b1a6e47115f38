"""The task pipeline: a task's items → the model's greedy responses → scored records → MUI, in one call.

>>> from saemui import RunConfig, load_model
>>> from saemui.tasks import get_task, run_task
>>> task = get_task("arith-1")
>>> run = run_task(load_model(), task, task.load_items(limit=8), RunConfig(units="neurons"), cache_dir="runs")
>>> run.result.mui, run.result.summary["accuracy"], run.generation.n_generated

``saemui run --task`` and the zoo's evaluation both call :func:`run_task`. It owns one invariant: the engine
tokenizes every prompt exactly as generation did, so ``RunConfig.prompt_format`` is set to the format of the
resolved style (an explicit format that contradicts the style is refused rather than silently replaced).
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from saemui.engine import RunConfig, compute_mui
from saemui.errors import SaemuiError
from saemui.models import LoadedModel
from saemui.records import Sample
from saemui.result import MUIResult
from saemui.tasks.base import Item, Task, get_task
from saemui.tasks.generation import (
    GenerationOutput,
    fingerprint_id,
    generation_fingerprint,
    prompt_format_for,
    resolve_style,
    run_generation,
)
from saemui.tasks.sources import data_origin

#: ``measure(samples, config, extra_summary, run_info) -> MUIResult``: how the scored records are measured
Measure = Callable[[Sequence[Sample], RunConfig, dict[str, Any], dict[str, Any]], MUIResult]


@dataclass
class TaskRun:
    """Result of :func:`run_task`.

    result: the MUI result; its summary has a ``task`` entry (= ``task_summary``) and its run_info a
        ``generation`` entry (cache path and counts; they differ between fresh and resumed runs, so they stay out
        of the deterministic summary).
    generation: the scored records with the resolved style and cache statistics.
    config: the settings MUI was measured with (``prompt_format`` matched to the style); reuse it for more
        measurements of the same records.
    cache: the generation cache file, or None when nothing was cached.
    task_summary: the ``task`` entry of the summary.
    """

    result: MUIResult
    generation: GenerationOutput
    config: RunConfig
    cache: Path | None
    task_summary: dict[str, Any]


def slug(text: str) -> str:
    """``text`` reduced to file-name-safe characters (runs of others become ``_``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")


def default_cache_name(model: str, task_name: str, style: str, fingerprint: dict[str, Any]) -> str:
    """``<model>-<task>-<style>-<fingerprint id>.jsonl``: the fingerprint keeps caches of other configurations
    apart, so a default cache is never refused."""
    return f"{slug(Path(model).name)}-{task_name}-{style}-{fingerprint_id(fingerprint)}.jsonl"


def run_task(
    lm: LoadedModel,
    task: Task | str,
    items: Sequence[Item] | None = None,
    config: RunConfig | None = None,
    *,
    style: str = "auto",
    source: Any = None,
    cache: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    batch_size: int = 16,
    name: str | None = None,
    model_name: str | None = None,
    progress: bool = True,
    measure: Measure | None = None,
    extraction: str = "corrected",
) -> TaskRun:
    """Generate ``lm``'s greedy responses to ``items`` (default: the task's items from ``source``), score them
    with ``task`` and measure MUI on the scored records with ``config``.

    style: "chat", "base" or "auto" (chat when the tokenizer has a template).
    source: where the items came from (recorded in the summary; default: the task's own data origin).
    cache: generation cache file; else ``cache_dir/<model>-<task>-<style>-<fingerprint>.jsonl``; else none.
    name: the name the task was requested under (e.g. ``arith-1``; default ``task.name``), for the summary and
        the cache name. model_name: the model's name in the cache name (default ``lm.name``).
    measure: replaces the plain :func:`~saemui.engine.compute_mui` call (the CLI checkpoints and saves).
    extraction: "corrected" (default) or "official" answer scoring (:mod:`saemui.tasks.official`); a non-default
        value is recorded in the task summary.
    """
    task = get_task(task)
    name = name or task.name
    if items is None:
        items = task.load_items(source)
    cfg = config or RunConfig()
    style = resolve_style(lm, style)
    fmt = prompt_format_for(style)
    if cfg.prompt_format not in ("auto", fmt):
        raise SaemuiError(
            f"--prompt-format {cfg.prompt_format} contradicts style {style!r} (which is scored with "
            f"{fmt}); drop --prompt-format"
        )
    # the engine must tokenize each prompt exactly as generation did
    cfg = dataclasses.replace(cfg, prompt_format=fmt)
    fp = generation_fingerprint(lm, task, style)
    if cache is None and cache_dir is not None:
        cache = Path(cache_dir) / default_cache_name(model_name or lm.name, name, style, fp)
    cache = Path(cache) if cache is not None else None
    gen = run_generation(lm, task, items, style, cache, batch_size, progress=progress, extraction=extraction)
    task_summary = {
        "name": name,
        "options": fp["options"],
        "n_items": len(items),
        "style": style,
        "prompt_format": fmt,
        "source": str(source) if source else data_origin(task),
        "max_new_tokens": task.max_new_tokens,
        "stops": fp["stops"],
        "generation": {"fingerprint": fingerprint_id(fp), "batch_size": batch_size},
    }
    if extraction != "corrected":
        task_summary["extraction"] = extraction
    run_info = {
        "cache": str(cache),
        "n_cached": gen.n_cached,
        "n_generated": gen.n_generated,
        "seconds": gen.seconds,
    }
    if measure is None:
        result = compute_mui(lm, gen.samples, cfg, progress=progress, extra_summary={"task": task_summary})
        result.run_info.update({"generation": run_info})
    else:
        result = measure(gen.samples, cfg, {"task": task_summary}, {"generation": run_info})
    return TaskRun(result, gen, cfg, cache, task_summary)


__all__ = ["Measure", "TaskRun", "default_cache_name", "run_task", "slug"]
