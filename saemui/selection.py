"""Key-unit selection per (sample, layer) on the pooled (position × unit) score matrix.

Rules (MUI-Eval conventions, docs/method.md §1.2):
- ``topscore``: every unit with some score ≥ η·max, max over that sample/layer's matrix; a max ≤ 0 gives ∅.
- ``topk``: the k largest *entries* of the flattened matrix; their units form the set (≤ k distinct units).
  k is absolute (int ≥ 1) or a fraction of the units (``int(frac·U)``, floored, at least 1).
- ``positive``: every unit whose score is > 0 at some scored position.
- ``global_topk``: the k largest entries over all layers of the sample jointly.
Ties are broken deterministically: larger value first, then lower layer, then lower unit index.
``positive_only`` restricts topk/global_topk to entries > 0 (an SAE feature at 0 is inactive, never key).

The engine feeds a run's scores through one :class:`Selector` (:func:`make_selector`): per (batch, layer) a
:class:`LayerScores` accumulates the chunk reductions, then the selector turns them into key sets; topscore and
positive read the per-unit maxima, topk the candidate entries, and global_topk keeps each layer's candidates and
decides across layers at the end of the run (:meth:`Selector.finish`).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from saemui.rules import MODES, KeyRule  # noqa: F401  (re-exported: KeyRule's historical home)

if TYPE_CHECKING:
    from saemui.counter import UtilizationCounter


def topk_entries(values_E: torch.Tensor, keys_E: torch.Tensor, k: int, positive_only: bool) -> torch.Tensor:
    """Indices into E of the k best entries under (value desc, key asc); keys encode (layer, unit) order.

    torch.topk's tie order is unspecified, so it only finds the k-th value; the boundary is then resolved
    explicitly among the (few) entries tied with it.
    """
    valid = torch.isfinite(values_E)
    if positive_only:
        valid &= values_E > 0
    idx = valid.nonzero().squeeze(1)
    if idx.numel() <= k:
        return idx
    v = values_E[idx]
    kth = torch.topk(v, k, sorted=False).values.min()
    above = idx[v > kth]
    tied = idx[v == kth]
    tied = tied[torch.argsort(keys_E[tied], stable=True)][: k - above.numel()]
    return torch.cat([above, tied])


Cands = list[list[tuple[torch.Tensor, torch.Tensor]]]  # per sample: parts of (units, values) candidates


def reduce_scores(
    scores_NU: torch.Tensor, seg_N: torch.Tensor, n_seg: int, k: int | None, positive_only: bool = False
) -> tuple[torch.Tensor, torch.Tensor, Cands | None]:
    """Per-sample summaries of one layer's scores over scored tokens (``seg_N`` sorted: samples are contiguous).

    Returns max_SU (per-unit max, -inf for samples without tokens), fire_U (tokens with score > 0) and, when k is
    given, per sample the candidate entries (units, values) with value ≥ its k-th largest value — every entry
    that can be among the sample's top k, ties included, so chunks and layers merge exactly.
    """
    U = scores_NU.shape[1]
    s = scores_NU.float()
    max_SU = torch.full((n_seg, U), float("-inf"), device=s.device)
    # index_reduce_ over rows, not scatter_reduce_ with an expanded [N, U] index: same result, but scatter's CPU
    # kernel collapses when its threads compete for cores (60 ms vs 1 ms for 4000 × 1024 on a busy 2-core box;
    # it was the largest non-GEMM op in the profile, see docs/performance.md).
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"index_reduce\(\) is in beta")
        max_SU.index_reduce_(0, seg_N, s, "amax", include_self=True)
    fire_U = (s > 0).sum(0)
    cands: Cands | None = None
    if k is not None:
        cands = [[] for _ in range(n_seg)]
        counts = torch.bincount(seg_N, minlength=n_seg).tolist()
        off = 0
        for b, c in enumerate(counts):
            if c:
                flat = s[off : off + c].reshape(-1)
                cands[b].append(_candidates(flat, U, k, positive_only))
            off += c
    return max_SU, fire_U, cands


def _candidates(flat: torch.Tensor, U: int, k: int, positive_only: bool) -> tuple[torch.Tensor, torch.Tensor]:
    # Scores of scored tokens are finite (activations are checked upstream), so no -inf filtering is needed.
    if positive_only:
        idx = (flat > 0).nonzero().squeeze(1)
        vals = flat[idx]
    else:
        idx, vals = None, flat
    if vals.numel() > k:
        top = torch.topk(vals, k, sorted=False)
        kth = top.values.min()
        # Usually nothing else ties with the k-th value and topk's own indices are the candidates.
        keep = (
            top.indices
            if int((vals == kth).sum()) == int((top.values == kth).sum())
            else (vals >= kth).nonzero().squeeze(1)
        )
        vals = vals[keep]
        idx = keep if idx is None else idx[keep]
    elif idx is None:
        idx = torch.arange(vals.numel(), device=flat.device)
    return idx % U, vals


def merge_candidates(
    parts: list[tuple[torch.Tensor, torch.Tensor]], device=None
) -> tuple[torch.Tensor, torch.Tensor]:
    if not parts:
        e = torch.empty(0, dtype=torch.long, device=device)
        return e, torch.empty(0, device=device)
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


def select_from_max(max_SU: torch.Tensor, rule: KeyRule) -> torch.Tensor:
    """topscore / positive key sets from per-unit maxima: bool [S, U]."""
    if rule.mode == "positive":
        return max_SU > 0
    if rule.mode == "topscore":
        row_max = max_SU.max(dim=1, keepdim=True).values
        return (max_SU >= rule.eta * row_max) & (row_max > 0)
    raise ValueError(rule.mode)


@dataclass
class LayerScores:
    """One layer's scores over one batch, reduced chunk by chunk (see :func:`reduce_scores`).

    max_SU: per-unit max per sample; fire_U: tokens with score > 0; cands: per sample the top-k candidate entries
    (only when ``k`` is set).
    """

    max_SU: torch.Tensor
    fire_U: torch.Tensor
    cands: Cands
    k: int | None
    positive_only: bool

    @classmethod
    def empty(cls, n_seg: int, n_units: int, device, k: int | None, positive_only: bool) -> LayerScores:
        return cls(
            torch.full((n_seg, n_units), float("-inf"), device=device),
            torch.zeros(n_units, dtype=torch.int64, device=device),
            [[] for _ in range(n_seg)],
            k,
            positive_only,
        )

    def add(self, scores_nU: torch.Tensor, seg_n: torch.Tensor) -> None:
        m, f, c = reduce_scores(scores_nU, seg_n, len(self.cands), self.k, self.positive_only)
        self.max_SU = torch.maximum(self.max_SU, m)
        self.fire_U += f
        if c is not None:
            for b in range(len(self.cands)):
                self.cands[b].extend(c[b])


class Selector:
    """Key-unit selection of one rule over a run; :func:`make_selector` picks the subclass for the rule's mode."""

    def __init__(self, rule: KeyRule):
        self.rule = rule

    def k_for(self, n_units: int) -> int | None:
        """Top-k size of a layer of ``n_units`` units; None when the rule reads only the maxima."""
        return None

    def begin(self, n_seg: int, n_units: int, device) -> LayerScores:
        """An empty accumulator for one layer over a batch of ``n_seg`` samples."""
        return LayerScores.empty(n_seg, n_units, device, self.k_for(n_units), self.rule.positive_only)

    def key_sets(self, acc: LayerScores, layer: int, sample_index: Sequence[int]) -> torch.Tensor:
        """The batch's key sets of this layer, bool [S, U] (empty when the choice is deferred to :meth:`finish`)."""
        raise NotImplementedError

    def finish(self, counter: UtilizationCounter) -> None:
        """Add the choices deferred to the end of the run to the counter (nothing for per-layer rules)."""

    def state_dict(self) -> dict:
        """What a checkpoint must keep to resume (deferred candidates)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class MaxSelector(Selector):
    """topscore and positive: key sets from the per-unit maxima of each (sample, layer)."""

    def key_sets(self, acc: LayerScores, layer: int, sample_index: Sequence[int]) -> torch.Tensor:
        return select_from_max(acc.max_SU, self.rule)


class TopKSelector(Selector):
    """topk: the k best entries of each (sample, layer) from the merged candidates."""

    def k_for(self, n_units: int) -> int | None:
        return self.rule.k_for(n_units)

    def _chosen(self, acc: LayerScores):
        """Per sample of the batch: (units, values, chosen) with chosen indexing the sample's k best entries."""
        dev = acc.max_SU.device
        for b in range(len(acc.cands)):
            units, vals = merge_candidates(acc.cands[b], dev)
            yield units, vals, topk_entries(vals, units, acc.k, self.rule.positive_only)

    def key_sets(self, acc: LayerScores, layer: int, sample_index: Sequence[int]) -> torch.Tensor:
        key_SU = torch.zeros(acc.max_SU.shape, dtype=torch.bool, device=acc.max_SU.device)
        for b, (units, _, chosen) in enumerate(self._chosen(acc)):
            key_SU[b, units[chosen]] = True
        return key_SU


class GlobalTopKSelector(TopKSelector):
    """global_topk: keeps each layer's own top-k entries per sample; the k best across layers win at the end."""

    def __init__(self, rule: KeyRule):
        super().__init__(rule)
        #: sample index → parts of (layer ids, unit ids, values) on the CPU
        self.cands: dict[int, list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]] = {}

    def key_sets(self, acc: LayerScores, layer: int, sample_index: Sequence[int]) -> torch.Tensor:
        key_SU = torch.zeros(acc.max_SU.shape, dtype=torch.bool, device=acc.max_SU.device)
        for b, (units, vals, chosen) in enumerate(self._chosen(acc)):
            # Keep this layer's own top-k entries; the choice across layers is made at the end.
            self.cands.setdefault(sample_index[b], []).append(
                (torch.full((chosen.numel(),), layer), units[chosen].cpu(), vals[chosen].cpu())
            )
        return key_SU

    def finish(self, counter: UtilizationCounter) -> None:
        layers, n_units = counter.layers, counter.n_units
        k = self.rule.k_for(n_units)
        row = {lay: i for i, lay in enumerate(layers)}
        for s, parts in self.cands.items():
            lay = torch.cat([p[0] for p in parts])
            unit = torch.cat([p[1] for p in parts])
            val = torch.cat([p[2] for p in parts])
            rows = torch.tensor([row[int(x)] for x in lay], dtype=torch.long)
            chosen = topk_entries(val, rows * n_units + unit, k, self.rule.positive_only)
            for r in range(len(layers)):
                counter.add_key_units(s, r, unit[chosen][rows[chosen] == r])

    def state_dict(self) -> dict:
        return {str(k): [list(p) for p in v] for k, v in self.cands.items()}

    def load_state_dict(self, state: dict) -> None:
        self.cands = {int(k): [tuple(p) for p in v] for k, v in state.items()}


_SELECTORS = {
    "topscore": MaxSelector,
    "positive": MaxSelector,
    "topk": TopKSelector,
    "global_topk": GlobalTopKSelector,
}


def make_selector(rule: KeyRule) -> Selector:
    """The selector that applies ``rule`` over a run."""
    return _SELECTORS[rule.mode](rule)
