"""The official MUI-Eval answer scoring, quirks included: ``saemui score --extraction official``.

Reimplements what ALEX-nlp/MUI-Eval at ``cdcdbe0`` does to a response, so that its own response files rescore to
the accuracy its scripts printed. File references are to that commit; ``gp/`` is
``neuron_and_sae/get_performance/``. The corrected rules (:mod:`saemui.tasks.extract` and the task modules)
stay the default; this module exists to compare with them (``docs/method.md`` §7, Q27–Q30).

What "quirks included" means here, per task:

- ARC, MMLU: ``extract_choice`` only knows A–D (a numerically labelled ARC item can only be right through the
  fuzzy fallback), the article "A" counts as a choice, and the fuzzy fallback (thefuzz ``extractOne``) always
  returns some option. thefuzz/rapidfuzz are not dependencies: their ``WRatio`` scorer is re-implemented below.
- GSM8K: the last number of the response and of the gold solution are compared after ``eval()``; "007" makes
  ``eval`` raise (the item is wrong), "5-10" yields -10.
- MATH: ``answer_clean`` / ``compare_answer_with_groundtruth``: the gold string is compared unnormalised, a gold
  number that is not an int can never match numerically (``within_eps`` is undefined), an int gold matches only a
  prediction latex2sympy reads as a whole number, and a tuple gold goes through ``eval()`` of the prediction, whose
  elements then match anything that rounds to them ("(2.4, 3)" for (2, 3); "^" is xor).
- BBH: ``extract_answer_bbh`` and ``target in prediction`` (substring, so "no" is found in "not plausible").

``eval()`` is never called on model output: each place where the official code evaluates a string is emulated
for the strings that can reach it, and where ``eval`` would raise, the official exception handler's result is
returned. The official code does not strip ``</think>`` reasoning either (its BBH script cut it for DeepSeek
models before writing the response file), so nothing is stripped here.
"""

from __future__ import annotations

import ast
import math
import operator
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from saemui.errors import SaemuiError

EXTRACTIONS = ("corrected", "official")
#: tasks whose official scoring is reproduced (the code tasks run tests, with no extraction to port)
OFFICIAL_TASKS = ("arc", "bbh", "gsm8k", "math", "mmlu")


def check_extraction(extraction: str) -> str:
    if extraction not in EXTRACTIONS:
        raise SaemuiError(f"extraction {extraction!r} is unknown (expected one of: {', '.join(EXTRACTIONS)})")
    return extraction


# ----- thefuzz.process.extractOne (thefuzz 0.22.1 over rapidfuzz 3.11.0, the official requirements.txt) --------
#
# The official call is ``process.extractOne(gen, choice_list)``: default processor ``full_process`` and scorer
# ``WRatio``. thefuzz runs ``full_process`` on the query, then hands rapidfuzz ``full_process(force_ascii=True)``
# as processor for query and choices alike, and ``rapidfuzz.fuzz.WRatio`` as scorer; rapidfuzz keeps the first
# choice with the highest score (ties go to the earlier option) and stops early at 100.

_NON_ALNUM = re.compile(r"[\W_]")
_LATIN1_HIGH = {i: None for i in range(128, 256)}


def _default_process(s: str) -> str:
    # rapidfuzz's C++ default_process: every non-alphanumeric character (underscore included) becomes a space,
    # then lower-case and trim. Python's \W keeps "_", and "İ".lower() is two characters, hence the two fixes.
    # (Characters first assigned in Unicode 14 count as letters here and as separators in rapidfuzz 3.11.)
    s = _NON_ALNUM.sub(" ", s)
    return "".join("i" if ch == "\u0130" else ch.lower() for ch in s).strip()


def _full_process(s: str, force_ascii: bool) -> str:
    # thefuzz.utils.full_process: force_ascii drops only the code points 128-255
    if force_ascii:
        s = str(s).translate(_LATIN1_HIGH)
    return _default_process(s)


def _lcs_length(a: str, b: str) -> int:
    """Length of the longest common subsequence (bit-parallel, Hyyrö 2004; the algorithm rapidfuzz uses)."""
    if not a or not b:
        return 0
    masks: dict[str, int] = {}
    for i, ch in enumerate(a):
        masks[ch] = masks.get(ch, 0) | (1 << i)
    full = (1 << len(a)) - 1
    s = full
    for ch in b:
        u = s & masks.get(ch, 0)
        s = (s + u) | (s - u)
    return len(a) - bin(s & full).count("1")


def _ratio(a: str, b: str) -> float:
    # rapidfuzz fuzz.ratio = normalized Indel similarity * 100, with its float operations
    lensum = len(a) + len(b)
    dist = lensum - 2 * _lcs_length(a, b)
    norm_dist = dist / lensum if lensum else 0
    return (1.0 - norm_dist) * 100


def _norm_distance(dist: int, lensum: int) -> float:
    return (100 - 100 * dist / lensum) if lensum else 100


def _partial_ratio(s1: str, s2: str) -> float:
    """rapidfuzz ``partial_ratio``: best ``ratio`` of the shorter string against every window of the longer."""
    if not s1 and not s2:
        return 100.0
    if not s1 or not s2:
        return 0.0
    short, long_ = (s1, s2) if len(s1) <= len(s2) else (s2, s1)
    best = _partial_windows(short, long_)
    if best != 100 and len(s1) == len(s2):
        best = max(best, _partial_windows(long_, short))
    return best


def _partial_windows(needle: str, hay: str) -> float:
    chars = set(needle)
    n, m = len(needle), len(hay)
    best = 0.0
    windows = [hay[:i] for i in range(1, n) if hay[i - 1] in chars]
    windows += [hay[i : i + n] for i in range(m - n) if hay[i + n - 1] in chars]
    windows += [hay[i:] for i in range(m - n, m) if hay[i] in chars]
    for w in windows:
        lensum = n + len(w)
        r = 1.0 - (lensum - 2 * _lcs_length(needle, w)) / lensum
        if r > best:
            best = r
            if best == 1:
                return 100.0
    return best * 100


def _tokens(s: str) -> list[str]:
    return s.split()


def _token_ratio(s1: str, s2: str) -> float:
    """rapidfuzz ``token_ratio``: max of ``token_sort_ratio`` and ``token_set_ratio``."""
    ta, tb = _tokens(s1), _tokens(s2)
    sa, sb = set(ta), set(tb)
    if not sa or not sb:
        set_ratio = 0.0
    else:
        inter, ab, ba = sa & sb, sa - sb, sb - sa
        if inter and (not ab or not ba):
            return 100.0
        ab_j, ba_j = " ".join(sorted(ab)), " ".join(sorted(ba))
        sect_len = len(" ".join(inter))
        sect_ab_len = sect_len + (sect_len != 0) + len(ab_j)
        sect_ba_len = sect_len + (sect_len != 0) + len(ba_j)
        dist = len(ab_j) + len(ba_j) - 2 * _lcs_length(ab_j, ba_j)
        set_ratio = _norm_distance(dist, sect_ab_len + sect_ba_len)
        if sect_len:
            set_ratio = max(
                set_ratio,
                _norm_distance((sect_len != 0) + len(ab_j), sect_len + sect_ab_len),
                _norm_distance((sect_len != 0) + len(ba_j), sect_len + sect_ba_len),
            )
    sort_ratio = _ratio(" ".join(sorted(ta)), " ".join(sorted(tb)))
    return max(set_ratio, sort_ratio)


def _partial_token_ratio(s1: str, s2: str) -> float:
    ta, tb = _tokens(s1), _tokens(s2)
    sa, sb = set(ta), set(tb)
    if sa & sb:
        return 100.0
    result = _partial_ratio(" ".join(sorted(ta)), " ".join(sorted(tb)))
    ab, ba = sa - sb, sb - sa
    if len(ta) == len(ab) and len(tb) == len(ba):
        return result
    return max(result, _partial_ratio(" ".join(sorted(ab)), " ".join(sorted(ba))))


def _wratio(s1: str, s2: str) -> float:
    """rapidfuzz ``fuzz.WRatio`` on already processed strings."""
    if not s1 or not s2:
        return 0.0
    len1, len2 = len(s1), len(s2)
    len_ratio = len1 / len2 if len1 > len2 else len2 / len1
    end_ratio = _ratio(s1, s2)
    if len_ratio < 1.5:
        return max(end_ratio, _token_ratio(s1, s2) * 0.95)
    partial_scale = 0.9 if len_ratio < 8.0 else 0.6
    end_ratio = max(end_ratio, _partial_ratio(s1, s2) * partial_scale)
    return max(end_ratio, _partial_token_ratio(s1, s2) * 0.95 * partial_scale)


def fuzzy_extract_one(query: str, choices: Sequence[str]) -> int:
    """Index of the option thefuzz ``process.extractOne(query, choices)`` returns (never "no match")."""
    q = _full_process(_full_process(query, force_ascii=False), force_ascii=True)
    best_i, best = 0, -1.0
    for i, choice in enumerate(choices):
        score = _wratio(q, _full_process(choice, force_ascii=True))
        if score > best:
            best_i, best = i, score
            if score == 100:
                break
    return best_i


# ----- multiple choice (ARC, MMLU): extract_choice, gp/utils_neuron.py:560-583 ---------------------------------

_CHOICE_PATTERNS = (
    # answer is A | choice is A | choose A
    r"(?:(?:[Cc]hoose)|(?:(?:[Aa]nswer|[Cc]hoice)(?![^ABCD]{0,20}?(?:n't|not))[^ABCD]{0,10}?\b(?:|is|:|be))\b)"
    r"[^ABCD]{0,20}?\b(A|B|C|D)\b",
    # A is correct | A is right
    r"\b(A|B|C|D)\b(?![^ABCD]{0,8}?(?:n't|not)[^ABCD]{0,5}?(?:correct|right))[^ABCD]{0,10}?\b(?:correct|right)\b",
    # straight answer: A
    r"^(A|B|C|D)(?:\.|,|:|$)",
    # the first standalone letter
    r"(?<![a-zA-Z])(A|B|C|D)(?![a-zA-Z=])",
)


def official_choice(
    gen: str, choice_list: Sequence[str], choices: Sequence[str] = ("A", "B", "C", "D")
) -> str:
    """``extract_choice(gen, choice_list, choices)``: always a label, and only A–D unless the fuzzy fallback
    picks one of ``choices`` (ARC passes the item's own labels there, MMLU the default A–D)."""
    for p in _CHOICE_PATTERNS:
        m = re.search(p, gen)
        if m:
            return m.group(1)
    best = choice_list[fuzzy_extract_one(gen, choice_list)]
    # the official code looks the returned text up again: a repeated option text maps to its first label
    return choices[list(choice_list).index(best)]


# ----- GSM8K: extract_answer and is_correct, gp/utils_neuron.py:928-957 ----------------------------------------

_LAST_DIGIT = re.compile(r"([+-])?(?=([0-9]|\.[0-9]))(0|([1-9](\d{0,2}(,\d{3})*)|\d*))?(\.\d*)?(?=\D|$)")


def official_last_number(s: str) -> str | None:
    """``extract_answer(s)`` (gp/utils_neuron.py:928-939): the last number as a string, commas and "+" removed."""
    matches = list(_LAST_DIGIT.finditer(s))
    if not matches:
        return None
    return matches[-1].group().replace(",", "").replace("+", "").strip()


class _EvalError(Exception):
    """Where the official ``eval()`` would raise (its caller's ``except`` decides what that means)."""


def _eval_number_literal(s: str) -> int | float:
    """``eval(s)`` for the strings :func:`official_last_number` returns: an optional "-", digits, an optional
    "." and digits. Python literals forbid leading zeros in integers ("007" is a SyntaxError; "00" is 0), not in
    floats ("007.5" is 7.5)."""
    m = re.fullmatch(r"(-?)(\d*)(\.\d*)?", s)
    if m is None or not re.search(r"\d", s):
        raise _EvalError(s)
    sign, digits, frac = m.groups()
    if frac is not None:
        return float(s)
    if len(digits) > 1 and digits[0] == "0" and digits.strip("0"):
        raise _EvalError(s)
    try:
        value = int(digits)
    except ValueError:  # more digits than int() converts; eval of such a literal fails too
        raise _EvalError(s) from None
    return -value if sign else value


def official_gsm8k_correct(completion: str, answer: str) -> bool:
    """``is_correct(completion, answer)`` (gp/utils_neuron.py:942-957)."""
    gold = official_last_number(answer)
    if gold is None:
        raise SaemuiError("gsm8k: the gold solution has no number (the official code asserts one)")
    pred = official_last_number(completion)
    if pred is None:
        return False
    try:
        # math.isclose on two ints converts them to float: an int beyond float range raises OverflowError
        return math.isclose(_eval_number_literal(gold), _eval_number_literal(pred), rel_tol=0, abs_tol=1e-4)
    except (_EvalError, OverflowError):
        return False  # the official bare ``except`` prints "cannot compare two numbers" and returns False


# ----- MATH: answer_clean and compare_answer_with_groundtruth, gp/utils_neuron.py:1011-1371 --------------------


class OfficialCrash(Exception):
    """An input on which the official script stops with an uncaught exception (no accuracy is printed)."""


def _fix_fracs(string: str) -> str:  # gp/utils_neuron.py:1011-1043
    substrs = string.split("\\frac")
    new_str = substrs[0]
    for substr in substrs[1:]:
        new_str += "\\frac"
        if not substr:
            continue
        if substr[0] == "{":
            new_str += substr
            continue
        if len(substr) < 2:
            return string
        a, b = substr[0], substr[1]
        if b != "{":
            new_str += "{" + a + "}{" + b + "}" + substr[2:]
        else:
            new_str += "{" + a + "}" + b + substr[2:]
    return new_str


def _fix_a_slash_b(string: str) -> str:  # gp/utils_neuron.py:1045-1057
    parts = string.split("/")
    if len(parts) != 2:
        return string
    try:
        a, b = int(parts[0]), int(parts[1])
    except ValueError:
        return string
    if string != f"{a}/{b}":
        return string
    return "\\frac{" + str(a) + "}{" + str(b) + "}"


def _fix_sqrt(string: str) -> str:  # gp/utils_neuron.py:1068-1080
    if "\\sqrt" not in string:
        return string
    splits = string.split("\\sqrt")
    new_string = splits[0]
    for split in splits[1:]:
        if not split:
            raise OfficialCrash("IndexError in _fix_sqrt: '\\sqrt' at the end of the answer")
        if split[0] != "{":
            new_string += "\\sqrt{" + split[0] + "}" + split[1:]
        else:
            new_string += "\\sqrt" + split
    return new_string


def official_strip_string(string: str) -> str:
    """``_strip_string`` (gp/utils_neuron.py:1082-1149)."""
    string = string.replace("\n", "").replace("\\!", "").replace("\\\\", "\\")
    string = string.replace("tfrac", "frac").replace("dfrac", "frac")
    string = string.replace("\\left", "").replace("\\right", "")
    string = string.replace("^{\\circ}", "").replace("^\\circ", "")
    string = string.replace("\\$", "")
    if "\\text{ " in string:  # _remove_right_units, gp/utils_neuron.py:1059-1066
        string = string.split("\\text{ ")[0]
    string = string.replace("\\%", "")  # the official code does this twice ("\%" is the same string)
    string = string.replace(" .", " 0.").replace("{.", "{0.")
    if len(string) == 0:
        return string
    if string[0] == ".":
        string = "0" + string
    if len(string.split("=")) == 2 and len(string.split("=")[0]) <= 2:
        string = string.split("=")[1]
    string = _fix_sqrt(string)
    string = string.replace(" ", "")
    string = _fix_fracs(string)
    if string == "0.5":
        string = "\\frac{1}{2}"
    return _fix_a_slash_b(string)


def _find_box(pred_str: str) -> str:  # gp/utils_neuron.py:1167-1187
    ans = pred_str.split("boxed")[-1]
    if not ans:
        return ""
    if ans[0] != "{":
        return ans.split("$")[0].strip()
    stack, out = 1, ""
    for c in ans[1:]:
        if c == "{":
            stack += 1
        elif c == "}":
            stack -= 1
            if stack == 0:
                break
        out += c
    return out


_MATH_TRIGGERS = ("The answer is:", "The answer is", "the answer is")


def official_math_answer(pred: str) -> str:
    """``answer_clean(pred)`` with ``extract_math_answer`` (gp/utils_neuron.py:1189-1249).

    Raises :class:`OfficialCrash` where the official script would stop (``_fix_sqrt`` on a trailing "\\sqrt").
    """
    pred = pred.strip("\n")
    if any(pred.count(t) > 1 for t in _MATH_TRIGGERS):
        pred = pred.split("\n\n")[0]
    preds = re.split("|".join(_MATH_TRIGGERS), pred)
    answer_flag = len(preds) > 1
    if answer_flag:
        pred = preds[-1]
    pred = pred.strip("\n").rstrip(".").rstrip("/").strip(" ")
    if "boxed" in pred:
        out = _find_box(pred)
    elif answer_flag:
        out = pred.split("=")[-1].strip()
        if re.match(r"[\d\.]+\s\D+$", out):
            out = out.split(" ")[0]
    else:
        nums = re.findall(r"-?\d*\.?\d+", pred)
        out = nums[-1] if nums else ""
    return official_strip_string(out).rstrip(".").rstrip("/")


def _clean_units(pred_str: str) -> str:  # gp/utils_neuron.py:1251-1272
    s = pred_str.replace("\\pi", "π")
    s = re.sub(r"(?<![\d}])\\?π", "3.14", s)
    s = re.sub(r"(\d)(\\?π)", r"\1*3.14", s)
    s = re.sub(r"\{(\\?π)\}", "3.14", s)
    s = re.sub(r"\*(\\?π)", "*3.14", s)
    s = s.replace("%", "/100").replace("$", "").replace("¥", "").replace("°C", "").replace(" C", "")
    return s.replace("°", "")


def _floatify(num: Any) -> int | float | None:  # gp/utils_neuron.py:1274-1282
    try:
        value = float(num)
    except (TypeError, ValueError):
        return None
    return round(value) if value.is_integer() else value


# latex2sympy2 1.9.1 (the official requirements) returns an Integer for a plain number whose value is whole,
# however it is signed, grouped or wrapped ("12.0", "0012", "1,000", "- 12", "{-12}", "(12)", "[12]" → 12 or -12)
# and a Rational otherwise, whose str ("25/2") the official floatify cannot read. Its parser also stops reading at
# "$", at a LaTeX line break and at a closing bracket that closes nothing ("12)+3" → 12), skips thin spaces and
# returns the right-hand side of "x=12" (all checked against latex2sympy2 1.9.1 itself).
_PLAIN_NUMBER = re.compile(r"(\d{1,3}(?:,\d{3})+|\d+)?(?:\.(\d*))?")
_WRAPPERS = (("(", ")"), ("{", "}"), ("[", "]"), ("\\{", "\\}"))


def _latex_read_prefix(s: str) -> str:
    depth = 0
    for i, ch in enumerate(s):
        if ch == "$" or s.startswith("\\\\", i):
            return s[:i]
        if ch in "({[":
            depth += 1
        elif ch in ")}]":
            if depth == 0:
                return s[: i - 1] if s[i - 1 : i] == "\\" else s[:i]
            depth -= 1
    return s


def _latex2sympy_integer(s: str) -> str | None:
    """``str(latex2sympy(s))`` when that is an integer (see the note above), else None."""
    s = _latex_read_prefix(s.replace("\\,", " ")).strip()
    rhs = re.fullmatch(r"(?:[A-Za-z]\s*=\s*)+(.*)", s, re.DOTALL)
    if rhs:
        s = rhs.group(1).strip()
    # a number written with a trailing "." ("12.", "1.0.") ends what the parser reads ("12.+a" → 12)
    num = re.match(r"[+-]?\s*(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d*)?", s)
    if num and (num.group().endswith(".") or re.match(r"\s*\.(?!\d)", s[num.end() :])):
        s = num.group()
    negative = False
    while s:
        if s[0] in "+-" and len(s) > 1:
            negative ^= s[0] == "-"
            s = s[1:].strip()
            continue
        for left, right in _WRAPPERS:
            if s.startswith(left) and s.endswith(right) and len(s) > len(left) + len(right):
                s = s[len(left) : -len(right)].strip()
                break
        else:
            break
    m = _PLAIN_NUMBER.fullmatch(s)
    if m is None or not re.search(r"\d", s):
        return None
    whole, frac = m.groups()
    if frac and frac.strip("0"):
        return None  # a Rational
    digits = (whole or "0").replace(",", "").lstrip("0") or "0"
    return "-" + digits if negative and digits != "0" else digits


def _number_it(num: str) -> int | float | None:
    """``number_it`` (gp/utils_neuron.py:1303-1325) for a string answer.

    The official code runs ``latex2sympy`` on the cleaned answer and ``floatify`` on its ``str``; when that fails
    it calls ``eval_with_timeout``, which needs the never-imported ``multiprocessing`` and so always ends in
    None. latex2sympy is emulated for plain numbers (checked against latex2sympy2 1.9.1); any other answer is
    treated as non-numeric, which is what latex2sympy gives for fractions, roots, powers, sums, products and
    lists: it leaves them unevaluated ("6/2", "2 + 3", "2**3", "2*3", "[1, 2]"), and floatify cannot read those.
    """
    as_integer = _latex2sympy_integer(_clean_units(num))
    return None if as_integer is None else _floatify(as_integer)


def _compare_two_numbers(p: Any, gt: Any) -> bool:  # gp/utils_neuron.py:1327-1336
    try:
        if math.isnan(p):
            return False
        if isinstance(gt, int):
            return round(p) == gt
        return False  # within_eps is not defined anywhere: NameError, caught
    except (TypeError, ValueError, OverflowError):
        return False


def _compare_two_list(pred: Any, gt: list) -> bool:  # gp/utils_neuron.py:1338-1348
    if not isinstance(pred, list) or len(pred) != len(gt):
        return False
    if any(not isinstance(x, (int, float)) for x in pred):
        return False
    return all(_compare_two_numbers(p, g) for p, g in zip(sorted(pred), sorted(gt)))


_BINOPS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
    ast.BitXor: operator.xor,
    ast.BitAnd: operator.and_,
    ast.BitOr: operator.or_,
    ast.LShift: operator.lshift,
    ast.RShift: operator.rshift,
}
_UNOPS = {ast.UAdd: operator.pos, ast.USub: operator.neg, ast.Invert: operator.invert}


def _eval_numeric_expression(text: str) -> Any:
    """``eval(text)`` for number literals, + - * / // % ** ^ & | << >> and tuples / lists / sets of them.

    Anything else (names, calls, strings, comparisons ...) raises :class:`_EvalError`: in the official code it is
    a NameError/SyntaxError or a value that later fails the numeric checks. Results that would be absurdly large
    raise too (``eval`` would spend unbounded time; the answer is wrong either way).
    """
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, ValueError):
        raise _EvalError(text) from None

    def ev(node: ast.AST) -> Any:
        if isinstance(node, ast.Constant) and type(node.value) in (int, float, complex):
            return node.value
        if isinstance(node, (ast.Tuple, ast.List)):
            out = [ev(e) for e in node.elts]
            return tuple(out) if isinstance(node, ast.Tuple) else out
        if isinstance(node, ast.Set):
            return {ev(e) for e in node.elts}
        if isinstance(node, ast.UnaryOp) and type(node.op) in _UNOPS:
            return _UNOPS[type(node.op)](ev(node.operand))
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            left, right = ev(node.left), ev(node.right)
            if isinstance(node.op, ast.Pow) and isinstance(right, int) and abs(right) > 10_000:
                raise _EvalError(text)
            if isinstance(node.op, ast.LShift) and isinstance(right, int) and right > 10_000:
                raise _EvalError(text)
            return _BINOPS[type(node.op)](left, right)
        raise _EvalError(text)

    try:
        return ev(tree.body)
    except (_EvalError, ArithmeticError, TypeError, ValueError):
        raise _EvalError(text) from None


def official_math_correct(answer: str, groundtruth_str: str, groundtruth_num: Any = None) -> bool:
    """``compare_answer_with_groundtruth`` (gp/utils_neuron.py:1350-1371)."""
    if "\\text{" in answer:
        answer = answer.replace("\\text{", "").rstrip("}")
    if "\\text{" in groundtruth_str:
        groundtruth_str = groundtruth_str.replace("\\text{", "").rstrip("}")
    if groundtruth_str.lower() in ("(a)", "(b)", "(c)", "(d)", "(e)", "(f)"):
        return groundtruth_str.lower() in answer.lower()
    if answer.lower() == groundtruth_str.lower():
        return True
    if groundtruth_num is None:
        return False
    if isinstance(groundtruth_num, (int, float)):
        return _compare_two_numbers(_number_it(answer), groundtruth_num)
    try:
        values = list(_eval_numeric_expression(answer))
    except (_EvalError, TypeError):
        return False
    converted = []
    for v in values:
        if isinstance(v, (int, float)):
            converted.append(v)  # number_it returns numbers unchanged
        else:
            return False  # number_it(clean_units(...)) on a non-string raises; the caller's except says False
    return _compare_two_list(converted, list(groundtruth_num))


# ----- BBH: extract_answer_bbh, gp/get_performance_bbh.py:53-119, and the check at :190 -------------------------

_BBH_LETTER_PATTERNS = (
    r"the\s+final\s+answer\s+is\s+[`\"']?\b([A-Fa-f])\b[`\"']?",
    r"the\s+final\s+result\s+is\s+[`\"']?\b([A-Fa-f])\b[`\"']?",
    r"the\s+result\s+is\s+[`\"']?\b([A-Fa-f])\b[`\"']?",
    r"the\s+answer\s+is\s+[`\"']?\b([A-Fa-f])\b[`\"']?",
    r"answer\s+is\s+[`\"']?\b([A-Fa-f])\b[`\"']?",
    r"result\s+is\s+[`\"']?\b([A-Fa-f])\b[`\"']?",
    r"final\s+answer\s+is\s+[`\"']?\b([A-Fa-f])\b[`\"']?",
    r"final\s+result\s+is\s+[`\"']?\b([A-Fa-f])\b[`\"']?",
    r"the\s+best\s+answer\s+is\s+[`\"']?\b([A-Fa-f])\b[`\"']?",
    r"the\s+best\s+result\s+is\s+[`\"']?\b([A-Fa-f])\b[`\"']?",
    r"option\s+\b([A-Fa-f])\b",
    r"\*\*\s*\b([A-Fa-f])\b[\.\)]",
    r"the\s+correct\s+option\s+is\s+[`\"']?\b([A-Fa-f])\b[`\"']?",
    r"the\s+correct\s+answer\s+is\s+[`\"']?\b([A-Fa-f])\b[`\"']?",
    r"correct\s+option\s+is\s+[`\"']?\b([A-Fa-f])\b[`\"']?",
    r"correct\s+answer\s+is\s+[`\"']?\b([A-Fa-f])\b[`\"']?",
)
_BBH_KEY = (
    r"(?:the\s+)?(?:final\s+)?(?:answer|argument|result|correct option|sorted list|equation|expression)"
)
_BBH_GENERIC_PATTERNS = (
    _BBH_KEY + r".*?is\s*[:\s]*[`\"'\*\[]?([^.`\"'\n\*\]]+?)[`\"'\*\]]?(?:\.|!|\?|$)",
    # official pattern 2 contains "\\$begin:math:display$": an anchor followed by text, it can never match
    _BBH_KEY + r".*?is\s*[:\s]*\\$begin:math:display$(.*?)\\\\$end:math:display$(?:\.|!|\?|$)",
    _BBH_KEY + r".*?is\s*[:\s]*(.+?)(?:\.|!|\?|$)",
    _BBH_KEY + r".*?is\s*:\s*[`\"'\*\[]?([^.`\"'\n\*\]]+?)[`\"'\*\]]?(?:\.|!|\?|$)",
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
)


def official_bbh_answer(response: str) -> str | None:
    """``extract_answer_bbh(response)`` (gp/get_performance_bbh.py:53-119)."""
    matches: list[str] = []
    for p in _BBH_LETTER_PATTERNS:
        matches.extend(re.findall(p, response, re.IGNORECASE))
    if matches:
        answer = matches[-1].strip().strip("`\"'")
        return answer.upper() if re.fullmatch(r"[A-Fa-f]", answer) else answer
    generic: list[str] = []
    for p in _BBH_GENERIC_PATTERNS:
        generic.extend(re.findall(p, response, re.IGNORECASE))
    if generic:
        answer = generic[-1].strip().strip("`\"'*")
        return re.split(r"[;,]", answer)[0].strip()
    return None


def official_bbh_correct(pred: str | None, target: str) -> bool:
    """The check of gp/get_performance_bbh.py:190: the target is a substring of the prediction."""
    return bool(pred) and target.lower() in pred.strip().lower().replace("*", "")


# ----- per-task dispatch -----------------------------------------------------------------------------------------


@dataclass
class OfficialVerdict:
    """What the official code extracts from a response and whether it counts the item correct.

    error: set when the official script would have stopped on this response (it is counted wrong here).
    """

    pred: Any
    correct: bool
    error: str | None = None


def _math_gold(item: Any, record: dict | None) -> tuple[str, Any]:
    ans = (record or {}).get("answer")
    if isinstance(ans, list) and len(ans) >= 2 and isinstance(ans[0], str):
        return ans[0], ans[1]
    raise SaemuiError(
        f"math item {item.id}: official scoring needs the MUI-Eval record form answer = [string, number] "
        "(the official comparison uses both); this record has no such field"
    )


def official_verdict(task_name: str, item: Any, response: str, record: dict | None = None) -> OfficialVerdict:
    """Score ``response`` to ``item`` the way the official script of ``task_name`` does.

    record: the benchmark record the item came from (needed for MATH, whose gold number is not kept in the item).
    """
    if task_name in ("arc", "mmlu"):
        labels, options = list(item.fields["labels"]), list(item.fields["options"])
        if task_name == "arc":  # gp/get_performance_arc.py:115
            pred = official_choice(response, options, labels)
        else:  # gp/get_performance_mmlu.py:111 (default choices A-D)
            pred = official_choice(response, options)
        return OfficialVerdict(pred, pred == item.gold)
    if task_name == "gsm8k":  # gp/get_performance_gsm8k.py:109
        return OfficialVerdict(
            official_last_number(response), official_gsm8k_correct(response, item.fields["solution"])
        )
    if task_name == "math":  # gp/get_performance_math.py:121-125
        gt_str, gt_num = _math_gold(item, record)
        try:
            answer = official_math_answer(response)
        except OfficialCrash as e:
            return OfficialVerdict(None, False, str(e))
        return OfficialVerdict(answer, official_math_correct(answer, gt_str, gt_num))
    if task_name == "bbh":  # gp/get_performance_bbh.py:189-190
        pred = official_bbh_answer(response)
        return OfficialVerdict(pred, official_bbh_correct(pred, str(item.gold)))
    raise SaemuiError(
        f"task {task_name!r} has no official extraction (available for: {', '.join(OFFICIAL_TASKS)}); "
        "use --extraction corrected"
    )


__all__ = [
    "EXTRACTIONS",
    "OFFICIAL_TASKS",
    "OfficialCrash",
    "OfficialVerdict",
    "check_extraction",
    "fuzzy_extract_one",
    "official_bbh_answer",
    "official_bbh_correct",
    "official_choice",
    "official_gsm8k_correct",
    "official_last_number",
    "official_math_answer",
    "official_math_correct",
    "official_strip_string",
    "official_verdict",
]
