"""Basis sensitivity pivot."""

import numpy as np
import pytest

from saemui.analysis.sensitivity import sensitivity_table
from saemui.errors import SaemuiError

RESULTS = [
    {"basis": "gemma-scope", "width": "131k", "l0": 50, "eta": 0.95, "mui": 2.0},
    {"basis": "gemma-scope", "width": "131k", "l0": 50, "eta": 0.9, "mui": 3.0},
    {"basis": "gemma-scope", "width": "16k", "l0": 80, "eta": 0.9, "mui": 4.5},
    {"basis": "neurons", "k": 11, "mui": 1.25},
]


def test_pivot_values_and_order():
    t = sensitivity_table(RESULTS)
    assert list(t.columns) == ["eta=0.9", "eta=0.95", "k=11"]
    assert t.index.names == ["basis", "width", "l0"]
    assert t.loc[("gemma-scope", "131k", 50), "eta=0.9"] == 3.0
    assert t.loc[("gemma-scope", "131k", 50), "eta=0.95"] == 2.0
    assert t.loc[("neurons", "-", "-"), "k=11"] == 1.25
    assert np.isnan(t.loc[("gemma-scope", "16k", 80), "eta=0.95"])


def test_extra_keys_become_index_levels():
    t = sensitivity_table([{**r, "model": "gemma-2-9b"} for r in RESULTS])
    assert t.index.names == ["model", "basis", "width", "l0"]


@pytest.mark.parametrize(
    "bad, match",
    [
        ({"basis": "n", "eta": 0.9, "k": 5, "mui": 1.0}, "exactly one"),
        ({"basis": "n", "mui": 1.0}, "exactly one"),
        ({"eta": 0.9, "mui": 1.0}, "missing 'basis'"),
        (dict(RESULTS[0]), "measured twice"),
    ],
)
def test_errors(bad, match):
    with pytest.raises(SaemuiError, match=match):
        sensitivity_table([*RESULTS, bad])
