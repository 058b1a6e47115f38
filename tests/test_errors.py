"""The bad-input catalogue of docs/errors.md: every case gives a one-line `saemui: error:`, exit status 2, and no
result directory. Case ids match the table in docs/errors.md."""

import hashlib
import json
from pathlib import Path

import pytest
import torch

from saemui.cli import main
from saemui.testing import save_synthetic_sae, save_tiny_model

GOOD = '{"prompt": "Hi", "response": "Paris is nice."}\n'


def _write(p: Path, data: bytes | str) -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data if isinstance(data, bytes) else data.encode())
    return p


def _bundle(root: Path, hook="blocks.0.hook_resid_post", d_in=64, path="layer_00", digest=True):
    save_synthetic_sae(root / "layer_00", d_in, 8, hook)
    files = (
        {
            f: hashlib.sha256((root / "layer_00" / f).read_bytes()).hexdigest()
            for f in ("cfg.json", "sae_weights.safetensors")
        }
        if digest
        else {}
    )
    _write(
        root / "manifest.json",
        json.dumps(
            {
                "format": "saemui-sae-bundle/1",
                "name": "b",
                "saes": [{"layer": 0, "hook_name": hook, "path": path, "files": files}],
            }
        ),
    )
    return root


def case_setup(case: str, t: Path, model: str) -> tuple[list[str], str]:
    """Returns (extra CLI args, expected message fragment) for a case; creates its files under t."""
    s = lambda text: ["--samples", str(_write(t / "s.jsonl", text))]  # noqa: E731
    neu = ["--neurons"]
    if case == "samples-missing":
        return ["--samples", str(t / "nope.jsonl")] + neu, "no such file"
    if case == "jsonl-malformed":
        return s(GOOD + '{"prompt": "x",\n') + neu, "s.jsonl:2: malformed JSON"
    if case == "jsonl-missing-field":
        return s('{"prompt": "x"}\n') + neu, "s.jsonl:1: missing field 'response'"
    if case == "jsonl-wrong-type":
        return s('{"prompt": "x", "response": 5}\n') + neu, "field 'response' must be a string"
    if case == "jsonl-not-object":
        return s("[1, 2]\n") + neu, "expected a JSON object"
    if case == "jsonl-not-utf8":
        return s(b'{"prompt": "\xff", "response": "b"}\n') + neu, "not valid UTF-8"
    if case == "jsonl-empty":
        return s("\n") + neu, "no records"
    if case == "jsonl-duplicate-id":
        return s('{"prompt": "a", "response": "b", "id": "x"}\n' * 2) + neu, "duplicate id"
    if case == "jsonl-bad-correct":
        return s(
            '{"prompt": "a", "response": "b", "correct": 1}\n'
        ) + neu, "'correct' must be true, false or null"
    if case == "threshold-range":
        return s(GOOD) + neu + ["--threshold", "topscore:1.5"], "out of range"
    if case == "threshold-syntax":
        return s(GOOD) + neu + ["--threshold", "top5"], "not understood"
    if case == "threshold-k":
        return s(GOOD) + neu + ["--threshold", "topk:2.5"], "whole number"
    if case == "layers-syntax":
        return s(GOOD) + neu + ["--layers", "one"], "--layers"
    if case == "layers-backwards":
        return s(GOOD) + neu + ["--layers", "5-2"], "runs backwards"
    if case == "threshold-no-k":
        return s(GOOD) + neu + ["--threshold", "topk"], "needs K"
    if case == "task-flags-without-task":
        return s(GOOD) + neu + ["--task-option", "level=2"], "only apply with --task"
    if case == "layers-range":
        return s(GOOD) + neu + ["--layers", "0-9"], "out of range"
    if case == "limit":
        return s(GOOD) + neu + ["--limit", "-1"], "--limit"
    if case == "max-length":
        return s(GOOD) + neu + ["--max-length", "1"], "max_length"
    if case == "prompt-too-long":
        return s(json.dumps({"prompt": "word " * 300, "response": "x"}) + "\n") + neu + [
            "--max-length",
            "50",
        ], "prompt alone has"
    if case == "checkpoint-every":
        return s(GOOD) + neu + ["--checkpoint-every", "-2"], "--checkpoint-every"
    if case == "model-gguf-missing":
        return s(GOOD) + neu + ["--model", str(t / "m.gguf")], "no such GGUF file"
    if case == "model-gguf-corrupt":
        return s(GOOD) + neu + [
            "--model",
            str(_write(t / "bad.gguf", b"GGUF garbage")),
        ], "not a loadable GGUF"
    if case == "model-dir-no-config":
        (t / "emptymodel").mkdir()
        return s(GOOD) + neu + ["--model", str(t / "emptymodel")], "no config.json"
    if case == "model-not-dir":
        return s(GOOD) + neu + ["--model", str(_write(t / "m.bin", b"x"))], "expected a model directory"
    if case == "saes-missing":
        return s(GOOD) + ["--saes", str(t / "nosae")], "no such directory"
    if case == "saes-empty-dir":
        (t / "sd").mkdir()
        return s(GOOD) + ["--saes", str(t / "sd")], "no manifest.json"
    if case == "manifest-json":
        _write(t / "b/manifest.json", "{oops")
        return s(GOOD) + ["--saes", str(t / "b")], "malformed JSON"
    if case == "manifest-format":
        _write(t / "b/manifest.json", json.dumps({"format": "v0", "saes": []}))
        return s(GOOD) + ["--saes", str(t / "b")], "field 'format'"
    if case == "manifest-escape":
        _bundle(t / "b", path="../../x")
        return s(GOOD) + ["--saes", str(t / "b")], "outside the bundle"
    if case == "bundle-sha-mismatch":
        b = _bundle(t / "b")
        w = b / "layer_00/sae_weights.safetensors"
        w.write_bytes(w.read_bytes()[:-4] + b"XXXX")
        return s(GOOD) + ["--saes", str(b)], "sha256 differs"
    if case == "bundle-file-missing":
        b = _bundle(t / "b")
        (b / "layer_00/sae_weights.safetensors").unlink()
        return s(GOOD) + ["--saes", str(b)], "missing"
    if case == "safetensors-corrupt":
        save_synthetic_sae(t / "sae", 64, 8, "blocks.0.hook_resid_post")
        (t / "sae/sae_weights.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{bad}")
        return s(GOOD) + ["--saes", str(t / "sae")], "corrupt safetensors header"
    if case == "sae-cfg-json":
        save_synthetic_sae(t / "sae", 64, 8, "blocks.0.hook_resid_post")
        (t / "sae/cfg.json").write_text('{"d_in": 64,')
        return s(GOOD) + ["--saes", str(t / "sae")], "cfg.json: malformed JSON"
    if case == "sae-weights-nonfinite":
        from safetensors.torch import load_file, save_file

        save_synthetic_sae(t / "sae", 64, 8, "blocks.0.hook_resid_post")
        w = t / "sae/sae_weights.safetensors"
        state = load_file(w)
        state["b_enc"][0] = float("nan")
        save_file(state, w)
        return s(GOOD) + ["--saes", str(t / "sae")], "tensor 'b_enc' has 1 non-finite"
    if case == "sae-shape-mismatch":
        save_synthetic_sae(t / "sae", 64, 8, "blocks.0.hook_resid_post")
        cfg = json.loads((t / "sae/cfg.json").read_text())
        cfg["d_sae"] = 10**9
        (t / "sae/cfg.json").write_text(json.dumps(cfg))
        return s(GOOD) + ["--saes", str(t / "sae")], "cfg.json says"
    if case == "jsonl-huge-number":
        return s('{"prompt": "a", "response": "b", "x": ' + "9" * 5000 + "}\n") + neu, "malformed JSON"
    if case == "manifest-types":
        _write(t / "b/manifest.json", json.dumps({"format": "saemui-sae-bundle/1", "saes": {"layer": 0}}))
        return s(GOOD) + ["--saes", str(t / "b")], "field 'saes' must be a JSON array"
    if case == "sae-no-hook-name":
        save_synthetic_sae(t / "sae", 64, 8, "blocks.0.hook_resid_post")
        cfg = json.loads((t / "sae/cfg.json").read_text())
        cfg["metadata"].pop("hook_name")
        (t / "sae/cfg.json").write_text(json.dumps(cfg))
        return s(GOOD) + ["--saes", str(t / "sae")], "no metadata.hook_name"
    if case == "sae-hook-unsupported":
        save_synthetic_sae(t / "sae", 64, 8, "blocks.0.attn.hook_z")
        return s(GOOD) + ["--saes", str(t / "sae")], "not produced by saemui"
    if case == "sae-layer-out-of-range":
        save_synthetic_sae(t / "sae", 64, 8, "blocks.12.hook_resid_post")
        return s(GOOD) + ["--saes", str(t / "sae")], "layer 12"
    if case == "sae-d-in":
        save_synthetic_sae(t / "sae", 32, 8, "blocks.0.hook_resid_post")
        return s(GOOD) + ["--saes", str(t / "sae")], "d_in=32"
    if case == "sae-processing":
        save_synthetic_sae(
            t / "sae",
            64,
            8,
            "blocks.0.hook_resid_post",
            metadata={"model_from_pretrained_kwargs": {"fold_ln": True}},
        )
        return s(GOOD) + ["--saes", str(t / "sae")], "TransformerLens-processed"
    if case == "sae-mixed-widths":
        save_synthetic_sae(t / "d/a", 64, 8, "blocks.0.hook_resid_post")
        save_synthetic_sae(t / "d/b", 64, 16, "blocks.1.hook_resid_post")
        return s(GOOD) + ["--saes", str(t / "d")], "same width"
    if case == "release-unknown":
        return s(GOOD) + ["--saes", "no-such-release"], "not in the sae-lens registry"
    if case == "release-id-unknown":
        return s(GOOD) + ["--saes", "gpt2-small-res-jb:blocks.99.x"], "not in release"
    if case == "release-offline":
        return s(GOOD) + ["--saes", "gpt2-small-res-jb:blocks.0.hook_resid_pre"], "could not download SAE"
    if case == "first-tokens":
        return s(GOOD) + neu + ["--first-tokens", "0"], "--first-tokens 0: expected a positive number"
    if case == "also-field":
        return s(GOOD) + neu + ["--also", "b=colour=red"], "--also 'b=colour=red': unknown field 'colour'"
    if case == "also-explore":
        return s(GOOD) + neu + ["--also", "b=threshold=topk:3", "--explore"], "--also and --explore exclude"
    if case == "out-not-writable":
        return s(GOOD) + neu + ["--out", str(_write(t / "f", "x") / "o")], "not writable"
    if case == "checkpoint-mismatch":
        from saemui import checkpoint

        checkpoint.save(
            checkpoint.checkpoint_dir_for(t / "out"), {"fingerprint": {"data": "0"}, "next": [0, 1]}
        )
        return s(GOOD) + neu, "checkpoint was made with a different"
    if case == "checkpoint-corrupt":
        from saemui import checkpoint

        _write(checkpoint.checkpoint_dir_for(t / "out") / checkpoint.CKPT_NAME, b"not a checkpoint")
        return s(GOOD) + neu, "unreadable checkpoint"
    if case == "nan-activations":
        return s(GOOD) + neu + ["--model", model + "-nan"], "non-finite activations"
    raise KeyError(case)


CASES = [
    "samples-missing",
    "jsonl-malformed",
    "jsonl-missing-field",
    "jsonl-wrong-type",
    "jsonl-not-object",
    "jsonl-not-utf8",
    "jsonl-empty",
    "jsonl-duplicate-id",
    "jsonl-bad-correct",
    "threshold-range",
    "threshold-syntax",
    "threshold-k",
    "layers-syntax",
    "layers-range",
    "layers-backwards",
    "threshold-no-k",
    "task-flags-without-task",
    "limit",
    "max-length",
    "first-tokens",
    "also-field",
    "also-explore",
    "prompt-too-long",
    "checkpoint-every",
    "model-gguf-missing",
    "model-gguf-corrupt",
    "model-dir-no-config",
    "model-not-dir",
    "saes-missing",
    "saes-empty-dir",
    "manifest-json",
    "manifest-format",
    "manifest-escape",
    "bundle-sha-mismatch",
    "bundle-file-missing",
    "safetensors-corrupt",
    "sae-cfg-json",
    "sae-weights-nonfinite",
    "sae-shape-mismatch",
    "jsonl-huge-number",
    "manifest-types",
    "sae-no-hook-name",
    "sae-hook-unsupported",
    "sae-layer-out-of-range",
    "sae-d-in",
    "sae-processing",
    "sae-mixed-widths",
    "release-unknown",
    "release-id-unknown",
    "release-offline",
    "out-not-writable",
    "checkpoint-mismatch",
    "checkpoint-corrupt",
    "nan-activations",
]


@pytest.fixture(scope="module")
def model(tiny_dir):
    path = save_tiny_model(tiny_dir, "llama")
    nan = Path(str(path) + "-nan")
    if not nan.exists():
        from transformers import AutoModelForCausalLM, AutoTokenizer

        m = AutoModelForCausalLM.from_pretrained(path)
        with torch.no_grad():
            m.model.layers[1].mlp.up_proj.weight.fill_(float("nan"))
        m.save_pretrained(nan)
        AutoTokenizer.from_pretrained(path).save_pretrained(nan)
    return str(path)


@pytest.mark.parametrize("case", CASES)
def test_bad_input(case, model, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    extra, fragment = case_setup(case, tmp_path, model)
    args = [
        "run",
        "--model",
        model,
        "--out",
        str(tmp_path / "out"),
        "--quiet",
        "--checkpoint-every",
        "1",
    ] + extra
    rc = main(args)
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert rc == 2, err
    assert len(err) == 1 and err[0].startswith("saemui: error: "), err
    assert fragment in err[0], err[0]
    assert not (tmp_path / "out" / "summary.json").exists()


def test_catalogue_documents_every_case():
    doc = (Path(__file__).resolve().parents[1] / "docs" / "errors.md").read_text()
    missing = [c for c in CASES if f"`{c}`" not in doc]
    assert not missing, f"cases not in docs/errors.md: {missing}"
