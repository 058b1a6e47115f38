"""SAE loading paths, bundle integrity checks, encoder-only loading and compatibility refusals."""

import hashlib
import json

import pytest
import torch

from saemui.engine import RunConfig, compute_mui
from saemui.errors import SaemuiError
from saemui.records import Sample
from saemui.saes import bundle_entry, load_sae_dir, open_suite, write_bundle_manifest
from saemui.testing import save_synthetic_sae


def _bundle(root, layers=(0, 1, 2), d_in=64, d_sae=32, arch="standard"):
    saes = []
    for layer in layers:
        sub = f"layer_{layer:02d}"
        save_synthetic_sae(root / sub, d_in, d_sae, f"blocks.{layer}.hook_resid_post", arch=arch, seed=layer)
        files = {
            f: hashlib.sha256((root / sub / f).read_bytes()).hexdigest()
            for f in ("cfg.json", "sae_weights.safetensors")
        }
        saes.append(
            {"layer": layer, "hook_name": f"blocks.{layer}.hook_resid_post", "path": sub, "files": files}
        )
    (root / "manifest.json").write_text(
        json.dumps(
            {"format": "saemui-sae-bundle/1", "name": "test-bundle", "model": {"name": "tiny"}, "saes": saes}
        )
    )
    return root


@pytest.mark.parametrize("arch", ["standard", "topk", "jumprelu"])
def test_encoder_only_encode_equals_full(tmp_path, arch):
    save_synthetic_sae(tmp_path / "s", 32, 40, "blocks.0.hook_resid_post", arch=arch)
    full, enc = load_sae_dir(tmp_path / "s"), load_sae_dir(tmp_path / "s", encoder_only=True)
    assert enc.W_dec.untyped_storage().nbytes() <= 8  # decoder never materialised
    x = torch.randn(17, 32)
    with torch.no_grad():
        assert torch.equal(full.encode(x), enc.encode(x))


def test_spec_forms_resolve(tmp_path):
    b = _bundle(tmp_path / "bundle")
    assert open_suite(b).layers == [0, 1, 2] and open_suite(b).name == "test-bundle"
    assert open_suite(b / "layer_01").layers == [1]
    (b / "manifest.json").rename(tmp_path / "m.json")
    assert open_suite(b).layers == [0, 1, 2]  # directory of sae-lens directories


def test_bundle_writer_output_is_read_back(tmp_path):
    root = tmp_path / "written"
    for layer in (2, 0):
        save_synthetic_sae(root / f"l{layer}", 64, 32, f"blocks.{layer}.hook_resid_post", seed=layer)
    saes = [bundle_entry(root, lay, f"blocks.{lay}.hook_resid_post", f"l{lay}", d_sae=32) for lay in (2, 0)]
    write_bundle_manifest(root, "written", {"name": "tiny"}, "blocks.{layer}.hook_resid_post", saes, seed=7)
    m = json.loads((root / "manifest.json").read_text())
    assert m["format"] == "saemui-sae-bundle/1" and list(m)[-1] == "seed"
    assert (
        m["saes"][0]["files"]["sae_weights.safetensors"]
        == hashlib.sha256((root / "l2" / "sae_weights.safetensors").read_bytes()).hexdigest()
    )
    suite = open_suite(root)
    assert suite.name == "written" and suite.layers == [0, 2]
    assert suite.entries[0].meta["d_sae"] == 32
    (root / "l0" / "cfg.json").write_text((root / "l0" / "cfg.json").read_text() + " ")
    with pytest.raises(SaemuiError, match="sha256"):
        open_suite(root)


def test_bundle_integrity_checks(tmp_path):
    b = _bundle(tmp_path / "bundle")
    w = b / "layer_01" / "sae_weights.safetensors"
    w.write_bytes(w.read_bytes()[:-8] + b"corrupt!")
    with pytest.raises(SaemuiError, match="sha256"):
        open_suite(b)
    w.unlink()
    with pytest.raises(SaemuiError, match="missing"):
        open_suite(b)


def test_bundle_paths_cannot_escape(tmp_path):
    b = _bundle(tmp_path / "bundle", layers=(0,))
    man = json.loads((b / "manifest.json").read_text())
    man["saes"][0]["path"] = "../../etc"
    (b / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(SaemuiError, match="outside the bundle"):
        open_suite(b)


def test_bad_manifest_and_dirs(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m/manifest.json").write_text("{not json")
    with pytest.raises(SaemuiError, match="malformed JSON"):
        open_suite(tmp_path / "m")
    (tmp_path / "m/manifest.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(SaemuiError, match="format"):
        open_suite(tmp_path / "m")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SaemuiError, match="no manifest.json"):
        open_suite(tmp_path / "empty")
    with pytest.raises(SaemuiError, match="no such directory"):
        open_suite(str(tmp_path / "missing"))


def test_corrupt_safetensors_is_one_line_error(tmp_path):
    save_synthetic_sae(tmp_path / "s", 16, 8, "blocks.0.hook_resid_post")
    (tmp_path / "s/sae_weights.safetensors").write_bytes(b"\x00garbage")
    with pytest.raises(SaemuiError) as e:
        load_sae_dir(tmp_path / "s")
    msg = str(e.value)
    assert "sae_weights.safetensors" in msg and "corrupt safetensors header" in msg and "\n" not in msg


def test_d_in_mismatch_refused(tmp_path, tiny_llama):
    save_synthetic_sae(tmp_path / "s", 48, 8, "blocks.0.hook_resid_post")
    with pytest.raises(SaemuiError, match="d_in=48"):
        compute_mui(
            tiny_llama, [Sample("a", "b c")], RunConfig(units="sae", saes=str(tmp_path / "s")), progress=False
        )


def test_layer_out_of_range_refused(tmp_path, tiny_llama):
    save_synthetic_sae(tmp_path / "s", 64, 8, "blocks.7.hook_resid_post")
    with pytest.raises(SaemuiError, match="layer 7"):
        compute_mui(
            tiny_llama, [Sample("a", "b c")], RunConfig(units="sae", saes=str(tmp_path / "s")), progress=False
        )


def test_grouped_encoder_only_equals_all_at_once(tmp_path, tiny_llama):
    b = _bundle(tmp_path / "bundle")
    samples = [Sample("Hi", "Paris is nice."), Sample("Code", "def f(x): return x")]
    whole = compute_mui(tiny_llama, samples, RunConfig(units="sae", saes=str(b)), progress=False)
    grouped = compute_mui(
        tiny_llama,
        samples,
        RunConfig(units="sae", saes=str(b), sae_group_size=1, health=False),
        progress=False,
    )
    assert (whole.arrays["union_LU"] == grouped.arrays["union_LU"]).all()
    assert whole.mui == grouped.mui
    assert grouped.summary["sae_health"][0].get("explained_variance") is None
    layers = compute_mui(
        tiny_llama, samples, RunConfig(units="sae", saes=str(b), layers=[0, 2]), progress=False
    )
    assert layers.layers == [0, 2]
    with pytest.raises(SaemuiError, match="no SAE for layer"):
        compute_mui(tiny_llama, samples, RunConfig(units="sae", saes=str(b), layers=[5]), progress=False)


def test_mixed_widths_refused(tmp_path, tiny_llama):
    save_synthetic_sae(tmp_path / "d/a", 64, 8, "blocks.0.hook_resid_post")
    save_synthetic_sae(tmp_path / "d/b", 64, 16, "blocks.1.hook_resid_post")
    with pytest.raises(SaemuiError, match="same width"):
        compute_mui(
            tiny_llama, [Sample("a", "b c")], RunConfig(units="sae", saes=str(tmp_path / "d")), progress=False
        )
