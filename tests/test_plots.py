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


def _points(ax) -> np.ndarray:
    """Every scatter point of the axes (one collection per labelled point), in drawing order."""
    from matplotlib.collections import PathCollection

    return np.concatenate([c.get_offsets() for c in ax.collections if isinstance(c, PathCollection)])


def _band(ax) -> np.ndarray:
    from matplotlib.collections import FillBetweenPolyCollection, PolyCollection

    polys = [c for c in ax.collections if isinstance(c, FillBetweenPolyCollection | PolyCollection)]
    assert len(polys) == 1
    return np.concatenate([path.vertices for path in polys[0].get_paths()])


def _outside(fig, ax, legend) -> bool:
    fig.canvas.draw()
    a, b = ax.get_window_extent(), legend.get_window_extent()
    return b.x0 >= a.x1 or b.x1 <= a.x0 or b.y0 >= a.y1 or b.y1 <= a.y0


@pytest.mark.parametrize("form", ["mui_from_perf", "perf_from_mui"])
def test_plot_law(form):
    fit = fit_law(PERF, MUI, form=form, labels=list("abcdef"))
    fig = plot_law(fit, PERF, MUI, labels=list("abcdef"), boot=bootstrap_ci(fit, n_boot=200))
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    # one marker per labelled point, drawn in label order; every point distinct in (colour, marker)
    assert np.allclose(_points(ax), np.c_[PERF, MUI])
    leg = ax.get_legend()
    assert [t.get_text() for t in leg.get_texts()][:6] == list("abcdef")
    assert _outside(fig, ax, leg)  # the legend never covers data
    assert ax.get_ylabel() == "MUI (%)" and "(%)" in ax.get_xlabel()
    line = ax.lines[0]
    x, y = line.get_data()
    # the curve is the fitted law in the fit's own direction
    if form == "mui_from_perf":
        assert np.allclose(y, fit.slope * np.log(x) + fit.intercept)
    else:
        assert np.allclose(x, fit.slope * np.log(y) + fit.intercept)
    # n and the test are printed with the figure
    title = fig.get_suptitle()
    assert "n = 6 models" in title and "Spearman" in title and "p = " in title
    assert len(_band(ax)) > 0
    assert len(plot_law(fit, band=False).axes[0].collections) == 6  # the points only


def test_law_band_and_axes_stay_in_the_possible_range():
    """A wide band of an extrapolated log-linear fit (P below 0 % and above 100 %) is cut to 0–100 % accuracy
    and MUI ≥ 0; the x axis does not extend below 0 %."""
    rng = np.random.default_rng(1)
    perf = np.array([2.0, 5.0, 30.0, 60.0, 97.0, 99.0])
    mui = np.exp(rng.normal(0, 1.2, 6))
    fit = fit_law(perf, mui, form="perf_from_mui")
    boot = bootstrap_ci(fit, n_boot=300)
    raw_lo, raw_hi = boot.band(np.exp(np.linspace(np.log(mui.min()), np.log(mui.max()), 200)))
    assert raw_lo.min() < 0 or raw_hi.max() > 100  # the unclipped band leaves the range: the test can fail
    ax = plot_law(fit, boot=boot).axes[0]
    v = _band(ax)
    assert v[:, 0].min() >= 0 and v[:, 0].max() <= 100
    x0, x1 = ax.get_xlim()
    assert x0 >= -2.0 and x1 <= 102.0
    fit2 = fit_law([10.0, 20.0, 40.0, 80.0], [0.9, 0.05, 3.0, 0.02])  # MUI band would dip below 0
    ax2 = plot_law(fit2, boot=bootstrap_ci(fit2, n_boot=300)).axes[0]
    assert _band(ax2)[:, 1].min() >= 0 and ax2.get_ylim()[0] == 0


def test_series_styles_distinct_for_a_zoo():
    from saemui.plots import series_styles

    names = [f"model-{i}" for i in range(12)]
    st = series_styles(list(reversed(names)))
    assert list(st) == sorted(names)  # the same model gets the same style whatever the input order
    assert len({s["color"] for s in st.values()}) == 12  # 12 models: no repeated colour
    assert (
        len({(s["color"], s["marker"]) for s in series_styles([f"m{i}" for i in range(40)]).values()}) == 40
    )


def test_plot_task_bars():
    df = pd.DataFrame(
        {"model": ["m1", "m1", "m2", "m2"], "task": ["arc", "gsm8k"] * 2, "mui": [1.0, 2.0, 1.5, 2.5]}
    )
    fig = plot_task_bars(df)
    heights = sorted(p.get_height() for p in fig.axes[0].patches)
    assert heights == [1.0, 1.5, 2.0, 2.5]
    ax = fig.axes[0]
    assert ax.get_ylabel() == "MUI (%)" and _outside(fig, ax, ax.get_legend())
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
    styles = [(ln.get_color(), ln.get_marker()) for ln in fig.axes[0].lines]
    assert len(set(styles)) == 6
    assert _outside(fig, fig.axes[0], fig.axes[0].get_legend())
    means = pd.DataFrame({"k=0.001": MUI, "k=0.002": MUI * 1.4}, index=list("abcdef"))
    fig2 = plot_sensitivity(means)
    assert len(fig2.axes[0].lines) == 6 and fig2.axes[0].get_ylabel() == "MUI (%)"
    assert all(p.stat().st_size > 0 for p in save_figure(fig2, tmp_path / "sens"))
    # an eta column (SAE basis) gets its own panel and MUI axis: never joined to, nor scaled with, the k sweep
    mixed = means.assign(**{"eta=0.9": MUI * 0.5})[["eta=0.9", "k=0.001", "k=0.002"]]
    fig3 = plot_sensitivity(mixed, panels={"neurons": ["k=0.001", "k=0.002"], "SAE": ["eta=0.9"]})
    assert [ax.get_title() for ax in fig3.axes] == ["neurons", "SAE"]
    assert [sorted({len(ln.get_xdata()) for ln in ax.lines}) for ax in fig3.axes] == [[2], [1]]
    assert np.allclose(sorted(ln.get_ydata()[0] for ln in fig3.axes[1].lines), sorted(MUI * 0.5))
    assert all(ax.get_ylabel() == "MUI (%)" for ax in fig3.axes)
    assert len(plot_sensitivity(mixed).axes) == 2  # default: one panel per rule family
    with pytest.raises(SaemuiError, match="no rank:<model> columns"):
        plot_rank_sweep(sweep[["alpha"]])
    with pytest.raises(SaemuiError, match="no rows"):
        plot_sensitivity(means.iloc[:0])


def test_plot_law_grid():
    from saemui.plots import plot_law_grid

    fits = {
        t: fit_law(PERF * (1 + i / 10), MUI, form="perf_from_mui", labels=list("abcdef"))
        for i, t in enumerate("xyz")
    }
    fig = plot_law_grid(fits)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title().split(":")[0] for ax in visible] == ["x", "y", "z"] and len(fig.axes) == 4
    for ax, fit in zip(visible, fits.values()):
        assert np.allclose(_points(ax), np.c_[fit.perf, fit.mui])
        assert "n = 6 models" in ax.get_title() and "Spearman" in ax.get_title()
        assert ax.get_ylabel() == "MUI (%)"
        v = _band(ax)
        assert v[:, 0].min() >= 0 and v[:, 0].max() <= 100
    # one legend for all panels, beside the top-right panel, one entry per model plus band and fit
    legends = [ax.get_legend() for ax in visible if ax.get_legend() is not None]
    assert len(legends) == 1
    assert [t.get_text() for t in legends[0].get_texts()][:6] == list("abcdef")
    assert _outside(fig, visible[1], legends[0])
    with pytest.raises(SaemuiError, match="no fits"):
        plot_law_grid({})


def test_saved_figures_are_byte_identical_when_regenerated(tmp_path, monkeypatch):
    """Regenerated at another time (matplotlib stamps PDFs with SOURCE_DATE_EPOCH, else the clock)."""
    fit = fit_law(PERF, MUI, labels=list("abcdef"))
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "0")
    a = save_figure(plot_law(fit, band=False), tmp_path / "a" / "law")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1000000000")
    b = save_figure(plot_law(fit, band=False), tmp_path / "b" / "law")
    assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b]


def test_study_slopes_marks_each_rows_delta_when_it_varies():
    """H1's δ is one number: one full-height −δ line. H1b's δ differs by setting: one short −δ mark per row at
    that row's own −δ, so no row is crossed by another row's threshold."""

    from saemui.plots import plot_study_slopes

    def table(deltas):
        return pd.DataFrame(
            {
                "task": ["t", "t"],
                "setting": ["P0", "share"],
                "slope": [-1.0, -2.0],
                "t_lo": [-1.5, -3.0],
                "t_hi": [-0.5, -1.0],
                "b_lo": [-1.6, -3.1],
                "b_hi": [-0.4, -0.9],
                "delta": deltas,
                "verdict": ["supported", "inconclusive"],
                "n": [11, 11],
            }
        )

    def dashed(fig):
        return [ln for ln in fig.axes[0].lines if ln.get_linestyle() == "--"]

    one = dashed(plot_study_slopes(table([0.3, 0.3])))
    assert len(one) == 1 and list(one[0].get_xdata()) == [-0.3, -0.3]
    assert list(one[0].get_ydata()) == [0, 1]  # axes coordinates: the full height
    marks = dashed(plot_study_slopes(table([0.3, 0.7])))
    # rows are drawn top-down: P0 at y = 1, share at y = 0
    got = sorted((float(ln.get_xdata()[0]), float(np.mean(ln.get_ydata()))) for ln in marks)
    assert got == [(-0.7, 0.0), (-0.3, 1.0)]
    assert all(np.ptp(ln.get_ydata()) < 1.0 for ln in marks)
