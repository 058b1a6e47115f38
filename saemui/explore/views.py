"""Per-run views on a :class:`~saemui.result.MUIResult` and its contexts, and :func:`explore_run`.

:func:`explore_run` runs :func:`~saemui.engine.compute_mui` with a
:class:`~saemui.explore.collector.ContextCollector`, adds logit-lens tokens for the units a report shows, and
saves ``contexts.npz`` next to the result. The view functions return pandas DataFrames (or matplotlib figures)
for notebooks; :mod:`saemui.report` renders the same views as HTML. Run-vs-run comparisons are in
:mod:`saemui.compare`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from saemui.config import RunConfig
from saemui.engine import compute_mui
from saemui.errors import SaemuiError
from saemui.explore.collector import CONTEXTS_FILE, ContextCollector, TokenScoreRecorder
from saemui.explore.lens import lens_ids, unit_directions
from saemui.models import LoadedModel
from saemui.records import Sample
from saemui.result import MUIResult
from saemui.saes import open_suite


def top_features(result: MUIResult, layer: int, by: str = "fire", n: int = 10) -> pd.DataFrame:
    """The layer's top units by firing count (``fire``) or by key-set frequency (``keyfreq``).

    Columns: layer, unit, fire (scored tokens with score > 0), fire_rate (of the layer's scored tokens),
    keyfreq (samples in whose key set the unit is), key_rate (of all samples), key (in the MUI union).
    Only units with a non-zero count are listed; ties go to the other count, then the lower unit id.
    """
    if by not in ("fire", "keyfreq"):
        raise SaemuiError(f"by={by!r}: expected 'fire' or 'keyfreq'")
    r = result.row(layer)
    fire = result.arrays["fire_LU"][r].astype(np.int64)
    kf = result.arrays["keyfreq_LU"][r].astype(np.int64)
    main, other = (fire, kf) if by == "fire" else (kf, fire)
    cand = np.nonzero(main > 0)[0]
    order = np.lexsort((cand, -other[cand], -main[cand]))[:n]
    u = cand[order]
    n_tok = max(int(result.arrays["n_tokens_L"][r]), 1)
    n_s = max(int(result.summary["n_samples"]), 1)
    return pd.DataFrame(
        {
            "layer": layer,
            "unit": u,
            "fire": fire[u],
            "fire_rate": fire[u] / n_tok,
            "keyfreq": kf[u],
            "key_rate": kf[u] / n_s,
            "key": result.arrays["union_LU"][r][u].astype(bool),
        }
    )


def context_tokens(
    ctx: ContextCollector, sample: int, pos: int, window: int = 8
) -> tuple[list[tuple[int, str, bool]], int]:
    """Tokens around a position as (position, text, is_prompt), and the index of ``pos`` in that list."""
    ids = ctx.tokens.get(sample)
    if ids is None:
        raise SaemuiError(f"no tokens recorded for sample {sample}")
    lo, hi = max(0, pos - window), min(len(ids), pos + window + 1)
    first = ctx.first_scored.get(sample, 0)
    return [(p, ctx.token_text(ids[p]), p < first) for p in range(lo, hi)], pos - lo


def feature_contexts(
    ctx: ContextCollector, layer: int, unit: int, window: int = 8, result: MUIResult | None = None
) -> pd.DataFrame:
    """The unit's max-activating contexts, best first.

    Columns: rank, value (the unit's score), sample (index), sample_id (with ``result``), pos (token
    position), left / token / right (decoded text around the scored token; ``token`` is the highlighted one),
    next_token (the token after it: the neuron's target under the ``predicting`` alignment), text (the
    window with the scored token in [[brackets]]).
    """
    rows = []
    ids = {s["index"]: s["id"] for s in result.samples} if result is not None else {}
    for rank, (v, s, p) in enumerate(ctx.top(layer, unit), 1):
        toks, i = context_tokens(ctx, s, p, window)
        left = "".join(t for _, t, _ in toks[:i])
        right = "".join(t for _, t, _ in toks[i + 1 :])
        rows.append(
            {
                "rank": rank,
                "value": v,
                "sample": s,
                "sample_id": ids.get(s),
                "pos": p,
                "left": left,
                "token": toks[i][1],
                "right": right,
                "next_token": toks[i + 1][1] if i + 1 < len(toks) else "",
                "text": f"{left}[[{toks[i][1]}]]{right}",
            }
        )
    cols = ["rank", "value", "sample", "sample_id", "pos", "left", "token", "right", "next_token", "text"]
    return pd.DataFrame(rows, columns=cols)


# -- figures -------------------------------------------------------------------------------------------


def plot_layer_mui(results: Sequence[MUIResult], names: Sequence[str] | None = None):
    """Grouped bars of per-layer MUI (%) for one or more runs; returns a matplotlib Figure."""
    # imported here: matplotlib is needed only for figures, not by the views or explore_run
    from saemui.plots import legend_outside, new_figure

    names = list(names) if names is not None else [f"run {i}" for i in range(len(results))]
    fig, (ax,) = new_figure(max(6.0, 0.25 * max(len(r.layers) for r in results) * len(results)), 3.5)
    w = 0.8 / len(results)
    for j, (r, name) in enumerate(zip(results, names)):
        x = np.asarray(r.layers, float) + (j - (len(results) - 1) / 2) * w
        ax.bar(x, 100 * np.asarray(r.per_layer), w, label=str(name))
    ax.set_xlabel("layer")
    ax.set_ylabel("MUI (%)")
    ax.set_ylim(bottom=0)
    legend_outside(ax)
    return fig


def plot_histogram(ctx: ContextCollector, layer: int, unit: int):
    """The unit's activation histogram (positive scores, log-spaced bins); returns a matplotlib Figure."""
    # imported here: matplotlib is needed only for figures, not by the views or explore_run
    from saemui.plots import new_figure

    counts, edges = ctx.histogram(layer, unit)
    fig, (ax,) = new_figure(5, 3)
    lo = np.r_[edges[1] / 10**0.25, edges[1:-1]]
    hi = np.r_[edges[1:-1], edges[-2] * 10**0.25]
    ax.bar(lo, counts, width=hi - lo, align="edge")
    ax.set_xscale("log")
    ax.set_xlabel("score (first/last bar: under/overflow)")
    ax.set_ylabel("tokens")
    ax.set_title(f"layer {layer} unit {unit}: {int(counts.sum())} firing tokens")
    return fig


# -- running -------------------------------------------------------------------------------------------


def report_units(result: MUIResult, layer: int, n_top: int) -> list[int]:
    """Units a report shows for a layer: the MUI union plus the top ``n_top`` by fire and by keyfreq."""
    r = result.row(layer)
    u = set(np.nonzero(result.arrays["union_LU"][r])[0].tolist())
    for by in ("fire", "keyfreq"):
        u.update(top_features(result, layer, by, n_top)["unit"].tolist())
    return sorted(int(x) for x in u)


def neuronpedia_ids(result: MUIResult, ctx: ContextCollector | None = None) -> dict[int, str]:
    """Layer → Neuronpedia SAE id (e.g. ``gemma-2-2b/20-gemmascope-res-16k``) for sae-lens registry SAEs.

    From the contexts' metadata when recorded, else from the sae-lens registry (a file shipped with
    sae-lens: no network). Empty for neurons and local SAEs.
    """
    if ctx is not None and ctx.meta.get("neuronpedia"):
        return {int(k): v for k, v in ctx.meta["neuronpedia"].items() if v}
    src = result.summary["units"].get("sae_source") or {}
    if src.get("kind") != "sae-lens-registry":
        return {}
    try:
        from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

        lookup = get_pretrained_saes_directory().get(src.get("release"))
    except Exception:  # an optional nicety: never fail a report over it
        return {}
    np_ids = (getattr(lookup, "neuronpedia_id", None) or {}) if lookup else {}
    return {int(k): np_ids[sid] for k, sid in (src.get("ids") or {}).items() if np_ids.get(sid)}


def explore_run(
    lm: LoadedModel,
    samples: Sequence[Sample],
    config: RunConfig | None = None,
    out: str | os.PathLike | None = None,
    n_contexts: int = 12,
    n_top: int = 10,
    n_lens: int = 10,
    units: Mapping[int, Sequence[int]] | None = None,
    progress: bool = True,
    n_pool: int = 64,
    n_shown_top: int = 3,
    n_shown_quantile: int = 3,
) -> tuple[MUIResult, ContextCollector]:
    """MUI plus contexts in one pass; with ``out``, saves the result and ``out/contexts.npz``.

    Logit-lens tokens (``n_lens`` each side) are computed for :func:`report_units` (union + ``n_top`` per
    ranking), the units a report shows; ``units`` optionally restricts context collection (see
    :class:`ContextCollector`). For the same units a second pass over the samples records the contexts a
    report shows (``coll.shown``): per unit the ``n_shown_top`` samples with the highest peak and up to
    ``n_shown_quantile`` samples at lower quantiles of the peaks over a fixed pseudo-random pool of ``n_pool``
    samples, at most one context per sample, each with the unit's score on every token around its peak.
    """
    cfg = (config or RunConfig()).resolved()
    coll = ContextCollector(n_contexts, units)
    result = compute_mui(lm, samples, cfg, progress=progress, observers=[coll])
    coll.meta.update({"alignment": cfg.alignment, "units_kind": cfg.units})
    saes = {}
    if cfg.units == "sae":
        suite = open_suite(cfg.saes, target_l0=cfg.target_l0)
        saes = {e.layer: e for e in suite.entries if e.layer in result.layers}
        coll.meta["neuronpedia"] = {
            str(e.layer): e.meta.get("neuronpedia_id") for e in saes.values() if e.meta.get("neuronpedia_id")
        }
    W_U = lm.W_U_VD
    for layer in result.layers:
        us = report_units(result, layer, n_top)
        if not us:
            continue
        if cfg.units == "sae":
            e = saes[layer]
            sae = e.load("cpu", "float32", False)
            dirs = unit_directions(lm, layer, us, sae, e.hook_name)
            del sae
        else:
            dirs = unit_directions(lm, layer, us)
        coll.add_logit_lens(layer, us, *lens_ids(dirs, W_U, n_lens))
    # A second pass scores the units a report shows on every token: one context per sample (the top samples
    # and samples at lower quantiles of a fixed pool) with the unit's score on each token around its peak.
    # Only the units that get a card (top by fire and by keyfreq): the whole union can be thousands of features.
    shown_units = {
        layer: sorted(
            {int(u) for by in ("fire", "keyfreq") for u in top_features(result, layer, by, n_top)["unit"]}
        )
        for layer in result.layers
    }
    pool = np.sort(np.random.default_rng(0).permutation(len(samples))[:n_pool])
    rec = TokenScoreRecorder(shown_units, pool.tolist(), n_top=n_shown_top, n_quantile=n_shown_quantile)
    compute_mui(lm, samples, cfg, progress=progress, observers=[rec])
    coll.shown = rec.shown()
    coll.add_vocab(lm.tokenizer)
    if out is not None:
        result.save(out)
        coll.save(Path(out) / CONTEXTS_FILE)
    return result, coll
