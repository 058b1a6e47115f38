"""Regressions of issue 20: run options that lost files or provenance, validation gaps, presets, lazy imports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from saemui.cli import main
from saemui.result import load_result
from saemui.testing import save_tiny_model


@pytest.fixture(scope="module")
def tiny_path(tiny_dir) -> str:
    return str(save_tiny_model(tiny_dir, "llama"))


def _task_argv(model: str, out: Path, *extra: str) -> list[str]:
    return ["run", "--task", "arith-1", "--limit", "3", "--model", model, "--neurons", "--max-new-tokens", "3",
            "--out", str(out), "--quiet", *extra]  # fmt: skip


def test_task_run_with_explore_keeps_contexts(tiny_path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert main(_task_argv(tiny_path, out, "--explore")) == 0
    assert (out / "contexts.npz").is_file()
    s = load_result(out).summary
    assert s["task"]["name"] == "arith-1" and s["n_samples"] == 3
