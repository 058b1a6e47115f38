"""Feature exploration: max-activating contexts, activation histograms, logit lens and run comparisons.

:class:`ContextCollector` is an engine :class:`~saemui.engine.Observer`: during the same streaming pass that
measures MUI it keeps, per (layer, unit), the ``n_contexts`` highest scores with where they occurred
(sample, token position), plus a histogram of the unit's positive scores over fixed log-spaced bins. Memory
is O(layers × units × n_contexts), independent of the number of tokens; two collectors over disjoint samples
merge exactly, like the utilization counter. It also records the token ids of every sample it sees, so the
contexts can be shown later without the samples file.

Ordering of contexts is deterministic: larger score first, then lower sample index, then lower position.
Only positive scores count (an SAE feature at 0 is inactive; a neuron with score ≤ 0 does not push the target
token), which is the same notion as the result's ``fire_LU``: a unit's histogram sums to its firing count.

:func:`explore_run` runs :func:`~saemui.engine.compute_mui` with a collector, adds logit-lens tokens for the
units a report shows, and saves ``contexts.npz`` next to the result. The view functions below return pandas
DataFrames (or matplotlib figures) for notebooks; :mod:`saemui.report` renders the same views as HTML.
"""

from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from saemui.engine import Observer, RunConfig, compute_mui
from saemui.errors import SaemuiError
from saemui.inputs import Batch
from saemui.io import atomic_write_bytes
from saemui.models import LoadedModel
from saemui.records import Sample
from saemui.result import MUIResult

log = logging.getLogger(__name__)

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
        return c


def load_contexts(run_dir: str | os.PathLike) -> ContextCollector | None:
    """The run's contexts, or None when the run was made without ``--explore``."""
    p = Path(run_dir) / CONTEXTS_FILE
    return ContextCollector.load(p) if p.is_file() else None


# -- directions and logit lens -------------------------------------------------------------------------


def unit_directions(
    lm: LoadedModel, layer: int, units: Sequence[int], sae=None, hook_name: str | None = None
):
    """Output directions in the residual stream, [R, d_model] float32.

    Neurons (``sae`` None): the down-projection columns ``W_down[:, i]``, the same vectors neuron scores use.
    SAE features: decoder rows ``W_dec[i]``; for SAEs on the MLP hidden layer (``mlp.hook_post`` /
    ``gate_act``), mapped through ``W_down`` into the residual stream.
    """
    idx = torch.as_tensor(list(units), dtype=torch.long)
    block = lm.arch.layers(lm.model)[layer]
    W_down_DI = lm.arch.w_down_DI(block).float().cpu()
    if sae is None:
        return W_down_DI[:, idx].T.contiguous()
    W_dec = sae.W_dec.detach().float().cpu()
    if W_dec.shape[0] == 0:
        raise SaemuiError(f"layer {layer}: SAE was loaded without its decoder")
    d = W_dec[idx]
    from saemui.capture import parse_site

    if hook_name and parse_site(hook_name)[1] in ("mlp_post", "gate_act"):
        d = d @ W_down_DI.T
    return d


def lens_ids(dirs_RD: torch.Tensor, W_U_VD: torch.Tensor, n: int = 10):
    """Top / bottom ``n`` vocabulary entries of ``W_U @ d`` per direction: (top_ids, top_vals, bot_ids, bot_vals)."""
    W = W_U_VD.detach().float().cpu()
    logits_RV = torch.as_tensor(dirs_RD).detach().float().cpu() @ W.T
    n = min(n, W.shape[0])
    top = torch.topk(logits_RV, n, dim=1)
    bot = torch.topk(-logits_RV, n, dim=1)
    return top.indices.numpy(), top.values.numpy(), bot.indices.numpy(), (-bot.values).numpy()


def logit_lens(direction: torch.Tensor, W_U: torch.Tensor, tokenizer, n: int = 10) -> pd.DataFrame:
    """Tokens whose unembedding aligns most (top) and least (bottom) with one unit's output direction.

    direction: [d_model] (a decoder row or a down-projection column, see :func:`unit_directions`);
    W_U: [vocab, d_model] unembedding (``LoadedModel.W_U_VD``). Plain ``W_U @ d``, no final norm, as in
    sae_vis and Neuronpedia. Columns: rank, top_token, top_logit, bottom_token, bottom_logit.
    """
    ti, tv, bi, bv = lens_ids(torch.as_tensor(direction).reshape(1, -1), W_U, n)
    return _lens_frame(ti[0], tv[0], bi[0], bv[0], lambda i: tokenizer.decode([int(i)]))


def _lens_frame(ti, tv, bi, bv, text) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "rank": np.arange(1, len(ti) + 1),
            "top_token": [text(i) for i in ti],
            "top_logit": np.asarray(tv, float),
            "bottom_token": [text(i) for i in bi],
            "bottom_logit": np.asarray(bv, float),
        }
    )


def stored_logit_lens(ctx: ContextCollector, layer: int, unit: int) -> pd.DataFrame | None:
    """The logit-lens table saved with the contexts for this unit (None if it was not computed)."""
    t = ctx.lens.get((layer, unit))
    return None if t is None else _lens_frame(*t, ctx.token_text)


# -- views ---------------------------------------------------------------------------------------------


def _row(result: MUIResult, layer: int) -> int:
    if layer not in result.layers:
        raise SaemuiError(f"layer {layer} not in this result (layers {result.layers})")
    return result.layers.index(layer)


def top_features(result: MUIResult, layer: int, by: str = "fire", n: int = 10) -> pd.DataFrame:
    """The layer's top units by firing count (``fire``) or by key-set frequency (``keyfreq``).

    Columns: layer, unit, fire (scored tokens with score > 0), fire_rate (of the layer's scored tokens),
    keyfreq (samples in whose key set the unit is), key_rate (of all samples), key (in the MUI union).
    Only units with a non-zero count are listed; ties go to the other count, then the lower unit id.
    """
    if by not in ("fire", "keyfreq"):
        raise SaemuiError(f"by={by!r}: expected 'fire' or 'keyfreq'")
    r = _row(result, layer)
    fire = result.arrays["fire_LU"][r].astype(np.int64)
    kf = result.arrays["keyfreq_LU"][r].astype(np.int64)
    main, other = (fire, kf) if by == "fire" else (kf, fire)
    cand = np.nonzero(main > 0)[0]
    order = np.lexsort((cand, -other[cand], -main[cand]))[:n]
    u = cand[order]
    n_tok = max(int(result.arrays["n_tokens_L"][r]), 1)
    n_s = max(int(result.summary["n_samples"]), 1)
    return pd.DataFrame(
        {
            "layer": layer,
            "unit": u,
            "fire": fire[u],
            "fire_rate": fire[u] / n_tok,
            "keyfreq": kf[u],
            "key_rate": kf[u] / n_s,
            "key": result.arrays["union_LU"][r][u].astype(bool),
        }
    )


def context_tokens(
    ctx: ContextCollector, sample: int, pos: int, window: int = 8
) -> tuple[list[tuple[int, str, bool]], int]:
    """Tokens around a position as (position, text, is_prompt), and the index of ``pos`` in that list."""
    ids = ctx.tokens.get(sample)
    if ids is None:
        raise SaemuiError(f"no tokens recorded for sample {sample}")
    lo, hi = max(0, pos - window), min(len(ids), pos + window + 1)
    first = ctx.first_scored.get(sample, 0)
    return [(p, ctx.token_text(ids[p]), p < first) for p in range(lo, hi)], pos - lo


def feature_contexts(
    ctx: ContextCollector, layer: int, unit: int, window: int = 8, result: MUIResult | None = None
) -> pd.DataFrame:
    """The unit's max-activating contexts, best first.

    Columns: rank, value (the unit's score), sample (index), sample_id (with ``result``), pos (token
    position), left / token / right (decoded text around the scored token; ``token`` is the highlighted one),
    next_token (the token after it: the neuron's target under the ``predicting`` alignment), text (the
    window with the scored token in [[brackets]]).
    """
    rows = []
    ids = {s["index"]: s["id"] for s in result.samples} if result is not None else {}
    for rank, (v, s, p) in enumerate(ctx.top(layer, unit), 1):
        toks, i = context_tokens(ctx, s, p, window)
        left = "".join(t for _, t, _ in toks[:i])
        right = "".join(t for _, t, _ in toks[i + 1 :])
        rows.append(
            {
                "rank": rank,
                "value": v,
                "sample": s,
                "sample_id": ids.get(s),
                "pos": p,
                "left": left,
                "token": toks[i][1],
                "right": right,
                "next_token": toks[i + 1][1] if i + 1 < len(toks) else "",
                "text": f"{left}[[{toks[i][1]}]]{right}",
            }
        )
    cols = ["rank", "value", "sample", "sample_id", "pos", "left", "token", "right", "next_token", "text"]
    return pd.DataFrame(rows, columns=cols)


def _check_comparable(a: MUIResult, b: MUIResult) -> list[int]:
    if a.n_units != b.n_units:
        raise SaemuiError(f"runs have {a.n_units} and {b.n_units} units per layer: not the same unit basis")
    if a.summary["units"]["kind"] != b.summary["units"]["kind"]:
        raise SaemuiError("one run measures SAE features, the other neurons: units are not comparable")
    common = [lay for lay in a.layers if lay in b.layers]
    if not common:
        raise SaemuiError(f"runs share no layers ({a.layers} vs {b.layers})")
    return common


def compare_runs(a: MUIResult, b: MUIResult) -> pd.DataFrame:
    """Per common layer: key units of A and B (their MUI unions), shared, only-A, only-B and Jaccard.

    The units must be the same basis (the same SAEs, or neurons of models with the same architecture);
    the last row (layer "all") pools every common layer.
    """
    rows = []
    tot = np.zeros(5, np.int64)
    for layer in _check_comparable(a, b):
        ua = a.arrays["union_LU"][a.layers.index(layer)].astype(bool)
        ub = b.arrays["union_LU"][b.layers.index(layer)].astype(bool)
        c = np.array([ua.sum(), ub.sum(), (ua & ub).sum(), (ua & ~ub).sum(), (~ua & ub).sum()])
        tot += c
        rows.append([layer, *c])
    rows.append(["all", *tot])
    df = pd.DataFrame(rows, columns=["layer", "n_a", "n_b", "shared", "only_a", "only_b"])
    union = df["shared"] + df["only_a"] + df["only_b"]
    df["jaccard"] = np.where(union > 0, df["shared"] / union.where(union > 0, 1), np.nan)
    return df


def unique_features(a: MUIResult, b: MUIResult, n: int = 10) -> pd.DataFrame:
    """Key units of A that are never key in B and vice versa, ranked by their key rate in their own run.

    Columns: side ("a" or "b"), layer, unit, keyfreq, key_rate (in the run where the unit is key),
    fire_rate_other (how often it fires at all in the other run: 0 means truly silent there).
    """
    rows = []
    for side, x, y in (("a", a, b), ("b", b, a)):
        cand = []
        for layer in _check_comparable(x, y):
            rx, ry = x.layers.index(layer), y.layers.index(layer)
            only = np.nonzero(x.arrays["union_LU"][rx] & ~y.arrays["union_LU"][ry])[0]
            kf = x.arrays["keyfreq_LU"][rx][only]
            fo = y.arrays["fire_LU"][ry][only] / max(int(y.arrays["n_tokens_L"][ry]), 1)
            cand += [(int(k), layer, int(u), float(f)) for k, u, f in zip(kf, only, fo)]
        cand.sort(key=lambda t: (-t[0], t[1], t[2]))
        ns = max(int(x.summary["n_samples"]), 1)
        rows += [(side, lay, u, k, k / ns, f) for k, lay, u, f in cand[:n]]
    return pd.DataFrame(rows, columns=["side", "layer", "unit", "keyfreq", "key_rate", "fire_rate_other"])


def _bh(p: np.ndarray) -> np.ndarray:
    """Benjamini–Hochberg adjusted p-values (q-values)."""
    m = len(p)
    if not m:
        return p
    o = np.argsort(p)
    q = p[o] * m / np.arange(1, m + 1)
    q = np.minimum.accumulate(q[::-1])[::-1]
    out = np.empty(m)
    out[o] = np.minimum(q, 1.0)
    return out


def correct_vs_incorrect(result: MUIResult, layers: Sequence[int] | None = None) -> pd.DataFrame:
    """Units whose key-set frequency differs between correct and incorrect responses.

    For every unit that is key in at least one labelled sample: a 2×2 table (key / not key × correct /
    incorrect) and Fisher's exact test (two-sided); q is Benjamini–Hochberg over all tested units. Columns:
    layer, unit, n_correct_key, n_incorrect_key, freq_correct, freq_incorrect, diff (= freq_correct −
    freq_incorrect), odds_ratio, p, q. Sorted by p, then |diff| descending.
    """
    from scipy.stats import fisher_exact

    corr = [i for i, s in enumerate(result.samples) if s.get("correct") is True]
    inc = [i for i, s in enumerate(result.samples) if s.get("correct") is False]
    if not corr or not inc:
        raise SaemuiError(
            f"need correct and incorrect labelled samples (have {len(corr)} correct, {len(inc)} incorrect)"
        )
    ip, units = result._sets()
    L, U = len(result.layers), result.n_units
    rows = []
    for layer in layers if layers is not None else result.layers:
        r = _row(result, layer)
        counts = []
        for group in (corr, inc):
            c = np.zeros(U, np.int64)
            for s in group:
                c[units[ip[s * L + r] : ip[s * L + r + 1]]] += 1
            counts.append(c)
        cc, ci = counts
        for u in np.nonzero((cc + ci) > 0)[0]:
            a, b = int(cc[u]), int(ci[u])
            odds, p = fisher_exact([[a, len(corr) - a], [b, len(inc) - b]])
            rows.append(
                [layer, int(u), a, b, a / len(corr), b / len(inc), a / len(corr) - b / len(inc), odds, p]
            )
    cols = ["layer", "unit", "n_correct_key", "n_incorrect_key", "freq_correct", "freq_incorrect", "diff"]
    df = pd.DataFrame(rows, columns=[*cols, "odds_ratio", "p"])
    df["q"] = _bh(df["p"].to_numpy(float))
    df["_abs"] = -df["diff"].abs()
    return (
        df.sort_values(["p", "_abs", "layer", "unit"], kind="stable")
        .drop(columns="_abs")
        .reset_index(drop=True)
    )


# -- figures -------------------------------------------------------------------------------------------


def plot_layer_mui(results: Sequence[MUIResult], names: Sequence[str] | None = None):
    """Grouped bars of per-layer MUI (%) for one or more runs; returns a matplotlib Figure."""
    from saemui.plots import _figure

    names = list(names) if names is not None else [f"run {i}" for i in range(len(results))]
    fig, (ax,) = _figure(max(6.0, 0.25 * max(len(r.layers) for r in results) * len(results)), 3.5)
    w = 0.8 / len(results)
    for j, (r, name) in enumerate(zip(results, names)):
        x = np.asarray(r.layers, float) + (j - (len(results) - 1) / 2) * w
        ax.bar(x, 100 * np.asarray(r.per_layer), w, label=str(name))
    ax.set_xlabel("layer")
    ax.set_ylabel("MUI per layer (%)")
    ax.legend(fontsize=8)
    return fig


def plot_histogram(ctx: ContextCollector, layer: int, unit: int):
    """The unit's activation histogram (positive scores, log-spaced bins); returns a matplotlib Figure."""
    from saemui.plots import _figure

    counts, edges = ctx.histogram(layer, unit)
    fig, (ax,) = _figure(5, 3)
    lo = np.r_[edges[1] / 10**0.25, edges[1:-1]]
    hi = np.r_[edges[1:-1], edges[-2] * 10**0.25]
    ax.bar(lo, counts, width=hi - lo, align="edge")
    ax.set_xscale("log")
    ax.set_xlabel("score (first/last bar: under/overflow)")
    ax.set_ylabel("tokens")
    ax.set_title(f"layer {layer} unit {unit}: {int(counts.sum())} firing tokens")
    return fig


# -- running -------------------------------------------------------------------------------------------


def report_units(result: MUIResult, layer: int, n_top: int) -> list[int]:
    """Units a report shows for a layer: the MUI union plus the top ``n_top`` by fire and by keyfreq."""
    r = _row(result, layer)
    u = set(np.nonzero(result.arrays["union_LU"][r])[0].tolist())
    for by in ("fire", "keyfreq"):
        u.update(top_features(result, layer, by, n_top)["unit"].tolist())
    return sorted(int(x) for x in u)


def neuronpedia_ids(result: MUIResult, ctx: ContextCollector | None = None) -> dict[int, str]:
    """Layer → Neuronpedia SAE id (e.g. ``gemma-2-2b/20-gemmascope-res-16k``) for sae-lens registry SAEs.

    From the contexts' metadata when recorded, else from the sae-lens registry (a file shipped with
    sae-lens: no network). Empty for neurons and local SAEs.
    """
    if ctx is not None and ctx.meta.get("neuronpedia"):
        return {int(k): v for k, v in ctx.meta["neuronpedia"].items() if v}
    src = result.summary["units"].get("sae_source") or {}
    if src.get("kind") != "sae-lens-registry":
        return {}
    try:
        from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

        lookup = get_pretrained_saes_directory().get(src.get("release"))
    except Exception:  # an optional nicety: never fail a report over it
        return {}
    np_ids = (getattr(lookup, "neuronpedia_id", None) or {}) if lookup else {}
    return {int(k): np_ids[sid] for k, sid in (src.get("ids") or {}).items() if np_ids.get(sid)}


def explore_run(
    lm: LoadedModel,
    samples: Sequence[Sample],
    config: RunConfig | None = None,
    out: str | os.PathLike | None = None,
    n_contexts: int = 12,
    n_top: int = 10,
    n_lens: int = 10,
    units: Mapping[int, Sequence[int]] | None = None,
    progress: bool = True,
) -> tuple[MUIResult, ContextCollector]:
    """MUI plus contexts in one pass; with ``out``, saves the result and ``out/contexts.npz``.

    Logit-lens tokens (``n_lens`` each side) are computed for :func:`report_units` (union + ``n_top`` per
    ranking), the units a report shows; ``units`` optionally restricts context collection (see
    :class:`ContextCollector`).
    """
    cfg = (config or RunConfig()).resolved()
    coll = ContextCollector(n_contexts, units)
    result = compute_mui(lm, samples, cfg, progress=progress, observers=[coll])
    coll.meta.update({"alignment": cfg.alignment, "units_kind": cfg.units})
    saes = {}
    if cfg.units == "sae":
        from saemui.saes import open_suite

        suite = open_suite(cfg.saes, target_l0=cfg.target_l0)
        saes = {e.layer: e for e in suite.entries if e.layer in result.layers}
        coll.meta["neuronpedia"] = {
            str(e.layer): e.meta.get("neuronpedia_id") for e in saes.values() if e.meta.get("neuronpedia_id")
        }
    W_U = lm.W_U_VD
    for layer in result.layers:
        us = report_units(result, layer, n_top)
        if not us:
            continue
        if cfg.units == "sae":
            e = saes[layer]
            sae = e.load("cpu", "float32", False)
            dirs = unit_directions(lm, layer, us, sae, e.hook_name)
            del sae
        else:
            dirs = unit_directions(lm, layer, us)
        coll.add_logit_lens(layer, us, *lens_ids(dirs, W_U, n_lens))
    coll.add_vocab(lm.tokenizer)
    if out is not None:
        result.save(out)
        coll.save(Path(out) / CONTEXTS_FILE)
    return result, coll
