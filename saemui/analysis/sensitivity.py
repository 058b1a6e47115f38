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
