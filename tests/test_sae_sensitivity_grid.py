"""The SAE width / k sensitivity (issue 17): ``sensitivity.sae_grid`` by hand on a fixed result document, its
markdown and figure, and ``scripts/reproduce_sae_sensitivity.py`` (README section refreshed in place)."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
from zoo_fixtures import load_script

from saemui.analysis.sensitivity import sae_grid, sae_grid_markdown
from saemui.errors import SaemuiError

GRID = [(512, 64), (1024, 64), (2048, 64), (1024, 16), (1024, 32)]
LAYERS = [5, 15]


def _name(w: int, k: int) -> str:
    return "base" if (w, k) == (1024, 64) else f"base-w{w}-k{k}"


def _res() -> dict:
    rows, mui = [], []
    for i, (w, k) in enumerate(GRID):
        for j, layer in enumerate(LAYERS):
            rows.append(
                {
                    "recipe": _name(w, k),
                    "layer": layer,
                    "fve_pooled": 0.5 + 0.05 * i + 0.1 * j,
                    "ce_loss_recovered": 0.9 + 0.01 * i - 0.02 * j,
                    "dead_frac": 0.01 * (i + j),
                    "dense_frac": 0.1 + 0.01 * j,
                    "l0": float(k) + j,
                    "train_seconds": 60.0 * (i + 1),
                }
            )
        for eta in (0.9, 0.95):
            mui.append(
                {"basis": _name(w, k), "width": w, "l0": k, "eta": eta, "mui": 10 * eta - i, "n_samples": 32}
            )
    return {
        "model": "m",
        "layers": LAYERS,
        "recipes": [{"name": _name(w, k), "width": w, "k": k} for w, k in GRID],
        "rows": rows,
        "default_run_mui": mui,
        "eval_sequences": 400,
        "eval_source": "held-out answers",
    }


def test_sae_grid_by_hand():
    g = sae_grid(_res()).set_index("recipe")
    assert list(g.index) == ["base-w512-k64", "base-w1024-k16", "base-w1024-k32", "base", "base-w2048-k64"]
    assert g.loc["base", "varies"] == "centre" and g.loc["base-w512-k64", "varies"] == "width"
    assert g.loc["base-w1024-k16", "varies"] == "k"
    for i, (w, k) in enumerate(GRID):
        r = g.loc[_name(w, k)]
        fve = np.array([0.5 + 0.05 * i, 0.6 + 0.05 * i])
        assert r["fve_median"] == pytest.approx(np.median(fve))
        assert (r["fve_min"], r["fve_max"]) == pytest.approx((fve.min(), fve.max()))
        assert r["ce_rec_median"] == pytest.approx(np.median([0.9 + 0.01 * i, 0.88 + 0.01 * i]))
        assert r["dead_max"] == pytest.approx(0.01 * (i + 1))
        assert r["l0_median"] == pytest.approx(k + 0.5)
        assert r["train_minutes"] == pytest.approx(2 * (i + 1))
        assert r["mui_eta=0.9"] == pytest.approx(9 - i) and r["mui_eta=0.95"] == pytest.approx(9.5 - i)
    md = sae_grid_markdown(sae_grid(_res()), _res(), "cmd")
    assert "| `base-w512-k64` | 512 | 64 | 0.550 (0.500–0.600) |" in md
    assert "MUI % (eta=0.9) | MUI % (eta=0.95)" in md and "default run's 32 built-in samples" in md


def test_sae_grid_refuses_bad_documents():
    res = _res()
    res["rows"] = [r for r in res["rows"] if not (r["recipe"] == "base" and r["layer"] == 15)]
    with pytest.raises(SaemuiError, match="recipe base has rows for layers \\[5\\], expected \\[5, 15\\]"):
        sae_grid(res)
    res = _res()
    res["default_run_mui"].append(dict(res["default_run_mui"][0]))
    with pytest.raises(SaemuiError, match="given twice"):
        sae_grid(res)
    res = _res()
    res["recipes"].append({"name": "odd", "width": 4096, "k": 8})
    with pytest.raises(SaemuiError, match="one-factor-at-a-time"):
        sae_grid(res)
    res = _res()
    del res["rows"]
    with pytest.raises(SaemuiError, match="missing 'rows'"):
        sae_grid(res)


def test_script_writes_figure_and_refreshes_the_readme(tmp_path, capsys):
    src = tmp_path / "sens.json"
    src.write_text(json.dumps(_res()))
    readme = tmp_path / "README.md"
    readme.write_text("# SAEs\n\ntext\n")
    script = load_script("reproduce_sae_sensitivity")
    args = ["--results", str(src), "--figure", str(tmp_path / "fig"), "--readme", str(readme)]
    assert script.main(args) == 0
    assert (tmp_path / "fig.png").stat().st_size > 0 and (tmp_path / "fig.pdf").is_file()
    text = readme.read_text()
    assert text.startswith("# SAEs\n\ntext\n\n<!-- sae sensitivity: begin -->\n## Width / k sensitivity")
    assert script.main(args) == 0 and readme.read_text() == text
    bad = copy.deepcopy(_res())
    del bad["default_run_mui"]
    src.write_text(json.dumps(bad))
    capsys.readouterr()
    assert script.main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing 'default_run_mui'" in err[0]
