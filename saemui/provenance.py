"""What a run records about where it ran and on what: package versions, the machine, and the model's identity.

``package_versions`` goes into every result's summary (deterministic); ``machine_info`` into ``run.json`` (varies
between machines). ``model_fingerprint`` identifies a model's greedy outputs, for caches keyed on the model.
"""

from __future__ import annotations

import hashlib
import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from saemui.models import LoadedModel

#: bytes read from each end of a weight file for the quick local-weights digest
_DIGEST_EDGE = 1 << 20


def package_versions() -> dict[str, str]:
    out = {}
    for name in ("saemui", "torch", "transformers", "transformer-lens", "sae-lens", "numpy", "safetensors"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def cpu_model() -> str:
    """The CPU's model name as the OS reports it (``/proc/cpuinfo`` on Linux), for result files and cards."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def machine_summary() -> str:
    """One line such as ``2-core AMD EPYC, no GPU``: read off the machine, never hard-coded."""
    gpu = f"GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "no GPU"
    return f"{os.cpu_count()}-core {cpu_model()}, {gpu}"


def machine_info() -> dict:
    return {
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def weights_digest(path: Path) -> str:
    """A quick digest of a local model directory's weights: config.json plus each weight file's size and edges."""
    # A full hash of multi-GB checkpoints on every run would cost more than generating a few items; size plus
    # the first and last MiB of each weight file changes with any retraining or re-quantization.
    h = hashlib.sha256()
    files = sorted(p for p in path.iterdir() if p.suffix in (".safetensors", ".bin", ".gguf", ".pt"))
    for p in [path / "config.json", *files]:
        if not p.is_file():
            continue
        size = p.stat().st_size
        h.update(f"{p.name}:{size}:".encode())
        with open(p, "rb") as f:
            h.update(f.read(_DIGEST_EDGE))
            if size > 2 * _DIGEST_EDGE:
                f.seek(size - _DIGEST_EDGE)
                h.update(f.read(_DIGEST_EDGE))
    return h.hexdigest()


def model_fingerprint(lm: LoadedModel) -> dict[str, Any]:
    """What identifies the model's greedy outputs: weights (sha256 or digest), dtype and chat template."""
    prov = lm.provenance or {}
    out: dict[str, Any] = {"hf_id": lm.hf_id, "dtype": str(lm.dtype).replace("torch.", "")}
    if prov.get("sha256"):
        out["sha256"] = prov["sha256"]
    elif Path(lm.name).is_dir():
        out["weights_digest"] = weights_digest(Path(lm.name))
    else:
        # a hub id: the snapshot commit pins the weights when transformers recorded it
        out["commit"] = getattr(lm.model.config, "_commit_hash", None)
    template = getattr(lm.tokenizer, "chat_template", None)
    if isinstance(template, str):
        out["chat_template_sha256"] = hashlib.sha256(template.encode()).hexdigest()[:16]
    return out
