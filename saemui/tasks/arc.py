"""ARC-Challenge: science multiple choice with the item's own labels (A-D, some A-C/A-E, some 1-4).

Data: ``arc/test.jsonl`` of the shared folder (a JSON array; keys ``id``, ``question``, ``answer`` = gold label,
``label`` = list of labels, one key per label with the option text) or ``allenai/ai2_arc`` (``choices`` =
``{"text", "label"}``, ``answerKey``) from the hub or an lm-eval log.
Prompt (official instruct): the question, ``"\\n"``, then ``"{label}. {text}\\n"`` per option.
Scoring: :func:`saemui.tasks.extract.extract_choice` with the item's labels.
"""

from __future__ import annotations

from dataclasses import dataclass

from saemui.errors import SaemuiError
from saemui.tasks.base import Item, Task, check_style, register_task
from saemui.tasks.extract import extract_choice

# Hand-written exemplar for base models (not the official one).
BASE_EXEMPLAR = (
    "Question: Which tool is best for measuring the mass of a small rock?\n"
    "A. a ruler\nB. a balance\nC. a thermometer\nD. a graduated cylinder\n\n"
    "Answer: The correct answer is B. A balance compares the rock with known masses, so it measures mass.\n\n"
)


def choice_item(record: dict, index: int, task: str) -> Item:
    """Item for ARC-style records: the shared format or the Hugging Face ``choices``/``answerKey`` format."""
    where = f"{task} record {index}"
    if not isinstance(record.get("question"), str):
        raise SaemuiError(f"{where}: missing string field 'question'")
    if isinstance(record.get("choices"), dict):  # allenai/ai2_arc
        labels = [str(x) for x in record["choices"].get("label", [])]
        texts = [str(x) for x in record["choices"].get("text", [])]
        gold = record.get("answerKey")
    elif isinstance(record.get("label"), list):  # MUI-Eval copy
        labels = [str(x) for x in record["label"]]
        missing = [lab for lab in labels if lab not in record]
        if missing:
            raise SaemuiError(f"{where}: no option text for label(s) {', '.join(missing)}")
        texts = [str(record[lab]) for lab in labels]
        gold = record.get("answer")
    else:
        raise SaemuiError(f"{where}: expected 'label' (list) or 'choices' ({{text, label}}) with the options")
    if not labels or len(labels) != len(texts):
        raise SaemuiError(f"{where}: option labels and texts do not line up")
    if str(gold) not in labels:
        raise SaemuiError(f"{where}: gold label {gold!r} is not one of the labels {labels}")
    fields = {"question": record["question"], "labels": labels, "options": texts}
    return Item(id=str(record.get("id", index)), fields=fields, gold=str(gold))


def options_block(item: Item) -> str:
    return "".join(f"{lab}. {text}\n" for lab, text in zip(item.fields["labels"], item.fields["options"]))


@register_task("arc")
@dataclass
class ARC(Task):
    name = "arc"
    default_path = "arc/test.jsonl"
    hf_dataset = ("allenai/ai2_arc", "ARC-Challenge", "test")

    def item_from_record(self, record: dict, index: int) -> Item:
        return choice_item(record, index, self.name)

    def format_prompt(self, item: Item, style: str = "chat") -> str:
        body = item.fields["question"] + "\n" + options_block(item)
        if check_style(style) == "chat":
            return body
        return BASE_EXEMPLAR + "Question: " + body + "\nAnswer: "

    def extract_answer(self, response: str, item: Item) -> str | None:
        return extract_choice(response, item.fields["labels"], item.fields["options"])
