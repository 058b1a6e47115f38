"""Max-activating contexts and activation histograms per (layer, unit), collected during a MUI run.

:class:`ContextCollector` is an engine :class:`~saemui.engine.Observer`: during the same streaming pass that
measures MUI it keeps, per (layer, unit), the ``n_contexts`` highest scores with where they occurred
(sample, token position), plus a histogram of the unit's positive scores over fixed log-spaced bins. Memory
is O(layers × units × n_contexts), independent of the number of tokens; two collectors over disjoint samples
merge exactly, like the utilization counter. It also records the token ids of every sample it sees, so the
contexts can be shown later without the samples file. It is saved as ``contexts.npz`` (format
``saemui-contexts/1``) next to the run's result.

Ordering of contexts is deterministic: larger score first, then lower sample index, then lower position.
Only positive scores count (an SAE feature at 0 is inactive; a neuron with score ≤ 0 does not push the target
token), which is the same notion as the result's ``fire_LU``: a unit's histogram sums to its firing count.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from saemui.engine import Observer
from saemui.errors import SaemuiError
from saemui.inputs import Batch
from saemui.io import atomic_write_bytes

CONTEXTS_FORMAT = "saemui-contexts/1"
CONTEXTS_FILE = "contexts.npz"
# Positive scores span many decades (neuron logit contributions ~1e-3, SAE activations ~1e2): 24 log-spaced
# bins from 1e-3 to 1e3, plus one underflow (0, 1e-3) and one overflow [1e3, inf) bin.
HIST_INNER = 10.0 ** np.linspace(-3.0, 3.0, 25)
HIST_EDGES = np.concatenate([[0.0], HIST_INNER, [np.inf]])
N_BINS = len(HIST_EDGES) - 1
_KEY_NONE = torch.iinfo(torch.int64).max
_POS_BITS = 32  # key = sample << 32 | position: one int64 orders contexts by (sample, position)


@dataclass
class _LayerState:
    """Streaming state of one layer.

    n_units: units of the layer; units: tracked unit ids (sorted) or None for all units.
    vals_RN: top scores per tracked unit, descending (-inf = empty slot); keys_RN: their sample<<32|position
    (_KEY_NONE for empty slots); hist_RB: counts of positive scores per histogram bin.
    """

    n_units: int
    units: torch.Tensor | None
    vals_RN: torch.Tensor
    keys_RN: torch.Tensor
    hist_RB: torch.Tensor

    @classmethod
    def empty(cls, n_units: int, units: torch.Tensor | None, n: int, device) -> _LayerState:
        R = n_units if units is None else int(units.numel())
        return cls(
            n_units,
            units,
            torch.full((R, n), float("-inf"), device=device),
            torch.full((R, n), _KEY_NONE, dtype=torch.int64, device=device),
            torch.zeros((R, N_BINS), dtype=torch.int64, device=device),
        )

    def row(self, unit: int) -> int | None:
        if self.units is None:
            return unit if 0 <= unit < self.n_units else None
        i = int(torch.searchsorted(self.units.cpu(), unit))
        return i if i < self.units.numel() and int(self.units[i]) == unit else None

    def unit_ids(self) -> np.ndarray:
        return np.arange(self.n_units) if self.units is None else self.units.cpu().numpy()


def _select(vals: torch.Tensor, keys: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row the n best (value desc, key asc) entries; two stable sorts make ties deterministic."""
    o = torch.argsort(keys, dim=1, stable=True)
    vals, keys = vals.gather(1, o), keys.gather(1, o)
    o = torch.argsort(vals, dim=1, descending=True, stable=True)
    return vals.gather(1, o)[:, :n].contiguous(), keys.gather(1, o)[:, :n].contiguous()


def _chunk_top(vals_nA: torch.Tensor, key_n: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every entry of the chunk that can be among a unit's n best, as [A, min(n, chunk)] (values, keys).

    Works along the token axis of the [tokens, units] chunk so the large matrix is never transposed.
    """
    k = min(n, vals_nA.shape[0])
    top = torch.topk(vals_nA, k, dim=0)
    cv, ck = top.values.T.contiguous(), key_n[top.indices].T.contiguous()
    kth = cv[:, -1]
    # topk picks arbitrarily among entries tied with the k-th value; such units (rare with real scores) are
    # resolved exactly by sorting their whole column.
    ties = torch.isfinite(kth) & ((vals_nA == kth).sum(0) > (cv == kth[:, None]).sum(1))
    if bool(ties.any()):
        r = ties.nonzero().squeeze(1)
        ev, ek = _select(vals_nA[:, r].T, key_n.expand(len(r), -1), k)
        cv[r], ck[r] = ev, ek
    return cv, torch.where(torch.isfinite(cv), ck, torch.full_like(ck, _KEY_NONE))


class ContextCollector(Observer):
    """Bounded top-N contexts and activation histograms per (layer, unit), fed by the engine.

    n_contexts: contexts kept per unit.
    units: optional layer → unit ids to track (bounds memory for wide SAEs); layers missing from a given
        mapping are not tracked at all. None tracks every unit of every layer.
    tokens / first_scored: per original sample index, its token ids (prompt + response) and the first scored
        position (positions before it are prompt); recorded from the batches.
    vocab: token id → decoded text for the ids needed to show contexts and logit-lens tokens (see add_vocab).
    lens: (layer, unit) → (top_ids, top_vals, bottom_ids, bottom_vals) logit-lens arrays (see add_logit_lens).
    meta: free JSON-able facts saved with the contexts (alignment, units kind, Neuronpedia ids).
    """

    def __init__(self, n_contexts: int = 12, units: Mapping[int, Sequence[int]] | None = None):
        if n_contexts < 1:
            raise SaemuiError(f"n_contexts={n_contexts}: expected at least 1")
        self.n_contexts = int(n_contexts)
        self.units = (
            None
            if units is None
            else {int(k): torch.as_tensor(np.unique(np.asarray(v, dtype=np.int64))) for k, v in units.items()}
        )
        self.state: dict[int, _LayerState] = {}
        self.tokens: dict[int, np.ndarray] = {}
        self.first_scored: dict[int, int] = {}
        self.vocab: dict[int, str] = {}
        self.lens: dict[tuple[int, int], tuple[np.ndarray, ...]] = {}
        self.meta: dict = {}
        # (layer, unit) → contexts a report shows (one per sample, with per-token scores); see TokenScoreRecorder
        self.shown: dict[tuple[int, int], list[ShownContext]] = {}
        self._inner: torch.Tensor | None = None

    # -- streaming -------------------------------------------------------------------------------------
    def _layer(self, layer: int, n_units: int, device) -> _LayerState | None:
        st = self.state.get(layer)
        if st is None:
            if self.units is not None and layer not in self.units:
                return None
            units = None if self.units is None else self.units[layer].to(device)
            if units is not None and units.numel() and int(units.max()) >= n_units:
                raise SaemuiError(f"layer {layer}: tracked unit {int(units.max())} ≥ its {n_units} units")
            st = self.state[layer] = _LayerState.empty(n_units, units, self.n_contexts, device)
        elif st.n_units != n_units:
            raise SaemuiError(f"layer {layer}: scores have {n_units} units, the collector saw {st.n_units}")
        return st

    def observe(self, layer: int, batch: Batch, offset: int, scores_nU: torch.Tensor) -> None:
        n, U = scores_nU.shape
        if n == 0:
            return
        dev = scores_nU.device
        st = self._layer(layer, U, dev)
        if st is None:
            return
        self._record_tokens(batch)
        rows = slice(offset, offset + n)
        sample_n = torch.as_tensor(batch.sample_index, device=dev)[batch.seg_N[rows].to(dev)]
        pos_n = batch.position_ids_BT.reshape(-1)[batch.flat_N[rows]].to(dev)
        key_n = (sample_n.long() << _POS_BITS) | pos_n.long()
        s = scores_nU if st.units is None else scores_nU.index_select(1, st.units)
        R = s.shape[1]
        fired = s > 0
        active = fired.any(0).nonzero().squeeze(1)
        if active.numel() == 0:
            return
        ti, ui = fired.nonzero(as_tuple=True)
        if self._inner is None or self._inner.device != dev:
            self._inner = torch.as_tensor(HIST_INNER, dtype=torch.float32, device=dev)
        b = torch.bucketize(s[ti, ui], self._inner, right=True)
        st.hist_RB += torch.bincount(ui * N_BINS + b, minlength=R * N_BINS).view(R, N_BINS)
        # Only units that fired in this chunk can change their top-N (few of them for SAEs).
        if active.numel() == R:
            sub = s.masked_fill(~fired, float("-inf"))
        else:
            sub = s[:, active].masked_fill(~fired[:, active], float("-inf"))
        cv, ck = _chunk_top(sub, key_n, self.n_contexts)
        mv, mk = _select(
            torch.cat([st.vals_RN[active], cv], 1), torch.cat([st.keys_RN[active], ck], 1), self.n_contexts
        )
        st.vals_RN[active], st.keys_RN[active] = mv, mk

    def _record_tokens(self, batch: Batch) -> None:
        new = [b for b, s in enumerate(batch.sample_index) if s not in self.tokens]
        if not new:
            return
        ids = batch.input_ids_BT.cpu()
        mask = batch.attention_mask_BT.cpu().bool()
        pos = batch.position_ids_BT.reshape(-1)[batch.flat_N].cpu()
        seg = batch.seg_N.cpu()
        for b in new:
            s = batch.sample_index[b]
            self.tokens[s] = ids[b][mask[b]].numpy().astype(np.int32)
            p = pos[seg == b]
            self.first_scored[s] = int(p.min()) if p.numel() else len(self.tokens[s])

    # -- combining -------------------------------------------------------------------------------------
    def merge(self, other: ContextCollector) -> ContextCollector:
        """Add another collector's contexts (over disjoint samples) into this one; returns self."""
        if other.n_contexts != self.n_contexts:
            raise SaemuiError(
                f"cannot merge collectors keeping {self.n_contexts} and {other.n_contexts} contexts"
            )
        overlap = set(self.tokens) & set(other.tokens)
        if overlap:
            raise SaemuiError(f"cannot merge collectors that share samples (e.g. {sorted(overlap)[:3]})")
        for layer, o in other.state.items():
            st = self.state.get(layer)
            if st is None:
                self.state[layer] = _LayerState(
                    o.n_units,
                    None if o.units is None else o.units.clone(),
                    o.vals_RN.clone(),
                    o.keys_RN.clone(),
                    o.hist_RB.clone(),
                )
                continue
            same = (st.units is None and o.units is None) or (
                st.units is not None and o.units is not None and torch.equal(st.units.cpu(), o.units.cpu())
            )
            if st.n_units != o.n_units or not same:
                raise SaemuiError(f"layer {layer}: the collectors track different units")
            dev = st.vals_RN.device
            st.vals_RN, st.keys_RN = _select(
                torch.cat([st.vals_RN, o.vals_RN.to(dev)], 1),
                torch.cat([st.keys_RN, o.keys_RN.to(dev)], 1),
                self.n_contexts,
            )
            st.hist_RB += o.hist_RB.to(dev)
        self.tokens.update(other.tokens)
        self.first_scored.update(other.first_scored)
        self.vocab.update(other.vocab)
        self.lens.update(other.lens)
        self.shown.update(other.shown)
        for k, v in other.meta.items():
            self.meta.setdefault(k, v)
        return self

    # -- reading ---------------------------------------------------------------------------------------
    @property
    def layers(self) -> list[int]:
        return sorted(self.state)

    def has(self, layer: int, unit: int) -> bool:
        st = self.state.get(layer)
        return st is not None and st.row(unit) is not None

    def _row(self, layer: int, unit: int) -> tuple[_LayerState, int]:
        st = self.state.get(layer)
        r = None if st is None else st.row(unit)
        if r is None:
            raise SaemuiError(f"no contexts collected for layer {layer} unit {unit}")
        return st, r

    def top(self, layer: int, unit: int) -> list[tuple[float, int, int]]:
        """The unit's kept contexts as (score, sample index, token position), best first."""
        st, r = self._row(layer, unit)
        v, k = st.vals_RN[r].cpu(), st.keys_RN[r].cpu()
        ok = torch.isfinite(v)
        return [
            (float(a), int(b) >> _POS_BITS, int(b) & ((1 << _POS_BITS) - 1))
            for a, b in zip(v[ok].tolist(), k[ok].tolist())
        ]

    def histogram(self, layer: int, unit: int) -> tuple[np.ndarray, np.ndarray]:
        """(counts [N_BINS], edges [N_BINS+1]) of the unit's positive scores."""
        st, r = self._row(layer, unit)
        return st.hist_RB[r].cpu().numpy(), HIST_EDGES.copy()

    def hist_LU(self, layer: int) -> np.ndarray:
        """Histogram counts of every tracked unit of a layer: [R, N_BINS] (rows follow the tracked units)."""
        return self.state[layer].hist_RB.cpu().numpy()

    def token_text(self, token_id: int) -> str:
        return self.vocab.get(int(token_id), f"<{int(token_id)}>")

    # -- extras ----------------------------------------------------------------------------------------
    def add_vocab(self, tokenizer, extra_ids: Sequence[int] = ()) -> None:
        """Decode every token id the contexts (and logit lens) can show, one token at a time."""
        ids = set(int(i) for i in extra_ids)
        for a in self.tokens.values():
            ids.update(int(i) for i in np.unique(a))
        for t in self.lens.values():
            ids.update(int(i) for i in t[0])
            ids.update(int(i) for i in t[2])
        for i in sorted(ids - set(self.vocab)):
            self.vocab[i] = tokenizer.decode([i])

    def add_logit_lens(
        self,
        layer: int,
        units: Sequence[int],
        top_ids: np.ndarray,
        top_vals: np.ndarray,
        bot_ids: np.ndarray,
        bot_vals: np.ndarray,
    ) -> None:
        """Store precomputed logit-lens tokens ([R, n] arrays, rows follow ``units``)."""
        for i, u in enumerate(units):
            self.lens[(int(layer), int(u))] = (
                np.asarray(top_ids[i], np.int32),
                np.asarray(top_vals[i], np.float32),
                np.asarray(bot_ids[i], np.int32),
                np.asarray(bot_vals[i], np.float32),
            )

    # -- files -----------------------------------------------------------------------------------------
    def arrays(self) -> dict[str, np.ndarray]:
        """The collector as flat numpy arrays (the contents of ``contexts.npz``)."""
        layers = self.layers
        tracked_all, tracked, tracked_n = [], [], [0]
        row_units, row_n, vals, samples, pos, hist = [], [0], [], [], [], []
        n_units = []
        for layer in layers:
            st = self.state[layer]
            n_units.append(st.n_units)
            tracked_all.append(st.units is None)
            if st.units is not None:
                tracked.append(st.units.cpu().numpy())
            tracked_n.append(tracked_n[-1] + (0 if st.units is None else int(st.units.numel())))
            h = st.hist_RB.cpu().numpy()
            # Rows of units that never fired are empty; they are re-created on load, not stored.
            keep = np.nonzero(h.sum(1) > 0)[0]
            row_units.append(st.unit_ids()[keep])
            row_n.append(row_n[-1] + len(keep))
            v = st.vals_RN.cpu().numpy()[keep]
            k = st.keys_RN.cpu().numpy()[keep]
            ok = np.isfinite(v)
            vals.append(v.astype(np.float32))
            samples.append(np.where(ok, k >> _POS_BITS, -1).astype(np.int32))
            pos.append(np.where(ok, k & ((1 << _POS_BITS) - 1), -1).astype(np.int32))
            hist.append(h[keep].astype(np.int32))
        N = self.n_contexts
        cat = lambda xs, shape, dt: np.concatenate(xs).astype(dt) if xs else np.zeros(shape, dt)  # noqa: E731
        tok_s = sorted(self.tokens)
        lens_keys = sorted(self.lens)
        nl = len(next(iter(self.lens.values()))[0]) if self.lens else 0
        lens_cols = [
            np.stack([self.lens[k][j] for k in lens_keys]) if lens_keys else np.zeros((0, nl))
            for j in range(4)
        ]
        vocab_ids = sorted(self.vocab)
        meta = dict(self.meta, format=CONTEXTS_FORMAT, n_contexts=N)
        return {
            "meta_json": np.array(json.dumps(meta, ensure_ascii=False)),
            "layers": np.asarray(layers, np.int64),
            "n_units": np.asarray(n_units, np.int64),
            "tracked_all": np.asarray(tracked_all, bool),
            "tracked_indptr": np.asarray(tracked_n, np.int64),
            "tracked_units": cat(tracked, (0,), np.int64),
            "row_indptr": np.asarray(row_n, np.int64),
            "row_units": cat(row_units, (0,), np.int64),
            "values": cat(vals, (0, N), np.float32),
            "sample": cat(samples, (0, N), np.int32),
            "pos": cat(pos, (0, N), np.int32),
            "hist": cat(hist, (0, N_BINS), np.int32),
            "hist_edges": HIST_EDGES,
            "tok_samples": np.asarray(tok_s, np.int64),
            "tok_indptr": np.concatenate([[0], np.cumsum([len(self.tokens[s]) for s in tok_s])]).astype(
                np.int64
            ),
            "tok_ids": cat([self.tokens[s] for s in tok_s], (0,), np.int32),
            "first_scored": np.asarray([self.first_scored[s] for s in tok_s], np.int64),
            "vocab_ids": np.asarray(vocab_ids, np.int64),
            "vocab_str": np.asarray([self.vocab[i] for i in vocab_ids], dtype=str),
            "lens_layer": np.asarray([k[0] for k in lens_keys], np.int64),
            "lens_unit": np.asarray([k[1] for k in lens_keys], np.int64),
            "lens_top_ids": lens_cols[0].astype(np.int32),
            "lens_top_vals": lens_cols[1].astype(np.float32),
            "lens_bot_ids": lens_cols[2].astype(np.int32),
            "lens_bot_vals": lens_cols[3].astype(np.float32),
            **shown_arrays(self.shown, SHOWN_WINDOW),
        }

    def save(self, path: str | os.PathLike, tokenizer=None) -> Path:
        """Write ``contexts.npz`` atomically (with ``tokenizer``: decode the token texts first)."""
        if tokenizer is not None:
            self.add_vocab(tokenizer)
        buf = io.BytesIO()
        np.savez_compressed(buf, **self.arrays())
        path = Path(path)
        atomic_write_bytes(path, buf.getvalue())
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> ContextCollector:
        """Read a ``contexts.npz`` (or a run directory holding one) back into a collector (state included)."""
        path = Path(path)
        if path.is_dir():
            path = path / CONTEXTS_FILE
        if not path.is_file():
            raise SaemuiError(f"{path}: no contexts file (run with `saemui run --explore`)")
        from saemui.readers import check_contexts, load_npz

        a = load_npz(path, "contexts file")
        meta = check_contexts(a, path, CONTEXTS_FORMAT, N_BINS)
        N = int(meta["n_contexts"])
        c = cls(N)
        c.meta = {k: v for k, v in meta.items() if k not in ("format", "n_contexts")}
        ti, ri = a["tracked_indptr"], a["row_indptr"]
        for i, layer in enumerate(a["layers"].tolist()):
            units = None if a["tracked_all"][i] else torch.as_tensor(a["tracked_units"][ti[i] : ti[i + 1]])
            st = _LayerState.empty(int(a["n_units"][i]), units, N, "cpu")
            rows_u = a["row_units"][ri[i] : ri[i + 1]]
            rows = rows_u if units is None else np.searchsorted(units.numpy(), rows_u)
            sl = slice(ri[i], ri[i + 1])
            v = torch.as_tensor(a["values"][sl])
            smp = torch.as_tensor(a["sample"][sl].astype(np.int64))
            ps = torch.as_tensor(a["pos"][sl].astype(np.int64))
            keys = torch.where(torch.isfinite(v), (smp << _POS_BITS) | ps, torch.full_like(smp, _KEY_NONE))
            idx = torch.as_tensor(rows, dtype=torch.long)
            st.vals_RN[idx], st.keys_RN[idx] = v, keys
            st.hist_RB[idx] = torch.as_tensor(a["hist"][sl].astype(np.int64))
            c.state[int(layer)] = st
            if units is not None:
                c.units = (c.units or {}) | {int(layer): units}
        ip = a["tok_indptr"]
        for j, s in enumerate(a["tok_samples"].tolist()):
            c.tokens[s] = a["tok_ids"][ip[j] : ip[j + 1]].astype(np.int32)
            c.first_scored[s] = int(a["first_scored"][j])
        c.vocab = dict(zip(a["vocab_ids"].tolist(), a["vocab_str"].tolist()))
        for j, (layer, u) in enumerate(zip(a["lens_layer"].tolist(), a["lens_unit"].tolist())):
            c.lens[(layer, u)] = (
                a["lens_top_ids"][j],
                a["lens_top_vals"][j],
                a["lens_bot_ids"][j],
                a["lens_bot_vals"][j],
            )
        c.shown = shown_from_arrays(a, path)
        return c


def load_contexts(run_dir: str | os.PathLike) -> ContextCollector | None:
    """The run's contexts, or None when the run was made without ``--explore``."""
    p = Path(run_dir) / CONTEXTS_FILE
    return ContextCollector.load(p) if p.is_file() else None


# -- shown contexts: one per sample, top and quantile-sampled, with per-token scores ------------------------


SHOWN_WINDOW = 16  # scores kept either side of a shown context's peak token


@dataclass(frozen=True)
class ShownContext:
    """A context a report shows for a unit: the unit's peak in one sample and its scores around that peak.

    kind: ``"top"`` (among the samples with the highest peaks) or ``"quantile"`` (a sample whose peak sits at
    ``quantile`` of the peaks over a fixed pseudo-random pool of samples); value: the peak score at ``pos``;
    scores: the unit's score on positions ``pos0 …`` (NaN where a token is not scored, e.g. the prompt).
    """

    kind: str
    quantile: float
    sample: int
    pos: int
    value: float
    pos0: int
    scores: np.ndarray


class TokenScoreRecorder(Observer):
    """Second pass of an exploration run: the scores of a few units (those a report shows) on every scored token,
    reduced per sample as each batch completes, so memory stays O(units × kept samples × tokens per sample).

    Per unit it keeps the ``n_top`` samples with the highest peak score and every sample of ``pool`` (a fixed
    pseudo-random subset of sample indices) where the unit fires; :meth:`shown` then picks at most one context
    per sample: the top ones, and up to ``n_quantile`` pool samples at evenly spaced quantiles of the pool's
    peaks (the lower part of the unit's activation distribution, not only its maximum).
    """

    def __init__(
        self,
        units: Mapping[int, Sequence[int]],
        pool: Sequence[int],
        n_top: int = 3,
        n_quantile: int = 3,
        window: int = SHOWN_WINDOW,
    ):
        self.units = {
            int(k): np.asarray(sorted(set(int(u) for u in v)), np.int64) for k, v in units.items() if len(v)
        }
        self.pool = set(int(s) for s in pool)
        self.n_top, self.n_quantile, self.window = int(n_top), int(n_quantile), int(window)
        # layer -> (samples of the batch being read, sample -> its chunks); a sample never spans two batches
        self._batch: dict[int, tuple[tuple[int, ...], dict[int, list]]] = {}
        # (layer, unit) -> sample -> (peak, peak position, positions, scores)
        self.kept: dict[tuple[int, int], dict[int, tuple[float, int, np.ndarray, np.ndarray]]] = {}

    def observe(self, layer: int, batch: Batch, offset: int, scores_nU: torch.Tensor) -> None:
        us = self.units.get(layer)
        n = scores_nU.shape[0]
        if us is None or n == 0:
            return
        cur = self._batch.get(layer)
        ident = tuple(batch.sample_index)
        if cur is None or cur[0] != ident:
            self._flush(layer)
            cur = self._batch[layer] = (ident, {})
        rows = slice(offset, offset + n)
        seg = batch.seg_N[rows].cpu().numpy()
        sample_n = np.asarray(batch.sample_index)[seg]
        pos_n = batch.position_ids_BT.reshape(-1)[batch.flat_N[rows]].cpu().numpy()
        vals = scores_nU.index_select(1, torch.as_tensor(us, device=scores_nU.device)).float().cpu().numpy()
        for s in np.unique(sample_n):
            m = sample_n == s
            cur[1].setdefault(int(s), []).append((pos_n[m], vals[m]))

    def _flush(self, layer: int) -> None:
        cur = self._batch.pop(layer, None)
        if cur is None:
            return
        us = self.units[layer]
        for s, parts in cur[1].items():
            pos = np.concatenate([p for p, _ in parts])
            val = np.concatenate([v for _, v in parts])
            o = np.argsort(pos, kind="stable")
            pos, val = pos[o], val[o]
            for j, u in enumerate(us.tolist()):
                col = val[:, j]
                i = int(np.argmax(col))
                peak = float(col[i])
                if peak <= 0:  # the unit does not fire on this sample
                    continue
                kept = self.kept.setdefault((layer, u), {})
                entry = (peak, int(pos[i]), pos, col.copy())
                if s in self.pool:
                    kept[s] = entry
                    continue
                tops = sorted((k for k in kept if k not in self.pool), key=lambda k: (-kept[k][0], k))
                if len(tops) < self.n_top:
                    kept[s] = entry
                elif (-peak, s) < (-kept[tops[-1]][0], tops[-1]):
                    del kept[tops[-1]]
                    kept[s] = entry

    def finish(self) -> None:
        for layer in list(self._batch):
            self._flush(layer)

    def shown(self) -> dict[tuple[int, int], list[ShownContext]]:
        """(layer, unit) → its contexts: top first (best first), then quantile samples (highest first)."""
        self.finish()
        out: dict[tuple[int, int], list[ShownContext]] = {}
        W = self.window
        for key, kept in sorted(self.kept.items()):
            order = sorted(kept, key=lambda k: (-kept[k][0], k))
            top = order[: self.n_top]
            rest = [s for s in order if s in self.pool and s not in top]
            chosen = [("top", float(i), s) for i, s in enumerate(top)]
            if rest and self.n_quantile > 0:
                # quantiles of the pool's peaks, from high to low, spread over the pool (one sample each)
                peaks = sorted((kept[s][0], s) for s in kept if s in self.pool)
                qs = np.linspace(0.75, 0.25, self.n_quantile) if self.n_quantile > 1 else np.array([0.5])
                seen = set(top)
                for q in qs:
                    idx = int(round(q * (len(peaks) - 1)))
                    # nearest not yet shown sample at or below the quantile, else above it
                    cand = [peaks[i][1] for i in [*range(idx, -1, -1), *range(idx + 1, len(peaks))]]
                    s = next((c for c in cand if c not in seen), None)
                    if s is not None:
                        seen.add(s)
                        chosen.append(("quantile", float(q), s))
            ctxs = []
            for kind, q, s in chosen:
                peak, p, pos, col = kept[s]
                lo = p - W
                win = np.full(2 * W + 1, np.nan, np.float32)
                m = (pos >= lo) & (pos <= p + W)
                win[pos[m] - lo] = col[m]
                ctxs.append(ShownContext(kind, q, int(s), int(p), peak, int(lo), win))
            out[key] = ctxs
        return out


def shown_arrays(
    shown: Mapping[tuple[int, int], Sequence[ShownContext]], window: int
) -> dict[str, np.ndarray]:
    """Flat arrays of the shown contexts (optional members of ``contexts.npz``)."""
    rows = [(k, c) for k, cs in sorted(shown.items()) for c in cs]
    return {
        "shown_layer": np.asarray([k[0] for k, _ in rows], np.int64),
        "shown_unit": np.asarray([k[1] for k, _ in rows], np.int64),
        "shown_kind": np.asarray([c.kind == "quantile" for _, c in rows], bool),
        "shown_quantile": np.asarray([c.quantile for _, c in rows], np.float32),
        "shown_sample": np.asarray([c.sample for _, c in rows], np.int64),
        "shown_pos": np.asarray([c.pos for _, c in rows], np.int64),
        "shown_value": np.asarray([c.value for _, c in rows], np.float32),
        "shown_scores": (
            np.stack([c.scores for _, c in rows]).astype(np.float16)
            if rows
            else np.zeros((0, 2 * window + 1), np.float16)
        ),
    }


def shown_from_arrays(
    a: Mapping[str, np.ndarray], path: str | os.PathLike
) -> dict[tuple[int, int], list[ShownContext]]:
    """The shown contexts of a ``contexts.npz`` (empty for files written before they existed), checked."""
    names = [
        "shown_layer",
        "shown_unit",
        "shown_kind",
        "shown_quantile",
        "shown_sample",
        "shown_pos",
        "shown_value",
    ]
    if "shown_scores" not in a:
        return {}
    sc = a["shown_scores"]
    n = sc.shape[0] if sc.ndim == 2 else -1
    if n < 0 or sc.shape[1] % 2 != 1 or any(k not in a or a[k].shape != (n,) for k in names):
        raise SaemuiError(f"{path}: the shown_* arrays are damaged (shapes do not match shown_scores)")
    W = sc.shape[1] // 2
    out: dict[tuple[int, int], list[ShownContext]] = {}
    for i in range(n):
        p = int(a["shown_pos"][i])
        out.setdefault((int(a["shown_layer"][i]), int(a["shown_unit"][i])), []).append(
            ShownContext(
                "quantile" if a["shown_kind"][i] else "top",
                float(a["shown_quantile"][i]),
                int(a["shown_sample"][i]),
                p,
                float(a["shown_value"][i]),
                p - W,
                sc[i].astype(np.float32),
            )
        )
    return out
