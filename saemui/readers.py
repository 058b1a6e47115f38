"""Checked reading of files users hand to saemui: every failure is a one-line :class:`SaemuiError`.

The readers of records, task data, SAE directories, bundles, results, checkpoints and contexts share these
helpers so that a corrupt, truncated or odd file never surfaces as a ``JSONDecodeError``, ``KeyError`` or
``zipfile`` traceback. Messages name the file, the field when there is one, and what was expected.

Two decoding rules hold everywhere:

- a UTF-8 byte-order mark is skipped (Windows editors and some exporters write one);
- JSON Lines are split on ``\\n`` only (``\\r\\n`` accepted): ``str.splitlines`` also splits on U+2028,
  U+0085 and other characters that JSON allows raw inside strings, which broke valid records in two.
"""

from __future__ import annotations

import json
import math
import os
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from saemui.errors import SaemuiError

_NAMES = {dict: "a JSON object", list: "a JSON array", str: "a string", int: "an integer", float: "a number"}


def _short(e: BaseException, limit: int = 160) -> str:
    text = " ".join(str(e).split())
    return text[:limit] + ("…" if len(text) > limit else "")


def decode_utf8(data: bytes, where: str) -> str:
    """``data`` as text, without a leading byte-order mark; the error names the line and byte."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise SaemuiError(
            f"{where}:{line}: not valid UTF-8 (byte {e.start}); re-encode the file as UTF-8"
        ) from None


def read_bytes(path: str | os.PathLike, what: str = "file") -> bytes:
    p = Path(path)
    try:
        return p.read_bytes()
    except FileNotFoundError:
        raise SaemuiError(f"{p}: no such {what}") from None
    except IsADirectoryError:
        raise SaemuiError(f"{p}: is a directory, expected a {what}") from None
    except OSError as e:
        raise SaemuiError(f"{p}: cannot read ({e.strerror or e})") from None


def read_text(path: str | os.PathLike, what: str = "file") -> str:
    return decode_utf8(read_bytes(path, what), str(path))


def loads(text: str, where: str, one_line: bool = False) -> Any:
    """``json.loads`` whose failures (syntax, nesting too deep, integers too long) are one-line errors.

    one_line: ``text`` is one JSONL line (``where`` already names it): report the column only.
    """
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        at = f"at column {e.colno}" if one_line else f"at line {e.lineno} column {e.colno}"
        raise SaemuiError(f"{where}: malformed JSON ({e.msg} {at})") from None
    except RecursionError:
        raise SaemuiError(f"{where}: malformed JSON (nested too deeply)") from None
    except ValueError as e:  # an integer literal longer than Python's 4300-digit limit
        what = "a number literal with more than 4300 digits" if "digits" in str(e) else _short(e)
        raise SaemuiError(f"{where}: malformed JSON ({what})") from None


def read_json(
    path: str | os.PathLike,
    expected: type | None = dict,
    what: str = "JSON file",
    schema: str | None = None,
    kind: str | None = None,
) -> Any:
    """Decode a JSON file (BOM allowed); with ``expected`` the top level must be of that type; with ``schema`` the
    object's ``"schema"`` field must equal it (else "<path>: not a <kind or what> (schema …, expected …)")."""
    obj = loads(read_text(path, what), str(path))
    if expected is not None and not isinstance(obj, expected):
        raise SaemuiError(f"{path}: expected {_NAMES.get(expected, expected.__name__)}, got {type_name(obj)}")
    if schema is not None and obj.get("schema") != schema:
        raise SaemuiError(f"{path}: not a {kind or what} (schema {obj.get('schema')!r}, expected {schema})")
    return obj


def jsonl_lines(text: str) -> Iterator[tuple[int, str]]:
    """(1-based line number, line) of the non-blank lines of a JSON Lines text (``\\n`` or ``\\r\\n``)."""
    for n, line in enumerate(text.split("\n"), start=1):
        if line.strip():
            yield n, line


def type_name(obj: Any) -> str:
    return {
        dict: "object",
        list: "array",
        str: "string",
        bool: "boolean",
        int: "integer",
        float: "number",
        type(None): "null",
    }.get(type(obj), type(obj).__name__)


def checked_field(
    obj: Mapping, key: str, types: type | tuple[type, ...], where: str, required: bool = True
) -> Any:
    """``obj[key]`` checked against ``types`` (bool is not accepted as a number); None when optional and absent."""
    if key not in obj or (obj[key] is None and not required):
        if required:
            raise SaemuiError(f"{where}: missing field {key!r}")
        return None
    v = obj[key]
    tt = types if isinstance(types, tuple) else (types,)
    ok = isinstance(v, tt) and not (isinstance(v, bool) and bool not in tt)
    if isinstance(v, float) and ok and not math.isfinite(v):
        raise SaemuiError(f"{where}: field {key!r} is {v}, expected a finite number")
    if not ok:
        want = " or ".join(_NAMES.get(t, t.__name__) for t in tt)
        raise SaemuiError(f"{where}: field {key!r} must be {want}, got {type_name(v)}")
    return v


def load_npz(path: str | os.PathLike, what: str = "arrays file") -> dict:
    """Every member of an ``.npz`` (no pickle); a damaged archive or member is a one-line error."""
    import numpy as np

    p = Path(path)
    if not p.is_file():
        raise SaemuiError(f"{p}: no such {what}")
    try:
        with np.load(p, allow_pickle=False) as z:
            if not hasattr(z, "files"):
                raise ValueError("a bare .npy array, not an .npz archive")
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zipfile.LargeZipFile) as e:
        raise SaemuiError(f"{p}: not a readable {what} ({type(e).__name__}: {_short(e)})") from None
    except Exception as e:  # zlib.error, NotImplementedError (zip features), struct.error…
        raise SaemuiError(f"{p}: not a readable {what} ({type(e).__name__}: {_short(e)})") from None


def check_finite_tensors(state: Mapping[str, Any], where: str) -> None:
    """Refuse NaN/±Inf in floating-point tensors (an SAE with them silently corrupts every key set)."""
    import torch

    for name, t in state.items():
        if isinstance(t, torch.Tensor) and torch.is_floating_point(t) and t.numel():
            if t.device.type == "meta" or t.stride() and 0 in t.stride():
                continue  # placeholders (encoder-only W_dec) hold no data
            finite = torch.isfinite(t)
            if not bool(finite.all()):
                bad = int((~finite).sum())
                raise SaemuiError(
                    f"{where}: tensor {name!r} has {bad} non-finite values (NaN/Inf); the SAE file is corrupt"
                )


_ST_DTYPES = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
    "U16": 2, "U32": 4, "U64": 8, "F8_E4M3": 1, "F8_E5M2": 1,
}  # fmt: skip


def safetensors_header(path: str | os.PathLike) -> dict[str, tuple[str, list[int]]]:
    """name → (dtype, shape) from a ``.safetensors`` header, checked against the file size before any tensor is
    allocated (a corrupt header otherwise surfaces as a Rust panic message or a huge allocation)."""
    p = Path(path)
    where = str(p)
    try:
        size = p.stat().st_size
        with open(p, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise SaemuiError(f"{where}: truncated safetensors file ({size} bytes, no header length)")
            n = int.from_bytes(head, "little")
            if n > size - 8 or n > 100 * 1024 * 1024:
                raise SaemuiError(f"{where}: corrupt safetensors header (length {n}, file has {size} bytes)")
            raw = f.read(n)
    except OSError as e:
        raise SaemuiError(f"{where}: cannot read ({e.strerror or e})") from None
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise SaemuiError(f"{where}: corrupt safetensors header ({type(e).__name__})") from None
    if not isinstance(header, dict):
        raise SaemuiError(f"{where}: corrupt safetensors header (expected a JSON object)")
    out = {}
    data_len = size - 8 - n
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(info, dict):
            raise SaemuiError(f"{where}: tensor {name!r}: header entry is not an object")
        dt, shape, offs = info.get("dtype"), info.get("shape"), info.get("data_offsets")
        if dt not in _ST_DTYPES:
            raise SaemuiError(f"{where}: tensor {name!r}: unsupported dtype {dt!r}")
        if not (isinstance(shape, list) and all(type(d) is int and d >= 0 for d in shape)):
            raise SaemuiError(f"{where}: tensor {name!r}: shape {shape!r} is not a list of sizes")
        if not (isinstance(offs, list) and len(offs) == 2 and all(type(o) is int for o in offs)):
            raise SaemuiError(f"{where}: tensor {name!r}: data_offsets {offs!r} malformed")
        nbytes = math.prod(shape) * _ST_DTYPES[dt]
        if not (0 <= offs[0] <= offs[1] <= data_len and offs[1] - offs[0] == nbytes):
            raise SaemuiError(
                f"{where}: tensor {name!r}: {dt} {shape} needs {nbytes} bytes, data_offsets {offs} "
                f"(file holds {data_len}); truncated or corrupt file"
            )
        out[name] = (dt, shape)
    return out


def check_sae_files(path: str | os.PathLike) -> None:
    """Before sae-lens builds an SAE from ``path``: cfg.json fields and the weight shapes agree.

    sae-lens allocates ``d_in × d_sae`` matrices from cfg.json before reading the weights, so a corrupt width
    would try to allocate terabytes; here it is a one-line error naming the field.
    """
    p = Path(path)
    cfg_path, w_path = p / "cfg.json", p / "sae_weights.safetensors"
    cfg = read_json(cfg_path, dict, "SAE config (cfg.json)")
    dims = {}
    for key in ("d_in", "d_sae"):
        v = checked_field(cfg, key, int, str(cfg_path))
        if v < 1:
            raise SaemuiError(f"{cfg_path}: field {key!r} is {v}, expected a positive integer")
        dims[key] = v
    for key in ("architecture", "dtype", "device"):
        checked_field(cfg, key, str, str(cfg_path), required=False)
    header = safetensors_header(w_path)
    want = {"W_enc": [dims["d_in"], dims["d_sae"]], "W_dec": [dims["d_sae"], dims["d_in"]]}
    for name, shape in want.items():
        if name not in header:
            raise SaemuiError(f"{w_path}: no tensor {name!r} (expected a sae-lens SAE)")
        if header[name][1] != shape:
            raise SaemuiError(
                f"{w_path}: tensor {name!r} has shape {header[name][1]}, cfg.json says {shape} (d_in, d_sae)"
            )


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def read_result_files(path: str | os.PathLike, schema_version: int) -> tuple[dict, dict, list[dict], dict]:
    """(summary, arrays, sample rows, run info) of a result directory, every file and field checked.

    A result that loads is internally consistent: the per-layer lists match ``layers``, per-sample key sets
    index inside ``n_units`` and there is one set per (sample, layer), so later calls cannot fail on it.
    """
    import csv
    import io

    import numpy as np

    path = Path(path)
    sfile = path / "summary.json"
    if not sfile.is_file():
        raise SaemuiError(f"{path}: no summary.json (not a saemui result directory, or an unfinished run)")
    summary = read_json(sfile, dict, "result summary")
    if summary.get("complete") is not True:
        raise SaemuiError(f"{sfile}: result is not marked complete")
    if summary.get("schema_version") != schema_version:
        raise SaemuiError(
            f"{sfile}: schema_version {summary.get('schema_version')} unsupported (expected {schema_version})"
        )
    where = str(sfile)
    if not _number(summary.get("mui")):
        raise SaemuiError(f"{sfile}: field 'mui' must be a finite number, got {summary.get('mui')!r:.40}")
    layers = checked_field(summary, "layers", list, where)
    if not all(type(x) is int for x in layers):
        raise SaemuiError(f"{sfile}: field 'layers' must be a list of integers")
    per_layer = checked_field(summary, "per_layer", list, where)
    if len(per_layer) != len(layers) or not all(_number(x) for x in per_layer):
        raise SaemuiError(f"{sfile}: field 'per_layer' must hold one finite number per layer ({len(layers)})")
    units = checked_field(summary, "units", dict, where)
    n_units = checked_field(units, "n_units", int, f"{where}: field 'units'")
    if n_units < 0:
        raise SaemuiError(f"{sfile}: field 'units.n_units' is {n_units}, expected >= 0")

    afile = path / "arrays.npz"
    arrays = load_npz(afile, "result arrays file")
    for k, a in arrays.items():
        if a.dtype.kind not in "biuf":
            raise SaemuiError(f"{afile}: array {k!r} has dtype {a.dtype}, expected numbers")

    cfile = path / "samples.csv"
    text = read_text(cfile, "samples table")
    rows = []
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        cols = ("index", "id", "correct", "n_response_tokens", "n_scored", "truncated")
        missing = [c for c in cols if c not in (reader.fieldnames or [])]
        if missing:
            raise SaemuiError(f"{cfile}: missing column {missing[0]!r}")
        for n, r in enumerate(reader, start=2):
            for k in ("index", "n_response_tokens", "n_scored", "truncated"):
                try:
                    r[k] = int(r[k])
                except (TypeError, ValueError):
                    raise SaemuiError(
                        f"{cfile}:{n}: column {k!r} must be an integer, got {r[k]!r:.40}"
                    ) from None
            r["correct"] = {"True": True, "False": False}.get(r["correct"])
            if "meta" in r:  # files written before the record's text and meta were kept have no such column
                meta = loads(r["meta"] or "{}", f"{cfile}:{n}: column 'meta'", one_line=True)
                if not isinstance(meta, dict):
                    raise SaemuiError(f"{cfile}:{n}: column 'meta' must hold a JSON object")
                r["meta"] = meta
            rows.append(r)
    except csv.Error as e:
        raise SaemuiError(f"{cfile}: malformed CSV ({e})") from None

    ip, su = arrays.get("set_indptr"), arrays.get("set_units")
    if ip is not None and ip.size:
        L = len(layers)
        if (
            su is None
            or ip.ndim != 1
            or su.ndim != 1
            or ip.dtype.kind not in "iu"
            or su.dtype.kind not in "iu"
        ):
            raise SaemuiError(f"{afile}: 'set_indptr'/'set_units' must be 1-D integer arrays")
        if ip.size != len(rows) * L + 1 or ip[0] != 0 or ip[-1] != su.size or (np.diff(ip) < 0).any():
            raise SaemuiError(
                f"{afile}: 'set_indptr' is inconsistent ({ip.size} offsets for {len(rows)} samples × {L} layers, "
                f"{su.size} set units)"
            )
        if su.size and (su.min() < 0 or su.max() >= n_units):
            raise SaemuiError(f"{afile}: 'set_units' holds unit ids outside [0, {n_units})")

    run_file = path / "run.json"
    run_info = read_json(run_file, dict, "run info") if run_file.is_file() else {}
    return summary, arrays, rows, run_info


def check_zoo_record(rec: Any, where: str) -> None:
    """The fields :func:`saemui.analysis.zoo.load_zoo` reads, with their types (one-line error otherwise)."""
    if not isinstance(rec, dict):
        raise SaemuiError(f"{where}: expected a JSON object, got {type_name(rec)}")
    for key in ("model", "task", "root", "derivation", "selection", "basis"):
        checked_field(rec, key, str, where)
    for key in ("parent",):
        checked_field(rec, key, str, where, required=False)
    for key in ("step", "train_steps"):
        checked_field(rec, key, int, where, required=False)
    n = checked_field(rec, "n", int, where)
    k = checked_field(rec, "n_correct", int, where)
    if not 0 <= k <= n:
        raise SaemuiError(f"{where}: field 'n_correct' is {k}, expected 0..n ({n})")
    for key in ("accuracy", "mui"):
        checked_field(rec, key, (int, float), where)
    checked_field(rec, "mui_correct", (int, float), where, required=False)
    for key in ("in_domain", "contaminated"):
        v = checked_field(rec, key, list, where, required=False)
        if v is not None and not all(isinstance(x, str) for x in v):
            raise SaemuiError(f"{where}: field {key!r} must be a list of task names")
    for key in ("ids", "sets", "correct"):
        checked_field(rec, key, list, where, required=False)


def check_contexts(a: dict, path: str | os.PathLike, fmt: str, n_bins: int) -> dict:
    """Validate the arrays of a ``contexts.npz`` before a collector is rebuilt from them; returns the meta dict.

    Every index, offset and shape the loader uses is checked, so a damaged or hand-edited file is a one-line
    error naming the array instead of an ``IndexError`` (or a huge allocation) halfway through the load.
    """
    import numpy as np

    def bad(name: str, what: str) -> SaemuiError:
        return SaemuiError(f"{path}: array {name!r} {what}")

    need = (
        "meta_json layers n_units tracked_all tracked_indptr tracked_units row_indptr row_units values sample pos "
        "hist tok_samples tok_indptr tok_ids first_scored vocab_ids vocab_str lens_layer lens_unit lens_top_ids "
        "lens_top_vals lens_bot_ids lens_bot_vals"
    ).split()
    for k in need:
        if k not in a:
            raise bad(k, "is missing (not a saemui contexts file, or a damaged one)")
    mj = a["meta_json"]
    if mj.shape != () or mj.dtype.kind != "U":
        raise bad("meta_json", "must be one string")
    meta = loads(str(mj), f"{path}: meta_json")
    if not isinstance(meta, dict):
        raise bad("meta_json", f"must hold a JSON object, got {type_name(meta)}")
    if meta.get("format") != fmt:
        raise SaemuiError(f"{path}: format {meta.get('format')!r}, expected {fmt!r}")
    N = meta.get("n_contexts")
    if type(N) is not int or not 1 <= N <= 100_000:
        raise SaemuiError(f"{path}: meta field 'n_contexts' is {N!r:.40}, expected a positive integer")

    def ints(name: str, ndim: int = 1) -> np.ndarray:
        x = a[name]
        if x.ndim != ndim or (x.dtype.kind not in "iu" and not (x.dtype.kind == "b" and ndim == 1)):
            raise bad(name, f"must be a {ndim}-D integer array, got {x.dtype} {x.shape}")
        return x.astype(np.int64)

    def indptr(name: str, n: int, total: int) -> np.ndarray:
        ip = ints(name)
        if ip.size != n + 1 or (ip.size and (ip[0] != 0 or ip[-1] > total)) or (np.diff(ip) < 0).any():
            raise bad(name, f"must hold {n + 1} non-decreasing offsets from 0 to at most {total}")
        return ip

    layers, n_units, tracked_all = ints("layers"), ints("n_units"), a["tracked_all"]
    L = layers.size
    if n_units.size != L or tracked_all.shape != (L,) or tracked_all.dtype.kind != "b":
        raise bad("n_units", f"and 'tracked_all' must hold one entry per layer ({L})")
    if (n_units < 0).any() or int(n_units.sum()) * N > 2**31:
        raise bad("n_units", "holds a negative or implausibly large unit count")
    tu = ints("tracked_units")
    ti = indptr("tracked_indptr", L, tu.size)
    ru = ints("row_units")
    ri = indptr("row_indptr", L, ru.size)
    R = ru.size
    for name, kinds, shape in (
        ("values", "f", (R, N)),
        ("sample", "iu", (R, N)),
        ("pos", "iu", (R, N)),
        ("hist", "iu", (R, n_bins)),
    ):
        if a[name].shape != shape or a[name].dtype.kind not in kinds:
            raise bad(name, f"must have shape {shape}, got {a[name].dtype} {a[name].shape}")
    for i in range(L):
        tracked = tu[ti[i] : ti[i + 1]]
        rows = ru[ri[i] : ri[i + 1]]
        if tracked.size and ((np.diff(tracked) <= 0).any() or tracked[0] < 0 or tracked[-1] >= n_units[i]):
            raise bad(
                "tracked_units", f"of layer {int(layers[i])} must be sorted unit ids below {n_units[i]}"
            )
        allowed = np.arange(n_units[i]) if tracked_all[i] else tracked
        if rows.size and not np.isin(rows, allowed).all():
            raise bad("row_units", f"of layer {int(layers[i])} names units the layer does not track")
        if rows.size != np.unique(rows).size:
            raise bad("row_units", f"of layer {int(layers[i])} repeats a unit")
    ts, tok_ids = ints("tok_samples"), ints("tok_ids")
    indptr("tok_indptr", ts.size, tok_ids.size)
    if ints("first_scored").size != ts.size:
        raise bad("first_scored", "must hold one entry per token sample")
    vi, vs = ints("vocab_ids"), a["vocab_str"]
    if vs.ndim != 1 or vs.size != vi.size or (vs.size and vs.dtype.kind != "U"):
        raise bad("vocab_str", "must hold one string per vocab id")
    J = ints("lens_layer").size
    if ints("lens_unit").size != J:
        raise bad("lens_unit", "must match 'lens_layer'")
    for name in ("lens_top_ids", "lens_top_vals", "lens_bot_ids", "lens_bot_vals"):
        x = a[name]
        if x.ndim != 2 or x.shape[0] != J or x.dtype.kind not in ("f" if name.endswith("vals") else "iu"):
            raise bad(name, f"must be a 2-D array with {J} rows, got {x.dtype} {x.shape}")
    return meta


def check_gguf_header(path: str | os.PathLike) -> None:
    """Magic, version and tensor/key counts of a GGUF file, checked against its size before any parser runs
    (a corrupt count otherwise drives the parser into a multi-gigabyte allocation or a very long loop)."""
    p = Path(path)
    try:
        size = p.stat().st_size
        with open(p, "rb") as f:
            head = f.read(24)
    except OSError as e:
        raise SaemuiError(f"{p}: cannot read ({e.strerror or e})") from None
    if len(head) < 24 or head[:4] != b"GGUF":
        raise SaemuiError(
            f"{p}: not a loadable GGUF model (no 'GGUF' magic and 24-byte header: truncated or another format)"
        )
    version = int.from_bytes(head[4:8], "little")
    if version not in (2, 3):
        raise SaemuiError(f"{p}: not a loadable GGUF model (version {version}, expected 2 or 3)")
    n_tensors, n_kv = int.from_bytes(head[8:16], "little"), int.from_bytes(head[16:24], "little")
    # smallest possible entries: a key/value pair takes >= 13 bytes, a tensor description >= 28
    if 24 + 13 * n_kv + 28 * n_tensors > size:
        raise SaemuiError(
            f"{p}: not a loadable GGUF model (corrupt header: {n_tensors} tensors and {n_kv} metadata keys cannot "
            f"fit in {size} bytes)"
        )
