"""Task subcommands: ``saemui score``, ``saemui tasks``, and ``--task`` for ``saemui run``.

``saemui run --task TASK`` generates the model's responses to the task's items (resumable cache), scores them
and measures MUI on the scored records; the result's summary gets accuracy, ``mui_correct`` (MUI over the
correctly answered items) and a ``task`` entry, and the records are written to ``<out>/responses.jsonl``.
Without ``--task`` the ``run`` subcommand is unchanged.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
from pathlib import Path
from typing import Any

from saemui.errors import SaemuiError
from saemui.tasks.base import Task, get_task, list_tasks, task_options

STYLE_CHOICES = ("auto", "chat", "base")


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``score`` and ``tasks``, and add the task options to the existing ``run`` subcommand."""
    _extend_run(sub.choices["run"])

    p = sub.add_parser(
        "score",
        help="score a response file with a task's scorer",
        description="Rescore responses without regenerating them: MUI-Eval (paper) result files, lm-eval "
        "--log_samples JSONL, or saemui records (a run's responses.jsonl). Prints accuracy and writes one "
        "scored record per item ({prompt, response, id, correct, meta}; usable as `saemui run --samples`).",
    )
    p.add_argument("--task", required=True, help="registered task name (see `saemui tasks`)")
    p.add_argument(
        "--responses", required=True, help="response file (JSON array or JSONL, optionally gzipped)"
    )
    p.add_argument("--format", default="auto", choices=["auto", "paper", "lm-eval", "jsonl"], dest="fmt")
    p.add_argument("--out", help="scored JSONL to write (default: <responses>.scored.jsonl beside the input)")
    _add_task_option_args(p)
    p.add_argument("--source", help="task data for --format jsonl (ids are matched to the task's items)")
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("tasks", help="list registered tasks", description="One line per registered task.")
    p.set_defaults(func=cmd_tasks)


def _add_task_option_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--task-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="task option (repeatable), e.g. level=2; values are parsed as JSON when possible",
    )


def _extend_run(run: argparse.ArgumentParser) -> None:
    from saemui.cli import cmd_run

    g = run.add_argument_group(
        "task", "generate the model's responses to a task, score them, then measure MUI"
    )
    g.add_argument("--task", help="registered task (see `saemui tasks`); replaces --samples")
    _add_task_option_args(g)
    g.add_argument(
        "--style",
        default="auto",
        choices=STYLE_CHOICES,
        help="prompt style: chat (chat template), base (few-shot text) or auto (chat if the model has a template)",
    )
    g.add_argument("--max-new-tokens", type=int, help="generation budget (default: the task's own)")
    g.add_argument(
        "--source", help="task data: a JSON/JSONL file, a data wheel, or hf[:PATH[:CONFIG]] (online)"
    )
    g.add_argument(
        "--cache", help="generation cache JSONL (default: <out parent>/generations/<model>-<task>-...jsonl)"
    )
    g.add_argument("--gen-batch-size", type=int, default=16, help="prompts generated together (default 16)")
    # `run` keeps its own function for record files; --task dispatches here
    run.set_defaults(func=lambda args: cmd_run_task(args) if args.task else cmd_run(args))


# ----- helpers ---------------------------------------------------------------------------------------------


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


def build_task(name: str, option_pairs: list[str], max_new_tokens: int | None = None) -> Task:
    """The task with command-line options applied (``--max-new-tokens`` is the ``max_new_tokens`` option)."""
    options = parse_task_options(option_pairs)
    if max_new_tokens is not None:
        if max_new_tokens < 1:
            raise SaemuiError(f"--max-new-tokens {max_new_tokens}: expected a positive number")
        if options.get("max_new_tokens", max_new_tokens) != max_new_tokens:
            raise SaemuiError("--max-new-tokens and --task-option max_new_tokens disagree; give one")
        options["max_new_tokens"] = max_new_tokens
    return get_task(name, **options)


def data_origin(task: Task) -> str:
    """Where ``load_items()`` without a source gets its items (for listings and result metadata)."""
    from saemui.tasks.sources import find_data_file, package_file

    if not (task.default_path or task.package_data or task.hf_dataset):
        return "generated (offline)"
    if task.default_path:
        p = find_data_file(task.default_path)
        if p is not None:
            return f"local {p.resolve()}"
    if task.package_data:
        pkg, rel = task.package_data
        if package_file(pkg, rel) is not None:
            return f"package {pkg}"
    if task.hf_dataset:
        return f"not found locally; --source hf ({task.hf_dataset[0]}, online)"
    return "not found locally; pass --source"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")


def _default_task_out(model: str, task_name: str, task: Task, style: str, cfg) -> Path:
    basis = Path(cfg.saes).name if cfg.units == "sae" else f"neurons-{cfg.neuron_site}"
    defaults = task_options(get_task(task_name))
    parts = [Path(model).name, task_name]
    # non-default options name the directory, so runs with other options do not overwrite each other
    parts += [f"{k}{v}" for k, v in sorted(task_options(task).items()) if defaults.get(k) != v]
    if style != "auto":
        parts.append(style)
    parts.append(basis)
    return Path("runs") / _slug("-".join(str(p) for p in parts))


# ----- commands --------------------------------------------------------------------------------------------


def cmd_run_task(args: argparse.Namespace) -> int:
    from saemui.cli import _check_writable, execute_run, format_summary, prepare_run, run_config
    from saemui.models import load_model
    from saemui.records import write_samples
    from saemui.tasks.runner import (
        fingerprint_id,
        generation_fingerprint,
        prompt_format_for,
        resolve_style,
        run_generation,
    )

    if args.samples:
        raise SaemuiError("--samples and --task exclude each other (records come from the task)")
    prepare_run(args)
    if args.limit is not None and args.limit < 1:
        raise SaemuiError(f"--limit {args.limit}: expected a positive number of items")
    if args.gen_batch_size < 1:
        raise SaemuiError(f"--gen-batch-size {args.gen_batch_size}: expected a positive number")
    task = build_task(args.task, args.task_option, args.max_new_tokens)
    items = task.load_items(args.source, args.limit)
    if not items:
        raise SaemuiError(f"task {task.name}: no items to evaluate")
    cfg = run_config(args)
    out = Path(args.out) if args.out else _default_task_out(args.model, args.task, task, args.style, cfg)
    _check_writable(out)

    lm = load_model(args.model, device=args.device, dtype=args.dtype)
    style = resolve_style(lm, args.style)
    fmt = prompt_format_for(style)
    if args.prompt_format not in ("auto", fmt):
        raise SaemuiError(
            f"--prompt-format {args.prompt_format} contradicts style {style!r} (which is scored with "
            f"{fmt}); drop --prompt-format"
        )
    # the engine must tokenize each prompt exactly as generation did
    cfg = dataclasses.replace(cfg, prompt_format=fmt)
    fp = generation_fingerprint(lm, task, style)
    # the fingerprint in the default name keeps caches of other configurations apart (no refusals by default)
    default_cache = f"{_slug(Path(args.model).name)}-{args.task}-{style}-{fingerprint_id(fp)}.jsonl"
    cache = Path(args.cache) if args.cache else out.parent / "generations" / default_cache
    gen = run_generation(lm, task, items, style, cache, args.gen_batch_size, progress=not args.quiet)
    meta = {
        "name": args.task,
        "options": fp["options"],
        "n_items": len(items),
        "style": style,
        "prompt_format": fmt,
        "source": str(args.source) if args.source else data_origin(task),
        "max_new_tokens": task.max_new_tokens,
        "stops": fp["stops"],
        "generation": {"fingerprint": fingerprint_id(fp), "batch_size": args.gen_batch_size},
    }
    # What differs between a fresh and a resumed run stays out of the deterministic summary.
    gen_info = {
        "cache": str(cache),
        "n_cached": gen.n_cached,
        "n_generated": gen.n_generated,
        "seconds": gen.seconds,
    }
    result = execute_run(
        args, lm, gen.samples, cfg, out, extra_summary={"task": meta}, run_info={"generation": gen_info}
    )
    write_samples(out / "responses.jsonl", gen.samples)
    print(format_summary(result, out))
    print(
        f"responses  {out / 'responses.jsonl'} ({gen.n_generated} generated in {gen.seconds:.1f} s, "
        f"{gen.n_cached} from {cache})"
    )
    return 0


def _default_scored_path(responses: Path) -> Path:
    name = responses.name
    for suffix in (".gz", ".jsonl", ".json"):
        name = name.removesuffix(suffix)
    return responses.with_name(f"{name}.scored.jsonl")


def cmd_score(args: argparse.Namespace) -> int:
    from saemui.cli import _check_writable
    from saemui.records import write_samples
    from saemui.tasks.runner import score_responses

    task = get_task(args.task, **parse_task_options(args.task_option))
    responses = Path(args.responses)
    out = Path(args.out) if args.out else _default_scored_path(responses)
    if out.resolve() == responses.resolve():
        raise SaemuiError(f"{out}: --out would overwrite the response file")
    _check_writable(out)
    acc, samples, fmt = score_responses(task, responses, args.fmt, args.source)
    write_samples(out, samples)
    n_ok = sum(bool(s.correct) for s in samples)
    print(f"task       {args.task} ({fmt} file {responses})")
    print(f"accuracy   {100 * acc:.1f} % ({n_ok}/{len(samples)} correct)")
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
