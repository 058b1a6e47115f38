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
    except ValueError as e:  # e.g. an integer literal longer than Python's 4300-digit limit
        raise SaemuiError(f"{where}: malformed JSON ({_short(e)})") from None


def read_json(path: str | os.PathLike, expected: type | None = dict, what: str = "JSON file") -> Any:
    """Decode a JSON file (BOM allowed); with ``expected`` the top level must be of that type."""
    obj = loads(read_text(path, what), str(path))
    if expected is not None and not isinstance(obj, expected):
        raise SaemuiError(f"{path}: expected {_NAMES.get(expected, expected.__name__)}, got {type_name(obj)}")
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
