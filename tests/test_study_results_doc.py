"""docs/study/results.md quotes the generated law report by hand (§1's table): every row must agree with
results/zoo-v2/study_law.json, so the prose cannot drift from the records when the report is regenerated."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "study" / "results.md"
LAW = REPO / "results" / "zoo-v2" / "study_law.json"


def _num(s: str) -> float:
    return float(s.replace("−", "-").replace("*", "").strip())


def _interval(s: str) -> tuple[float, float]:
    lo, hi = s.strip().strip("[]").split(",")
    return _num(lo), _num(hi)


def _close(quoted: float, value: float) -> bool:
    # the page quotes three significant digits (or three decimals for small numbers)
    return math.isclose(quoted, value, rel_tol=6e-3, abs_tol=1.5e-3)


def _section_rows(text: str, heading: str) -> list[list[str]]:
    body = text.split(heading, 1)[1].split("\n## ", 1)[0]
    return [
        [c.strip() for c in line.strip().strip("|").split("|")]
        for line in body.splitlines()
        if line.startswith("| arith")
    ]


@pytest.mark.skipif(not LAW.is_file(), reason="no generated law report in this checkout")
def test_results_md_law_table_matches_the_generated_report():
    rep = json.loads(LAW.read_text())
    tests = {(t["task"], t["setting"], t["hypothesis"]): t for t in rep["tests"] if "error" not in t}
    rows = _section_rows(DOC.read_text(), "## 1. The law")
    assert len(rows) == 28  # 2 tasks x 7 settings x (H1, H1b)
    for task, setting, hyp, n, est, t_ci, b_ci, _delta, verdict in rows:
        t = tests[(task, setting, hyp)]
        where = f"results.md §1 {task} {setting} {hyp}"
        assert int(n) == t["n"], where
        assert _close(_num(est), t["slope"]), (where, est, t["slope"])
        for quoted, ci in ((_interval(t_ci), t["t_ci"]), (_interval(b_ci), t["boot_ci"])):
            assert all(_close(q, v) for q, v in zip(quoted, ci)), (where, quoted, ci)
        assert verdict.replace("*", "") == t["verdict"]["label"], where
