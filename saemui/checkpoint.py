"""Crash-safe progress for long MUI runs: fingerprinted, atomically written checkpoints.

A run with a checkpoint directory saves its counter state and position every N batches (and after each SAE
group) to ``checkpoint.pt`` via temp-file + rename, so a ``kill -9`` at any moment leaves either the previous or
the new checkpoint, never a torn one. Re-running the same command resumes from it; the result is identical to an
uninterrupted run because batches are built deterministically and state (including float64 partial sums) is
restored exactly. A checkpoint made with a different model, SAE suite, threshold, data or settings is refused,
naming what differs. Checkpoints are read with ``torch.load(weights_only=True)``: no pickle of arbitrary objects.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
from pathlib import Path

import torch

from saemui.errors import SaemuiError
from saemui.io import atomic_write_bytes

CKPT_NAME = "checkpoint.pt"
# 2: SAE-health sums are exact integer limbs (saemui.health.ExactSum), no longer float64 running sums
# 3: one counter and selector state per setting (several settings from one pass), health per (view, layer)
CKPT_VERSION = 3


def digest(obj: object) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def fingerprint(components: dict[str, object]) -> dict[str, str]:
    """Per-component digests, so a refusal can say *which* input changed."""
    return {k: digest(v) for k, v in components.items()}


def checkpoint_dir_for(out: str | os.PathLike) -> Path:
    """Where the checkpoint of a run writing to ``out`` lives (a hidden sibling directory)."""
    out = Path(out)
    return out.parent / f".{out.name}.checkpoint"


def save(ckpt_dir: Path, state: dict) -> None:
    buf = io.BytesIO()
    torch.save(dict(state, version=CKPT_VERSION), buf)
    atomic_write_bytes(Path(ckpt_dir) / CKPT_NAME, buf.getvalue())


def load(ckpt_dir: Path, expected: dict[str, str]) -> dict | None:
    """The saved state if it exists and matches ``expected``; None when there is none; error on mismatch."""
    path = Path(ckpt_dir) / CKPT_NAME
    if not path.is_file():
        return None
    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as e:
        raise SaemuiError(
            f"{path}: unreadable checkpoint ({type(e).__name__}); delete it to start over"
        ) from None
    if not isinstance(state, dict) or not isinstance(state.get("fingerprint", {}), dict):
        raise SaemuiError(f"{path}: unreadable checkpoint (not a saemui checkpoint); delete it to start over")
    if state.get("version") != CKPT_VERSION:
        raise SaemuiError(
            f"{path}: checkpoint format {state.get('version')} unsupported; delete it to start over"
        )
    saved = state.get("fingerprint", {})
    differ = sorted(k for k in set(saved) | set(expected) if saved.get(k) != expected.get(k))
    if differ:
        raise SaemuiError(
            f"{path}: checkpoint was made with a different {', '.join(differ)}; refusing to resume "
            "(re-run the original command, or delete the checkpoint directory to start over)"
        )
    return state


def clear(ckpt_dir: Path) -> None:
    """Remove the checkpoint directory, including temp files a kill during a checkpoint write left behind."""
    shutil.rmtree(ckpt_dir, ignore_errors=True)
