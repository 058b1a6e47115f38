"""``saemui score`` (rescore a response file with a task's scorer, ``--extraction corrected|official``) and
``saemui tasks`` (list the tasks), plus the parsing of ``--task-option`` shared with ``saemui run --task``."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

from saemui.errors import SaemuiError
from saemui.io import check_writable
from saemui.records import write_samples
from saemui.tasks.base import Task, get_task, list_tasks, task_options
from saemui.tasks.responses import score_responses
from saemui.tasks.sources import data_origin


def parse_task_options(pairs: list[str]) -> dict[str, Any]:
    """``["level=2", "name=x"]`` → ``{"level": 2, "name": "x"}`` (JSON values, else the raw string)."""
    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise SaemuiError(f"--task-option {pair!r}: expected KEY=VALUE")
        raw = raw.strip()
        raw = {"True": "true", "False": "false", "None": "null"}.get(raw, raw)
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def build_task(
    name: str, option_pairs: list[str], max_new_tokens: int | None = None, allow_code_execution: bool = False
) -> Task:
    """The task with command-line options applied (``--max-new-tokens`` is the ``max_new_tokens`` option;
    ``--allow-code-execution`` is a permission, passed only to tasks that execute code)."""
    options = parse_task_options(option_pairs)
    if max_new_tokens is not None:
        if max_new_tokens < 1:
            raise SaemuiError(f"--max-new-tokens {max_new_tokens}: expected a positive number")
        if options.get("max_new_tokens", max_new_tokens) != max_new_tokens:
            raise SaemuiError("--max-new-tokens and --task-option max_new_tokens disagree; give one")
        options["max_new_tokens"] = max_new_tokens
    task = get_task(name, **options)
    if allow_code_execution and hasattr(task, "allow_code_execution"):
        task = dataclasses.replace(task, allow_code_execution=True)
    return task


def _default_scored_path(responses: Path) -> Path:
    name = responses.name
    for suffix in (".gz", ".jsonl", ".json"):
        name = name.removesuffix(suffix)
    return responses.with_name(f"{name}.scored.jsonl")


def cmd_score(args: argparse.Namespace) -> int:
    task = build_task(args.task, args.task_option, allow_code_execution=args.allow_code_execution)
    responses = Path(args.responses)
    out = Path(args.out) if args.out else _default_scored_path(responses)
    if out.resolve() == responses.resolve():
        raise SaemuiError(f"{out}: --out would overwrite the response file")
    check_writable(out)
    extraction = getattr(args, "extraction", "corrected")
    acc, samples, fmt = score_responses(task, responses, args.fmt, args.source, extraction)
    write_samples(out, samples)
    n_ok = sum(bool(s.correct) for s in samples)
    print(f"task       {args.task} ({fmt} file {responses})")
    if extraction == "official":
        print("extraction official (MUI-Eval cdcdbe0 rules, quirks included)")
    print(f"accuracy   {100 * acc:.1f} % ({n_ok}/{len(samples)} correct)")
    crashed = sum(1 for s in samples if "official_error" in s.meta)
    if crashed:
        # the official script stops at the first of these; here they count as wrong and the rest is scored
        print(
            f"note       {crashed} response(s) would stop the official script (meta.official_error); counted wrong"
        )
    print(f"written    {out}")
    return 0


def cmd_tasks(args: argparse.Namespace) -> int:
    rows = []
    for name in list_tasks():
        try:
            task = get_task(name)
        except SaemuiError as e:
            rows.append((name, f"unavailable: {e}", ""))
            continue
        opts = " ".join(f"{k}={_short(v)}" for k, v in task_options(task).items())
        rows.append((name, opts, data_origin(task)))
    w0, w1 = (max(len(r[i]) for r in rows) for i in (0, 1))
    for name, opts, origin in rows:
        print(f"{name:<{w0}}  {opts:<{w1}}  data: {origin}")
    return 0


def _short(value: Any) -> str:
    # long option lists (BBH's 27 subtasks) would break the one-line-per-task listing
    if isinstance(value, (list, tuple)) and len(value) > 3:
        return f"<{len(value)} values>"
    return str(value).replace(" ", "")


__all__ = ["build_task", "cmd_score", "cmd_tasks", "parse_task_options"]
