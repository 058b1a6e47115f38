"""The zoo record: one small, deterministic JSON file per (model, task) point, ``<results>/<model>__<task>.json``.

This module is both the writer and the reader of the format: :data:`RESULT_SCHEMA`, the record builder
(:func:`zoo_record`), the shared items file (``<results>/items/<task>.json``) and the loaders the analysis uses
(:func:`results_dir`, :func:`load_records`, :func:`load_items`).

A record holds no timings: accuracy, MUI, per-layer MUI, per-sample correctness and key-set sizes, and the
per-sample key sets themselves when they are small (global unit ids ``row * n_units + unit``), so coverage and
subset MUIs can be recomputed without the model.
"""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from saemui.errors import SaemuiError
from saemui.io import atomic_write_json
from saemui.readers import check_zoo_record, read_json
from saemui.tasks import get_task
from saemui.zoo.spec import ZooModel, ZooSpec, ZooTask, contaminated_tasks, eval_items, in_domain_tasks

if TYPE_CHECKING:
    from saemui.result import MUIResult
    from saemui.tasks.pipeline import TaskRun

RESULT_SCHEMA = "saemui-zoo-result/1"
ITEMS_SCHEMA = "saemui-zoo-items/1"
DEFAULT_RESULTS = "results/zoo"


def result_path(results: Path, model: str, task: str) -> Path:
    """Where the record of one (model, task) point lives."""
    return Path(results) / f"{model}__{task}.json"


# ----- writing ---------------------------------------------------------------------------------------------


def unit_fields(res: MUIResult, n_samples: int, max_set_entries: int) -> dict[str, Any]:
    """A result's basis size, union size and per-sample key sets (sorted global ids ``row * n_units + unit``,
    row = position in res.layers; None when more than ``max_set_entries`` in all), for a zoo record."""
    U = res.n_units
    sets = [
        sorted(int(r * U + u) for r, arr in enumerate(res.sample_sets(i)) for u in arr.tolist())
        for i in range(n_samples)
    ]
    return {
        "n_units": U,
        "n_layers": len(res.layers),
        "set_sizes": [len(x) for x in sets],
        "union_size": int(res.arrays["union_LU"].sum()),
        "sets": sets if sum(len(x) for x in sets) <= max_set_entries else None,
    }


def sae_fields(res: MUIResult, n_samples: int, max_set_entries: int) -> dict[str, Any]:
    """The record's ``sae`` entry: the same point measured in an SAE basis."""
    return {
        "mui": res.mui,
        "per_layer": res.per_layer,
        "basis": res.summary["units"]["basis"],
        "selection": res.summary["selection"],
        "mui_correct": res.summary.get("mui_correct"),
        **unit_fields(res, n_samples, max_set_entries),
    }


def zoo_record(
    spec: ZooSpec,
    m: ZooModel,
    t: ZooTask,
    run: TaskRun,
    sensitivity: list[dict[str, Any]],
    sae: dict[str, Any] | None,
    model_sha256: str | None,
    fingerprint: str,
) -> dict[str, Any]:
    """The record of model ``m`` on task ``t`` from its task run (the main selection in the neuron basis).

    sensitivity: ``{selection, threshold, mui}`` per selection rule, the main one first; sae: :func:`sae_fields`
    or None; fingerprint: the eval stage's fingerprint (a rebuild skips the point while it matches).
    """
    samples, s = run.generation.samples, run.result.summary
    units = unit_fields(run.result, len(samples), spec.max_set_entries)
    correct = [bool(x.correct) for x in samples]
    root = spec.root_of(m)
    return {
        "schema": RESULT_SCHEMA,
        "zoo": spec.name,
        "model": m.name,
        "root": root.name,
        "root_spec": Path(root.base).name,
        "derivation": m.derivation,
        "parent": None if m.derivation == "none" else m.base,
        "step": m.step if m.derivation == "checkpoint-of" else (m.steps if m.trains else None),
        "train_steps": (spec.model(m.base).steps if m.derivation == "checkpoint-of" else m.steps) or None,
        "in_domain": in_domain_tasks(spec, m),
        "contaminated": contaminated_tasks(spec, m),
        "spec": asdict(m),
        "task": t.name,
        "task_options": dict(t.options),
        "style": run.generation.style,
        "max_new_tokens": t.max_new_tokens,
        "n": len(samples),
        "n_correct": sum(correct),
        "accuracy": sum(correct) / len(correct),
        "mui": s["mui"],
        "mui_correct": s.get("mui_correct"),
        "per_layer": s["per_layer"],
        "layers": s["layers"],
        "n_units": units["n_units"],
        "n_layers": units["n_layers"],
        "n_tokens": s["n_tokens"],
        "selection": s["selection"],
        "basis": s["units"]["basis"],
        "config": {
            k: v
            for k, v in s["config"].items()
            if k in ("units", "threshold", "alignment", "neuron_site", "prompt_format", "max_length")
        },
        "ids": [str(x.id) for x in samples],
        "correct": [int(c) for c in correct],
        "set_sizes": units["set_sizes"],
        "union_size": units["union_size"],
        "sets": units["sets"],
        "sensitivity": sensitivity,
        "sae": sae,
        "model_sha256": model_sha256,
        "fingerprint": fingerprint,
    }


def write_items_file(spec: ZooSpec, t: ZooTask, results: Path) -> Path:
    """``<results>/items/<task>.json``: the N eval items' ids, chat-style prompt text and gold answers.

    The lexical-diversity baseline (distinct n-grams) and item-level analyses read the text from here, so the
    analysis needs no dataset; one file per task, shared by every model (not a ``*__*.json`` result record).
    """
    task = get_task(t.name, **dict(t.options), max_new_tokens=t.max_new_tokens)
    items = eval_items(spec, t)
    out = Path(results) / "items" / f"{t.name}.json"
    atomic_write_json(
        out,
        {
            "schema": ITEMS_SCHEMA,
            "zoo": spec.name,
            "task": t.name,
            "task_options": dict(t.options),
            "ids": [str(i.id) for i in items],
            "prompts": [task.format_prompt(i, "chat") for i in items],
            "gold": [i.gold if isinstance(i.gold, int | float | str | None) else str(i.gold) for i in items],
        },
    )
    return out


# ----- reading ---------------------------------------------------------------------------------------------


def results_dir(path: str | os.PathLike | None = None) -> Path:
    """``path``, else ``$SAEMUI_ZOO_RESULTS``, else ``results/zoo`` (of the working directory, or of the
    repository when run from elsewhere, e.g. a notebook in ``notebooks/``)."""
    chosen = path or os.environ.get("SAEMUI_ZOO_RESULTS")
    if chosen:
        return Path(chosen)
    here = Path(DEFAULT_RESULTS)
    repo = Path(__file__).resolve().parents[2] / DEFAULT_RESULTS
    return here if here.is_dir() or not repo.is_dir() else repo


def load_records(results: str | os.PathLike | None = None) -> list[dict]:
    """Every zoo result record in a directory (sorted by file name)."""
    d = results_dir(results)
    if not d.is_dir():
        raise SaemuiError(f"{d}: no zoo results directory (build it with scripts/build_zoo.py)")
    out = []
    for f in sorted(d.glob("*__*.json")):
        rec = read_json(f, dict, "zoo result", schema=RESULT_SCHEMA, kind="zoo result")
        check_zoo_record(rec, str(f))
        out.append(rec)
    if not out:
        raise SaemuiError(f"{d}: no zoo result files (<model>__<task>.json)")
    return out


def load_items(task: str, results: str | os.PathLike | None = None) -> dict:
    """``<results>/items/<task>.json`` (ids, chat prompt text, gold of the zoo's N items), written by the build."""
    f = results_dir(results) / "items" / f"{task}.json"
    if not f.is_file():
        raise SaemuiError(f"{f}: no items file for task {task!r} (scripts/build_zoo.py writes it)")
    return read_json(f, dict, "zoo items file")


__all__ = [
    "DEFAULT_RESULTS",
    "ITEMS_SCHEMA",
    "RESULT_SCHEMA",
    "load_items",
    "load_records",
    "result_path",
    "results_dir",
    "sae_fields",
    "unit_fields",
    "write_items_file",
    "zoo_record",
]
