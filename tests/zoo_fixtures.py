"""Shared tiny-zoo build for the zoo, figure and notebook tests (built once per session, seconds)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def load_script(name: str):
    """Import ``scripts/<name>.py`` as a module (scripts are not a package)."""
    spec = importlib.util.spec_from_file_location(f"_script_{name}", REPO / "scripts" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def build_tiny_v2(base: Path) -> tuple[Path, Path, object]:
    """(results dir, cache dir, build_zoo module) of the tiny v2 zoo built by ``build_zoo.py --spec v2 --tiny``."""
    results, cache = base / "results", base / "cache"
    mod = load_script("build_zoo")
    assert mod.main(["--spec", "v2", "--tiny", "--results", str(results), "--cache", str(cache)]) == 0
    return results, cache, mod
