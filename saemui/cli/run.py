"""``saemui run``: MUI of a model on prompt/response records, or (``--task``) on its own scored answers to a task.

``saemui run --task TASK`` is :func:`saemui.tasks.run_task`: it generates the model's responses to the task's
items (resumable cache), scores them and measures MUI on the scored records; the result's summary gets accuracy,
``mui_correct`` (MUI over the correctly answered items) and a ``task`` entry, and the records are written to
``<out>/responses.jsonl``. Model libraries are imported inside the handlers: ``saemui --help`` stays fast.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from saemui.cli.args import parse_also, run_config_fields
from saemui.cli.tasks import build_task
from saemui.config import RunConfig
from saemui.errors import SaemuiError
from saemui.io import check_writable
from saemui.records import BUILTIN_SAMPLES, Sample
from saemui.tasks.base import Task, get_task, task_options

if TYPE_CHECKING:
    from saemui.result import MUIResult


def cmd_run(args: argparse.Namespace) -> int:
    """``saemui run``: records from ``--samples`` (or the built-in set), or generated with ``--task``."""
    if not args.task:
        # task flags given without --task would be silently ignored
        given = [f for f, v in (("--task-option", args.task_option), ("--source", args.source),
                                ("--cache", args.cache), ("--max-new-tokens", args.max_new_tokens)) if v]  # fmt: skip
        if args.style != "auto":
            given.append("--style")
        if getattr(args, "extraction", "corrected") != "corrected":
            given.append("--extraction")
        if given:
            raise SaemuiError(
                f"{', '.join(given)} only apply with --task (they choose and generate a task's items)"
            )
    if getattr(args, "also", None) and getattr(args, "explore", False):
        raise SaemuiError("--also and --explore exclude each other (contexts are kept for one setting)")
    return _run_task(args) if args.task else _run_samples(args)


#: settings that change how fast a run is, not its result (docs/method.md §3.1: MUI does not depend on them)
_SPEED_ONLY = ("max_batch_tokens", "max_batch_size", "padding_side", "sae_group_size", "encode_chunk")
#: where ``--also NAME`` settings are written, inside the main result's directory
ALSO_DIR = "also"


def run_key(model: str, cfg: RunConfig, data: dict[str, Any]) -> str:
    """Digest of what makes two runs the same measurement: the model as given, the settings that change the
    result, and the input (records file and its sha256, or the task and its options)."""
    from dataclasses import asdict

    # unset (None) fields are left out, so that a new optional RunConfig field does not change every key
    settings = {k: v for k, v in asdict(cfg).items() if k not in _SPEED_ONLY and v is not None}
    blob = json.dumps({"model": model, "config": settings, "data": data}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def check_overwrite(out: Path, key: str, overwrite: bool) -> None:
    """Refuse to replace a finished run of another configuration (the same configuration re-runs in place)."""
    summary = out / "summary.json"
    if overwrite or not summary.is_file():
        return
    try:
        old = json.loads(summary.read_text())
    except (OSError, ValueError):
        return  # not a readable result: the save replaces it as before
    if not isinstance(old, dict) or old.get("complete") is not True:
        return
    old_key = (
        (old.get("provenance") or {}).get("run_key") if isinstance(old.get("provenance"), dict) else None
    )
    if old_key is None:
        raise SaemuiError(
            f"--out {out} holds a finished run made by an older saemui (no run key to compare with); pass "
            "--overwrite to replace it, or choose another --out"
        )
    if old_key != key:
        raise SaemuiError(
            f"--out {out} holds a finished run of another configuration (model, settings or input differ); "
            "pass --overwrite to replace it, or choose another --out"
        )


def _is_local(spec: str | None) -> bool:
    from saemui.models import MODEL_SOURCES

    return spec is None or spec in MODEL_SOURCES or Path(spec).exists()


def prepare_run(args: argparse.Namespace) -> None:
    """Process-wide settings of a run, before any model library is used."""
    if _is_local(args.model) and _is_local(args.saes):
        # Everything is on disk: make sure no library reaches for the Hub behind our back.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.checkpoint_every < 0:
        raise SaemuiError(
            f"--checkpoint-every {args.checkpoint_every}: expected 0 (off) or a positive number"
        )
    if args.quiet:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()


def also_configs(cfg: RunConfig, also: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, RunConfig]]:
    """The ``--also`` settings (from :func:`~saemui.cli.args.parse_also`) as resolved configs: the main config
    with their fields replaced; refused when they could not share its forward pass."""
    from dataclasses import replace

    from saemui.config import check_one_pass

    out = []
    for name, fields in also:
        try:
            out.append((name, replace(cfg, **fields).resolved()))
        except SaemuiError as e:
            raise SaemuiError(f"--also {name}: {e}") from None
    check_one_pass([cfg, *(c for _, c in out)])
    return out


def also_keys(args: argparse.Namespace, cfg: RunConfig, data: dict[str, Any]) -> dict[str, str]:
    """``--also`` name → run key of that setting (validates the settings before any model loads)."""
    return {name: run_key(args.model, c, data) for name, c in also_configs(cfg, parse_also(args.also))}


def execute_run(
    args: argparse.Namespace,
    lm,
    samples: list[Sample],
    cfg: RunConfig,
    out: Path,
    extra_summary: dict[str, Any] | None = None,
    run_info: dict[str, Any] | None = None,
    keys: dict[str, str] | None = None,
) -> MUIResult:
    """compute → save (checkpointed unless --checkpoint-every 0; --explore adds feature contexts) → result.

    ``--also`` settings are measured in the same pass and written to ``out/also/NAME`` (after the main result:
    saving it replaces ``out`` whole); ``keys`` gives their run keys (:func:`also_keys`). Returns the main result.
    """
    from saemui import checkpoint
    from saemui.engine import compute_mui_many

    ckpt_dir = checkpoint.checkpoint_dir_for(out) if args.checkpoint_every else None
    if getattr(args, "explore", False):
        from saemui.explore import explore_run
        from saemui.explore.collector import CONTEXTS_FILE

        # The context collector is not checkpointed: an --explore run restarts from scratch after a crash.
        # Saved here, once, after the task's summary entries are in: a second save would replace the directory
        # (atomic rename) and drop contexts.npz.
        result, coll = explore_run(lm, samples, cfg, None, progress=not args.quiet)
        result.summary.update(extra_summary or {})
        result.run_info.update(run_info or {})
        result.save(out)
        coll.save(out / CONTEXTS_FILE)
    else:
        extras = also_configs(cfg, parse_also(getattr(args, "also", None) or []))
        result, *others = compute_mui_many(
            lm,
            samples,
            [cfg, *(c for _, c in extras)],
            progress=not args.quiet,
            checkpoint_dir=ckpt_dir,
            checkpoint_every=args.checkpoint_every or 1,
            extra_summary=extra_summary,
        )
        result.run_info.update(run_info or {})
        result.save(out)
        for (name, _), res in zip(extras, others):
            prov = res.summary.get("provenance")
            if isinstance(prov, dict):
                # each setting is its own measurement: its own run key, and the name it was asked under
                res.summary["provenance"] = dict(prov, run_key=(keys or {}).get(name), also=name)
            res.run_info.update(run_info or {})
            res.save(out / ALSO_DIR / name)
    if ckpt_dir is not None:
        checkpoint.clear(ckpt_dir)
    return result


def _run_samples(args: argparse.Namespace) -> int:
    prepare_run(args)
    from saemui.models import load_model
    from saemui.records import read_samples

    path = Path(args.samples) if args.samples else BUILTIN_SAMPLES
    samples = read_samples(path)
    if args.limit is not None:
        if args.limit < 1:
            raise SaemuiError(f"--limit {args.limit}: expected a positive number of records")
        samples = samples[: args.limit]
    cfg = run_config(args)
    out = Path(args.out) if args.out else _default_out(args.model, cfg)
    check_writable(out)
    # the path as given (the built-in set by name: its location depends on the install) and the bytes' digest
    data = {
        "path": str(args.samples) if args.samples else "builtin:default_samples.jsonl",
        "sha256": _sha256(path),
        "limit": args.limit,
    }
    key = run_key(args.model, cfg, {"samples": data})
    keys = also_keys(args, cfg, {"samples": data})
    check_overwrite(out, key, args.overwrite)
    lm = load_model(args.model, device=args.device, dtype=args.dtype)
    prov = {"provenance": {"samples": data, "run_key": key}}
    result = execute_run(args, lm, samples, cfg, out, prov, keys=keys)
    print(format_summary(result, out))
    if keys:
        print(format_also(out, list(keys)))
    return 0


def _run_task(args: argparse.Namespace) -> int:
    from saemui.models import load_model
    from saemui.records import write_samples
    from saemui.tasks import run_task

    if args.samples:
        raise SaemuiError("--samples and --task exclude each other (records come from the task)")
    prepare_run(args)
    if args.limit is not None and args.limit < 1:
        raise SaemuiError(f"--limit {args.limit}: expected a positive number of items")
    if args.gen_batch_size < 1:
        raise SaemuiError(f"--gen-batch-size {args.gen_batch_size}: expected a positive number")
    task = build_task(args.task, args.task_option, args.max_new_tokens, args.allow_code_execution)
    items = task.load_items(args.source, args.limit)
    if not items:
        raise SaemuiError(f"task {task.name}: no items to evaluate")
    cfg = run_config(args)
    out = Path(args.out) if args.out else _default_task_out(args.model, args.task, task, args.style, cfg)
    check_writable(out)
    data = {
        "task": args.task,
        "options": task_options(task),
        "style": args.style,
        "source": args.source,
        "limit": args.limit,
        "items": [it.id for it in items],
    }
    extraction = getattr(args, "extraction", "corrected")
    if extraction != "corrected":  # the default stays out of the key, so earlier runs keep theirs
        data["extraction"] = extraction
    key = run_key(args.model, cfg, data)
    keys = also_keys(args, cfg, data)
    check_overwrite(out, key, args.overwrite)

    lm = load_model(args.model, device=args.device, dtype=args.dtype)
    run = run_task(
        lm,
        task,
        items,
        cfg,
        style=args.style,
        source=args.source,
        cache=args.cache or None,
        cache_dir=out.parent / "generations",
        batch_size=args.gen_batch_size,
        name=args.task,
        model_name=args.model,
        progress=not args.quiet,
        extraction=extraction,
        measure=lambda samples, c, extra, info: execute_run(
            args, lm, samples, c, out, {**extra, "provenance": {"run_key": key}}, info, keys
        ),
    )
    gen = run.generation
    write_samples(out / "responses.jsonl", gen.samples)
    print(format_summary(run.result, out))
    if keys:
        print(format_also(out, list(keys)))
    print(
        f"responses  {out / 'responses.jsonl'} ({gen.n_generated} generated in {gen.seconds:.1f} s, "
        f"{gen.n_cached} from {run.cache})"
    )
    return 0


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            h.update(block)
    return h.hexdigest()


def run_config(args: argparse.Namespace) -> RunConfig:
    """The resolved RunConfig of ``saemui run`` arguments (SAE bundle lookup included)."""
    from saemui.bundles import find_bundles

    saes = args.saes
    if not args.neurons and not saes:
        bundles = find_bundles((args.model, _hf_id(args.model)))
        if bundles:
            saes = str(bundles[0])
        else:
            print(
                f"saemui: no SAE bundle found for {args.model!r}; measuring MLP-neuron MUI (pass --saes for features)",
                file=sys.stderr,
            )
    units = "sae" if (saes and not args.neurons) else "neurons"
    return RunConfig(units=units, saes=saes if units == "sae" else None, **run_config_fields(args)).resolved()


def _hf_id(model: str) -> str:
    from saemui.models import MODEL_SOURCES

    return MODEL_SOURCES[model].hf_id if model in MODEL_SOURCES else model


def _default_out(model: str, cfg: RunConfig) -> Path:
    basis = Path(cfg.saes).name if cfg.units == "sae" else f"neurons-{cfg.neuron_site}"
    return Path("runs") / f"{Path(model).name.replace('/', '_')}-{basis.replace(':', '_').replace('/', '_')}"


def _default_task_out(model: str, task_name: str, task: Task, style: str, cfg: RunConfig) -> Path:
    from saemui.tasks.pipeline import slug

    basis = Path(cfg.saes).name if cfg.units == "sae" else f"neurons-{cfg.neuron_site}"
    defaults = task_options(get_task(task_name))
    parts = [Path(model).name, task_name]
    # non-default options name the directory, so runs with other options do not overwrite each other
    parts += [f"{k}{v}" for k, v in sorted(task_options(task).items()) if defaults.get(k) != v]
    if style != "auto":
        parts.append(style)
    parts.append(basis)
    return Path("runs") / slug("-".join(str(p) for p in parts))


def _first_tokens_note(s: dict) -> str:
    short = s.get("short_samples")
    if not short:
        return ""
    flag = ": flagged short" if short["short"] else ""
    return (
        f", first {short['first_tokens']} positions per sample ({short['n']} with fewer, "
        f"{100 * short['share']:.0f} %{flag})"
    )


def format_also(out: Path, names: list[str]) -> str:
    """One line per ``--also`` setting written under ``out`` (read back from its result directory)."""
    from saemui.result import load_result

    lines = []
    for name in names:
        path = out / ALSO_DIR / name
        s = load_result(path).summary
        c = s["config"]
        first = f", first {c['first_tokens']} positions" if c.get("first_tokens") else ""
        short = " (short)" if (s.get("short_samples") or {}).get("short") else ""
        lines.append(
            f"also {name:<10} MUI {s['mui_percent']:.4f} %  ({s['selection']}, {s['units']['basis']}, alignment "
            f"{c['alignment']}{first}{short}) -> {path}"
        )
    return "\n".join(lines)


def format_summary(result: MUIResult, out: Path | None = None) -> str:
    s = result.summary
    pl = s["per_layer"]
    lines = [
        f"model      {s['model']['name']} ({s['model']['hf_id']}, {s['model']['dtype']} on {s['model']['device']})",
        f"units      {s['units']['kind']}: {s['units']['basis']} — {s['units']['n_units']} units × {s['units']['n_layers']} layers",
        f"selection  {s['selection']}, alignment {s['config']['alignment']}"
        + (f", preset {s['config']['preset']}" if s["config"].get("preset") else ""),
        f"data       {s['n_samples']} samples, {s['n_tokens']} scored tokens"
        + (f", {s['n_truncated_samples']} truncated" if s["n_truncated_samples"] else "")
        + _first_tokens_note(s),
        f"MUI        {s['mui_percent']:.4f} %  (per layer min {100 * min(pl):.3f} %, max {100 * max(pl):.3f} %)",
    ]
    if s.get("task"):
        t = s["task"]
        lines.insert(3, f"task       {t['name']} ({t['style']} style), {t['n_items']} items")
    if s.get("accuracy") is not None:
        lines.append(f"accuracy   {100 * s['accuracy']:.1f} % of {s['n_labelled']} labelled")
    if s.get("mui_correct") is not None:
        lines.append(f"MUI(correct only) {100 * s['mui_correct']:.4f} % over {s.get('n_correct')} samples")
    if s.get("sae_health"):
        ev = [h["explained_variance"] for h in s["sae_health"] if h.get("explained_variance") is not None]
        l0 = [h["l0"] for h in s["sae_health"]]
        lines.append(
            f"SAE health median L0 {statistics.median(l0):.1f}"
            + (f", median explained variance {statistics.median(ev):.3f}" if ev else "")
        )
    run = result.run_info or {}
    tps = (run.get("timing") or {}).get("tokens_per_second")
    lines.append(
        f"speed      {tps:.0f} tokens/s (forward + scoring, {run['machine']['cpu_count']} CPUs)"
        if tps
        else "speed      n/a"
    )
    if out is not None:
        lines.append(f"written    {out}")
    return "\n".join(lines)


__all__ = [
    "ALSO_DIR",
    "also_configs",
    "also_keys",
    "check_overwrite",
    "cmd_run",
    "execute_run",
    "format_also",
    "format_summary",
    "prepare_run",
    "run_config",
    "run_key",
]
