"""Answer extractors shared by several tasks: last number, multiple-choice label.

Both follow the official MUI-Eval rules (gp/utils_neuron.py ``extract_answer`` and ``extract_choice``) with the
deviations listed in each docstring.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Sequence

# Official GSM8K number pattern, plus a guard: a sign counts only when it does not follow a word character,
# so "5-10" or "2023-2024" do not yield a negative last number.
_NUMBER = re.compile(
    r"(?:(?<![\w.])[+-])?(?=[0-9]|\.[0-9])(?:0|[1-9](?:\d{0,2}(?:,\d{3})*)|\d*)?(?:\.\d*)?(?=\D|$)"
)


def last_number(text: str) -> float | None:
    """Last number in ``text`` (sign, thousands commas and decimals allowed) as a float, or None.

    Deviation from the official code: no ``eval()`` (which fails on "007"); a hyphen between two numbers is not
    a minus sign.
    """
    matches = [m.group() for m in _NUMBER.finditer(text) if m.group().strip("+-")]
    if not matches:
        return None
    s = matches[-1].replace(",", "").replace("+", "")
    try:
        return float(s)
    except ValueError:
        return None


def numbers_close(a: float | None, b: float | None, abs_tol: float = 1e-4) -> bool:
    if a is None or b is None or math.isnan(a) or math.isnan(b):
        return False
    return math.isclose(a, b, rel_tol=0.0, abs_tol=abs_tol)


def _alt(labels: Sequence[str]) -> str:
    return "|".join(re.escape(x) for x in sorted(labels, key=len, reverse=True))


def _cls(labels: Sequence[str]) -> str:
    # the official "[^ABCD]" classes: everything that is not a label character
    return "".join(sorted({re.escape(c) for x in labels for c in x}))


def _is_article(text: str, m: re.Match) -> bool:
    """True when the matched "A" is a sentence-initial article ("A planet ...", "... . A force ...")."""
    if m.group(1) != "A":
        return False
    before = text[: m.start(1)]
    sentence_start = before.strip() == "" or re.search(r"(?:[.!?]\s+|\n\s*)$", before) is not None
    return sentence_start and re.match(r"\s+[a-z]", text[m.end(1) :]) is not None


def extract_choice(response: str, labels: Sequence[str], options: Sequence[str] = ()) -> str | None:
    """The option label a response picks, following the official ``extract_choice`` order.

    1. "answer/choice ... is X", "answer: X", "choose X" (not when negated: "the answer is not X");
    2. "X is correct/right" (not "X is not correct");
    3. the response starts with "X." / "X," / "X:" or is just "X";
    4. the first standalone label not directly negated ("not A");
    5. the option text quoted in the response, then a difflib close match of the response to an option text.

    Deviations: the labels are the item's own (``A``-``E``, ``1``-``4``), not always A-D; in step 4 a
    sentence-initial article "A", a label right after "not" and digits inside larger numbers are skipped; step 5 returns None when nothing
    is similar enough instead of always guessing (thefuzz ``extractOne`` always returns an option).
    """
    labels = [str(x) for x in labels]
    if not labels:
        return None
    alt, cls = _alt(labels), _cls(labels)
    numeric = all(x.isdigit() for x in labels)
    # digits: not part of a larger number or decimal; letters: not part of a word
    lb = r"(?<![\w.,])" if numeric else r"(?<![a-zA-Z])"
    la = r"(?![\w]|[.,]\d)" if numeric else r"(?![a-zA-Z=])"
    pats = [
        rf"(?:(?:[Cc]hoose)|(?:(?:[Aa]nswer|[Cc]hoice)(?![^{cls}]{{0,20}}?(?:n't|not))[^{cls}]{{0,10}}?\b(?:|is|:|be))\b)"
        rf"[^{cls}]{{0,20}}?\b({alt})\b",
        rf"\b({alt})\b(?![^{cls}]{{0,8}}?(?:n't|not)[^{cls}]{{0,5}}?(?:correct|right))[^{cls}]{{0,10}}?\b(?:correct|right)\b",
        # official: r"^(A|B|C|D)(?:\.|,|:|$)"; also accept "B)" and "B" alone on the first line
        rf"^\s*({alt})(?:\.|,|:|\)|\s*$|\s*\n)",
    ]
    for p in pats:
        m = re.search(p, response)
        if m:
            return m.group(1)
    for m in re.finditer(rf"{lb}({alt}){la}", response):
        negated = re.search(r"(?:\bnot|n't)\s+(?:option\s+)?\(?$", response[: m.start(1)], re.IGNORECASE)
        if not _is_article(response, m) and not negated:
            return m.group(1)
    return match_option_text(response, labels, options)


def match_option_text(response: str, labels: Sequence[str], options: Sequence[str]) -> str | None:
    """Fuzzy fallback: the option whose text the response quotes (longest wins), else a difflib close match."""
    if not options or len(options) != len(labels):
        return None
    low = response.lower()
    quoted = [(len(o), lab) for lab, o in zip(labels, options) if o and o.strip().lower() in low]
    if quoted:
        return max(quoted)[1]
    texts = [o.strip().lower() for o in options]
    best = difflib.get_close_matches(low.strip(), texts, n=1, cutoff=0.6)
    if best:
        return labels[texts.index(best[0])]
    return None
