"""MATH (Hendrycks): competition problems; the answer is the last ``\\boxed{}`` of the response.

Data: no shared copy and no registry package. Accepted records: MUI-Eval's format (``question``, ``answer`` =
``[answer string, answer number or list]``), the Hugging Face format (``problem``, ``solution`` whose last
``\\boxed{}`` is the gold) or ``{"question", "answer": "<string>"}``.
Prompt (official instruct): "You are supposed to provide a solution to a given problem.\\nProblem:\\n{q}\\nSolution:\\n".

Extraction follows the official ``answer_clean`` (gp/utils_neuron.py:1209-1250): split on "The answer is"; the
last ``\\boxed{}`` (nested braces), else the text after the last "=" when a trigger was found, else the last
number; then ``_strip_string`` normalisation. Comparison: case-insensitive string match of the normalised
answers, then numeric equivalence of simple numbers (integers, decimals, ``\\frac{a}{b}``, ``a/b``, percentages)
parsed by hand. Deviations: no ``eval()`` or ``latex2sympy`` of model output (bugs 10-11); an integer gold is
not matched by rounding (the official ``round(p) == gt`` accepts 2.4 for 2).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction

from saemui.errors import SaemuiError
from saemui.tasks.base import Item, Task, check_style, register_task

INSTRUCTION = "You are supposed to provide a solution to a given problem."
# Hand-written exemplar for base models (not the official one).
BASE_EXEMPLAR = (
    INSTRUCTION + "\nProblem:\nWhat is $\\frac{1}{2} + \\frac{1}{3}$?\nSolution:\n"
    "With the common denominator 6, $\\frac{3}{6} + \\frac{2}{6} = \\frac{5}{6}$. The answer is $\\boxed{\\frac{5}{6}}$."
)
TRIGGERS = ("The answer is:", "The answer is", "the answer is")


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (nested braces kept) or ``\\boxed x``; None when absent or cut off."""
    key = "boxed" if "boxed" in text else "\\fbox" if "\\fbox" in text else None
    if key is None:
        return None
    rest = text.split(key)[-1]
    if not rest.startswith("{"):
        return rest.split("$")[0].strip() or None
    depth = 0
    for i, ch in enumerate(rest):
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return rest[1:i]
    return None  # unbalanced: the response was cut off


def _fix_fracs(s: str) -> str:
    parts = s.split("\\frac")
    out = parts[0]
    for sub in parts[1:]:
        out += "\\frac"
        if not sub or sub[0] == "{":
            out += sub
            continue
        if len(sub) < 2:
            return s
        a, b = sub[0], sub[1]
        if b != "{":
            out += "{" + a + "}{" + b + "}" + sub[2:]
        else:
            out += "{" + a + "}" + b + sub[2:]
    return out


def _fix_a_slash_b(s: str) -> str:
    m = re.fullmatch(r"(-?\d+)/(\d+)", s)
    if m:
        return "\\frac{" + m.group(1) + "}{" + m.group(2) + "}"
    return s


def _fix_sqrt(s: str) -> str:
    return re.sub(r"\\sqrt(\w)", r"\\sqrt{\1}", s)


def strip_string(s: str) -> str:
    """The official ``_strip_string`` normalisation (MATH's reference implementation)."""
    s = s.replace("\n", "").replace("\\!", "").replace("\\\\", "\\")
    s = s.replace("tfrac", "frac").replace("dfrac", "frac")
    s = s.replace("\\left", "").replace("\\right", "")
    s = s.replace("^{\\circ}", "").replace("^\\circ", "")
    s = s.replace("\\$", "")
    if "\\text{ " in s:  # units on the right
        s = s.split("\\text{ ")[0]
    s = s.replace("\\%", "").replace("%", "")
    s = s.replace(" .", " 0.").replace("{.", "{0.")
    if not s:
        return s
    if s[0] == ".":
        s = "0" + s
    if len(s.split("=")) == 2 and len(s.split("=")[0]) <= 2:
        s = s.split("=")[1]
    s = _fix_sqrt(s)
    s = s.replace(" ", "")
    s = _fix_fracs(s)
    if s == "0.5":
        s = "\\frac{1}{2}"
    return _fix_a_slash_b(s)


def answer_clean(response: str) -> str:
    """The official ``answer_clean`` for MATH: the normalised final answer of a response."""
    pred = response.strip("\n")
    if any(pred.count(t) > 1 for t in TRIGGERS):
        pred = pred.split("\n\n")[0]  # the model went on to write its own few-shot examples
    parts = re.split("|".join(TRIGGERS), pred)
    answer_flag = len(parts) > 1
    if answer_flag:
        pred = parts[-1]
    pred = pred.strip("\n").rstrip(".").rstrip("/").strip(" ")
    if "boxed" in pred:
        out = last_boxed(pred) or ""
    elif answer_flag:
        out = pred.split("=")[-1].strip()
        if re.match(r"[\d\.]+\s\D+$", out):
            out = out.split(" ")[0]
    else:
        nums = re.findall(r"-?\d*\.?\d+", pred)
        out = nums[-1] if nums else ""
    return strip_string(out).rstrip(".").rstrip("/")


def simple_number(s: str) -> Fraction | None:
    """Exact value of a normalised simple number: ``-3``, ``0.25``, ``\\frac{3}{4}``, ``-\\frac{1}{2}``, ``1,000``."""
    s = s.strip().replace("$", "")
    s = re.sub(r"\\text\{[^}]*\}$", "", s)
    s = re.sub(r"^\\?\(|\\?\)$", "", s) if s.count("(") == 1 else s
    if re.fullmatch(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?", s):
        s = s.replace(",", "")
    m = re.fullmatch(r"(-?)\\frac\{(-?\d+)\}\{(-?\d+)\}", s)
    if m:
        den = int(m.group(3))
        if den == 0:
            return None
        v = Fraction(int(m.group(2)), den)
        return -v if m.group(1) else v
    m = re.fullmatch(r"(-?\d+)/(\d+)", s)
    if m and int(m.group(2)) != 0:
        return Fraction(int(m.group(1)), int(m.group(2)))
    if re.fullmatch(r"-?(?:\d+\.?\d*|\.\d+)", s):
        return Fraction(s)
    return None


def math_equal(pred: str | None, gold: str, rel_tol: float = 1e-4) -> bool:
    if pred is None:
        return False
    p, g = pred, strip_string(gold)
    if "\\text{" in p:
        p = p.replace("\\text{", "").rstrip("}")
    if "\\text{" in g:
        g = g.replace("\\text{", "").rstrip("}")
    if g.lower() in ("(a)", "(b)", "(c)", "(d)", "(e)", "(f)"):
        return g.lower() in p.lower()
    if p.lower() == g.lower():
        return True
    pn, gn = simple_number(p), simple_number(g)
    if pn is not None and gn is not None:
        if pn == gn:
            return True
        return math.isclose(float(pn), float(gn), rel_tol=rel_tol, abs_tol=1e-9)
    # tuples / lists of simple numbers, in order
    ps, gs = _split_list(p), _split_list(g)
    if ps and gs and len(ps) == len(gs) and len(gs) > 1:
        return all(math_equal(a, b, rel_tol) for a, b in zip(ps, gs))
    return False


def _split_list(s: str) -> list[str] | None:
    inner = s[1:-1] if len(s) > 1 and s[0] in "([" and s[-1] in ")]" else s
    if "," not in inner or re.fullmatch(r"-?\d{1,3}(?:,\d{3})+", inner):
        return None
    return [x.strip() for x in inner.split(",")]


@register_task("math")
@dataclass
class MATH(Task):
    name = "math"
    default_path = None
    hf_dataset = ("hendrycks/competition_math", None, "test")
    base_stops = ("\nProblem:",)

    rel_tol: float = 1e-4
    """Relative tolerance for numeric equivalence of non-identical simple numbers (e.g. 0.3333 vs 1/3 fails)."""

    def item_from_record(self, record: dict, index: int) -> Item:
        where = f"math record {index}"
        q = record.get("question", record.get("problem"))
        if not isinstance(q, str):
            raise SaemuiError(f"{where}: missing string field 'question' (or 'problem')")
        ans = record.get("answer")
        if isinstance(ans, list) and ans and isinstance(ans[0], str):
            gold = ans[0]
        elif isinstance(ans, str):
            gold = ans
        elif isinstance(record.get("solution"), str):
            gold = last_boxed(record["solution"])
        else:
            gold = None
        if gold is None:
            raise SaemuiError(f"{where}: no gold answer ('answer' string/list or a boxed 'solution')")
        fields = {"question": q, "level": record.get("level"), "type": record.get("type")}
        return Item(id=str(record.get("id", record.get("unique_id", index))), fields=fields, gold=gold)

    def format_prompt(self, item: Item, style: str = "chat") -> str:
        if check_style(style) == "chat":
            return INSTRUCTION + "\nProblem:\n" + item.fields["question"] + "\nSolution:\n"
        return BASE_EXEMPLAR + "\nProblem:\n" + item.fields["question"] + "\nSolution:\n"

    def extract_answer(self, response: str, item: Item) -> str:
        return answer_clean(response)

    def is_correct(self, pred: str | None, item: Item) -> bool:
        return math_equal(pred, str(item.gold), self.rel_tol)
