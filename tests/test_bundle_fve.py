"""scripts/bundle_fve.py: bundles of different models are refused with a one-line error (exit 2), no output."""

from __future__ import annotations

import json

from test_sae_recipes import load_script


def test_refuses_bundles_of_different_models(tmp_path, capsys):
    mod = load_script("bundle_fve")
    bundles = []
    for name in ("smollm2-135m-instruct", "gemma3-270m"):
        b = tmp_path / name
        b.mkdir()
        (b / "manifest.json").write_text(json.dumps({"model": {"name": name}, "saes": []}))
        bundles += ["--bundle", str(b)]
    out = tmp_path / "fve.json"
    assert mod.main([*bundles, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        err.startswith("bundle_fve: error: --bundle: the bundles encode different models") and "\n" not in err
    )
    assert not out.exists()
