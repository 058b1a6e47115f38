"""One figure per corollary of the Study v2 protocol (§8.1-§8.4), rendered once to a temporary directory."""

import numpy as np
import pandas as pd
import pytest

from saemui.analysis.comparison import fair_comparison_cv
from saemui.analysis.contamination import detector_auroc
from saemui.analysis.diversity import designed_datasets
from saemui.analysis.training import seed_band
from saemui.errors import SaemuiError
from saemui.plots import (
    plot_cv_errors,
    plot_detector_auroc,
    plot_diversity_levels,
    plot_seed_band,
    save_figure,
)


def _saved(fig, tmp_path, name):
    paths = save_figure(fig, tmp_path / name, formats=("png",))
    assert paths[0].stat().st_size > 5000
    return fig


def test_seed_band_figure(tmp_path):
    rng = np.random.default_rng(0)
    rows = []
    for fam in ("SmolLM2", "Gemma"):
        for s in range(3):
            p, m = 20.0, 5.0
            for step in (0, 10, 20, 40):
                rows.append(
                    {"family": fam, "seed": s, "step": step, "P": p, "mui": m, "mui_T": m / 2, "tau": 8 + s}
                )
                p, m = p + rng.normal(3, 1), m + rng.normal(0.2, 0.2)
    fig = _saved(plot_seed_band(seed_band(pd.DataFrame(rows))), tmp_path, "band")
    assert "n = 3 seeds" in fig.get_suptitle() and "df = 2" in fig.get_suptitle()
    assert len(fig.axes) == 2 * 4


def test_detector_auroc_figure(tmp_path):
    rng = np.random.default_rng(1)
    n = 24
    scores = pd.DataFrame({"run_id": [f"r{i}" for i in range(n)], "contaminated": [True] * 6 + [False] * 18})
    for d in ("D1", "D2", "D3", "D4", "D5"):
        scores[d] = rng.normal(0, 1, n) + scores["contaminated"] * rng.uniform(0, 2)
    tab = detector_auroc(scores, n_boot=200)
    fig = _saved(plot_detector_auroc(tab), tmp_path, "auroc")
    assert "n = 6 contaminated vs 18 clean" in fig.get_suptitle()
    assert fig.axes[0].get_xlim() == (0, 1)
    assert ((tab["lo"] >= -1) & (tab["hi"] <= 1)).all()


def test_cv_errors_figure(tmp_path):
    rng = np.random.default_rng(2)
    n = 12
    pts = pd.DataFrame(
        {
            "run_id": [f"r{i}" for i in range(n)],
            "family": ["S"] * 7 + ["G"] * 5,
            "P": rng.uniform(10, 80, n),
            "mui": np.exp(rng.normal(1, 0.3, n)),
            "tau": np.exp(rng.normal(2, 0.3, n)),
        }
    )
    pts["R"] = 0.4 * pts["P"] + rng.normal(0, 3, n)
    fig = _saved(plot_cv_errors(fair_comparison_cv(pts, alphas=[0.0, 0.5, 1.0], n_boot=200)), tmp_path, "cv")
    assert "n = 12 runs" in fig.get_suptitle()


def test_diversity_levels_figure(tmp_path):
    ds = designed_datasets({"a": 40, "b": 40, "c": 40}, n_items=12, draws=5)
    lv = ds.groupby("dataset")["level"].first().to_numpy()
    rng = np.random.default_rng(3)
    measures = {"MUI (%)": lv + rng.normal(0, 0.5, len(lv)), "n-grams": 30 + lv + rng.normal(0, 1, len(lv))}
    fig = _saved(plot_diversity_levels(ds, measures), tmp_path, "levels")
    assert "n = 15 datasets" in fig.get_suptitle() and fig.axes[0].get_title().startswith("MUI (%): τ-b = ")
    with pytest.raises(SaemuiError, match="one per dataset"):
        plot_diversity_levels(ds, {"x": [1.0, 2.0]})
