"""Scored ``Sample`` records from responses: fresh generations, and response files written by other tools.

Formats:

- **lm-eval** ``--log_samples`` JSONL: one line per (document, filter) with ``doc_id``, ``doc``, ``target``,
  ``arguments`` (``{"gen_args_0": {"arg_0": prompt, "arg_1": gen_kwargs}}``, older versions a list),
  ``resps`` (``[[raw response]]``), ``filtered_resps``, ``filter`` and the metric values. A task with several
  filters repeats each document; the first line per ``doc_id`` is kept (the raw response is the same).
- **paper** (MUI-Eval result files): the benchmark record's own fields plus ``response``, ``sys_input`` and
  ``question_input`` (the prompt the response was generated from).
- **jsonl**: saemui records (``{prompt, response, id}``, e.g. a run's ``responses.jsonl``), matched to the task's
  items by id.

In every case ``correct`` is set by *our* scorer; the file's own verdicts are kept in ``meta``.
:func:`score_responses` is what ``saemui score`` runs. ``extraction="corrected"`` (default) scores with the task's
own rules; ``"official"`` with the official MUI-Eval rules, quirks included (:mod:`saemui.tasks.official`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from saemui.errors import SaemuiError
from saemui.records import Sample, assign_ids, read_samples
from saemui.tasks.base import Item, Task, check_style, checked_item, get_task, strip_reasoning
from saemui.tasks.official import check_extraction, official_verdict
from saemui.tasks.sources import read_records

_LM_EVAL_KEYS = {"doc_id", "doc", "target", "arguments", "resps", "filtered_resps", "filter", "metrics"}
_LM_EVAL_HASHES = {"doc_hash", "prompt_hash", "target_hash"}


def _meta(task: Task, item: Item, pred: Any, style: str | None) -> dict:
    meta: dict[str, Any] = {"task": task.name}
    if style is not None:
        meta["style"] = style
    if item.gold is not None:
        meta["gold"] = item.gold
    if pred is not None and task.name not in ("humaneval", "mbpp"):
        meta["pred"] = pred
    return meta


def make_sample(
    task: Task,
    item: Item,
    response: str,
    prompt: str,
    style: str | None,
    extraction: str = "corrected",
    record: dict | None = None,
) -> Sample:
    """One scored Sample; ``correct`` comes from ``task.score`` or, with ``extraction="official"``, from the
    official MUI-Eval scoring of the task (``record``: the item's benchmark record, which official MATH needs)."""
    if check_extraction(extraction) == "official":
        verdict = official_verdict(task.name, item, response, record)
        meta = _meta(task, item, verdict.pred, style)
        meta["extraction"] = "official"
        if verdict.error:
            meta["official_error"] = verdict.error
        return Sample(prompt=prompt, response=response, id=item.id, correct=verdict.correct, meta=meta)
    pred = task.extract_answer(strip_reasoning(response), item)
    correct = bool(task.is_correct(pred, item))
    return Sample(
        prompt=prompt, response=response, id=item.id, correct=correct, meta=_meta(task, item, pred, style)
    )


def to_samples(
    task: Task | str,
    items: Sequence[Item],
    responses: Sequence[str],
    style: str = "chat",
    extraction: str = "corrected",
) -> list[Sample]:
    """Samples for freshly generated ``responses`` (one per item, same order); prompts from ``format_prompt``.

    For ``style="chat"`` the prompt is the raw user-turn text: the MUI engine applies the chat template.
    """
    task = get_task(task)
    check_style(style)
    if len(items) != len(responses):
        raise SaemuiError(
            f"to_samples: {len(items)} items but {len(responses)} responses (expected one per item)"
        )
    out = []
    for item, resp in zip(items, responses):
        if not isinstance(resp, str):
            raise SaemuiError(f"item {item.id}: response must be a string, got {type(resp).__name__}")
        out.append(make_sample(task, item, resp, task.format_prompt(item, style), style, extraction))
    return assign_ids(out)


def _first_string(x: Any) -> str | None:
    while isinstance(x, list) and x:
        x = x[0]
    return x if isinstance(x, str) else None


def _lm_eval_prompt(arguments: Any) -> str | None:
    if isinstance(arguments, dict):  # {"gen_args_0": {"arg_0": prompt, ...}}
        first = arguments.get("gen_args_0")
        if isinstance(first, dict):
            return first.get("arg_0") if isinstance(first.get("arg_0"), str) else None
        return None
    return _first_string(arguments)


def import_lm_eval_samples(
    path: str | os.PathLike, task: Task | str, style: str | None = None, extraction: str = "corrected"
) -> list[Sample]:
    """Samples from an lm-eval ``--log_samples`` file, rescored with our ``task`` scorer.

    style: None keeps lm-eval's own prompt (``arguments``; it already contains any few-shot examples and, if lm-eval
        ran with ``--apply_chat_template``, the template); "chat"/"base" rebuilds the prompt with ``format_prompt``.
    """
    task = get_task(task)
    if style is not None:
        check_style(style)
    records = read_records(path)
    seen: set[str] = set()
    out = []
    for n, rec in enumerate(records, start=1):
        where = f"{path}:{n}"
        if "doc" not in rec or "resps" not in rec:
            raise SaemuiError(f"{where}: not an lm-eval sample (expected fields 'doc' and 'resps')")
        doc_id = str(rec.get("doc_id", n - 1))
        if doc_id in seen:
            continue
        seen.add(doc_id)
        response = _first_string(rec["resps"])
        if response is None:
            raise SaemuiError(f"{where}: field 'resps' holds no response string (expected [[\"...\"]])")
        if not isinstance(rec["doc"], dict):
            raise SaemuiError(f"{where}: field 'doc' must be an object")
        item = checked_item(
            task, rec["doc"], int(doc_id) if doc_id.isascii() and doc_id.isdigit() else n - 1, where
        )
        if item is None:
            continue
        item.id = doc_id
        if style is None:
            prompt = _lm_eval_prompt(rec.get("arguments"))
            if prompt is None:
                raise SaemuiError(f"{where}: field 'arguments' holds no prompt; pass style='chat' or 'base'")
        else:
            prompt = task.format_prompt(item, style)
        sample = make_sample(task, item, response, prompt, style, extraction, rec["doc"])
        lm = {k: rec[k] for k in ("target", "filter", "filtered_resps") if k in rec}
        lm.update({k: v for k, v in rec.items() if k not in _LM_EVAL_KEYS | _LM_EVAL_HASHES})
        sample.meta["lm_eval"] = lm
        out.append(sample)
    if not out:
        raise SaemuiError(f"{path}: no lm-eval samples found")
    return assign_ids(out)


def import_paper_responses(
    path: str | os.PathLike, task: Task | str, style: str | None = None, extraction: str = "corrected"
) -> list[Sample]:
    """Samples from a file of records with the question fields, the gold ``answer``/``target`` and ``response``.

    style: None uses the record's ``question_input`` (the exact prompt of the official run) when present and the
        chat prompt otherwise; "chat"/"base" always rebuilds the prompt with ``format_prompt``.
    """
    task = get_task(task)
    if style is not None:
        check_style(style)
    records = read_records(path)
    out = []
    for n, rec in enumerate(records):
        where = f"{path}: record {n}"
        if not isinstance(rec.get("response"), str):
            raise SaemuiError(f"{where}: missing string field 'response'")
        item = checked_item(task, rec, n, where)
        if item is None:
            continue
        if style is None and isinstance(rec.get("question_input"), str):
            prompt = rec["question_input"]
        else:
            prompt = task.format_prompt(item, style or "chat")
        sample = make_sample(task, item, rec["response"], prompt, style, extraction, rec)
        if rec.get("sys_input"):
            sample.meta["sys_input"] = rec["sys_input"]
        out.append(sample)
    if not out:
        raise SaemuiError(f"{path}: no records with a 'response'")
    return assign_ids(out)


def detect_format(path: str | os.PathLike) -> str:
    """ "lm-eval" when the first record has ``doc`` and ``resps``, "paper" when it has ``response``."""
    first = read_records(path)[0]
    if "doc" in first and "resps" in first:
        return "lm-eval"
    if "response" in first:
        return "paper"
    raise SaemuiError(
        f"{Path(path)}: unknown response-file format (expected lm-eval 'doc'/'resps' or a 'response' field)"
    )


def score_file(
    task: Task | str, path: str | os.PathLike, fmt: str = "auto", extraction: str = "corrected"
) -> tuple[float, list[Sample]]:
    """Rescore a response file: ``(accuracy, samples)``; ``fmt`` is "auto", "lm-eval" or "paper"."""
    if fmt == "auto":
        fmt = detect_format(path)
    if fmt == "lm-eval":
        samples = import_lm_eval_samples(path, task, extraction=extraction)
    elif fmt == "paper":
        samples = import_paper_responses(path, task, extraction=extraction)
    else:
        raise SaemuiError(f"score_file: format {fmt!r} is unknown (expected auto, lm-eval or paper)")
    return sum(bool(s.correct) for s in samples) / len(samples), samples


# ----- saemui records and format detection ----------------------------------------------------------------

_RECORD_KEYS = {"prompt", "response", "id", "correct", "meta"}
RESPONSE_FORMATS = ("auto", "paper", "lm-eval", "jsonl")


def import_records(
    path: str | os.PathLike, task: Task | str, source: Any = None, extraction: str = "corrected"
) -> list[Sample]:
    """Rescore saemui records (``{prompt, response, id}`` JSONL, e.g. a run's ``responses.jsonl``).

    Each record's ``id`` must be the id of one of the task's items (from ``source``, see
    :meth:`Task.load_items`); the record's prompt is kept, ``correct`` is recomputed.
    """
    task = get_task(task)
    records = read_samples(path)
    items = {str(it.id): it for it in task.load_items(source)}
    raw: dict[str, dict] = {}
    if check_extraction(extraction) == "official" and task.name == "math":
        # official MATH compares with the record's gold number, which the item does not keep
        for i, rec in enumerate(task.records_from_source(source)):
            item = checked_item(task, rec, i)
            if item is not None:
                raw[str(item.id)] = rec
    out = []
    for n, s in enumerate(records, start=1):
        item = items.get(str(s.id))
        if item is None:
            raise SaemuiError(
                f"{path}: record {n} has id {s.id!r}, which is not an item of task {task.name} "
                "(records need the task's item ids; use --format paper/lm-eval for benchmark-field files)"
            )
        sample = make_sample(
            task, item, s.response, s.prompt, s.meta.get("style"), extraction, raw.get(str(s.id))
        )
        out.append(sample)
    return assign_ids(out)


def detect_response_format(path: str | os.PathLike) -> str:
    """``"jsonl"`` for saemui records (only prompt/response/id/correct/meta keys), else
    :func:`detect_format` (``"lm-eval"`` or ``"paper"``)."""
    keys = set(read_records(path)[0])
    if {"prompt", "response"} <= keys <= _RECORD_KEYS:
        return "jsonl"
    return detect_format(path)


def score_responses(
    task: Task | str,
    path: str | os.PathLike,
    fmt: str = "auto",
    source: Any = None,
    extraction: str = "corrected",
) -> tuple[float, list[Sample], str]:
    """Score a response file with ``task``'s scorer: ``(accuracy, samples, detected format)``.

    fmt: "auto", "paper" (MUI-Eval result files), "lm-eval" (``--log_samples``) or "jsonl" (saemui records).
    extraction: "corrected" (the task's rules) or "official" (MUI-Eval's, quirks included; arc, bbh, gsm8k, math,
        mmlu).
    """
    check_extraction(extraction)
    if fmt not in RESPONSE_FORMATS:
        raise SaemuiError(
            f"response format {fmt!r} is unknown (expected one of {', '.join(RESPONSE_FORMATS)})"
        )
    if fmt == "auto":
        fmt = detect_response_format(path)
    if fmt == "jsonl":
        samples = import_records(path, task, source, extraction)
        return sum(bool(s.correct) for s in samples) / len(samples), samples, fmt
    acc, samples = score_file(task, path, fmt, extraction)
    return acc, samples, fmt


__all__ = [
    "RESPONSE_FORMATS",
    "detect_format",
    "detect_response_format",
    "import_lm_eval_samples",
    "import_paper_responses",
    "import_records",
    "make_sample",
    "score_file",
    "score_responses",
    "to_samples",
]
