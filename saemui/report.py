"""One self-contained static HTML page for one or more finished runs (what ``saemui report`` writes).

The page has no server, fetches nothing and embeds no files: CSS, a little JavaScript (tabs, layer picker,
sortable tables) and SVG charts are inline, every text is escaped with :func:`html.escape`. The only external
addresses are links to Neuronpedia feature pages for sae-lens SAEs that have a Neuronpedia id.

Sections: an overview (MUI summary per run, per-layer MUI bars); per run a feature explorer (per layer the top
units by firing count and by key-set frequency, and a card per unit with its activation histogram, logit-lens
tokens and max-activating contexts when the run was made with ``--explore``), correct vs incorrect
responses when the samples are labelled; and a comparison of runs (per-layer overlap, units unique to each).
All numbers come from the functions in :mod:`saemui.explore`, which notebooks can call directly.
"""

from __future__ import annotations

import html
import math
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from saemui.errors import SaemuiError
from saemui.explore import (
    ContextCollector,
    ShownContext,
    compare_runs,
    context_tokens,
    correct_vs_incorrect,
    load_contexts,
    neuronpedia_ids,
    top_features,
    unique_features,
)
from saemui.io import atomic_write_text
from saemui.result import MUIResult, load_result

NEURONPEDIA = "https://www.neuronpedia.org"
COLORS = ["#3b6fb6", "#d9822b", "#2e9e6a", "#b04a9c", "#8c6d31", "#666666"]


def esc(x: object) -> str:
    return html.escape(str(x), quote=True)


@dataclass
class Run:
    """One run as the report sees it: a display name, the result, its contexts (None without --explore)."""

    name: str
    result: MUIResult
    ctx: ContextCollector | None = None
    neuronpedia: dict[int, str] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return self.result.summary["units"]["kind"]


def load_run(path: str | os.PathLike, name: str | None = None) -> Run:
    res = load_result(path)
    ctx = load_contexts(path)
    return Run(name or Path(path).resolve().name, res, ctx, neuronpedia_ids(res, ctx))


# -- small renderers -----------------------------------------------------------------------------------


def _pct(x: float | None, digits: int = 2) -> str:
    return "–" if x is None else f"{100 * x:.{digits}f}%"


def _num(v: float, text: str | None = None) -> str:
    return f'<td class=n data-v="{v:.6g}">{esc(text if text is not None else v)}</td>'


def _tok(t: str) -> str:
    # Make whitespace-only and newline tokens visible in a one-line context.
    return esc(t.replace("\n", "↵").replace("\t", "⇥"))


def _context_html(
    run: Run, sample: int, pos: int, window: int, value: float | None = None, short: bool = False
) -> str:
    toks, i = context_tokens(run.ctx, sample, pos, window // 2 if short else window)
    target_next = run.result.summary["config"].get("alignment") == "predicting"
    out, prompt_open = [], False
    for j, (_, t, is_prompt) in enumerate(toks):
        if is_prompt != prompt_open and j != i:
            out.append("<span class=p>" if is_prompt else "</span>")
            prompt_open = is_prompt
        if j == i:
            if prompt_open:
                out.append("</span>")
                prompt_open = False
            title = f' title="{value:.4g}"' if value is not None else ""
            out.append(f"<mark{title}>{_tok(t)}</mark>")
        elif j == i + 1 and target_next:
            out.append(f"<u title='target token'>{_tok(t)}</u>")
        else:
            out.append(_tok(t))
    if prompt_open:
        out.append("</span>")
    return "<span class=cx>" + "".join(out) + "</span>"


SHADES = 8  # activation shading levels (CSS classes s1…s8)


def _shown_html(run: Run, c: ShownContext, window: int, vmax: float) -> str:
    """A context with every token shaded by the unit's score on it (relative to ``vmax``, the unit's highest
    shown score); the peak token is marked, prompt text grey, the target token underlined (predicting)."""
    ids = run.ctx.tokens.get(c.sample)
    if ids is None:
        return "<span class=muted>tokens not recorded</span>"
    target_next = run.result.summary["config"].get("alignment") == "predicting"
    first = run.ctx.first_scored.get(c.sample, 0)
    lo, hi = max(0, c.pos - window), min(len(ids), c.pos + window + 1)
    out, prompt_open = [], False
    for p in range(lo, hi):
        t = _tok(run.ctx.token_text(ids[p]))
        is_prompt = p < first
        if is_prompt != prompt_open:
            out.append("<span class=p>" if is_prompt else "</span>")
            prompt_open = is_prompt
        j = p - c.pos0
        v = float(c.scores[j]) if 0 <= j < len(c.scores) else float("nan")
        level = min(SHADES, math.ceil(SHADES * v / vmax)) if v == v and v > 0 and vmax > 0 else 0
        if p == c.pos:
            out.append(f'<mark class=s{level} title="{c.value:.4g}">{t}</mark>')
        elif p == c.pos + 1 and target_next:
            out.append(f"<u title='target token'>{t}</u>")
        elif level:  # no per-token title: it would double the size of a page of contexts
            out.append(f"<i class=s{level}>{t}</i>")
        else:
            out.append(t)
    if prompt_open:
        out.append("</span>")
    return "<span class=cx>" + "".join(out) + "</span>"


def _snippet(run: Run, layer: int, unit: int, window: int = 4) -> str:
    """The unit's best context, short, for tables (shaded when the run kept shown contexts)."""
    if run.ctx is None or not run.ctx.has(layer, unit):
        return ""
    shown = run.ctx.shown.get((layer, unit))
    if shown:
        return _shown_html(run, shown[0], window, max(c.value for c in shown))
    top = run.ctx.top(layer, unit)
    return _context_html(run, top[0][1], top[0][2], 2 * window, top[0][0], short=True) if top else ""


def _unit_anchor(ri: int, layer: int, unit: int) -> str:
    return f"r{ri}-l{layer}-u{unit}"


def _np_link(run: Run, layer: int, unit: int) -> str:
    npid = run.neuronpedia.get(layer)
    if not npid:
        return ""
    return f' <a class=np href="{esc(f"{NEURONPEDIA}/{npid}/{unit}")}" target=_blank rel=noopener>Neuronpedia ↗</a>'


HIST_W, HIST_H, HIST_X0, HIST_Y0 = 400, 130, 34, 6
HIST_PW, HIST_PH = HIST_W - 40, HIST_H - 34


def _hist_axes() -> str:
    """The histogram axes (drawn once per page, reused by every histogram through ``<use>``)."""
    x0, y0, pw, ph = HIST_X0, HIST_Y0, HIST_PW, HIST_PH
    bw = pw / 26
    # bins: [0] underflow, 24 log bins of 1/4 decade from 1e-3, [-1] overflow: a tick every decade
    ticks = "".join(
        f'<path d="M{x0 + (1 + 4 * d) * bw:.0f} {y0 + ph}v4" stroke="#999"/><text x="{x0 + (1 + 4 * d) * bw:.0f}" '
        f'y="{y0 + ph + 15}" text-anchor=middle>{lab}</text>'
        for d, lab in enumerate(["1e-3", "0.01", "0.1", "1", "10", "100", "1e3"])
    )
    return (
        '<svg width=0 height=0 style="position:absolute" aria-hidden=true><defs><g id=hax>'
        f'<path d="M{x0} {y0}V{y0 + ph}H{x0 + pw}" stroke="#999" fill=none/>{ticks}'
        f'<text x="{x0 - 3}" y="{y0 + ph}" text-anchor=end>0</text></g></defs></svg>'
    )


def _hist_svg(counts: np.ndarray) -> str:
    """Log-binned histogram of the unit's positive scores: bars over decades 1e-3…1e3, counts on a y axis."""
    total = int(counts.sum())
    top = max(int(counts.max()), 1)
    x0, y0, pw, ph, w, h = HIST_X0, HIST_Y0, HIST_PW, HIST_PH, HIST_W, HIST_H
    bw = pw / len(counts)
    # all bars in one path: a rect element per bar would make the histogram the largest part of the page
    bars = "".join(
        f"M{x0 + i * bw:.0f} {y0 + ph}v{-ph * c / top:.1f}h{bw - 1:.0f}V{y0 + ph}z"
        for i, c in enumerate(counts.tolist())
        if c
    )
    return (
        f'<svg class=hist width="{w}" height="{h}" viewBox="0 0 {w} {h}" role=img>'
        f"<title>positive scores of {total} tokens in log-spaced bins (first and last bar: below 1e-3, above 1e3)"
        f'</title><path d="{bars}" fill="#3b6fb6"/><use href="#hax"/>'
        f'<text x="{x0 - 3}" y="{y0 + 8}" text-anchor=end>{top}</text>'
        f'<text x="{x0 + pw / 2:.0f}" y="{h - 2}" text-anchor=middle>score (log scale) · {total} firing tokens'
        "</text></svg>"
    )


def _lens_html(run: Run, layer: int, unit: int, n: int) -> str:
    t = run.ctx.lens.get((layer, unit)) if run.ctx else None
    if t is None:
        return ""
    ti, tv, bi, bv = t

    def toks(ids, vals):
        return " ".join(
            f'<code title="{v:+.3g}">{_tok(run.ctx.token_text(i))}</code>' for i, v in zip(ids[:n], vals[:n])
        )

    return f"<div class=lens><b>logit lens ↑</b> {toks(ti, tv)}<br><b>logit lens ↓</b> {toks(bi, bv)}</div>"


def _bars_svg(runs: list[Run], w: int = 860, h: int = 230) -> str:
    """Grouped bars of per-layer MUI (%), one colour per run."""
    layers = sorted({lay for r in runs for lay in r.result.layers})
    vals = [dict(zip(r.result.layers, r.result.per_layer)) for r in runs]
    vmax = max([max(v.values()) for v in vals if v] + [1e-9]) * 100
    step = 10 ** math.floor(math.log10(vmax)) if vmax > 0 else 1
    for m in (1, 2, 5, 10):
        if vmax / (m * step) <= 5:
            step *= m
            break
    ymax = step * math.ceil(vmax / step)
    x0, y0, pw, ph = 46, 10, w - 56, h - 58
    gw = pw / max(len(layers), 1)
    bw = gw * 0.8 / len(runs)
    parts = []
    t = 0.0
    while t <= ymax + 1e-12:
        y = y0 + ph - ph * t / ymax
        parts.append(f'<line x1="{x0}" x2="{x0 + pw}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e3e3e3"/>')
        parts.append(f'<text x="{x0 - 4}" y="{y + 4:.1f}" text-anchor=end>{t:.3g}%</text>')
        t += step
    every = max(1, math.ceil(len(layers) / 30))
    for i, lay in enumerate(layers):
        for j, (r, v) in enumerate(zip(runs, vals)):
            if lay not in v:
                continue
            bh = ph * 100 * v[lay] / ymax
            x = x0 + i * gw + gw * 0.1 + j * bw
            parts.append(
                f'<rect x="{x:.1f}" y="{y0 + ph - bh:.1f}" width="{bw:.1f}" height="{bh:.1f}" '
                f'fill="{COLORS[j % len(COLORS)]}"><title>{esc(r.name)} layer {lay}: {100 * v[lay]:.3f}%</title></rect>'
            )
        if i % every == 0:
            parts.append(
                f'<text x="{x0 + (i + 0.5) * gw:.1f}" y="{y0 + ph + 14}" text-anchor=middle>{lay}</text>'
            )
    parts.append(f'<text x="{x0 + pw / 2}" y="{y0 + ph + 28}" text-anchor=middle>layer</text>')
    legend = "".join(
        f'<rect x="{x0 + 10 + 190 * j}" y="{h - 10}" width=10 height=10 fill="{COLORS[j % len(COLORS)]}"/>'
        f'<text x="{x0 + 24 + 190 * j}" y="{h - 1}">{esc(r.name[:28])}</text>'
        for j, r in enumerate(runs)
    )
    return (
        f'<svg class=chart width="{w}" height="{h + 6}" viewBox="0 0 {w} {h + 6}" role=img>'
        f"<title>per-layer MUI</title>{''.join(parts)}{legend}</svg>"
    )


def _jaccard_svg(df, w: int = 860, h: int = 120) -> str:
    d = df[df["layer"] != "all"]
    x0, y0, pw, ph = 46, 8, w - 56, h - 30
    gw = pw / max(len(d), 1)
    parts = [
        f'<text x="{x0 - 4}" y="{y0 + 4}" text-anchor=end>1</text>',
        f'<text x="{x0 - 4}" y="{y0 + ph + 4}" text-anchor=end>0</text>',
        f'<line x1="{x0}" x2="{x0 + pw}" y1="{y0 + ph}" y2="{y0 + ph}" stroke="#999"/>',
    ]
    for i, (lay, jac) in enumerate(zip(d["layer"], d["jaccard"])):
        if jac != jac:  # NaN: neither run has key units on this layer
            continue
        bh = ph * float(jac)
        parts.append(
            f'<rect x="{x0 + i * gw + gw * 0.15:.1f}" y="{y0 + ph - bh:.1f}" width="{gw * 0.7:.1f}" '
            f'height="{bh:.1f}" fill="#2e9e6a"><title>layer {lay}: Jaccard {jac:.3f}</title></rect>'
        )
        if i % max(1, math.ceil(len(d) / 30)) == 0:
            parts.append(
                f'<text x="{x0 + (i + 0.5) * gw:.1f}" y="{y0 + ph + 14}" text-anchor=middle>{lay}</text>'
            )
    return (
        f'<svg class=chart width="{w}" height="{h}" viewBox="0 0 {w} {h}" role=img>'
        f"<title>Jaccard overlap of key units per layer</title>{''.join(parts)}</svg>"
    )


# -- sections ------------------------------------------------------------------------------------------


def _equal_n(runs: list[Run], n_sub: int = 1000, seed: int = 0) -> tuple[list[str], str]:
    """Cells of MUI at the smallest run's N (MUI is a union and grows with N, so runs of different N are
    compared there) and the note saying how; no cells when every run has the same N."""
    ns = [int(r.result.summary["n_samples"]) for r in runs]
    if len(set(ns)) < 2:
        return [], ""
    n = min(ns)
    cells, sampled = [], False
    for r in runs:
        res = r.result
        if int(res.summary["n_samples"]) > n and not res.has_sets:
            cells.append("<td class=muted>n/a (run kept no key sets)</td>")
            continue
        sub = res.mui_at(n, n_sub, seed)
        sampled |= not sub.exact
        text = _pct(sub.mean, 3) + ("" if sub.exact else f" [{_pct(sub.lo, 3)}, {_pct(sub.hi, 3)}]")
        cells.append(_num(sub.mean, text))
    how = (
        f"mean union over {n_sub} random {n}-sample subsets of each larger run (seed {seed}), with the 95 % "
        "percentile range of the subsets"
        if sampled
        else "every distinct subset used (exact)"
    )
    note = (
        f"<p class=warn>The runs have different sample counts (N = {', '.join(map(str, ns))}). MUI is a union "
        f"over samples and grows with N, so compare the column <b>MUI at N = {n}</b>: {how}.</p>"
    )
    return cells, note


def _overview(runs: list[Run]) -> str:
    eq_cells, eq_note = _equal_n(runs)
    eq_head = (
        f"<th>MUI at N = {min(int(r.result.summary['n_samples']) for r in runs)}</th>" if eq_cells else ""
    )
    head = (
        "<tr><th>run</th><th>model</th><th>units</th><th>basis</th><th>layers × units</th><th>selection</th>"
        f"<th>samples</th><th>scored tokens</th><th>MUI</th>{eq_head}<th>accuracy</th><th>MUI (correct only)</th>"
        "<th>contexts</th></tr>"
    )
    rows = []
    for i, r in enumerate(runs):
        s = r.result.summary
        rows.append(
            f"<tr><td>{esc(r.name)}</td><td>{esc(s['model']['name'])}</td><td>{esc(r.kind)}</td>"
            f"<td>{esc(s['units']['basis'])}</td><td>{s['units']['n_layers']} × {s['units']['n_units']}</td>"
            f"<td>{esc(s['selection'])}, {esc(s['config']['alignment'])}</td>"
            + _num(s["n_samples"])
            + _num(s["n_tokens"])
            + _num(s["mui"], _pct(s["mui"], 3))
            + (eq_cells[i] if eq_cells else "")
            + _num(s["accuracy"] or -1, _pct(s.get("accuracy"), 1))
            + _num(s.get("mui_correct") or -1, _pct(s.get("mui_correct"), 3))
            + f"<td>{'yes' if r.ctx else 'no (run without --explore)'}</td></tr>"
        )
    notes = (
        "<ul class=notes>"
        "<li><b>MUI</b>: fraction of (layer, unit) pairs that are key for at least one sample (the union of "
        "per-sample key sets), as in arXiv 2504.07440.</li>"
        "<li><b>fire</b>: scored response tokens where the unit's score is &gt; 0 (SAE: the feature is active; "
        "neurons: the neuron pushes the target token's logit up). <b>key</b>: samples whose key set contains the "
        "unit.</li>"
        "<li><b>Contexts</b>: at most one per sample: the samples where the unit peaks highest (<i>top</i>) "
        "and samples at lower quantiles of the peaks over a fixed pseudo-random pool of samples (<i>q75</i>, "
        "<i>q50</i>, <i>q25</i>: the quantile). Every token is shaded by the unit's score on it "
        "(<i class=s2>weak</i> to <i class=s8>strong</i>, relative to the unit's highest shown score); the peak token is <mark>marked</mark>, prompt text is grey, and with the "
        "<i>predicting</i> alignment the target token is <u>underlined</u>.</li>"
        "<li><b>Logit lens</b>: tokens whose unembedding aligns most (↑) / least (↓) with the unit's output "
        "direction (SAE decoder row, or the neuron's down-projection column), W_U·d without the final norm.</li>"
        "</ul>"
    )
    return (
        "<h2>MUI summary</h2><table class=sort><thead>"
        + head
        + "</thead><tbody>"
        + "".join(rows)
        + "</tbody></table>"
        + eq_note
        + "<h2>MUI per layer</h2>"
        + _bars_svg(runs)
        + notes
    )


def _feature_table(run: Run, ri: int, layer: int, by: str, n_top: int) -> str:
    df = top_features(run.result, layer, by, n_top)
    title = "top by firing count" if by == "fire" else "top by key-set frequency"
    rows = []
    for row in df.itertuples():
        u = int(row.unit)
        snippet, lens = _snippet(run, layer, u), ""
        if run.ctx is not None and run.ctx.has(layer, u):
            t = run.ctx.lens.get((layer, u))
            if t is not None:
                lens = " ".join(f"<code>{_tok(run.ctx.token_text(i))}</code>" for i in t[0][:3])
        rows.append(
            f'<tr><td data-v="{u}"><a href="#{_unit_anchor(ri, layer, u)}">{u}</a></td>'
            + _num(row.fire)
            + _num(row.fire_rate, _pct(row.fire_rate))
            + _num(row.keyfreq)
            + _num(row.key_rate, _pct(row.key_rate, 1))
            + f"<td>{'✓' if row.key else ''}</td><td>{snippet}</td><td>{lens}</td></tr>"
        )
    if not rows:
        return f"<div><h4>{title}</h4><p class=muted>no unit has a non-zero count on this layer</p></div>"
    return (
        f"<div><h4>{title}</h4><table class='sort feat' data-by='{by}'><thead><tr><th>unit</th><th>fire</th>"
        "<th>fire %</th><th>key</th><th>key %</th><th>in MUI</th><th>top context</th><th>logit ↑</th></tr>"
        "</thead><tbody>" + "".join(rows) + "</tbody></table></div>"
    )


def _unit_card(run: Run, ri: int, layer: int, unit: int, n_show: int, window: int) -> str:
    r = run.result.layers.index(layer)
    a = run.result.arrays
    fire, kf = int(a["fire_LU"][r][unit]), int(a["keyfreq_LU"][r][unit])
    n_tok = max(int(a["n_tokens_L"][r]), 1)
    n_s = max(int(run.result.summary["n_samples"]), 1)
    ids = {s["index"]: s["id"] for s in run.result.samples}
    stats = f"fires on {fire} tokens ({_pct(fire / n_tok)}), key in {kf} samples ({_pct(kf / n_s, 1)})" + (
        " · in the MUI union" if a["union_LU"][r][unit] else ""
    )
    body = ""
    if run.ctx is not None and run.ctx.has(layer, unit):
        counts, _ = run.ctx.histogram(layer, unit)
        shown = run.ctx.shown.get((layer, unit))
        if shown:
            vmax = max(c.value for c in shown)
            # up to half of the slots go to quantile contexts: the lower range is shown even with few slots
            qs = [c for c in shown if c.kind == "quantile"][: n_show // 2]
            shown = [c for c in shown if c.kind == "top"][: n_show - len(qs)] + qs
            ctxs = "".join(
                f"<div class=c><span class=v title='{'top sample' if c.kind == 'top' else 'pool quantile'}'>"
                f"{c.value:.3g}<small>{'top' if c.kind == 'top' else f'q{100 * c.quantile:.0f}'}</small></span>"
                f"{_shown_html(run, c, window, vmax)}<span class=sid>{esc(ids.get(c.sample, c.sample))}</span></div>"
                for c in shown
            )
        else:  # contexts from before shown contexts existed: the top list, one context per sample
            seen: set[int] = set()
            best = [t for t in run.ctx.top(layer, unit) if not (t[1] in seen or seen.add(t[1]))]
            ctxs = "".join(
                f"<div class=c><span class=v>{v:.3g}</span>{_context_html(run, s, p, window, v)}"
                f"<span class=sid>{esc(ids.get(s, s))}</span></div>"
                for v, s, p in best[:n_show]
            )
        body = (
            f"<div class=cardtop>{_hist_svg(counts)}{_lens_html(run, layer, unit, 8)}</div>"
            f"<div class=ctxs>{ctxs or '<span class=muted>no positive scores</span>'}</div>"
        )
    return (
        f"<div class=card id={_unit_anchor(ri, layer, unit)}><h4>layer {layer} · unit {unit}"
        f"{_np_link(run, layer, unit)}</h4><div class=muted>{esc(stats)}</div>{body}</div>"
    )


def min_fisher_p(n_correct: int, n_incorrect: int) -> float:
    """The smallest two-sided Fisher p any unit can reach with these group sizes (key in every sample of one
    group and in none of the other)."""
    from scipy.stats import fisher_exact

    return min(
        float(fisher_exact([[n_correct, 0], [0, n_incorrect]])[1]),
        float(fisher_exact([[0, n_correct], [n_incorrect, 0]])[1]),
    )


def _significance_note(res: MUIResult, n_tested: int, alpha: float = 0.05) -> str:
    nc = sum(1 for s in res.samples if s.get("correct") is True)
    ni = sum(1 for s in res.samples if s.get("correct") is False)
    pmin = min_fisher_p(nc, ni)
    if pmin > alpha:
        return (
            f"<p class=warn>No unit can reach significance here: with {nc} correct and {ni} incorrect samples the "
            f"smallest possible p (Fisher, two-sided) is {pmin:.2g} &gt; {alpha}. The table ranks units, it does "
            "not find any; label more samples.</p>"
        )
    if pmin * n_tested > alpha:
        return (
            f"<p class=warn>With {nc} correct and {ni} incorrect samples the smallest possible p is {pmin:.2g}; "
            f"after Benjamini–Hochberg over {n_tested} units a unit needs p ≤ {alpha}·rank/{n_tested}, so few "
            "or no units can reach q ≤ 0.05.</p>"
        )
    return ""


def _correct_section(run: Run, ri: int, n: int) -> str:
    res = run.result
    try:
        df = correct_vs_incorrect(res)
    except SaemuiError as e:
        return f"<h3>Correct vs incorrect responses</h3><p class=muted>{esc(e)}</p>"
    n_tested = len(df)
    note = _significance_note(res, n_tested)
    df = df.head(n)
    rows = []
    for row in df.itertuples():
        lay, u = int(row.layer), int(row.unit)
        snip = _snippet(run, lay, u)
        rows.append(
            f"<tr>{_num(lay)}<td data-v='{u}'>{u}</td>"
            + _num(row.freq_correct, _pct(row.freq_correct, 1))
            + _num(row.freq_incorrect, _pct(row.freq_incorrect, 1))
            + _num(row.diff, f"{100 * row.diff:+.1f} pp")
            + _num(row.p, f"{row.p:.2g}")
            + _num(row.q, f"{row.q:.2g}")
            + f"<td>{snip}</td></tr>"
        )
    return (
        "<h3>Correct vs incorrect responses</h3><p class=muted>Units whose key-set frequency differs between "
        "correct and incorrect samples: Fisher's exact test per unit, q = Benjamini–Hochberg over all "
        f"{n_tested} tested units; the {len(df)} smallest p shown.</p>{note}"
        "<table class=sort><thead><tr><th>layer</th><th>unit</th><th>key % correct</th><th>key % incorrect</th>"
        "<th>difference</th><th>p</th><th>q</th><th>top context</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table>"
    )


def _sample_text(run: Run, sample: int, limit: int = 400) -> str:
    """The sample's prompt (grey) and response as recorded by the contexts, shortened in the middle."""
    ids = run.ctx.tokens.get(sample) if run.ctx is not None else None
    if ids is None:
        return ""
    first = run.ctx.first_scored.get(sample, 0)
    prompt = "".join(run.ctx.token_text(i) for i in ids[:first])
    resp = "".join(run.ctx.token_text(i) for i in ids[first:])
    short = lambda t: t if len(t) <= limit else t[: limit // 2] + " … " + t[-limit // 2 :]  # noqa: E731
    return f"<div class=cx><span class=p>{_tok(short(prompt))}</span>{_tok(short(resp))}</div>"


def _samples_section(run: Run, ri: int, cards: set[tuple[int, int]], max_samples: int = 100) -> str:
    """Per sample: its key units per layer (links to the unit cards shown above), chosen with a picker."""
    res = run.result
    try:
        ip, units = res.sets_csr()
    except SaemuiError as e:
        return f"<h3>Samples</h3><p class=muted>{esc(e)}</p>"
    L = len(res.layers)
    n = len(res.samples)
    shown = res.samples[:max_samples]
    opts, views = [], []
    for k, row in enumerate(shown):
        i = int(row["index"])
        per = [units[ip[i * L + r] : ip[i * L + r + 1]] for r in range(L)]
        n_key = int(sum(len(u) for u in per))
        label = {True: "correct", False: "incorrect"}.get(row.get("correct"), "unlabelled")
        opts.append(
            f'<option value="{i}"{" selected" if k == 0 else ""}>{esc(row["id"])} · {label} · {n_key} key units'
            "</option>"
        )
        trs = []
        for layer, us in zip(res.layers, per):
            if not len(us):
                continue
            links = " ".join(
                f'<a href="#{_unit_anchor(ri, layer, int(u))}">{int(u)}</a>'
                if (layer, int(u)) in cards
                else str(int(u))
                for u in us.tolist()
            )
            trs.append(f"<tr>{_num(layer)}{_num(len(us))}<td>{links}</td></tr>")
        views.append(
            f'<div class=smp data-run="{ri}" data-sample="{i}">{_sample_text(run, i)}'
            "<table><thead><tr><th>layer</th><th>key units</th><th>units (linked: has a card above)</th></tr>"
            f"</thead><tbody>{''.join(trs)}</tbody></table></div>"
        )
    more = f" (the first {max_samples} of {n})" if n > max_samples else ""
    return (
        f"<h3 id=r{ri}-samples>Samples{more}</h3><p class=muted>The key units of one sample, per layer: what this response used."
        "</p>"
        f'<label>Sample <select class=ssel data-run="{ri}">{"".join(opts)}</select></label>' + "".join(views)
    )


def _run_section(run: Run, ri: int, n_top: int, n_show: int, window: int) -> str:
    res = run.result
    opts, layers_html = [], []
    card_units: set[tuple[int, int]] = set()
    start = int(np.argmax(res.per_layer)) if res.layers else 0
    for i, (layer, m) in enumerate(zip(res.layers, res.per_layer)):
        r = res.layers.index(layer)
        n_key = int(res.arrays["union_LU"][r].sum())
        sel = " selected" if i == start else ""
        opts.append(
            f'<option value="{layer}"{sel}>layer {layer}: MUI {100 * m:.3f}% ({n_key} key units)</option>'
        )
        units: list[int] = []
        for by in ("fire", "keyfreq"):
            units += [int(u) for u in top_features(res, layer, by, n_top)["unit"] if int(u) not in units]
        card_units.update((layer, u) for u in units)
        cards = "".join(_unit_card(run, ri, layer, u, n_show, window) for u in units)
        layers_html.append(
            f'<div class=layer id="r{ri}-l{layer}" data-run="{ri}" data-layer="{layer}">'
            f"<h3>Layer {layer} <span class=muted>MUI {100 * m:.3f}%, {n_key} of {res.n_units} units key</span></h3>"
            f"<div class=two>{_feature_table(run, ri, layer, 'fire', n_top)}"
            f"{_feature_table(run, ri, layer, 'keyfreq', n_top)}</div>"
            f"<details open><summary>unit cards ({len(units)})</summary><div class=cards>{cards}</div></details></div>"
        )
    s = res.summary
    ctx_note = (
        ""
        if run.ctx
        else "<p class=warn>This run has no contexts.npz: run it with <code>saemui run --explore</code> "
        "to see contexts, histograms and logit-lens tokens.</p>"
    )
    return (
        f"<h2>{esc(run.name)}</h2><p class=muted>{esc(s['model']['name'])} · {esc(run.kind)} "
        f"({esc(s['units']['basis'])}) · MUI {_pct(s['mui'], 3)} · {s['n_samples']} samples, "
        f"{s['n_tokens']} scored tokens</p>{ctx_note}"
        f'<label>Show <select class=lsel data-run="{ri}">{"".join(opts)}</select></label>'
        + "".join(layers_html)
        + _samples_section(run, ri, card_units)
        + _correct_section(run, ri, 15)
    )


def _unique_table(run: Run, ri: int, df, other: str) -> str:
    rows = []
    for row in df.itertuples():
        lay, u = int(row.layer), int(row.unit)
        snip, lens = _snippet(run, lay, u), ""
        if run.ctx is not None and run.ctx.has(lay, u):
            t = run.ctx.lens.get((lay, u))
            if t is not None:
                lens = " ".join(f"<code>{_tok(run.ctx.token_text(i))}</code>" for i in t[0][:3])
        rows.append(
            f"<tr>{_num(lay)}<td data-v='{u}'>{u}{_np_link(run, lay, u)}</td>"
            + _num(row.keyfreq)
            + _num(row.key_rate, _pct(row.key_rate, 1))
            + _num(row.fire_rate_other, _pct(row.fire_rate_other))
            + f"<td>{snip}</td><td>{lens}</td></tr>"
        )
    if not rows:
        return f"<p class=muted>none: every key unit of {esc(run.name)} is also key in {esc(other)}</p>"
    return (
        "<table class=sort><thead><tr><th>layer</th><th>unit</th><th>key</th><th>key %</th>"
        f"<th>fire % in {esc(other[:20])}</th><th>top context</th><th>logit ↑</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table>"
    )


def _compare_section(runs: list[Run], n: int) -> str:
    out = [
        "<h2>Comparisons</h2><p class=muted>Key units (MUI unions) of two runs on the same unit basis: per "
        "layer how many are shared, unique to each, and their Jaccard overlap; then the units key only in one run "
        "(ranked by how many samples they are key for).</p>"
    ]
    pairs = [(i, j) for i in range(len(runs)) for j in range(i + 1, len(runs))][:6]
    for i, j in pairs:
        a, b = runs[i], runs[j]
        out.append(f"<h3>{esc(a.name)} <span class=muted>vs</span> {esc(b.name)}</h3>")
        try:
            df = compare_runs(a.result, b.result)
            uq = unique_features(a.result, b.result, 12)
        except SaemuiError as e:
            out.append(f"<p class=warn>not comparable: {esc(e)}</p>")
            continue
        rows = "".join(
            f"<tr><td>{esc(r.layer)}</td>{_num(r.n_a)}{_num(r.n_b)}{_num(r.shared)}{_num(r.only_a)}"
            f"{_num(r.only_b)}{_num(r.jaccard if r.jaccard == r.jaccard else -1, f'{r.jaccard:.3f}')}</tr>"
            for r in df.itertuples()
        )
        out.append(
            _jaccard_svg(df)
            + "<details><summary>per-layer overlap table</summary><table class=sort><thead><tr><th>layer</th>"
            f"<th>key in {esc(a.name[:20])}</th><th>key in {esc(b.name[:20])}</th><th>shared</th>"
            f"<th>only {esc(a.name[:20])}</th><th>only {esc(b.name[:20])}</th><th>Jaccard</th></tr></thead>"
            f"<tbody>{rows}</tbody></table></details>"
            f"<h4>Key only in {esc(a.name)}</h4>"
            + _unique_table(a, i, uq[uq["side"] == "a"], b.name)
            + f"<h4>Key only in {esc(b.name)}</h4>"
            + _unique_table(b, j, uq[uq["side"] == "b"], a.name)
        )
    return "".join(out)


CSS = """
*{box-sizing:border-box}body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;
color:#1d1d1f;background:#fafafa}header{background:#23395d;color:#fff;padding:14px 22px}header h1{margin:0;
font-size:20px}header p{margin:4px 0 0;opacity:.85}nav.tabs{display:flex;flex-wrap:wrap;gap:4px;padding:8px 22px 0;
background:#e9edf3;border-bottom:1px solid #cfd6e0}nav.tabs button{border:1px solid #cfd6e0;border-bottom:none;
background:#f6f8fb;padding:6px 14px;border-radius:6px 6px 0 0;cursor:pointer;font:inherit}nav.tabs button.on{
background:#fff;font-weight:600}main{padding:6px 22px 40px}section.tab{background:#fff}h2{font-size:18px;
margin:18px 0 8px}h3{font-size:16px;margin:22px 0 6px;border-top:1px solid #e3e3e3;padding-top:10px}h4{
margin:10px 0 4px;font-size:14px}table{border-collapse:collapse;margin:4px 0 10px;font-size:13px}th,td{
border-bottom:1px solid #e6e6e6;padding:3px 7px;text-align:left;vertical-align:top}th{background:#f1f3f6;
cursor:pointer;user-select:none;white-space:nowrap}td.n{text-align:right;font-variant-numeric:tabular-nums}
.muted{color:#6b6b6b;font-weight:normal}.warn{background:#fff4e0;border:1px solid #f0c27a;padding:6px 10px}
.two{display:flex;flex-wrap:wrap;gap:18px}.two>div{flex:1 1 520px;min-width:0}.cx{font-family:ui-monospace,
SFMono-Regular,Menlo,Consolas,monospace;font-size:12px;white-space:pre-wrap;word-break:break-word}.cx .p{
color:#9a9a9a}mark{background:#ffd54f;padding:0 1px;border-radius:2px}u{text-decoration:2px underline #d9822b}
mark,u{white-space:pre}code{background:#eef1f5;padding:0 3px;border-radius:3px;font-size:12px;white-space:pre}.cards{display:grid;
grid-template-columns:repeat(auto-fill,minmax(430px,1fr));gap:10px}.card{border:1px solid #dde2ea;
border-radius:6px;padding:8px 10px;background:#fcfdff}.card h4{margin:0 0 2px}.cardtop{display:flex;gap:12px;
align-items:flex-start;margin:6px 0}.lens{font-size:12px;line-height:1.9}.c{display:flex;gap:8px;
align-items:baseline;border-top:1px dotted #e3e3e3;padding:2px 0}.c .v{min-width:46px;text-align:right;
font-variant-numeric:tabular-nums;color:#23395d;font-size:12px}.c .cx{flex:1}.c .sid{color:#999;font-size:11px}
svg text{font-size:10px;fill:#555}svg.chart{max-width:100%;height:auto}a.np{font-size:12px;font-weight:normal}
.lens{min-width:0;overflow-wrap:anywhere}.lens code{white-space:pre-wrap}.card{overflow:hidden}
.notes{color:#444;max-width:900px}select{font:inherit;padding:2px 4px;max-width:100%}summary{cursor:pointer;
color:#23395d}.cx i{font-style:normal;border-radius:2px}.s1{background:#fff3c4}.s2{background:#ffeaa0}.s3{
background:#ffe17d}.s4{background:#ffd659}.s5{background:#ffc93a}.s6{background:#ffb41f}.s7{background:#ff9a0a}
.s8{background:#f57c00}mark{outline:1px solid #b35900}.c .v small{display:block;color:#999;font-size:10px}
.smp{margin:6px 0}.smp .cx{display:block;max-width:1100px;margin:4px 0 6px;color:#333}.cards{max-width:100%}
svg.hist{max-width:100%;height:auto;flex:0 0 auto}.cardtop{flex-wrap:wrap}.cardtop .lens{flex:1 1 200px}@media (max-width:1000px){.cards{grid-template-columns:1fr}.cardtop{
flex-wrap:wrap}.two>div{flex-basis:100%}table{display:block;overflow-x:auto}}
"""

JS = """
(function(){
  var tabs=[].slice.call(document.querySelectorAll('nav.tabs button'));
  var secs=[].slice.call(document.querySelectorAll('section.tab'));
  function show(id){
    secs.forEach(function(s){s.hidden=s.id!=='tab-'+id;});
    tabs.forEach(function(b){b.classList.toggle('on',b.getAttribute('data-tab')===id);});
  }
  function showLayer(run,layer){
    [].forEach.call(document.querySelectorAll('.layer[data-run="'+run+'"]'),function(d){
      d.hidden=d.getAttribute('data-layer')!==String(layer);});
    var s=document.querySelector('select.lsel[data-run="'+run+'"]');
    if(s&&s.value!==String(layer)){s.value=String(layer);}
  }
  function showSample(run,smp){
    [].forEach.call(document.querySelectorAll('.smp[data-run="'+run+'"]'),function(d){
      d.hidden=d.getAttribute('data-sample')!==String(smp);});
  }
  [].forEach.call(document.querySelectorAll('select.ssel'),function(s){
    s.addEventListener('change',function(){showSample(s.getAttribute('data-run'),s.value);});
    showSample(s.getAttribute('data-run'),s.value);
  });
  tabs.forEach(function(b){b.addEventListener('click',function(){show(b.getAttribute('data-tab'));});});
  [].forEach.call(document.querySelectorAll('select.lsel'),function(s){
    s.addEventListener('change',function(){showLayer(s.getAttribute('data-run'),s.value);});
    showLayer(s.getAttribute('data-run'),s.value);
  });
  function key(td){
    var v=td.getAttribute('data-v');
    return v!==null&&v!==''&&!isNaN(+v)?+v:td.textContent.toLowerCase();
  }
  [].forEach.call(document.querySelectorAll('table.sort th'),function(th){
    th.title='click to sort';
    th.addEventListener('click',function(){
      var tb=th.closest('table').tBodies[0],i=[].indexOf.call(th.parentNode.children,th);
      var desc=th.getAttribute('data-dir')!=='desc';
      var rows=[].slice.call(tb.rows);
      rows.sort(function(a,b){
        var x=key(a.cells[i]),y=key(b.cells[i]);
        var c=(typeof x===typeof y)?(x<y?-1:x>y?1:0):(typeof x==='number'?-1:1);
        return desc?-c:c;});
      rows.forEach(function(r){tb.appendChild(r);});
      th.setAttribute('data-dir',desc?'desc':'asc');
    });
  });
  function go(){
    var h=decodeURIComponent(location.hash.slice(1));
    var el=h?(document.getElementById(h)||document.getElementById('tab-'+h)):null;
    if(!el){show(tabs.length?tabs[0].getAttribute('data-tab'):'');return;}
    var sec=el.closest('section.tab');if(sec){show(sec.id.slice(4));}
    var lay=el.closest('.layer');if(lay){showLayer(lay.getAttribute('data-run'),lay.getAttribute('data-layer'));}
    if(el!==sec){el.scrollIntoView();}
  }
  // Again after load: the browser's own jump to the fragment may have used the layout before layers were hidden.
  window.addEventListener('hashchange',go);window.addEventListener('load',go);go();
  document.body.setAttribute('data-ready','1');
})();
"""


def build_report(
    runs: list[Run],
    n_top: int = 8,
    n_show: int = 5,
    window: int = 8,
    title: str = "saemui report",
) -> str:
    """The whole page as one HTML string.

    n_top: units per ranking (fire, keyfreq) per layer; n_show: contexts per unit card; window: tokens shown
    either side of a context's scored token.
    """
    if not runs:
        raise SaemuiError("no runs to report")
    tabs = [("overview", "Overview")] + [(f"run{i}", r.name) for i, r in enumerate(runs)]
    secs = [("overview", _overview(runs))]
    secs += [(f"run{i}", _run_section(r, i, n_top, n_show, window)) for i, r in enumerate(runs)]
    if len(runs) > 1:
        tabs.append(("compare", "Compare"))
        secs.append(("compare", _compare_section(runs, 12)))
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    nav = "".join(f'<button type=button data-tab="{t}">{esc(label)}</button>' for t, label in tabs)
    # Sections are "tab-NAME" while links use "#NAME": the browser then does not jump to the section itself.
    body = "".join(f'<section class=tab id="tab-{t}">{h}</section>' for t, h in secs)
    names = ", ".join(r.name for r in runs)
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width,initial-scale=1">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
        f"<header><h1>{esc(title)}</h1><p>{len(runs)} run(s): {esc(names)} · generated {now}</p></header>"
        f"{_hist_axes()}<nav class=tabs>{nav}</nav><main>{body}</main><script>{JS}</script></body></html>\n"
    )


def write_report(
    run_dirs: list[str | os.PathLike],
    out: str | os.PathLike,
    names: list[str] | None = None,
    **kwargs,
) -> Path:
    """Load the run directories and write the report to ``out`` atomically."""
    if names is not None and len(names) != len(run_dirs):
        raise SaemuiError(f"--names: {len(names)} names for {len(run_dirs)} runs")
    runs = [load_run(d, names[i] if names else None) for i, d in enumerate(run_dirs)]
    seen: dict[str, int] = {}
    for r in runs:  # distinct tab labels even for runs in same-named directories
        seen[r.name] = seen.get(r.name, 0) + 1
        if seen[r.name] > 1:
            r.name = f"{r.name} ({seen[r.name]})"
    out = Path(out)
    atomic_write_text(out, build_report(runs, **kwargs))
    return out
