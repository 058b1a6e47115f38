"""Hand-made result directories: per-sample key sets chosen by the test, everything else derived by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from saemui.records import Sample, write_samples
from saemui.result import SCHEMA_VERSION, MUIResult


def make_result(
    sets: list[list[list[int]]],
    n_units: int,
    correct: list[bool | None] | None = None,
    *,
    model: str = "m",
    task: str | None = "t",
    layers: list[int] | None = None,
    basis: str = "neurons:down_input",
    selection: str = "topk:0.001",
    alignment: str = "predicting",
    ids: list[str] | None = None,
    tokens_per_sample: int = 5,
    keep_sets: bool = True,
    layer_selection: list[int] | None = None,
    first_tokens: int | None = None,
) -> MUIResult:
    """A result whose sample s has key units ``sets[s][r]`` at layer row r (union, keyfreq and MUI by hand)."""
    N, L = len(sets), len(sets[0])
    layers = list(range(L)) if layers is None else layers
    correct = [None] * N if correct is None else correct
    ids = [f"item-{i}" for i in range(N)] if ids is None else ids
    union = np.zeros((L, n_units), bool)
    keyfreq = np.zeros((L, n_units), np.int64)
    indptr, units = [0], []
    for s in range(N):
        for r in range(L):
            u = sorted(set(sets[s][r]))
            union[r, u] = True
            keyfreq[r, u] += 1
            units += u
            indptr.append(len(units))
    # a unit fires on twice as many tokens as it is key for: any positive count works for the tests
    fire = 2 * keyfreq
    labelled = [c for c in correct if c is not None]
    summary = {
        "schema_version": SCHEMA_VERSION,
        "mui": float(union.sum()) / union.size,
        "mui_percent": 100.0 * float(union.sum()) / union.size,
        "per_layer": [float(x) for x in union.mean(1)],
        "layers": layers,
        "n_samples": N,
        "n_tokens": N * tokens_per_sample,
        "n_empty_samples": 0,
        "n_truncated_samples": 0,
        "accuracy": sum(labelled) / len(labelled) if labelled else None,
        "n_labelled": len(labelled),
        "selection": selection,
        "units": {
            "kind": "sae" if not basis.startswith("neurons") else "neurons",
            "n_units": n_units,
            "n_layers": L,
            "basis": basis,
            "sae_ids": None,
            "sae_source": None,
        },
        "model": {"name": model, "hf_id": model, "provenance": {"sha256": f"sha-{model}"}},
        "config": {
            "units": "neurons",
            "threshold": selection,
            "alignment": alignment,
            "neuron_site": "down_input",
            "prompt_format": "chat",
            "layers": layer_selection,
            "first_tokens": first_tokens,
        },
        "versions": {"saemui": "0.0-test"},
    }
    if task is not None:
        summary["task"] = {"name": task}
    arrays = {
        "union_LU": union,
        "fire_LU": fire,
        "keyfreq_LU": keyfreq,
        "n_tokens_L": np.full(L, N * tokens_per_sample, np.int64),
        "set_indptr": np.asarray(indptr if keep_sets else [], np.int64),
        "set_units": np.asarray(units if keep_sets else [], np.int32),
    }
    rows = [
        {
            "index": i,
            "id": ids[i],
            "correct": correct[i],
            "n_response_tokens": tokens_per_sample,
            "n_scored": tokens_per_sample,
            "truncated": 0,
        }
        for i in range(N)
    ]
    return MUIResult(summary, arrays, rows, {})


def save_run(path: Path, res: MUIResult, records: list[Sample] | None = None) -> Path:
    res.save(path)
    if records is not None:
        write_samples(path / "responses.jsonl", records)
    return path


def hand_union(sets: list[list[list[int]]], chosen) -> set[tuple[int, int]]:
    return {(r, u) for s in chosen for r, units in enumerate(sets[s]) for u in units}
