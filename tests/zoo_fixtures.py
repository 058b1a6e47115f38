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


def one_family_copy(results: Path, dest: Path, family: str, other: str) -> list[str]:
    """``results`` copied to ``dest`` as a §11 case-(3) zoo: the ``other`` root's fine-tuned records left out (its
    base records stay), and eligibility.json's law tasks moved into a ``one_family_study`` block for ``family``
    with the two-family outcome set to m = 0. Returns the study's tasks."""
    import json
    import shutil

    shutil.copytree(results, dest, ignore=shutil.ignore_patterns(f"{other}-*"))
    elig = json.loads((dest / "eligibility.json").read_text())
    tasks = elig["law_tasks"]
    elig.update(
        law_tasks=[],
        m=0,
        C=None,
        one_family_study={"family": family, "tasks": tasks, "C": tasks[0], "rule": "§11 case (3)"},
    )
    (dest / "eligibility.json").write_text(json.dumps(elig))
    return tasks
