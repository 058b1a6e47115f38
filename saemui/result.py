"""MUI result files: a JSON summary plus compact arrays, written atomically, readable with numpy/pandas.

Layout of a result directory::

    summary.json   schema version, config, versions, dtypes, model/SAE ids, mui, per_layer, counts, health
    arrays.npz     union_LU (bool), fire_LU, keyfreq_LU (int64), n_tokens_L, set_indptr (int64), set_units (int32)
    samples.csv    one row per sample: index, id, correct, n_response_tokens, n_scored, truncated, prompt,
                   response, meta (the record's other fields as a JSON object; absent in older files)
    run.json       what varies between identical runs: creation time, wall-clock timing, machine

The first three are deterministic: the same inputs give byte-identical files (npz members carry a fixed
timestamp), whether the run was interrupted and resumed or not.

The directory is assembled under a temporary name and renamed into place, and ``summary.json`` carries
``"complete": true``: a crashed run never leaves something that loads as a finished result.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from statistics import NormalDist
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from saemui.errors import SaemuiError
from saemui.io import default_mode

if TYPE_CHECKING:
    import pandas as pd

    from saemui.counter import UtilizationCounter
    from saemui.health import HealthAccumulator
    from saemui.records import Sample

SCHEMA_VERSION = 1
#: the columns every samples.csv has; newer files add prompt, response and meta (JSON), read when present
SAMPLE_COLUMNS = ("index", "id", "correct", "n_response_tokens", "n_scored", "truncated")


@dataclass
class MUIResult:
    """A finished MUI measurement.

    summary: everything JSON (see module docstring); arrays: name → numpy array; samples: per-sample rows.
    Rows of the per-layer arrays follow ``summary['layers']`` (model layer indices).
    """

    summary: dict
    arrays: dict[str, np.ndarray]
    samples: list[dict] = field(default_factory=list)
    run_info: dict = field(default_factory=dict)
    # The exact SAE-health sums behind summary["sae_health"], per layer, for merging results of several processes
    # (saemui.distributed); in memory only: a loaded result has None.
    health_sums: dict[int, HealthAccumulator] | None = field(default=None, compare=False, repr=False)
    #: the directory it was loaded from (None for a result still in memory); its responses.jsonl gives the text
    path: Path | None = field(default=None, compare=False)

    def __repr__(self) -> str:
        # the dataclass repr prints every array and sample row (kilobytes); a result is identified by these
        s = self.summary
        model = (s.get("model") or {}).get("name")
        task = (s.get("task") or {}).get("name")
        basis = (s.get("units") or {}).get("basis")
        acc = s.get("accuracy")
        return (
            f"MUIResult(model={model!r}, task={task!r}, basis={basis!r}, selection={s.get('selection')!r}, "
            f"n={s.get('n_samples')}, mui={100 * self.mui:.4f}%"
            + (f", accuracy={100 * acc:.1f}%" if acc is not None else "")
            + (f", path={str(self.path)!r}" if self.path is not None else "")
            + ")"
        )

    @property
    def mui(self) -> float:
        return float(self.summary["mui"])

    @property
    def per_layer(self) -> list[float]:
        return list(self.summary["per_layer"])

    @property
    def layers(self) -> list[int]:
        return list(self.summary["layers"])

    @property
    def n_units(self) -> int:
        return int(self.summary["units"]["n_units"])

    def row(self, layer: int) -> int:
        """Row of model layer ``layer`` in the per-layer arrays."""
        if layer not in self.layers:
            raise SaemuiError(f"layer {layer} not in this result (layers {self.layers})")
        return self.layers.index(layer)

    def sample_sets(self, sample: int) -> list[np.ndarray]:
        """Key units of one sample (by position), one array per layer row."""
        ip, units = self.sets_csr()
        L = len(self.layers)
        return [units[ip[sample * L + r] : ip[sample * L + r + 1]] for r in range(L)]

    def subset_union(self, samples: list[int] | np.ndarray) -> np.ndarray:
        """Union of key sets over the given sample positions: bool [L, U]."""
        sample_ptr, flat = self.flat_keys()
        L, U = len(self.layers), self.n_units
        out = np.zeros(L * U, dtype=bool)
        out[flat[_gather(sample_ptr, np.asarray(samples, dtype=np.int64))]] = True
        return out.reshape(L, U)

    def flat_keys(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-sample key sets as (sample_ptr, ids): sample i's key units over all layers are
        ``ids[sample_ptr[i]:sample_ptr[i + 1]]``, each a global id ``row * n_units + unit``."""
        ip, units = self.sets_csr()
        L = len(self.layers)
        rows = np.repeat(np.tile(np.arange(L, dtype=np.int64), (ip.size - 1) // max(L, 1)), np.diff(ip))
        return ip[:: max(L, 1)].astype(np.int64), rows * self.n_units + units.astype(np.int64)

    def mui_at(self, n: int, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> SubsampledMUI:
        """MUI at sample count ``n``: the union over random ``n``-sample subsets of this run's samples.

        MUI is a union, so it grows with the number of samples; runs measured at different N are compared at
        the smallest N through this. ``n_boot`` subsets are drawn uniformly without replacement (seeded
        ``numpy.random.default_rng``); when there are at most ``n_boot`` distinct subsets (always at n = N)
        every one is used and the result is exact. The interval is the equal-tailed percentile interval of the
        subset MUIs: how much the MUI of n samples varies with the choice of samples, not a confidence
        interval for a population value. Needs the kept per-sample key sets except at n = N.
        """
        N = int(self.summary["n_samples"])
        if not isinstance(n, int | np.integer) or not 1 <= n <= N:
            raise SaemuiError(f"n={n!r}: expected a sample count between 1 and this run's N = {N}")
        if n == N and not self.has_sets:
            return SubsampledMUI(
                n, N, self.mui, self.mui, self.mui, level, 1, True, seed, np.array([self.mui])
            )
        sample_ptr, flat = self.flat_keys()
        return subsample_union(sample_ptr, flat, len(self.layers) * self.n_units, n, n_boot, seed, level)

    @property
    def has_sets(self) -> bool:
        return self.arrays.get("set_indptr") is not None and self.arrays["set_indptr"].size > 0

    def accuracy_interval(self, level: float = 0.95) -> Accuracy:
        """Accuracy over the labelled samples with a Wilson score interval (:func:`wilson_interval`)."""
        labelled = [r.get("correct") for r in self.samples if r.get("correct") is not None]
        k = sum(bool(c) for c in labelled)
        lo, hi = wilson_interval(k, len(labelled), level)
        acc = k / len(labelled) if labelled else float("nan")
        return Accuracy(k, len(labelled), acc, lo, hi, level)

    def to_pandas(
        self,
        level: Literal["layer", "sample", "unit"] = "layer",
        records: str | os.PathLike | Iterable[Sample] | None = None,
    ) -> pd.DataFrame:
        """This result as a table; MUI columns are in percent (like every saemui table).

        ``"layer"``: one row per layer: layer, n_units, n_key (units in the union), mui, n_fired (units that
        fired on some scored token), n_tokens, mean_set_size (key units per sample, mean).
        ``"sample"``: one row per sample: the samples.csv columns (index, id, correct, n_response_tokens,
        n_scored, truncated, and any others), n_key (key units over all layers, when sets were kept), then
        prompt, response and each ``meta`` field of the sample's record. Records come from ``records`` (a
        JSONL path or Sample objects, matched by id), else from ``responses.jsonl`` in the result directory
        (``saemui run --task`` writes it), else the text columns are absent. A meta field named like a column
        is prefixed ``meta.``.
        ``"unit"``: one row per (layer, unit): key (in the union), keyfreq (samples where it was key),
        key_rate (keyfreq / N), fire (scored tokens where it fired), fire_rate.
        """
        import pandas as pd

        L, U = len(self.layers), self.n_units
        N = int(self.summary["n_samples"])
        union = self.arrays["union_LU"].astype(bool).reshape(L, U)
        fire = self.arrays["fire_LU"].reshape(L, U)
        keyfreq = self.arrays["keyfreq_LU"].reshape(L, U)
        n_tok = self.arrays["n_tokens_L"]
        if level == "layer":
            return pd.DataFrame(
                {
                    "layer": self.layers,
                    "n_units": U,
                    "n_key": union.sum(1).astype(np.int64),
                    "mui": 100.0 * union.sum(1) / max(U, 1),
                    "n_fired": (fire > 0).sum(1).astype(np.int64),
                    "n_tokens": n_tok.astype(np.int64),
                    "mean_set_size": keyfreq.sum(1) / max(N, 1),
                }
            )
        if level == "unit":
            return pd.DataFrame(
                {
                    "layer": np.repeat(np.asarray(self.layers, dtype=np.int64), U),
                    "unit": np.tile(np.arange(U, dtype=np.int64), L),
                    "key": union.ravel(),
                    "keyfreq": keyfreq.ravel().astype(np.int64),
                    "key_rate": keyfreq.ravel() / max(N, 1),
                    "fire": fire.ravel().astype(np.int64),
                    "fire_rate": (fire / np.maximum(n_tok, 1)[:, None]).ravel(),
                }
            )
        if level != "sample":
            raise SaemuiError(f"level={level!r}: expected 'layer', 'sample' or 'unit'")
        df = pd.DataFrame(self.samples)
        if self.has_sets:
            sample_ptr, _ = self.flat_keys()
            df["n_key"] = np.diff(sample_ptr)
        text = self._records(records)
        if text is not None:
            # the records are the fuller source: their text and meta replace what samples.csv kept
            df = _join_records(df.drop(columns=["prompt", "response", "meta"], errors="ignore"), text)
        elif "meta" in df.columns:
            df = _expand_meta(df)
        return df

    def _records(self, records: str | os.PathLike | Iterable[Sample] | None) -> list[Sample] | None:
        from saemui.records import read_samples

        if records is None:
            if self.path is None or not (self.path / "responses.jsonl").is_file():
                return None
            return read_samples(self.path / "responses.jsonl")
        if isinstance(records, str | os.PathLike):
            return read_samples(records)
        return list(records)

    def subset_mui(self, samples: list[int] | np.ndarray) -> float:
        """MUI over a subset of samples (e.g. the correctly answered ones); needs kept per-sample sets."""
        u = self.subset_union(samples)
        return float(u.sum()) / u.size

    def set_mui_correct(self) -> None:
        """``summary["mui_correct"]`` (MUI of the correctly answered samples) and ``n_correct``, when per-sample
        sets were kept and some samples are labelled; None when none is correct. Both keys are dropped first."""
        self.summary.pop("mui_correct", None)
        self.summary.pop("n_correct", None)
        has_sets = self.arrays.get("set_indptr") is not None and self.arrays["set_indptr"].size > 0
        if not has_sets or all(r.get("correct") is None for r in self.samples):
            return
        correct = [i for i, r in enumerate(self.samples) if r.get("correct")]
        self.summary["mui_correct"] = self.subset_mui(correct) if correct else None
        if correct:
            self.summary["n_correct"] = len(correct)

    def correct_indices(self) -> list[int]:
        return [i for i, s in enumerate(self.samples) if s.get("correct") is True]

    def sets_csr(self) -> tuple[np.ndarray, np.ndarray]:
        """The kept per-sample key sets as CSR (indptr over rows ordered (sample, layer row), int32 unit ids)."""
        if "set_indptr" not in self.arrays or self.arrays["set_indptr"].size == 0:
            raise SaemuiError(
                "this result kept no per-sample key sets (run with keep_sets=True / without --no-sets)"
            )
        return self.arrays["set_indptr"], self.arrays["set_units"]

    def save(self, path: str | os.PathLike) -> Path:
        """Write atomically: assemble in a temp directory beside ``path``, then rename over it."""
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.tmp-"))
            os.chmod(tmp, default_mode(directory=True))
        except OSError as e:
            raise SaemuiError(f"{path}: output directory not writable ({e.strerror})") from None
        try:
            (tmp / "arrays.npz").write_bytes(npz_bytes(self.arrays))
            (tmp / "run.json").write_text(json.dumps(self.run_info, indent=2) + "\n")
            with open(tmp / "samples.csv", "w", newline="", encoding="utf-8") as f:
                cols = [*SAMPLE_COLUMNS, "prompt", "response", "meta"]
                w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
                w.writeheader()
                # the record's text and its other fields (meta, as one JSON object) travel with the counts
                w.writerows(
                    dict(r, meta=json.dumps(r.get("meta") or {}, ensure_ascii=False, default=str))
                    for r in self.samples
                )
            summary = dict(self.summary, complete=True)
            (tmp / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
            for f in tmp.iterdir():
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
            if path.exists():
                old = path.with_name(f".{path.name}.old-{os.getpid()}")
                os.replace(path, old)
                os.replace(tmp, path)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, path)
        except OSError as e:
            shutil.rmtree(tmp, ignore_errors=True)
            raise SaemuiError(f"{path}: could not write result ({e.strerror or e})") from None
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return path


@dataclass(frozen=True)
class SubsampledMUI:
    """MUI at n of N samples (:meth:`MUIResult.mui_at`); fractions in [0, 1] like :attr:`MUIResult.mui`.

    mean: mean MUI over the subsets; lo, hi: equal-tailed percentile interval of the subset MUIs at ``level``;
    n_subsets: subsets used; exact: every distinct subset was used (no sampling error in mean, lo, hi).
    """

    n: int
    n_total: int
    mean: float
    lo: float
    hi: float
    level: float
    n_subsets: int
    exact: bool
    seed: int
    values: np.ndarray = field(repr=False)


@dataclass(frozen=True)
class Accuracy:
    """Accuracy k / n of the labelled samples with its Wilson score interval at ``level``."""

    k: int
    n: int
    accuracy: float
    lo: float
    hi: float
    level: float
    method: str = "wilson"


def wilson_interval(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion k / n (NaN, NaN when n = 0).

    Chosen over Clopper-Pearson because its coverage is close to nominal rather than conservative, and over
    the Wald interval because it stays inside [0, 1] and is not degenerate at k = 0 or k = n (small task runs
    often score 0).
    """
    if not 0 < level < 1:
        raise SaemuiError(f"level: expected a coverage strictly between 0 and 1 (e.g. 0.95), got {level}")
    if n < 0 or not 0 <= k <= n:
        raise SaemuiError(f"binomial interval: need 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return float("nan"), float("nan")
    z = NormalDist().inv_cdf(0.5 + level / 2)
    p = k / n
    denom = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    # at k = 0 (k = n) the lower (upper) end is exactly 0 (1); the formula leaves a rounding residue
    return (0.0 if k == 0 else max(0.0, center - half)), (1.0 if k == n else min(1.0, center + half))


def _gather(ptr: np.ndarray, which: np.ndarray) -> np.ndarray:
    """Positions of the entries of CSR rows ``which`` (rows ``i`` spanning ``ptr[i]:ptr[i + 1]``), concatenated."""
    starts, lens = ptr[which], ptr[which + 1] - ptr[which]
    total = int(lens.sum())
    if not total:
        return np.zeros(0, dtype=np.int64)
    offsets = np.cumsum(lens) - lens
    return np.repeat(starts - offsets, lens) + np.arange(total, dtype=np.int64)


def subsample_union(
    sample_ptr: np.ndarray,
    flat: np.ndarray,
    denom: int,
    n: int,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> SubsampledMUI:
    """Union size / ``denom`` over ``n``-sample subsets of per-sample id sets (``flat[sample_ptr[i]:…]``).

    Shared by :meth:`MUIResult.mui_at` and the zoo records' kept sets. Every distinct subset is used when there
    are at most ``n_boot`` (exact); otherwise ``n_boot`` uniform subsets without replacement.
    """
    N = sample_ptr.size - 1
    if not 1 <= n <= N:
        raise SaemuiError(f"n={n}: expected a sample count between 1 and N = {N}")
    if not 0 < level < 1:
        raise SaemuiError(f"level: expected a coverage strictly between 0 and 1 (e.g. 0.95), got {level}")
    if n_boot < 1:
        raise SaemuiError(f"n_boot: expected a positive number of subsets, got {n_boot}")
    exact = math.comb(N, n) <= n_boot
    if exact:
        subsets: Iterable[np.ndarray] = (np.fromiter(c, np.int64, n) for c in combinations(range(N), n))
    else:
        rng = np.random.default_rng(seed)
        subsets = (rng.permutation(N)[:n] for _ in range(n_boot))
    buf = np.zeros(max(denom, 1), dtype=bool)
    values = []
    for idx in subsets:
        ids = flat[_gather(sample_ptr, idx)]
        buf[ids] = True
        values.append(int(buf.sum()))
        buf[ids] = False
    v = np.asarray(values, dtype=float) / max(denom, 1)
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(v, [tail, 100 - tail])
    return SubsampledMUI(n, N, float(v.mean()), float(lo), float(hi), level, v.size, exact, seed, v)


def _expand_meta(df: pd.DataFrame) -> pd.DataFrame:
    """samples.csv's ``meta`` column (one dict per sample) as one column per field, named as by _join_records."""
    import pandas as pd

    metas = [m if isinstance(m, dict) else {} for m in df["meta"]]
    df = df.drop(columns=["meta"])
    keys = list(dict.fromkeys(k for m in metas for k in m))
    cols = {(f"meta.{k}" if k in df.columns else k): [m.get(k) for m in metas] for k in keys}
    return pd.concat([df, pd.DataFrame(cols, index=df.index)], axis=1)


def _join_records(df: pd.DataFrame, records: list[Sample]) -> pd.DataFrame:
    """Add prompt, response and meta fields of ``records`` to the sample rows, matched by id."""
    import pandas as pd

    by_id = {str(r.id): r for r in records}
    ids = [str(x) for x in df["id"]] if "id" in df else []
    missing = [i for i in ids if i not in by_id]
    if missing:
        raise SaemuiError(f"records: no record with id {missing[0]!r} of this result's samples")
    extra: dict[str, list[Any]] = {"prompt": [], "response": []}
    meta_keys = list(dict.fromkeys(k for i in ids for k in by_id[i].meta))
    names = {k: (f"meta.{k}" if k in df.columns or k in extra else k) for k in meta_keys}
    for k in meta_keys:
        extra[names[k]] = []
    for i in ids:
        r = by_id[i]
        extra["prompt"].append(r.prompt)
        extra["response"].append(r.response)
        for k in meta_keys:
            extra[names[k]].append(r.meta.get(k))
    keep = {k: v for k, v in extra.items() if k not in df.columns}
    return pd.concat([df, pd.DataFrame(keep, index=df.index)], axis=1)


#: a run over the first T positions is flagged "short" when more than this share of its samples has fewer than T
#: scored positions (docs/study/protocol.md §7.2)
SHORT_SHARE = 0.10


def summary_counts(
    counter: UtilizationCounter, rows: Sequence[Mapping], first_tokens: int | None = None
) -> dict:
    """The count block of a result's summary: MUI, per-layer MUI, layers and the sample / token counts.

    ``rows`` are the per-sample rows (``MUIResult.samples``) of every sample the counter saw. Shared by the engine
    and the distributed merge; both apply it to a summary dict in this key order, so files stay byte-identical.
    With ``first_tokens`` (``RunConfig.first_tokens``) it adds ``short_samples``: how many samples had fewer than
    T scored positions, their share, and the "short" flag (share > :data:`SHORT_SHARE`).
    """
    labelled = [r for r in rows if r.get("correct") is not None]
    short = {}
    if first_tokens is not None:
        n_short = sum(1 for r in rows if r["n_scored"] < first_tokens)
        share = n_short / len(rows) if rows else 0.0
        short = {
            "short_samples": {
                "first_tokens": first_tokens,
                "n": n_short,
                "share": share,
                "short": share > SHORT_SHARE,
                "flag_above_share": SHORT_SHARE,
            }
        }
    return {
        "mui": counter.mui(),
        "mui_percent": 100.0 * counter.mui(),
        "per_layer": counter.per_layer(),
        "layers": list(counter.layers),
        "n_samples": len(rows),
        "n_tokens": int(counter.n_tokens_L[0]) if len(counter.layers) else 0,
        "n_empty_samples": sum(1 for r in rows if not r["n_scored"]),
        "n_truncated_samples": sum(1 for r in rows if r["truncated"]),
        "accuracy": (sum(bool(r["correct"]) for r in labelled) / len(labelled)) if labelled else None,
        "n_labelled": len(labelled),
        **short,
    }


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """A compressed .npz whose bytes depend only on the arrays (np.savez stamps members with the current time)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(arrays):
            member = io.BytesIO()
            np.lib.format.write_array(member, np.ascontiguousarray(arrays[name]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, member.getvalue())
    return buf.getvalue()


def load_result(path: str | os.PathLike) -> MUIResult:
    """Read a result directory written by :meth:`MUIResult.save`."""
    from saemui.readers import read_result_files

    return MUIResult(*read_result_files(path, SCHEMA_VERSION), path=Path(path))
