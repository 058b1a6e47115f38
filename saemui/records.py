"""(prompt, response) records: the unit of input for MUI.

A record is what a task hands to the MUI engine and what users write in JSONL files: ``prompt`` and
``response`` strings, an optional ``id`` and an optional ``correct`` flag (from scoring). Anything else in a
JSONL line is kept in ``meta`` untouched.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from saemui.errors import SaemuiError
from saemui.readers import jsonl_lines, loads, read_text

#: the built-in prompt/response records (SmolLM2-135M-Instruct's own greedy answers; see
#: scripts/make_default_samples.py): what ``saemui run`` measures without ``--samples``
BUILTIN_SAMPLES = Path(__file__).parent / "data" / "default_samples.jsonl"


@dataclass
class Sample:
    """One evaluated item.

    prompt: the user-side text (a chat turn for instruct models, the full few-shot text for base models).
    response: the model's answer; only its tokens are scored.
    id: stable identifier (defaults to the record's position); used for per-sample key sets and subsets.
    correct: whether the response was judged correct (None when not scored).
    meta: any other fields of the source record, passed through.
    """

    prompt: str
    response: str
    id: str | None = None
    correct: bool | None = None
    meta: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        d = asdict(self)
        if not d["meta"]:
            d.pop("meta")
        return d


_KNOWN = {"prompt", "response", "id", "correct", "meta"}


def sample_from_dict(obj: object, where: str) -> Sample:
    """Validate one decoded JSON object; ``where`` (e.g. ``file.jsonl:12``) prefixes every error."""
    if not isinstance(obj, dict):
        raise SaemuiError(
            f"{where}: expected a JSON object with 'prompt' and 'response', got {type(obj).__name__}"
        )
    for key in ("prompt", "response"):
        if key not in obj:
            raise SaemuiError(
                f"{where}: missing field '{key}' (each record needs 'prompt' and 'response' strings)"
            )
        if not isinstance(obj[key], str):
            raise SaemuiError(f"{where}: field '{key}' must be a string, got {type(obj[key]).__name__}")
        if not obj[key].isascii():
            try:
                obj[key].encode("utf-8")
            except UnicodeEncodeError as e:
                raise SaemuiError(
                    f"{where}: field '{key}' holds an unpaired surrogate ({obj[key][e.start]!r} at {e.start}); "
                    "text must be valid Unicode"
                ) from None
    correct = obj.get("correct")
    if correct is not None and not isinstance(correct, bool):
        raise SaemuiError(f"{where}: field 'correct' must be true, false or null, got {correct!r}")
    rid = obj.get("id")
    meta = obj.get("meta") or {}
    if not isinstance(meta, dict):
        raise SaemuiError(f"{where}: field 'meta' must be a JSON object, got {type(meta).__name__}")
    meta = dict(meta)
    meta.update({k: v for k, v in obj.items() if k not in _KNOWN})
    return Sample(
        prompt=obj["prompt"],
        response=obj["response"],
        id=None if rid is None else str(rid),
        correct=correct,
        meta=meta,
    )


def read_samples(path: str | os.PathLike) -> list[Sample]:
    """Read a JSONL file of records; errors name the file and the 1-based line number."""
    path = Path(path)
    if not path.is_file():
        raise SaemuiError(f"{path}: no such file (expected a JSONL file with 'prompt'/'response' records)")
    samples = []
    for n, line in jsonl_lines(read_text(path)):
        obj = loads(line, f"{path}:{n}", one_line=True)
        samples.append(sample_from_dict(obj, f"{path}:{n}"))
    if not samples:
        raise SaemuiError(
            f"{path}: no records (expected one JSON object per line with 'prompt' and 'response')"
        )
    try:
        return assign_ids(samples)
    except SaemuiError as e:
        raise SaemuiError(f"{path}: {e}") from None


def assign_ids(samples: Iterable[Sample]) -> list[Sample]:
    """Give records without an id their position as id; refuse duplicate ids (subsets rely on them)."""
    out = list(samples)
    seen: set[str] = set()
    for i, s in enumerate(out):
        if s.id is None:
            s.id = str(i)
        if s.id in seen:
            raise SaemuiError(f"record {i}: duplicate id {s.id!r} (ids must be unique within a run)")
        seen.add(s.id)
    return out


def write_samples(path: str | os.PathLike, samples: Iterable[Sample]) -> None:
    """Write records as JSONL atomically (temp file, then rename)."""
    from saemui.io import atomic_write_text

    text = "".join(json.dumps(s.to_json(), ensure_ascii=False) + "\n" for s in samples)
    atomic_write_text(Path(path), text)
