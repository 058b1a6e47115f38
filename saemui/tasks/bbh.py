"""BIG-Bench Hard: 27 subtasks with 3-shot chain-of-thought prompts.

Data: a BBH directory laid out like the shared copy (``bbh/<subtask>.json`` = ``{"canary", "examples": [{"input",
"target"}]}`` and ``cot-prompts/<subtask>.txt``), by default ``bbh`` under the shared data folder.
Prompt (official): the CoT file minus its first two lines (canary, ``-----``), stripped, ``"\\n\\nQ: "`` and the
input; base style adds ``"\\nA: Let's think step by step."`` (the exemplars' own cue) and stops at ``"\\n\\nQ:"``.

Extraction follows the official ``extract_answer_bbh`` (gp/get_performance_bbh.py:53-119): 16 letter patterns
(matches collected in pattern order, last kept), else generic "... is <text>" / "Answer: ..." / ``\\boxed{}``
patterns (last kept), cut at the first ";" or ",". Fixes:

- correctness is an exact comparison of normalised answers, not ``target in prediction``: a bare letter "A"
  matches the target "(A)", and "not plausible" no longer matches "no";
- letter patterns run only on multiple-choice items and use the item's own option letters (up to (R)), so "the
  answer is a" is not read as option A on yes/no items;
- no comma cut for word_sorting (comma-separated lists) and for items whose target itself has a comma;
- numeric targets compare as numbers, Dyck sequences ignore spaces, word lists ignore commas and numbering;
- the official pattern containing ``$begin:math:display$`` can never match and is left out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from saemui.errors import SaemuiError
from saemui.tasks.base import Item, Task, check_style, register_task
from saemui.tasks.extract import last_number
from saemui.tasks.sources import find_data_file, read_records, read_text

SUBTASKS = (
    "boolean_expressions", "causal_judgement", "date_understanding", "disambiguation_qa", "dyck_languages",
    "formal_fallacies", "geometric_shapes", "hyperbaton", "logical_deduction_five_objects",
    "logical_deduction_seven_objects", "logical_deduction_three_objects", "movie_recommendation",
    "multistep_arithmetic_two", "navigate", "object_counting", "penguins_in_a_table",
    "reasoning_about_colored_objects", "ruin_names", "salient_translation_error_detection", "snarks",
    "sports_understanding", "temporal_sequences", "tracking_shuffled_objects_five_objects",
    "tracking_shuffled_objects_seven_objects", "tracking_shuffled_objects_three_objects", "web_of_lies",
    "word_sorting",
)  # fmt: skip

_LETTER_TAIL = r"\s+[`\"']?\b({L})\b[`\"']?"
_LETTER_PATTERNS = [
    r"the\s+final\s+answer\s+is" + _LETTER_TAIL,
    r"the\s+final\s+result\s+is" + _LETTER_TAIL,
    r"the\s+result\s+is" + _LETTER_TAIL,
    r"the\s+answer\s+is" + _LETTER_TAIL,
    r"answer\s+is" + _LETTER_TAIL,
    r"result\s+is" + _LETTER_TAIL,
    r"final\s+answer\s+is" + _LETTER_TAIL,
    r"final\s+result\s+is" + _LETTER_TAIL,
    r"the\s+best\s+answer\s+is" + _LETTER_TAIL,
    r"the\s+best\s+result\s+is" + _LETTER_TAIL,
    r"option\s+\b({L})\b",
    r"\*\*\s*\b({L})\b[\.\)]",
    r"the\s+correct\s+option\s+is" + _LETTER_TAIL,
    r"the\s+correct\s+answer\s+is" + _LETTER_TAIL,
    r"correct\s+option\s+is" + _LETTER_TAIL,
    r"correct\s+answer\s+is" + _LETTER_TAIL,
]
_KEY = r"(?:the\s+)?(?:final\s+)?(?:answer|argument|result|correct option|sorted list|equation|expression)"
_GENERIC_PATTERNS = [
    _KEY + r".*?is\s*[:\s]*[`\"'\*\[]?([^.`\"'\n\*\]]+?)[`\"'\*\]]?(?:\.|!|\?|$)",
    _KEY + r".*?is\s*[:\s]*(.+?)(?:\.|!|\?|$)",
    _KEY + r".*?is\s*:\s*[`\"'\*\[]?([^.`\"'\n\*\]]+?)[`\"'\*\]]?(?:\.|!|\?|$)",
    r"\*\*Answer:\*\*\s*\(([A-F])\)",
    r"refers to\s+\*\*\(([A-F])\)",
    r"is option \(([A-F])\)",
    r"sarcastic option is \(([A-F])\)",
    r"(?:Yes|No)\s*,?\s+the\s+sentence\s+is\s+(plausible|not plausible)(?:\.|!|\?|$)",
    r"\*\*Answer:\*\*\s*([^\n]+)",
    r"\*\*Answer:\s*(.+)",
    r"\\boxed\{([^}]+)\}",
    r"Answer:\s*\(([A-Z])\)",
    r"Final answer:\s*(.+?)(?:$|\n\n|\Z)",
    r"Answer:\s*([^\n]+)",
    r"sorted alphabetically are:?\s*\n*((?:\d+\.\s*[^\n]+\n*)+)",
    r"\*\*Answer:\*\*\s*([^\n]+)",
]
_MC_GOLD = re.compile(r"^\(([A-Z])\)$")


def cot_prompt_text(raw: str) -> str:
    """The official prompt prefix: the CoT file without its first two lines, stripped."""
    return "".join(raw.splitlines(keepends=True)[2:]).strip()


def option_letters(item: Item) -> list[str]:
    return sorted(set(re.findall(r"\(([A-Z])\)", item.fields["input"])))


def extract_bbh(response: str, item: Item) -> str | None:
    """The official extraction with the fixes listed in the module docstring; returns the raw prediction."""
    gold = str(item.gold)
    if _MC_GOLD.match(gold):
        letters = option_letters(item) or list("ABCDEF")
        alt = "|".join(letters + [x.lower() for x in letters])
        matches: list[str] = []
        for p in _LETTER_PATTERNS:
            matches.extend(re.findall(p.format(L=alt), response, re.IGNORECASE))
        if matches:
            return matches[-1].strip().strip("`\"'").upper()
    generic: list[str] = []
    for p in _GENERIC_PATTERNS:
        generic.extend(re.findall(p, response, re.IGNORECASE))
    if not generic:
        return None
    answer = generic[-1].strip().strip("`\"'*")
    if item.fields.get("subtask") != "word_sorting" and not re.search(r"[;,]", gold):
        answer = re.split(r"[;,]", answer)[0].strip()
    return answer


def _norm(s: str) -> str:
    s = s.replace("*", "").strip().lower()
    s = s.strip("`\"' ")
    s = re.sub(r"[.!?]+$", "", s).strip()
    return re.sub(r"\s+", " ", s)


def bbh_equal(pred: str | None, item: Item) -> bool:
    if pred is None or not pred.strip():
        return False
    gold = str(item.gold)
    subtask = item.fields.get("subtask")
    m = _MC_GOLD.match(gold)
    if m:
        p = pred.replace("*", "").strip()
        lm = re.match(r"^\(?([A-Za-z])\)?(?=[\s.:)]|$)", p)
        if lm:
            return lm.group(1).upper() == m.group(1)
        # the option text instead of its letter
        for letter, text in re.findall(r"^\(([A-Z])\)\s*(.+?)\s*$", item.fields["input"], re.MULTILINE):
            if _norm(text) == _norm(p):
                return letter == m.group(1)
        return False
    if re.fullmatch(r"-?\d+", gold):
        value = last_number(pred)
        return value is not None and value == float(gold)
    if subtask == "dyck_languages":
        return re.sub(r"\s+", "", _norm(pred)) == re.sub(r"\s+", "", gold)
    if subtask == "word_sorting":
        words = re.sub(r"(?m)^\s*\d+\.\s*", "", pred.lower()).replace(",", " ")
        return words.replace("*", "").strip(" .`\"'").split() == gold.lower().split()
    return _norm(pred) == _norm(gold)


@register_task("bbh")
@dataclass
class BBH(Task):
    name = "bbh"
    default_path = "bbh"
    base_stops = ("\n\nQ:",)

    subtasks: tuple[str, ...] = field(default=SUBTASKS)
    """Subtasks to load (default all 27, in alphabetical order; the official code used filesystem order)."""
    data_dir: str | None = None
    """Directory holding ``bbh/`` and ``cot-prompts/`` (default: ``bbh`` under the shared data folder)."""

    def __post_init__(self) -> None:
        if isinstance(self.subtasks, str):
            self.subtasks = (self.subtasks,)
        bad = [s for s in self.subtasks if s not in SUBTASKS]
        if bad:
            raise SaemuiError(f"bbh: unknown subtask(s) {', '.join(bad)} (known: {', '.join(SUBTASKS)})")
        self._cot: dict[str, str] = {}

    def _dir(self, source: object = None) -> Path:
        if source is not None:
            d = Path(source)
        elif self.data_dir is not None:
            d = Path(self.data_dir)
        else:
            found = find_data_file("bbh")
            if found is None:
                raise SaemuiError(
                    "bbh: data directory 'bbh' not found under ../shared/data; pass source=<dir>"
                )
            d = found
        if not (d / "bbh").is_dir() or not (d / "cot-prompts").is_dir():
            raise SaemuiError(f"{d}: expected a BBH directory with 'bbh/' and 'cot-prompts/' inside")
        return d

    def cot_prompt(self, subtask: str, source: object = None) -> str:
        """The official CoT prefix of ``subtask`` (cached)."""
        if subtask not in self._cot:
            if subtask not in SUBTASKS:
                raise SaemuiError(f"bbh: unknown subtask {subtask!r}; cannot build its prompt")
            self._cot[subtask] = cot_prompt_text(
                read_text(self._dir(source) / "cot-prompts" / f"{subtask}.txt")
            )
        return self._cot[subtask]

    def records_from_source(self, source: object) -> list[dict]:
        if isinstance(source, list):
            return super().records_from_source(source)
        if source is not None and str(source).startswith("hf"):
            raise SaemuiError("bbh: the CoT prompts are not on the hub; pass a local BBH directory")
        d = self._dir(source)
        records = []
        for sub in self.subtasks:
            data = read_records(d / "bbh" / f"{sub}.json")
            examples = data[0].get("examples") if len(data) == 1 else None
            if not isinstance(examples, list):
                raise SaemuiError(f"{d / 'bbh' / f'{sub}.json'}: expected an object with an 'examples' list")
            self.cot_prompt(sub, d)
            records.extend({**ex, "subtask": sub, "_index": i} for i, ex in enumerate(examples))
        return records

    def item_from_record(self, record: dict, index: int) -> Item:
        where = f"bbh record {index}"
        if not isinstance(record.get("input"), str) or not isinstance(record.get("target"), str):
            raise SaemuiError(f"{where}: expected string fields 'input' and 'target'")
        sub = record.get("subtask") or record.get("task")
        rid = f"{sub}/{record.get('_index', index)}" if sub else str(record.get("id", index))
        return Item(id=rid, fields={"input": record["input"], "subtask": sub}, gold=record["target"])

    def format_prompt(self, item: Item, style: str = "chat") -> str:
        sub = item.fields.get("subtask")
        if not sub:
            raise SaemuiError(f"bbh item {item.id}: no subtask recorded, cannot pick its CoT prompt")
        text = self.cot_prompt(sub) + "\n\nQ: " + item.fields["input"]
        if check_style(style) == "base":
            text += "\nA: Let's think step by step."
        return text

    def extract_answer(self, response: str, item: Item) -> str | None:
        return extract_bbh(response, item)

    def is_correct(self, pred: str | None, item: Item) -> bool:
        return bbh_equal(pred, item)
