"""Fuzz: sae-lens SAE directories (cfg.json fields, each architecture, weight files, dtypes, shapes, values) and
saemui bundles/manifests. See tests/fuzz_support.py for the property; a loaded SAE must also pass or fail
``check_compatible`` with a one-line error."""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path

import pytest
import torch
from fuzz_support import JSON_VALUES, dumps, expect_ok_or_error, fuzz, mutated
from hypothesis import given
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file

from saemui import open_suite
from saemui.saes import check_compatible
from saemui.testing import save_synthetic_sae

D_IN, D_SAE, HOOK = 16, 8, "blocks.1.hook_resid_post"
ARCHS = ["standard", "topk", "jumprelu"]


@pytest.fixture(scope="module")
def sae_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz-saes")
    return {a: save_synthetic_sae(root / a, D_IN, D_SAE, HOOK, arch=a) for a in ARCHS}


def _copy(src: Path) -> Path:
    d = Path(tempfile.mkdtemp(prefix="saemui-fuzz-sae-")) / "sae"
    shutil.copytree(src, d)
    return d


def _load_all(spec: Path, *names: str) -> None:
    suite = open_suite(spec)
    for e in suite.entries:
        for enc in (False, True):
            sae = e.load("cpu", "float32", enc)
            check_compatible(sae, e, d_model=D_IN, d_mlp=D_IN, n_layers=4)
            # finite but extreme weights may overflow to inf here; the engine's activation check reports that
            assert sae.encode(torch.randn(2, D_IN)).shape == (2, D_SAE)


CFG_KEYS = ["d_in", "d_sae", "dtype", "device", "architecture", "metadata", "k", "apply_b_dec_to_input",
            "normalize_activations", "reshape_activations", "hook_name"]  # fmt: skip
CFG_VALUES = st.one_of(
    JSON_VALUES,
    st.sampled_from([0, -1, 16, 8, 2**40, 1.5, "float16", "bfloat16", "float64", "int8", "topk", "gated",
                     "cuda", "meta", {"hook_name": 5}, {"hook_name": "blocks.99.hook_resid_post"}]),
)  # fmt: skip


@fuzz(0.4)
@given(st.sampled_from(ARCHS), st.dictionaries(st.sampled_from(CFG_KEYS), CFG_VALUES, max_size=3),
       st.lists(st.sampled_from(CFG_KEYS), max_size=2))  # fmt: skip
def test_cfg_fields(sae_dirs, arch, changes, removed):
    d = _copy(sae_dirs[arch])
    cfg = json.loads((d / "cfg.json").read_text())
    cfg.update(changes)
    for k in removed:
        cfg.pop(k, None)
    (d / "cfg.json").write_text(dumps(cfg))
    expect_ok_or_error(lambda: _load_all(d), str(d))


@fuzz(0.4)
@given(st.data(), st.sampled_from(ARCHS), st.sampled_from(["cfg.json", "sae_weights.safetensors"]))
def test_corrupt_bytes(sae_dirs, data, arch, fname):
    d = _copy(sae_dirs[arch])
    f = d / fname
    f.write_bytes(data.draw(mutated(f.read_bytes())))
    expect_ok_or_error(lambda: _load_all(d), str(d))


TENSOR_EDITS = st.sampled_from(["nan", "inf", "-inf", "huge", "dtype", "shape", "drop", "extra", "int"])


@fuzz(0.4)
@given(st.sampled_from(ARCHS), st.sampled_from(["W_enc", "b_enc", "W_dec", "b_dec", "threshold"]), TENSOR_EDITS,
       st.sampled_from([torch.float16, torch.bfloat16, torch.float64]))  # fmt: skip
def test_weight_values_dtypes_shapes(sae_dirs, arch, name, edit, dtype):
    d = _copy(sae_dirs[arch])
    w = d / "sae_weights.safetensors"
    state = load_file(w)
    if name not in state:
        name = "W_enc"
    t = state[name]
    if edit in ("nan", "inf", "-inf"):
        t.view(-1)[0] = float(edit)
    elif edit == "huge":
        t.view(-1)[0] = 3e38
    elif edit == "dtype":
        state[name] = t.to(dtype)
    elif edit == "shape":
        state[name] = torch.zeros(*(s + 1 for s in t.shape)) if t.dim() else torch.zeros(2)
    elif edit == "drop":
        del state[name]
    elif edit == "extra":
        state["unexpected"] = torch.zeros(3)
    elif edit == "int":
        state[name] = t.to(torch.int32)
    save_file(state, w)
    expect_ok_or_error(lambda: _load_all(d), str(d))
    if edit in ("nan", "inf", "-inf"):  # refusing is required
        with pytest.raises(Exception, match="non-finite"):
            _load_all(d)


# -- bundles -----------------------------------------------------------------------------------------------


def _bundle(sae_dir: Path) -> Path:
    root = Path(tempfile.mkdtemp(prefix="saemui-fuzz-bundle-")) / "b"
    shutil.copytree(sae_dir, root / "layer_01")
    files = {f: hashlib.sha256((root / "layer_01" / f).read_bytes()).hexdigest()
             for f in ("cfg.json", "sae_weights.safetensors")}  # fmt: skip
    man = {"format": "saemui-sae-bundle/1", "name": "b",
           "saes": [{"layer": 1, "hook_name": HOOK, "path": "layer_01", "files": files}]}  # fmt: skip
    (root / "manifest.json").write_text(json.dumps(man))
    return root


MANIFEST_VALUES = st.one_of(
    JSON_VALUES, st.sampled_from(["../../etc", "/etc", "layer_01/../..", "a\x00b", "layer_01", 1, -1, 2**64])
)


@fuzz(0.4)
@given(
    st.sampled_from(["format", "name", "saes", "saes.0", "saes.0.layer", "saes.0.hook_name", "saes.0.path",
                     "saes.0.files", "saes.0.files.cfg.json", "saes.0.files.x"]),
    MANIFEST_VALUES,
)  # fmt: skip
def test_manifest_fields(sae_dirs, key, value):
    root = _bundle(sae_dirs["standard"])
    man = json.loads((root / "manifest.json").read_text())
    parts = key.split(".", 3) if key.startswith("saes.0.files") else key.split(".")
    if key.startswith("saes.0.files."):
        parts = ["saes", "0", "files", key.removeprefix("saes.0.files.")]
    obj = man
    for p in parts[:-1]:
        obj = obj[int(p)] if isinstance(obj, list) else obj[p]
    last = parts[-1]
    if isinstance(obj, list):
        obj[int(last)] = value
    else:
        obj[last] = value
    (root / "manifest.json").write_text(dumps(man))
    expect_ok_or_error(lambda: _load_all(root), str(root))


@fuzz(0.4)
@given(st.data())
def test_manifest_bytes(sae_dirs, data):
    root = _bundle(sae_dirs["topk"])
    m = root / "manifest.json"
    m.write_bytes(data.draw(mutated(m.read_bytes())))
    expect_ok_or_error(lambda: _load_all(root), str(root))
