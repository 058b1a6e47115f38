"""Where shipped SAE bundles are found, without downloading anything (and without importing torch).

Looked for, in order: ``$SAEMUI_SAES`` (a directory of bundles), the package's own ``saemui/bundled/`` (package
data in a wheel; in a checkout a symlink to the repository's ``saes/``), and the repository's ``saes/`` beside the
package (a checkout where the symlink is not materialised). Reading and checking a bundle is :mod:`saemui.saes`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def bundle_search_paths() -> list[Path]:
    """Existing directories that may hold bundles, first match wins; each directory listed once."""
    candidates = []
    env = os.environ.get("SAEMUI_SAES")
    if env:
        candidates.append(Path(env))
    candidates += [_PACKAGE / "bundled", _PACKAGE.parent / "saes"]
    out: list[Path] = []
    seen: set[Path] = set()
    for p in candidates:
        if p.is_dir() and p.resolve() not in seen:
            seen.add(p.resolve())
            out.append(p)
    return out


def find_bundles(model_name: str | Iterable[str]) -> list[Path]:
    """Shipped bundles whose manifest names the model (registry name or HF id; several names are all tried)."""
    names = {n for n in ([model_name] if isinstance(model_name, str) else model_name) if n}
    found = []
    for root in bundle_search_paths():
        for m in sorted(root.glob("*/manifest.json")):
            try:
                man = json.loads(m.read_text())
            except (OSError, json.JSONDecodeError):
                continue
            model = man.get("model") or {}
            if names & {model.get("name"), model.get("hf_id")} and m.parent.resolve() not in {
                f.resolve() for f in found
            }:
                found.append(m.parent)
    return found


__all__ = ["bundle_search_paths", "find_bundles"]
