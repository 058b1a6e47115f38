"""``arith``: a built-in, offline arithmetic task family for very small instruct models.

Nothing is downloaded: items are generated from ``random.Random(seed)`` (a Mersenne Twister whose integer
sequence is specified and identical on every platform and Python version >= 3.2), so the same ``(level, seed,
n)`` always yields the same questions. Registered names: ``arith`` (option ``level``, default 1),
``arith-1`` / ``arith-2`` / ``arith-3``, and the Study v2 tasks ``arith-2d1d`` and ``arith-larger``
(``docs/study/protocol.md`` §3.1, tasks 4 and 5).

Generator, per item ``i`` in ``range(n)``, drawing in this order from one ``Random(seed)`` stream:

- level 1: ``a, b = randint(0, 9), randint(0, 9)``; "What is a + b?"; gold ``a + b``. Option ``operand_max``
  widens the range to ``0..operand_max`` (protocol §3.1 task 1: 19, 400 prompts).
- level 2: ``a, b = randint(10, 99), randint(10, 99)``, ``op = choice("+-")``; for ``-`` the operands are swapped
  when ``a < b`` so the result is never negative; "What is a op b?".
- level 3: a two-step word problem: ``template = choice(TEMPLATES)``, ``name = choice(NAMES)``,
  ``thing = choice(THINGS)``, then ``a = randint(5, 20)``, ``b = randint(2, 10)``, ``c = randint(1, a)``
  (so every intermediate count is non-negative). Each template has a fixed formula in ``a, b, c``.
- ``arith-2d1d``: ``a = randint(10, 99)``, ``b = randint(1, 9)``; "What is a + b?" (810 prompts).
- ``arith-larger``: ``a = randint(10, 99)``, then ``b = randint(10, 99)`` redrawn while ``b == a``;
  "Which number is larger, a or b?"; gold ``max(a, b)`` (8,010 prompts, chance 50 %).

Distinct items (protocol §3.3): with option ``distinct`` the generator runs in the same order but skips any item
whose normalised prompt (:func:`saemui.tasks.itemsets.normalize_prompt`) was already drawn, so the items are a
sample without replacement; an item keeps the id of its draw index, i.e. it is the same item as in the
non-distinct stream. ``distinct`` is off for ``arith``/``arith-1..3`` (committed v1 results depend on their
items) and on for the two v2 tasks.

Scoring: the last number of the response equals the gold (integers, so exact up to 1e-4).
"""

from __future__ import annotations

import random
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from saemui.errors import SaemuiError
from saemui.tasks.base import Item, Task, check_style, register_task
from saemui.tasks.extract import last_number, numbers_close
from saemui.tasks.itemsets import normalize_prompt

NAMES = ("Tom", "Anna", "Ben", "Maria", "Sam", "Lily", "Omar", "Zoe")
THINGS = ("apples", "pencils", "stickers", "marbles", "cookies", "books")

# (template text, formula) with a = start count, b = second amount, c = third amount
TEMPLATES: tuple[tuple[str, str], ...] = (
    (
        "{name} has {a} {thing}. {name} buys {b} more and then gives away {c}. How many {thing} does {name} have now?",
        "a + b - c",
    ),
    (
        "{name} has {a} {thing} and gets {b} more. Then {name} gets {c} more. How many {thing} does {name} have now?",
        "a + b + c",
    ),
    (
        "{name} has {a} {thing} and gives away {c}. Then {name} finds {b} more. How many {thing} does {name} have now?",
        "a - c + b",
    ),
    (
        "There are {b} boxes with {a} {thing} in each box. {name} takes {c} {thing} out. How many {thing} are left "
        "in the boxes?",
        "b * a - c",
    ),
)

BASE_EXEMPLAR = "Question: What is 2 + 5?\nAnswer: 7\n\n"
# one-digit numbers, so the exemplar is outside the two-digit item space it demonstrates
LARGER_EXEMPLAR = "Question: Which number is larger, 3 or 8?\nAnswer: 8\n\n"

#: generator kinds: the three levels and the two v2 tasks
KINDS: tuple[str, ...] = ("1", "2", "3", "2d1d", "larger")
LEVEL1_MAX = 9


def _formula(expr: str, a: int, b: int, c: int) -> int:
    # the four formulas are fixed above; evaluate them without eval()
    return {"a + b - c": a + b - c, "a + b + c": a + b + c, "a - c + b": a - c + b, "b * a - c": b * a - c}[
        expr
    ]


def _check_kind(kind: str, operand_max: int | None) -> int:
    if kind not in KINDS:
        raise SaemuiError(f"arith: unknown generator kind {kind!r} (expected one of {', '.join(KINDS)})")
    if operand_max is None:
        return LEVEL1_MAX
    if kind != "1":
        raise SaemuiError(f"arith: operand_max applies to level 1 only, got it for {_task_name(kind)}")
    if isinstance(operand_max, bool) or not isinstance(operand_max, int) or operand_max < 1:
        raise SaemuiError(f"arith: operand_max must be an integer >= 1, got {operand_max!r}")
    return operand_max


def _task_name(kind: str) -> str:
    return f"arith-{kind}"


def _id_prefix(kind: str, hi: int) -> str:
    # a widened range gets its own prefix: an id must never name two different questions
    return f"arith-1max{hi}" if kind == "1" and hi != LEVEL1_MAX else _task_name(kind)


def render(fields: dict[str, Any]) -> tuple[str, int]:
    """Question text and gold answer of an item from its operand fields (used for items and twins alike)."""
    a, b, op = fields["a"], fields["b"], fields.get("op")
    if "template" in fields:
        text, expr = TEMPLATES[fields["template"]]
        q = text.format(name=fields["name"], thing=fields["thing"], a=a, b=b, c=fields["c"])
        return q, _formula(expr, a, b, fields["c"])
    if op == "max":
        return f"Which number is larger, {a} or {b}?", max(a, b)
    return f"What is {a} {op} {b}?", a + b if op == "+" else a - b


def _draw_operands(kind: str, rng: random.Random, hi: int, op: str | None = None) -> dict[str, Any]:
    """One draw of the operands; ``op`` given (twins) keeps the operation instead of drawing it."""
    if kind == "1":
        a, b = rng.randint(0, hi), rng.randint(0, hi)
        return {"a": a, "b": b, "op": "+"}
    if kind == "2":
        a, b = rng.randint(10, 99), rng.randint(10, 99)
        if op is None:
            op = rng.choice("+-")
        if op == "-" and a < b:
            a, b = b, a
        return {"a": a, "b": b, "op": op}
    if kind == "2d1d":
        return {"a": rng.randint(10, 99), "b": rng.randint(1, 9), "op": "+"}
    if kind == "larger":
        a, b = rng.randint(10, 99), rng.randint(10, 99)
        while b == a:
            b = rng.randint(10, 99)
        return {"a": a, "b": b, "op": "max"}
    raise AssertionError(kind)  # level 3 is drawn by _draw (its template comes first in the stream)


def _draw(kind: str, rng: random.Random, hi: int) -> dict[str, Any]:
    if kind != "3":
        return _draw_operands(kind, rng, hi)
    t = rng.randrange(len(TEMPLATES))
    name, thing = rng.choice(NAMES), rng.choice(THINGS)
    a, b = rng.randint(5, 20), rng.randint(2, 10)
    c = rng.randint(1, a)
    return {"a": a, "b": b, "c": c, "template": t, "formula": TEMPLATES[t][1], "name": name, "thing": thing}


def _stream(kind: str, seed: int, hi: int) -> Iterator[Item]:
    rng = random.Random(seed)
    prefix = _id_prefix(kind, hi)
    i = 0
    while True:
        f = _draw(kind, rng, hi)
        q, gold = render(f)
        if kind == "3":
            # v1 items carry no name/thing fields; keep their fields byte-identical
            fields = {"question": q, "a": f["a"], "b": f["b"], "c": f["c"], "template": f["template"]}
            fields["formula"] = f["formula"]
        else:
            fields = {"question": q, **f}
        yield Item(id=f"{prefix}-{seed}-{i}", fields=fields, gold=gold)
        i += 1


def item_space_size(kind: str, operand_max: int | None = None) -> int:
    """Number of distinct prompts the generator of ``kind`` can produce (protocol §3.1 table).

    The counts follow from the ranges in the module docstring: level 1 ``(hi + 1)²`` ordered pairs; level 2
    ``90²`` sums + ``90·91/2`` differences with ``a >= b``; level 3 templates × names × things × b-values ×
    ``sum(a for a in 5..20)`` (c ranges over 1..a); 2d1d ``90·9``; larger ``90·89`` ordered pairs with a ≠ b.
    """
    hi = _check_kind(kind, operand_max)
    if kind == "1":
        return (hi + 1) ** 2
    if kind == "2":
        return 90 * 90 + 90 * 91 // 2
    if kind == "3":
        return len(TEMPLATES) * len(NAMES) * len(THINGS) * 9 * sum(range(5, 21))
    if kind == "2d1d":
        return 90 * 9
    return 90 * 89


def _max_draws(size: int) -> int:
    # far above the coupon-collector expectation (size·ln size); only reached when the space is exhausted
    return 50 * size + 10_000


def draw_items(
    kind: str,
    n: int,
    seed: int = 0,
    *,
    operand_max: int | None = None,
    distinct: bool = False,
    exclude: Collection[str] = (),
) -> list[Item]:
    """The first ``n`` items of the ``kind`` stream for ``seed`` (protocol §3.3).

    distinct: skip an item whose normalised prompt was already drawn (sampling without replacement).
    exclude: normalised prompts to skip (e.g. eval and twin prompts when drawing training items, §3.3);
        without ``distinct`` the result may still repeat a prompt.
    Raises SaemuiError when the space cannot supply ``n`` distinct items.
    """
    hi = _check_kind(kind, operand_max)
    if n < 0:
        raise SaemuiError(f"arith: n must be >= 0, got {n}")
    if not distinct and not exclude:
        stream = _stream(kind, seed, hi)
        return [next(stream) for _ in range(n)]
    size = item_space_size(kind, operand_max)
    if distinct and n > size:
        raise SaemuiError(f"{_task_name(kind)}: {n} distinct items requested but the item space has {size}")
    seen = set(exclude)
    items: list[Item] = []
    for draws, item in enumerate(_stream(kind, seed, hi)):
        if len(items) == n:
            break
        if draws >= _max_draws(size):
            raise SaemuiError(
                f"{_task_name(kind)}: only {len(items)} of {n} items found after {draws} draws "
                f"(the item space of {size} prompts is exhausted by the exclusions)"
            )
        key = normalize_prompt(item.fields["question"])
        if key in seen:
            continue
        if distinct:
            seen.add(key)
        items.append(item)
    return items


def generate(
    level: int, n: int, seed: int = 0, *, operand_max: int | None = None, distinct: bool = False
) -> list[Item]:
    """The first ``n`` items of the given level for ``seed`` (see the module docstring)."""
    if level not in (1, 2, 3):
        raise SaemuiError(f"arith: level must be 1, 2 or 3, got {level!r}")
    return draw_items(str(level), n, seed, operand_max=operand_max, distinct=distinct)


def make_twins(
    kind: str,
    items: Sequence[Item],
    seed: int = 1,
    *,
    operand_max: int | None = None,
    exclude: Collection[str] = (),
) -> list[Item]:
    """Perturbed twins of ``items`` (protocol §3.3): same template and operation, operands redrawn.

    One ``Random(seed)`` stream (the protocol's seed 1) redraws each item's operands from the generator's ranges
    (level 3 keeps template, name and thing; level 2 keeps ``+``/``-``), in item order, until the twin's
    normalised prompt is neither an item's, an earlier twin's nor in ``exclude``; gold is recomputed. Twin ``j``
    has id ``<item id>-twin``.
    """
    hi = _check_kind(kind, operand_max)
    rng = random.Random(seed)
    seen = {normalize_prompt(it.fields["question"]) for it in items} | set(exclude)
    cap = _max_draws(item_space_size(kind, operand_max))
    twins = []
    for it in items:
        for _ in range(cap):
            if kind == "3":
                a, b = rng.randint(5, 20), rng.randint(2, 10)
                f = {k: it.fields[k] for k in ("template", "formula")}
                f.update(a=a, b=b, c=rng.randint(1, a))
                f["name"], f["thing"] = _name_thing(it)
            else:
                f = _draw_operands(kind, rng, hi, op=it.fields["op"])
            q, gold = render(f)
            key = normalize_prompt(q)
            if key not in seen:
                break
        else:
            raise SaemuiError(f"{_task_name(kind)}: no new twin for item {it.id} after {cap} draws")
        seen.add(key)
        if kind == "3":
            f = {k: f[k] for k in ("a", "b", "c", "template", "formula")}
        twins.append(Item(id=f"{it.id}-twin", fields={"question": q, **f}, gold=gold))
    return twins


def _is_num(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _answer_text(gold: float | int) -> str:
    return str(int(gold)) if float(gold).is_integer() else str(gold)


def _name_thing(item: Item) -> tuple[str, str]:
    # level-3 fields do not store name and thing (v1 items stay byte-identical); read them off the question
    q = item.fields["question"]
    name = next(n for n in NAMES if q.startswith(n + " ") or f" {n} takes" in q)
    thing = next(t for t in THINGS if f" {t}" in q)
    return name, thing


class _ArithMethods:
    """Prompts, scoring, items and twins shared by every arith-style task (a mixin without fields)."""

    exemplar: ClassVar[str] = BASE_EXEMPLAR
    seed: int
    n: int
    distinct: bool

    @property
    def kind(self) -> str:
        raise NotImplementedError

    @property
    def _operand_max(self) -> int | None:
        return None

    def load_items(self, source: Any = None, limit: int | None = None) -> list[Item]:
        if source is not None:
            raise SaemuiError("arith: items are generated, source must be None (use options level/seed/n)")
        n = self.n if limit is None else min(self.n, limit)
        return draw_items(self.kind, n, self.seed, operand_max=self._operand_max, distinct=self.distinct)

    def twins(self, items: Sequence[Item], seed: int = 1, exclude: Collection[str] = ()) -> list[Item]:
        """Perturbed twins of ``items`` (see :func:`make_twins`; protocol §3.3)."""
        return make_twins(self.kind, items, seed, operand_max=self._operand_max, exclude=exclude)

    def item_space_size(self) -> int:
        """Distinct prompts this task's generator can produce (protocol §3.1)."""
        return item_space_size(self.kind, self._operand_max)

    def item_from_record(self, record: dict, index: int) -> Item:
        # for imported response files: the question and a numeric gold ('answer' or 'gold')
        gold = record.get("gold", record.get("answer"))
        if not isinstance(record.get("question"), str) or not isinstance(gold, (int, float)):
            raise SaemuiError(
                f"arith record {index}: expected 'question' (string) and numeric 'gold'/'answer'"
            )
        return Item(id=str(record.get("id", index)), fields={"question": record["question"]}, gold=gold)

    def format_prompt(self, item: Item, style: str = "chat") -> str:
        if check_style(style) == "chat":
            return item.fields["question"]
        return self.base_prefix() + "Question: " + item.fields["question"] + "\nAnswer:"

    def _check_exemplars(self) -> None:
        for i, e in enumerate(getattr(self, "exemplars", ())):
            if not (isinstance(e, (tuple, list)) and len(e) == 2 and isinstance(e[0], str) and _is_num(e[1])):
                raise SaemuiError(f"{self.name}: option exemplars[{i}] must be (question, number), got {e!r}")
        self.exemplars = tuple((q, a) for q, a in getattr(self, "exemplars", ()))

    def base_prefix(self) -> str:
        """The exemplar text of a base-style prompt: the ``exemplars`` option when given, else the task's one
        hand-written exemplar."""
        given = getattr(self, "exemplars", ())
        if not given:
            return self.exemplar
        return "".join(f"Question: {q}\nAnswer: {_answer_text(a)}\n\n" for q, a in given)

    def extract_answer(self, response: str, item: Item) -> float | None:
        return last_number(response)

    def is_correct(self, pred: float | None, item: Item) -> bool:
        return numbers_close(pred, float(item.gold))


# Options added after v1 are left out of task_options() at their default, so v1 generation fingerprints
# (which record every option) stay valid.
_NEW_OPTION = {"omit_if_default": True}


@dataclass
class Arith(_ArithMethods, Task):
    name = "arith"
    default_path = None
    base_stops = ("\n\nQuestion:", "\n")

    level: int = 1
    """Difficulty: 1 = single-digit addition, 2 = two-digit addition/subtraction, 3 = two-step word problems."""
    seed: int = 0
    """Seed of ``random.Random``; the same seed always gives the same items."""
    n: int = 200
    """Number of items generated by ``load_items``."""
    max_new_tokens: int = 128
    """Generation budget in new tokens (answers are short)."""
    operand_max: int | None = field(default=None, metadata=_NEW_OPTION)
    """Level 1 only: operands are drawn from ``0..operand_max`` (None: 9, the v1 range; protocol §3.1: 19)."""
    distinct: bool = field(default=False, metadata=_NEW_OPTION)
    """Skip items whose normalised prompt was already drawn (protocol §3.3; off keeps the v1 items)."""
    exemplars: tuple[tuple[str, float], ...] = field(default=(), metadata=_NEW_OPTION)
    """Base style only: (question, answer) exemplars shown before the item, replacing the task's one hand-written
    exemplar (protocol §11, D1); empty keeps it."""

    def __post_init__(self) -> None:
        if self.level not in (1, 2, 3):
            raise SaemuiError(f"arith: level must be 1, 2 or 3, got {self.level!r}")
        self._check_exemplars()
        if self.operand_max == LEVEL1_MAX:
            self.operand_max = None  # the v1 range: one spelling, one fingerprint
        _check_kind(str(self.level), self.operand_max)

    @property
    def kind(self) -> str:
        return str(self.level)

    @property
    def _operand_max(self) -> int | None:
        return self.operand_max


@dataclass
class _StudyArith(_ArithMethods, Task):
    """The fields of the study v2 procedural tasks (distinct items by default); subclasses set the generator."""

    default_path = None
    base_stops = ("\n\nQuestion:", "\n")
    _kind = ""

    seed: int = 0
    """Seed of ``random.Random``; the same seed always gives the same items."""
    n: int = 200
    """Number of items generated by ``load_items``."""
    max_new_tokens: int = 128
    """Generation budget in new tokens (answers are short)."""
    distinct: bool = True
    """Skip items whose normalised prompt was already drawn (protocol §3.3)."""
    exemplars: tuple[tuple[str, float], ...] = field(default=(), metadata=_NEW_OPTION)
    """Base style only: (question, answer) exemplars shown before the item, replacing the task's one hand-written
    exemplar (protocol §11, D1); empty keeps it."""

    def __post_init__(self) -> None:
        self._check_exemplars()

    @property
    def kind(self) -> str:
        return self._kind


@dataclass
class ArithAddTwoOne(_StudyArith):
    """Two-digit + one-digit addition, "What is 47 + 8?" (protocol §3.1 task 4; 810 prompts)."""

    name = "arith-2d1d"
    _kind = "2d1d"


@dataclass
class ArithLarger(_StudyArith):
    """The larger of two different two-digit numbers (protocol §3.1 task 5; 8,010 prompts, chance 50 %)."""

    name = "arith-larger"
    exemplar = LARGER_EXEMPLAR
    _kind = "larger"


register_task("arith")(Arith)
for _lvl in (1, 2, 3):
    register_task(f"arith-{_lvl}")(lambda _lvl=_lvl, **kw: Arith(level=_lvl, **kw))
register_task("arith-2d1d")(ArithAddTwoOne)
register_task("arith-larger")(ArithLarger)
