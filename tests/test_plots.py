"""Figures render, carry the expected artists, and save_figure writes PNG + PDF atomically."""

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from saemui.analysis.contamination import shift_table
from saemui.analysis.diversity import coverage_curve, greedy_max_coverage
from saemui.analysis.law import bootstrap_ci, fit_law
from saemui.analysis.training import classify_trajectory
from saemui.errors import SaemuiError
from saemui.plots import (
    PHASE_COLORS,
    plot_contamination,
    plot_coverage,
    plot_law,
    plot_task_bars,
    plot_trajectory,
    save_figure,
)

PERF = np.array([35.0, 48.0, 52.0, 61.0, 70.0, 83.0])
MUI = np.array([12.1, 10.4, 10.9, 9.2, 8.9, 7.5])


@pytest.mark.parametrize("form", ["mui_from_perf", "perf_from_mui"])
def test_plot_law(form):
    fit = fit_law(PERF, MUI, form=form, labels=list("abcdef"))
    fig = plot_law(fit, PERF, MUI, labels=list("abcdef"), boot=bootstrap_ci(fit, n_boot=200))
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    offsets = ax.collections[0].get_offsets()
    assert np.allclose(offsets, np.c_[PERF, MUI])
    assert len(ax.collections) == 2  # points + band
    assert [t.get_text() for t in ax.texts] == list("abcdef")
    line = ax.lines[0]
    x, y = line.get_data()
    # the curve is the fitted law in the fit's own direction
    if form == "mui_from_perf":
        assert np.allclose(y, fit.slope * np.log(x) + fit.intercept)
    else:
        assert np.allclose(x, fit.slope * np.log(y) + fit.intercept)
    fig.canvas.draw()
    assert len(plot_law(fit, band=False).axes[0].collections) == 1


def test_plot_task_bars():
    df = pd.DataFrame(
        {"model": ["m1", "m1", "m2", "m2"], "task": ["arc", "gsm8k"] * 2, "mui": [1.0, 2.0, 1.5, 2.5]}
    )
    fig = plot_task_bars(df)
    heights = sorted(p.get_height() for p in fig.axes[0].patches)
    assert heights == [1.0, 1.5, 2.0, 2.5]
    fig.canvas.draw()
    with pytest.raises(SaemuiError, match="missing column"):
        plot_task_bars(df, value="perf")


def test_plot_trajectory_colours_phases():
    rows = [
        {"checkpoint": c, "task": t, "perf": p, "mui": m}
        for t, ps, ms in [("gsm8k", [10, 20, 15], [4, 6, 3]), ("arc", [30, 32, 40], [8, 7, 9])]
        for c, p, m in zip(["0.5T", "1T", "1.5T"], ps, ms)
    ]
    phases = classify_trajectory(pd.DataFrame(rows))
    fig = plot_trajectory(phases)
    assert len(fig.axes) == 3
    segs = [line for line in fig.axes[0].lines if len(line.get_xdata()) == 2]
    assert len(segs) == len(phases)
    # segments are drawn task by task in step order, each in its phase colour
    assert [seg.get_color() for seg in segs] == [PHASE_COLORS[p] for p in phases["phase"]]
    assert len(set(phases["phase"])) >= 2  # the check above can tell colours apart
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["0.5T", "1T", "1.5T"]
    assert len(fig.axes[0].lines) == len(phases) + 3  # one segment per step + one legend proxy per task
    fig.canvas.draw()


def test_plot_contamination_and_coverage():
    before = pd.DataFrame({"task": ["a", "b"], "perf": [50, 60], "mui": [5.0, 6.0]})
    after = pd.DataFrame({"task": ["a", "b"], "perf": [70, 59], "mui": [6.0, 6.1]})
    fig = plot_contamination(shift_table(before, after, ["a"]))
    assert np.allclose(fig.axes[0].collections[0].get_offsets(), [[20, 1.0]])
    fig.canvas.draw()
    sets = [np.array([0, 1, 2]), np.array([2, 3]), np.array([4]), np.array([0, 5, 6])]
    curves = {"random": coverage_curve(sets, n_perm=50), "greedy": greedy_max_coverage(sets, 4).curve()}
    fig = plot_coverage(curves)
    assert [line.get_label() for line in fig.axes[0].lines] == ["random", "greedy"]
    assert len(fig.axes[0].collections) == 1  # only the random-order curve has a band
    fig.canvas.draw()
    with pytest.raises(SaemuiError, match="CoverageCurve"):
        plot_coverage({"x": [1, 2]})


def test_save_figure_writes_png_and_pdf_atomically(tmp_path):
    fig = plot_law(fit_law(PERF, MUI), band=False)
    out = save_figure(fig, tmp_path / "sub" / "law.png")
    assert out == [tmp_path / "sub" / "law.png", tmp_path / "sub" / "law.pdf"]
    assert out[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert out[1].read_bytes()[:5] == b"%PDF-"
    first = out[0].stat().st_size
    save_figure(plot_coverage([coverage_curve([np.array([0, 1])], n_perm=5)]), tmp_path / "sub" / "law")
    assert out[0].stat().st_size != first  # replaced, not appended
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == [
        "law.pdf",
        "law.png",
    ]  # no temp files left


def test_plot_rank_sweep_and_sensitivity(tmp_path):
    from saemui.analysis.comparison import alpha_sensitivity
    from saemui.plots import plot_rank_sweep, plot_sensitivity

    sweep = alpha_sensitivity(PERF, MUI, list("abcdef"), n_boot=10)
    fig = plot_rank_sweep(sweep)
    assert isinstance(fig, Figure) and len(fig.axes[0].lines) == 6
    assert fig.axes[0].yaxis_inverted()  # rank 1 on top
    means = pd.DataFrame({"k=0.001": MUI, "k=0.002": MUI * 1.4}, index=list("abcdef"))
    fig2 = plot_sensitivity(means)
    assert len(fig2.axes[0].lines) == 6
    assert all(p.stat().st_size > 0 for p in save_figure(fig2, tmp_path / "sens"))
    # an eta column (another basis) is not joined to the k sweep: per model one k line + one eta point
    mixed = means.assign(**{"eta=0.9": MUI * 0.5})[["eta=0.9", "k=0.001", "k=0.002"]]
    lines = plot_sensitivity(mixed).axes[0].lines
    assert len(lines) == 12 and sorted(len(ln.get_xdata()) for ln in lines) == [1] * 6 + [2] * 6
    assert [ln.get_xdata().tolist() for ln in lines[:2]] == [[0], [1, 2]]
    with pytest.raises(SaemuiError, match="no rank:<model> columns"):
        plot_rank_sweep(sweep[["alpha"]])
    with pytest.raises(SaemuiError, match="no rows"):
        plot_sensitivity(means.iloc[:0])


def test_plot_law_grid_and_stacked_labels():
    from saemui.plots import plot_law_grid

    fits = {
        t: fit_law(PERF * (1 + i / 10), MUI, form="perf_from_mui", labels=list("abcdef"))
        for i, t in enumerate("xyz")
    }
    fig = plot_law_grid(fits)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title().split(" ")[0] for ax in visible] == ["x", "y", "z"] and len(fig.axes) == 4
    for ax, fit in zip(visible, fits.values()):
        assert np.allclose(ax.collections[0].get_offsets(), np.c_[fit.perf, fit.mui])
    with pytest.raises(SaemuiError, match="no fits"):
        plot_law_grid({})
    # three points on top of each other get three different label heights; a distant one the base height
    close = fit_law([50.0, 50.1, 50.2, 10.0], [1.0, 1.001, 1.002, 3.0], labels=list("pqrs"))
    ax = plot_law(close, band=False).axes[0]
    heights = {t.get_text(): t.xyann[1] for t in ax.texts}
    assert len({heights["p"], heights["q"], heights["r"]}) == 3 and heights["s"] == 4


def test_saved_figures_are_byte_identical_when_regenerated(tmp_path, monkeypatch):
    """Regenerated at another time (matplotlib stamps PDFs with SOURCE_DATE_EPOCH, else the clock)."""
    fit = fit_law(PERF, MUI, labels=list("abcdef"))
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "0")
    a = save_figure(plot_law(fit, band=False), tmp_path / "a" / "law")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1000000000")
    b = save_figure(plot_law(fit, band=False), tmp_path / "b" / "law")
    assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b]
