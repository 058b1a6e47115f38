"""saemui.analysis.study_report: the JSON and number format both Study v2 report scripts use."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from saemui.analysis.study_report import ANALYSIS_PACKAGES, analysis_versions, fmt, json_num


def test_json_num_by_hand():
    x = {1: np.float32(0.5), "a": [np.int64(3), np.nan, pd.NA, None], "b": (np.bool_(True), float("inf"))}
    got = json_num(x)
    assert got == {"1": 0.5, "a": [3, None, None, None], "b": [True, None]}
    assert type(got["a"][0]) is int and type(got["b"][0]) is bool
    assert json_num(np.array([[1.0, np.nan]])) == [[1.0, None]]
    json.dumps(got, allow_nan=False)  # strict JSON


def test_fmt_by_hand():
    assert fmt(None) == "–" and fmt(float("nan")) == "–" and fmt(float("-inf")) == "–"
    assert fmt(0.123456) == "0.123" and fmt(0.123456, 4) == "0.1235" and fmt(123456.0) == "1.235e+05"
    assert fmt(7) == "7" and fmt("x") == "x" and fmt(True) == "True"


def test_analysis_versions():
    v = analysis_versions()
    assert set(v) == {"python", *ANALYSIS_PACKAGES} and v["numpy"] == np.__version__
