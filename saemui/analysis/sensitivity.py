"""Basis sensitivity: how MUI moves with the unit basis and the key-unit selection [OURS]."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

from saemui.errors import SaemuiError

_KNOWN = ("basis", "eta", "k", "width", "l0", "mui")


def sensitivity_table(results: Iterable[Mapping]) -> pd.DataFrame:
    """Pivot MUI results into rows (setting) × columns (selection threshold).

    results: dicts with ``basis`` (e.g. an SAE bundle id or "neurons"), ``mui``, exactly one of ``eta``
        (topscore threshold) or ``k`` (top-k), and optionally ``width`` and ``l0`` (SAE size and sparsity;
        missing ones show as "-"). Any other keys (e.g. ``model``, ``task``) become leading index levels.

    Rows: (extra keys..., basis, width, l0); columns: "eta=<v>" / "k=<v>"; values: MUI. A setting measured
    twice is an error rather than silently averaged.
    """
    rows, extra = [], []
    for i, r in enumerate(results):
        if not isinstance(r, Mapping):
            raise SaemuiError(
                f"results[{i}]: expected a dict with basis, eta or k, mui; got {type(r).__name__}"
            )
        for key in ("basis", "mui"):
            if key not in r:
                raise SaemuiError(
                    f"results[{i}]: missing {key!r} (each result needs basis, eta or k, and mui)"
                )
        if ("eta" in r) == ("k" in r):
            raise SaemuiError(f"results[{i}]: expected exactly one of 'eta' (topscore) or 'k' (top-k)")
        sel = f"eta={r['eta']}" if "eta" in r else f"k={r['k']}"
        for key in r:
            if key not in _KNOWN and key not in extra:
                extra.append(key)
        rows.append({**r, "selection": sel})
    if not rows:
        raise SaemuiError("results: expected at least one result")
    # fill absent keys per row ("-") before pandas sees them, so ints such as l0=50 do not turn into 50.0
    fill = {key: "-" for key in ("width", "l0", *extra)}
    df = pd.DataFrame([{**fill, **r} for r in rows])
    df["mui"] = df["mui"].astype(float)
    index = [*extra, "basis", "width", "l0"]
    dup = df.duplicated([*index, "selection"])
    if dup.any():
        r = df[dup].iloc[0]
        where = ", ".join(f"{k}={r[k]!r}" for k in [*index, "selection"])
        raise SaemuiError(f"results: setting measured twice ({where})")
    table = df.pivot(index=index, columns="selection", values="mui")
    # sort selection columns numerically within each kind so eta=0.8 precedes eta=0.85 precedes eta=0.9
    cols = sorted(
        table.columns, key=lambda c: (c.split("=")[0], float(c.split("=")[1]) if _num(c) else np.inf, c)
    )
    return table[cols]


def _num(col: str) -> bool:
    try:
        float(col.split("=", 1)[1])
        return True
    except ValueError:
        return False


#: columns of :func:`sae_grid`
SAE_GRID_COLUMNS: tuple[str, ...] = (
    "recipe",
    "width",
    "k",
    "varies",
    "layers",
    "fve_median",
    "fve_min",
    "fve_max",
    "ce_rec_median",
    "dead_max",
    "dense_median",
    "l0_median",
    "train_minutes",
)


def _center(recipes: list[Mapping]) -> Mapping:
    """The centre of a one-factor-at-a-time grid: the recipe that shares its width or its k with every other."""
    for r in recipes:
        if all(o is r or o["width"] == r["width"] or o["k"] == r["k"] for o in recipes):
            return r
    raise SaemuiError(
        "sae grid: no recipe shares its width or k with every other (expected the one-factor-at-a-time grid of "
        "scripts/sae_recipes.py --sensitivity)"
    )


def sae_grid(res: Mapping) -> pd.DataFrame:
    """The width / k sensitivity of ``scripts/sae_recipes.py --sensitivity`` (its result JSON) as one row per
    recipe: ``varies`` says which factor the row moves away from the grid's centre ("width", "k" or "centre");
    the reconstruction figures are over the compared layers (response-token FVE median / min / max, CE-loss
    recovered median, largest dead share, dense and L0 medians) and ``train_minutes`` sums the layers' training;
    then one ``mui_eta=<η>`` column per threshold of the default run's MUI (%, the recipe's SAEs at those layers).
    Layers are not independent replicates (one training seed): min / max are a range, not an interval."""
    for key in ("recipes", "rows", "default_run_mui", "layers"):
        if key not in res:
            raise SaemuiError(
                f"sae sensitivity results: missing {key!r} (expected scripts/sae_recipes.py output)"
            )
    recipes = list(res["recipes"])
    if not recipes:
        raise SaemuiError("sae sensitivity results: 'recipes' is empty")
    centre = _center(recipes)
    by_recipe: dict[str, list[Mapping]] = {}
    for r in res["rows"]:
        by_recipe.setdefault(r["recipe"], []).append(r)
    mui: dict[tuple[str, float], float] = {}
    for m in res["default_run_mui"]:
        key = (m["basis"], float(m["eta"]))
        if key in mui:
            raise SaemuiError(f"sae sensitivity results: MUI of {m['basis']} at eta {m['eta']} given twice")
        mui[key] = float(m["mui"])
    etas = sorted({eta for _, eta in mui})
    out = []
    for r in recipes:
        rows = by_recipe.get(r["name"], [])
        if sorted(x["layer"] for x in rows) != sorted(res["layers"]):
            raise SaemuiError(
                f"sae sensitivity results: recipe {r['name']} has rows for layers "
                f"{sorted(x['layer'] for x in rows)}, expected {sorted(res['layers'])}"
            )

        def col(name: str, rows: list[Mapping] = rows) -> np.ndarray:
            return np.array([np.nan if x.get(name) is None else float(x[name]) for x in rows])

        fve = col("fve_pooled")
        varies = "centre" if r is centre else "width" if r["k"] == centre["k"] else "k"
        row = {
            "recipe": r["name"],
            "width": int(r["width"]),
            "k": int(r["k"]),
            "varies": varies,
            "layers": ",".join(str(x) for x in sorted(res["layers"])),
            "fve_median": float(np.median(fve)),
            "fve_min": float(fve.min()),
            "fve_max": float(fve.max()),
            "ce_rec_median": float(np.nanmedian(col("ce_loss_recovered"))),
            "dead_max": float(np.nanmax(col("dead_frac"))),
            "dense_median": float(np.nanmedian(col("dense_frac"))),
            "l0_median": float(np.nanmedian(col("l0"))),
            "train_minutes": float(np.nansum(col("train_seconds"))) / 60,
        }
        for eta in etas:
            row[f"mui_eta={eta:g}"] = mui.get((r["name"], eta), float("nan"))
        out.append(row)
    df = pd.DataFrame(out)
    return df.sort_values(["width", "k"], kind="stable").reset_index(drop=True)


def sae_grid_markdown(grid: pd.DataFrame, res: Mapping, command: str) -> str:
    """The table of :func:`sae_grid` as a markdown section (for ``saes/README.md``), with what was measured on
    what: the model, the compared layers, the evaluation text and the default run's samples, from ``res``."""
    mui_cols = [c for c in grid.columns if str(c).startswith("mui_eta=")]
    n_samples = sorted({int(m["n_samples"]) for m in res["default_run_mui"] if "n_samples" in m})
    centre = grid[grid["varies"] == "centre"].iloc[0]

    def f(x: float, d: int = 3) -> str:
        return f"{x:.{d}f}" if np.isfinite(x) else "–"

    lines = [
        "## Width / k sensitivity",
        "",
        f"Generated by `{command}` from `results/sae_sensitivity.json`; edits here are overwritten. "
        f"Model {res.get('model', '?')}, recipe `{centre['recipe']}` (width {centre['width']}, k {centre['k']}) "
        "and one factor moved at a time on the same captured activations (widths at its k, k at its width), "
        f"layers {centre['layers']}, one training seed each. FVE and CE-loss recovered on the response tokens "
        f"of {res.get('eval_sequences', '?')} held-out task answers ({res.get('eval_source', '?')}); FVE is "
        "the median over the layers with their range (not an interval: layers are not replicates). MUI (%): "
        f"the default run's {'/'.join(map(str, n_samples)) or '?'} built-in samples, key features ≥ η·max per "
        "(sample, layer), union over samples, divided by width × the compared layers.",
        "",
        "| recipe | width | k | FVE median (min–max) | CE-loss recovered | dead (max) | dense | L0 | "
        + " | ".join(f"MUI % ({c.replace('mui_', '')})" for c in mui_cols)
        + " | train (min) |",
        "|---|---|---|---|---|---|---|---|" + "---|" * len(mui_cols) + "---|",
    ]
    for r in grid.to_dict("records"):
        lines.append(
            f"| `{r['recipe']}` | {r['width']} | {r['k']} | {f(r['fve_median'])} ({f(r['fve_min'])}–"
            f"{f(r['fve_max'])}) | {f(r['ce_rec_median'])} | {f(r['dead_max'])} | {f(r['dense_median'])} | "
            f"{f(r['l0_median'], 1)} | "
            + " | ".join(f(r[c], 2) for c in mui_cols)
            + f" | {f(r['train_minutes'], 1)} |"
        )
    lines += ["", "Figure: `figures/sae_sensitivity.png`."]
    return "\n".join(lines) + "\n"
