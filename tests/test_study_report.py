"""saemui.analysis.study_report: the JSON and number format both Study v2 reports use, and the output options
and writing step of their scripts."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from saemui.analysis.study_report import (
    ANALYSIS_PACKAGES,
    add_output_options,
    analysis_versions,
    command,
    fmt,
    json_num,
    json_table,
    write_outputs,
)
from saemui.zoo.record_v2 import DEFAULT_RESULTS_V2


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


def test_json_table_by_hand():
    df = pd.DataFrame({"a": [1, 2], 3: [np.nan, 0.5], "b": [True, False]})
    assert json_table(df) == {"columns": ["a", "3", "b"], "rows": [[1, None, True], [2, 0.5, False]]}
    assert json_table(df.iloc[:0]) == {"columns": ["a", "3", "b"], "rows": []}


def test_command_names_results_only_when_not_the_default(tmp_path):
    assert command("x.py", DEFAULT_RESULTS_V2) == "python scripts/x.py"
    assert command("x.py", tmp_path) == f"python scripts/x.py --results {tmp_path}"


def test_output_options_and_write_outputs(tmp_path):
    ap = argparse.ArgumentParser()
    add_output_options(ap, json_name="r.json", md_default="docs/r.md")
    d = ap.parse_args([])
    assert (d.results, d.json, d.md, d.figures, d.no_figures) == (
        DEFAULT_RESULTS_V2,
        None,
        "docs/r.md",
        "figures/study",
        False,
    )
    drawn = []

    def draw() -> dict[str, Figure]:
        drawn.append(1)
        fig = Figure()
        ax = fig.subplots()
        ax.plot([0, 1], [0, 1])
        return {"a": fig}

    res, md, fig_dir = tmp_path / "res", tmp_path / "t.md", tmp_path / "fig"
    args = ap.parse_args(["--results", str(res), "--md", str(md), "--figures", str(fig_dir)])
    out_json, written = write_outputs(args, "r.json", {"x": [1, 2], "y": {"z": None}}, "# t\n", draw)
    # the JSON goes to <results>/<json_name> unless --json says otherwise
    assert out_json == res / "r.json" and json.loads(out_json.read_text()) == {"x": [1, 2], "y": {"z": None}}
    assert md.read_text() == "# t\n"
    assert sorted(p.relative_to(tmp_path).as_posix() for p in written) == ["fig/a.pdf", "fig/a.png"]
    assert all(p.stat().st_size > 0 for p in written)
    # --no-figures draws nothing; --json moves the JSON
    args = ap.parse_args(
        ["--results", str(res), "--json", str(tmp_path / "j.json"), "--md", str(md), "--no-figures"]
    )
    out_json, written = write_outputs(args, "r.json", {"x": 1}, "# u\n", draw)
    assert out_json == tmp_path / "j.json" and json.loads(out_json.read_text()) == {"x": 1}
    assert written == [] and len(drawn) == 1 and md.read_text() == "# u\n"
