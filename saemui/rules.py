"""Key-unit rules (:class:`KeyRule`): the ``--threshold`` text, its parsing and validation.

Kept apart from the selectors (:mod:`saemui.selection`, torch) so configurations and the command line validate a
rule without importing torch. Rules are described in docs/method.md §1.3.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from saemui.errors import SaemuiError

MODES = ("topscore", "topk", "positive", "global_topk")


@dataclass(frozen=True)
class KeyRule:
    """How key units are chosen.

    mode: one of topscore, topk, positive, global_topk.
    eta: threshold factor for topscore, in (0, 1]; the paper uses 0.9 (SAE) and 0.8–0.95 grids.
    k: for topk/global_topk, an absolute count (≥ 1) or a fraction in (0, 1) of the units per layer
       (0.001 for neurons, as in the paper: floored, at least 1).
    positive_only: topk considers only entries > 0 (default for SAE features).
    """

    mode: str = "topscore"
    eta: float = 0.9
    k: float = 0.001
    positive_only: bool = False

    def __post_init__(self):
        if self.mode not in MODES:
            raise SaemuiError(f"selection mode {self.mode!r} unknown (expected one of {', '.join(MODES)})")
        if self.mode == "topscore" and not (0.0 < self.eta <= 1.0):
            raise SaemuiError(f"threshold eta={self.eta} out of range (expected 0 < eta <= 1)")
        if self.mode in ("topk", "global_topk") and not (self.k >= 1 or 0 < self.k < 1):
            raise SaemuiError(
                f"top-k k={self.k} out of range (expected an integer >= 1 or a fraction in (0, 1))"
            )
        if self.mode in ("topk", "global_topk") and self.k >= 1 and self.k != int(self.k):
            raise SaemuiError(f"top-k k={self.k} must be a whole number when >= 1")

    def k_for(self, n_units: int) -> int:
        return int(self.k) if self.k >= 1 else max(1, int(self.k * n_units))

    def spec(self) -> str:
        """The ``--threshold`` text of this rule (``positive_only`` is not part of it: the unit kind sets it)."""
        return dataclasses.replace(self, positive_only=False).describe()

    def describe(self) -> str:
        if self.mode == "topscore":
            return f"topscore:{_exact(self.eta)}"
        if self.mode in ("topk", "global_topk"):
            return f"{self.mode}:{_exact(self.k)}" + (":pos" if self.positive_only else "")
        return "positive"

    @classmethod
    def parse(cls, text: str, positive_only: bool = False) -> KeyRule:
        """``topscore:0.9``, ``topk:0.001``, ``topk:5``, ``global_topk:10``, ``positive``."""
        mode, _, arg = text.partition(":")
        if mode in ("topk", "global_topk") and not arg:
            # no silent default: a fraction (0.001) and a count (5) give very different sets
            raise SaemuiError(
                f"--threshold {text!r} needs K: {mode}:K with K a count >= 1 or a fraction in (0, 1), "
                f"e.g. {mode}:0.001 or {mode}:5"
            )
        try:
            if mode == "topscore":
                return cls(mode, eta=float(arg or 0.9), positive_only=positive_only)
            if mode in ("topk", "global_topk"):
                return cls(mode, k=float(arg), positive_only=positive_only)
        except ValueError:
            raise SaemuiError(f"--threshold {text!r}: {arg!r} is not a number") from None
        if mode == "positive" and not arg:
            return cls("positive", positive_only=positive_only)
        raise SaemuiError(
            f"--threshold {text!r} not understood (expected topscore:ETA, topk:K, global_topk:K or positive)"
        )


def few_units_warning(rule: KeyRule, n_units: int, n_layers: int) -> str | None:
    """A warning text when ``rule`` keeps at most one unit per (sample, layer) on ``n_units`` units per layer
    (e.g. ``topk:0.001`` on d_mlp 1536 gives k = 1): MUI then counts one unit per layer and sample."""
    if rule.mode == "topk" and rule.k_for(n_units) <= 1:
        return (
            f"threshold {rule.spec()} keeps k = {rule.k_for(n_units)} unit per (sample, layer) of {n_units} units; "
            "MUI then counts a single unit per layer and sample (consider a larger K, e.g. topk:5 or "
            f"topk:{4 / n_units:.2g})"
        )
    if rule.mode == "global_topk" and rule.k_for(n_units) <= n_layers:
        return (
            f"threshold {rule.spec()} keeps {rule.k_for(n_units)} units per sample over {n_layers} layers: at most "
            "one per (sample, layer) on average (consider a larger K)"
        )
    return None


__all__ = ["MODES", "KeyRule", "few_units_warning"]


def _exact(x: float) -> str:
    """Short text for a rule's number that parses back to the same value: ``%g`` (as results have always
    written) unless it rounds, e.g. 0.001953125 (``%g`` gives 0.00195312, which floors to k = 2 of 1536, not 3)."""
    short = f"{x:g}"
    return short if float(short) == float(x) else repr(float(x))
