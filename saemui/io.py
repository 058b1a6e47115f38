"""Atomic file writes (a reader never sees a half-written result) and the early check that an output can be written."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from saemui.errors import SaemuiError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def default_mode(directory: bool = False) -> int:
    """The mode a plain open()/mkdir() would give; mkstemp/mkdtemp use 0600/0700, too private for results."""
    return (0o777 if directory else 0o666) & ~_umask()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, default_mode())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: object) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, ensure_ascii=False) + "\n")


def compact_json(obj: object, indent: int = 2) -> str:
    """JSON indented like ``json.dumps(indent=2)`` except that lists of scalars stay on one line.

    Result records hold per-sample lists of thousands of ints (key sets, correctness): one int per line makes
    them 3× larger and unreadable in a diff. ``json.loads`` gives back exactly ``obj``.
    """

    def enc(o: object, level: int) -> str:
        pad = " " * (indent * level)
        inner = " " * (indent * (level + 1))
        if isinstance(o, dict):
            if not o:
                return "{}"
            body = ",\n".join(
                f"{inner}{json.dumps(str(k), ensure_ascii=False)}: {enc(v, level + 1)}" for k, v in o.items()
            )
            return "{\n" + body + "\n" + pad + "}"
        if isinstance(o, list | tuple):
            if all(not isinstance(x, dict | list | tuple) for x in o):
                return json.dumps(list(o), ensure_ascii=False, separators=(", ", ": "))
            return "[\n" + ",\n".join(f"{inner}{enc(x, level + 1)}" for x in o) + "\n" + pad + "]"
        return json.dumps(o, ensure_ascii=False)

    return enc(obj, 0) + "\n"


def atomic_write_compact_json(path: Path, obj: object) -> None:
    atomic_write_text(path, compact_json(obj))


def splice_section(text: str, marker: str, body: str) -> str:
    """``text`` with the block between ``<!-- {marker}: begin -->`` and ``<!-- {marker}: end -->`` replaced by
    ``body`` (appended after a blank line when the markers are absent), so a generated section of a hand- or
    script-written file can be refreshed in place. Markers present once each, begin before end, or an error."""
    begin, end = f"<!-- {marker}: begin -->", f"<!-- {marker}: end -->"
    block = f"{begin}\n{body.rstrip()}\n{end}\n"
    nb, ne = text.count(begin), text.count(end)
    if nb == ne == 0:
        return text.rstrip("\n") + "\n\n" + block
    i, j = text.find(begin), text.find(end)
    if nb != 1 or ne != 1 or j < i:
        raise SaemuiError(f"expected one {begin!r} before one {end!r}; found {nb} and {ne}")
    rest = text[j + len(end) :]
    return text[:i] + block + (rest[1:] if rest.startswith("\n") else rest)


def check_writable(out: Path) -> None:
    """Refuse an output path whose nearest existing parent is a file or read-only, before any expensive work."""
    parent = Path(out).resolve().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise SaemuiError(f"{out}: output directory not writable ({parent} is a file, not a directory)")
    if not os.access(parent, os.W_OK):
        raise SaemuiError(f"{out}: output directory not writable ({parent} is read-only for this user)")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def lock_holder(path: Path) -> int | None:
    """The pid written in lock file ``path`` (0 if empty), or None when it is absent or unreadable."""
    try:
        return int(Path(path).read_text() or "0")
    except (FileNotFoundError, ValueError):
        return None


def claim(path: Path) -> bool:
    """Take the lock file ``path`` for this process (O_EXCL create holding the pid); False if a live process
    holds it. A lock whose process is gone (killed, or its machine restarted) is taken over, so work split
    between processes through claims resumes like any other stage. Processes must share one machine."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, default_mode())
        except FileExistsError:
            pid = lock_holder(path)
            if pid is None:
                return False  # released or being written this instant: let the other process have it
            if pid and pid_alive(pid):
                return False
            path.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        return True
    return False


def release(path: Path) -> None:
    """Drop a lock taken with :func:`claim` (only if this process holds it)."""
    path = Path(path)
    if lock_holder(path) == os.getpid():
        path.unlink(missing_ok=True)
