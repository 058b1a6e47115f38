"""Chance level and task eligibility for Study v2 (``docs/study/protocol.md`` §3.2).

Chance p0(t) is the best accuracy of a trivial answer rule on the task's eval items, computed from the items
alone; a base model is above chance when an exact one-sided binomial test rejects p <= p0 at 0.05 *and* its
accuracy clears p0 by 5 points. Pure functions: items and counts in, numbers and labels out.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from scipy.stats import binomtest

from saemui.errors import SaemuiError
from saemui.tasks.base import Item
from saemui.tasks.extract import _NUMBER, last_number, numbers_close

#: protocol §3.2: significance level of the one-sided test and the margin above p0 (as a proportion)
ALPHA = 0.05
MARGIN = 0.05
#: protocol §3.2: a law task keeps a family's points only if the SD of P (points) over them is at least this
MIN_SD_POINTS = 5.0

TaskClass = Literal["two-family", "one-family", "out"]


def first_number(text: str) -> float | None:
    """First number in ``text``, parsed by the same pattern as :func:`saemui.tasks.extract.last_number`."""
    for m in _NUMBER.finditer(text):
        s = m.group()
        if s.strip("+-"):
            try:
                return float(s.replace(",", "").replace("+", ""))
            except ValueError:
                return None
    return None


@dataclass(frozen=True)
class Chance:
    """Chance level p0 of a task (protocol §3.2), as a proportion in [0, 1].

    p0: the maximum over the rules below that apply.
    rule: the name of the rule attaining p0 (first in the order constant, first_number, last_number, options).
    rules: accuracy of each rule that applies: ``constant`` (the most frequent gold answer), ``first_number``
        and ``last_number`` (that number of the question as the answer; numeric golds only), ``options`` (mean of
        1/number of options; multiple choice only).
    n: number of items.
    """

    p0: float
    rule: str
    rules: dict[str, float]
    n: int


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def chance_level(items: Sequence[Item]) -> Chance:
    """p0(t) of protocol §3.2 from the eval items alone (before any model runs).

    Rules: (a) every constant answer, whose best is the most frequent gold (compared as numbers for numeric
    golds, as strings for labels); (b) the first and (c) the last number of the question, scored as the arith
    tasks score a response (:func:`numbers_close`); (d) for multiple choice (items with ``options`` or
    ``labels`` fields), the mean of 1/(number of options).
    """
    if not items:
        raise SaemuiError("chance_level: expected at least one item")
    n = len(items)
    numeric = all(_is_number(it.gold) for it in items)
    golds = [float(it.gold) if numeric else str(it.gold) for it in items]
    rules: dict[str, float] = {"constant": Counter(golds).most_common(1)[0][1] / n}
    if numeric:
        for name, pick in (("first_number", first_number), ("last_number", last_number)):
            hits = 0
            for it in items:
                q = it.fields.get("question")
                if not isinstance(q, str):
                    raise SaemuiError(f"chance_level: item {it.id} has no question text")
                hits += numbers_close(pick(q), float(it.gold))
            rules[name] = hits / n
    n_opts = [len(it.fields.get("options") or it.fields.get("labels") or ()) for it in items]
    if any(n_opts):
        if not all(n_opts):
            raise SaemuiError("chance_level: some items have options and some do not")
        rules["options"] = float(np.mean([1.0 / k for k in n_opts]))
    best = max(rules, key=lambda r: rules[r])  # max() keeps the first of equal values: the order above
    return Chance(p0=rules[best], rule=best, rules=rules, n=n)


@dataclass(frozen=True)
class Eligibility:
    """One base model on one task against chance (protocol §3.2).

    k, n: correct answers and items; accuracy = k/n.
    p0: the task's chance level (proportion).
    p_value: exact one-sided binomial p-value of H0 p <= p0 against p > p0.
    above_chance: p_value < alpha and k/n >= p0 + margin.
    """

    k: int
    n: int
    p0: float
    p_value: float
    above_chance: bool

    @property
    def accuracy(self) -> float:
        return self.k / self.n


def eligibility(k: int, n: int, p0: float, *, alpha: float = ALPHA, margin: float = MARGIN) -> Eligibility:
    """The §3.2 eligibility test of one base: ``binomtest(k, n, p0, alternative="greater")``.

    Above chance iff p-value < ``alpha`` and ``k/n >= p0 + margin`` (both as proportions). The margin
    comparison is done in integers of 1e-12 to keep a boundary case like 0.10 = 0.05 + 0.05 on the "met" side.
    """
    for name, v in (("k", k), ("n", n)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise SaemuiError(f"eligibility: {name} must be an integer count, got {v!r}")
    if n < 1 or not 0 <= k <= n:
        raise SaemuiError(f"eligibility: need 0 <= k <= n and n >= 1, got k={k}, n={n}")
    if not 0 <= p0 <= 1:
        raise SaemuiError(f"eligibility: p0 must be a proportion in [0, 1], got {p0}")
    p = float(binomtest(int(k), int(n), float(p0), alternative="greater").pvalue)
    clears = round(k / n, 12) >= round(p0 + margin, 12)
    return Eligibility(k=int(k), n=int(n), p0=float(p0), p_value=p, above_chance=bool(p < alpha and clears))


def classify_task(above: Mapping[str, bool]) -> TaskClass:
    """Stage-0 class of a task from each family's base (protocol §3.2): both above chance -> ``"two-family"``
    (a law task candidate), one -> ``"one-family"``, none -> ``"out"``."""
    if len(above) != 2:
        raise SaemuiError(f"classify_task: expected the two families' bases, got {sorted(above)}")
    k = sum(bool(v) for v in above.values())
    return "two-family" if k == 2 else "one-family" if k == 1 else "out"


def law_tasks(classes: Sequence[tuple[str, TaskClass]], max_tasks: int = 3) -> list[str]:
    """The law tasks: the first ``max_tasks`` two-family candidates in the given (priority) order (§3.2)."""
    return [t for t, c in classes if c == "two-family"][:max_tasks]


def one_family_tasks(
    above: Sequence[tuple[str, Mapping[str, bool]]], family: str, max_tasks: int = 3
) -> list[str]:
    """A one-family study's tasks (§11, case (3) of the m < 3 entry): the first ``max_tasks`` candidates, in the
    given (priority) order, on which ``family``'s base alone is above chance. ``above``: (task, family → above
    chance) per candidate."""
    out = []
    for task, a in above:
        if family not in a:
            raise SaemuiError(f"one_family_tasks: task {task!r} has no stage-0 result for {family!r}")
        if classify_task(a) == "one-family" and a[family]:
            out.append(task)
    return out[:max_tasks]


def training_moves(perf: Sequence[float], min_sd: float = MIN_SD_POINTS) -> bool:
    """Whether training moves accuracy for one family on a law task (§3.2): SD of P (points, over that
    family's clean points) >= ``min_sd``. The protocol does not name the SD's denominator; this uses the sample
    SD (ddof = 1), the usual reading of "SD" over a handful of runs and the stricter of the two."""
    arr = np.asarray(perf, dtype=float)
    if arr.ndim != 1 or len(arr) < 2 or not np.isfinite(arr).all():
        raise SaemuiError(f"training_moves: expected at least 2 finite P values, got {list(arr.ravel())[:5]}")
    return bool(arr.std(ddof=1) >= min_sd)


__all__ = [
    "ALPHA",
    "Chance",
    "Eligibility",
    "MARGIN",
    "MIN_SD_POINTS",
    "chance_level",
    "classify_task",
    "eligibility",
    "first_number",
    "law_tasks",
    "one_family_tasks",
    "training_moves",
]
