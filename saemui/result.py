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
import os
import shutil
import tempfile
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from saemui.errors import SaemuiError
from saemui.io import default_mode

if TYPE_CHECKING:
    from saemui.counter import UtilizationCounter

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
        ip, units = self.sets_csr()
        L, U = len(self.layers), self.n_units
        out = np.zeros((L, U), dtype=bool)
        for s in np.asarray(samples, dtype=np.int64):
            for r in range(L):
                out[r, units[ip[s * L + r] : ip[s * L + r + 1]]] = True
        return out

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


def summary_counts(counter: UtilizationCounter, rows: Sequence[Mapping]) -> dict:
    """The count block of a result's summary: MUI, per-layer MUI, layers and the sample / token counts.

    ``rows`` are the per-sample rows (``MUIResult.samples``) of every sample the counter saw. Shared by the engine
    and the distributed merge; both apply it to a summary dict in this key order, so files stay byte-identical.
    """
    labelled = [r for r in rows if r.get("correct") is not None]
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

    return MUIResult(*read_result_files(path, SCHEMA_VERSION))
