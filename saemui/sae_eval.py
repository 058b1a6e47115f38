"""Honest SAE evaluation: sink tokens excluded by rule, streaming reconstruction statistics, CE-loss recovered and
KL with the reconstruction spliced into the model, and the same figures on the response tokens MUI reads.

Why each piece exists (measured on the shipped SmolLM2 bundle, see the SAE cards):
- **Sink tokens.** From layer ~11 on, position 0 and a few other tokens of SmolLM2 carry residual norms 30-170x
  the median; one such token held 71 % of a layer's variance. An SAE that reconstructs it scores FVE ≈ 0.99 and
  says nothing about the tokens MUI uses. :func:`sink_mask` drops position 0, special / chat-template tokens and
  any token whose norm exceeds ``norm_factor`` × the layer median, and counts what it dropped per reason so a card
  can print the rule and the share.
- **Streaming, mergeable statistics.** :class:`ReconStats` builds on the engine's SAE health
  (:class:`saemui.health.HealthAccumulator`, exact sums) and adds per-token errors and firing counts, so an
  evaluation over 50k+ tokens never holds the activations and ``a.merge(b)`` equals one pass over the
  concatenation (resumable and parallel evaluations add up exactly).
- **CE / KL.** FVE alone does not say whether the model still works on the reconstruction; :func:`ce_eval`
  splices x̂ at the SAE's layer (forward hook on the decoder block output, kept positions only) and compares
  next-token CE / KL with the clean run and with zero ablation of the same positions.
- **Response tokens.** :func:`batches_from_samples` encodes (prompt, response) records through
  :mod:`saemui.inputs`, so the evaluated positions are exactly the ones MUI scores.

Conventions: ``*_BT`` / ``*_ND`` suffixes give tensor shapes (B batch, T positions, N tokens, D model width,
F SAE features). An "SAE" is anything with ``encode(x_ND) -> feats_NF`` and ``decode(feats_NF) -> x_ND``
(sae-lens SAEs qualify).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from saemui.errors import SaemuiError
from saemui.health import HealthAccumulator
from saemui.models import LoadedModel, accepts_logits_to_keep
from saemui.records import Sample

SINK_REASONS = ("position0", "special", "high_norm")
DEFAULT_NORM_FACTOR = 20.0
DEFAULT_DENSE_THRESHOLD = 0.1
DEFAULT_QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


# ---------------------------------------------------------------------------------------------------------------
# sink tokens


@dataclass
class SinkCounts:
    """Tokens considered and dropped per reason (each dropped token counted once, under its first reason in
    ``SINK_REASONS`` order). Additive, so per-batch counts sum to the evaluation's."""

    n_tokens: int = 0
    dropped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SINK_REASONS, 0))

    def merge(self, other: SinkCounts) -> SinkCounts:
        self.n_tokens += other.n_tokens
        for r in SINK_REASONS:
            self.dropped[r] += other.dropped[r]
        return self

    @property
    def shares(self) -> dict[str, float]:
        n = max(self.n_tokens, 1)
        out = {r: self.dropped[r] / n for r in SINK_REASONS}
        out["total"] = sum(self.dropped.values()) / n
        return out

    def to_json(self) -> dict:
        return {"n_tokens": self.n_tokens, "dropped": dict(self.dropped), "shares": self.shares}


def sink_rule_text(norm_factor: float = DEFAULT_NORM_FACTOR) -> str:
    """The rule in words, for cards."""
    return (
        "excluded: position 0 of every sequence, special and chat-template tokens (BOS, EOS, <|im_start|>, ...), "
        f"and any token whose residual norm exceeds {norm_factor:g}x the median norm of the remaining tokens of "
        "that layer"
    )


def sink_mask(
    acts_BTD: torch.Tensor,
    input_ids_BT: torch.Tensor,
    attention_mask_BT: torch.Tensor,
    special_ids: Iterable[int] = (),
    norm_factor: float | None = DEFAULT_NORM_FACTOR,
    median_norm: float | None = None,
    read_BT: torch.Tensor | None = None,
) -> tuple[torch.Tensor, SinkCounts]:
    """Keep mask of non-sink real tokens and the counts dropped per reason.

    Position 0 is the first *attended* position of each row (works with left padding too). The norm threshold is
    ``norm_factor`` × ``median_norm``; without ``median_norm`` the median is taken over this batch's real tokens
    that survive the first two reasons (sinks barely move a median, but the special tokens of chat text are many).
    ``norm_factor=None`` disables the norm rule. ``read_BT`` restricts the returned mask and the counts to some
    positions (e.g. response tokens) while position 0 and the median still refer to whole sequences.
    """
    real_BT = attention_mask_BT.bool()
    pos_BT = attention_mask_BT.long().cumsum(1) - 1
    first_BT = real_BT & (pos_BT == 0)
    specials = torch.tensor(sorted({int(i) for i in special_ids}), dtype=input_ids_BT.dtype)
    special_BT = torch.isin(input_ids_BT, specials.to(input_ids_BT.device)) & real_BT & ~first_BT
    cand_BT = real_BT & ~first_BT & ~special_BT
    high_BT = torch.zeros_like(real_BT)
    if norm_factor is not None:
        norms_BT = acts_BTD.detach().float().norm(dim=-1)
        med = median_norm
        if med is None and bool(cand_BT.any()):
            med = float(norms_BT[cand_BT].median())
        if med is not None:
            high_BT = cand_BT & (norms_BT > norm_factor * med)
    keep_BT = cand_BT & ~high_BT
    if read_BT is not None:
        read_BT = read_BT.bool() & real_BT
        keep_BT, first_BT, special_BT, high_BT = (
            m & read_BT for m in (keep_BT, first_BT, special_BT, high_BT)
        )
        real_BT = read_BT
    counts = SinkCounts(
        n_tokens=int(real_BT.sum()),
        dropped={
            "position0": int(first_BT.sum()),
            "special": int(special_BT.sum()),
            "high_norm": int(high_BT.sum()),
        },
    )
    return keep_BT, counts


# ---------------------------------------------------------------------------------------------------------------
# reconstruction statistics


class ReconStats:
    """Streaming reconstruction statistics of one SAE on one token set, exact and mergeable.

    The pooled figures are the engine's SAE health (:class:`saemui.health.HealthAccumulator`: exact sums of
    Σ‖x - x̂‖², Σ‖x‖², Σx, cosine and ‖x̂‖/‖x‖), so training cards and ``saemui run`` compute FVE the same way and
    merged partial evaluations equal one pass bit for bit: pooled FVE = 1 - Σ‖x - x̂‖² / Σ‖x - x̄‖², x̄ the mean
    of all tokens added (known only at the end, hence sums rather than a running variance).
    On top: per-token FVE_i = 1 - ‖x_i - x̂_i‖² / ‖x_i - c‖² with a FIXED centre ``c`` (``center_D``, e.g. the
    training-set mean; zero if not given; a per-token value cannot use a mean that is not known yet), kept per
    token (two float64 each) so quantiles are exact, and per-feature firing counts (L0, dead, dense).
    """

    def __init__(
        self,
        d_model: int,
        d_sae: int,
        center_D: torch.Tensor | np.ndarray | None = None,
        dense_threshold: float = DEFAULT_DENSE_THRESHOLD,
    ):
        self.d_model, self.d_sae = int(d_model), int(d_sae)
        self.dense_threshold = float(dense_threshold)
        c = np.zeros(d_model) if center_D is None else np.asarray(torch.as_tensor(center_D).double().cpu())
        if c.shape != (d_model,):
            raise SaemuiError(f"center has shape {c.shape}, expected ({d_model},)")
        self.center_D = c.astype(np.float64)
        self.health = HealthAccumulator(d=self.d_model)
        self.fires_F = np.zeros(d_sae, dtype=np.int64)
        self._err: list[np.ndarray] = []
        self._dev: list[np.ndarray] = []

    @property
    def n(self) -> int:
        return self.health.n

    def add(self, x_ND: torch.Tensor, recon_ND: torch.Tensor, feats_NF: torch.Tensor | None = None) -> None:
        """Add tokens: activations, their reconstructions and (for L0 / dead / dense) the feature activations."""
        if x_ND.shape != recon_ND.shape or x_ND.dim() != 2 or x_ND.shape[1] != self.d_model:
            raise SaemuiError(
                f"x {tuple(x_ND.shape)} / recon {tuple(recon_ND.shape)}: expected [N, {self.d_model}]"
            )
        if x_ND.shape[0] == 0:
            return
        x = x_ND.detach().double().cpu()
        xh = recon_ND.detach().double().cpu()
        if feats_NF is not None and feats_NF.shape != (x.shape[0], self.d_sae):
            raise SaemuiError(f"feats {tuple(feats_NF.shape)}: expected [{x.shape[0]}, {self.d_sae}]")
        self.health.add(x, xh)
        self._err.append((x - xh).pow(2).sum(-1).numpy())
        self._dev.append((x - torch.from_numpy(self.center_D)).pow(2).sum(-1).numpy())
        if feats_NF is not None:
            self.fires_F += (feats_NF.detach() != 0).cpu().sum(0).numpy().astype(np.int64)

    def merge(self, other: ReconStats) -> ReconStats:
        if (other.d_model, other.d_sae) != (self.d_model, self.d_sae) or not np.array_equal(
            other.center_D, self.center_D
        ):
            raise SaemuiError("cannot merge ReconStats of different shapes or centres")
        self.health.merge(other.health)
        self.fires_F += other.fires_F
        self._err += other._err
        self._dev += other._dev
        return self

    def per_token_fve(self) -> np.ndarray:
        if not self._err:
            return np.zeros(0)
        err, dev = np.concatenate(self._err), np.concatenate(self._dev)
        with np.errstate(divide="ignore", invalid="ignore"):
            return 1.0 - err / dev

    def summary(self, quantiles: Sequence[float] = DEFAULT_QUANTILES) -> dict:
        n = self.n
        nan = float("nan")
        h = {k: nan if v is None else v for k, v in self.health.summary().items()}
        tok = self.per_token_fve()
        tok = tok[np.isfinite(tok)]
        dens_F = self.fires_F / max(n, 1)
        return {
            "n_tokens": n,
            "fve_pooled": h["explained_variance"],
            "fve_token_median": float(np.median(tok)) if tok.size else nan,
            "fve_token_quantiles": {
                f"q{q:g}": float(np.quantile(tok, q)) if tok.size else nan for q in quantiles
            },
            "mse": h["mse"],
            "cosine": h["cossim"],
            "l2_ratio": h["l2_ratio"],
            # firing counts sum to Σ L0 over tokens (L0 of a token = features that fire on it)
            "l0": float(self.fires_F.sum()) / n if n else nan,
            "dead_frac": float((self.fires_F == 0).mean()) if n else nan,
            "dense_frac": float((dens_F > self.dense_threshold).mean()) if n else nan,
        }

    # state for resumable evaluations (JSON-safe: lists of numbers)
    def state(self) -> dict:
        h = self.health.state()
        return {
            "d_model": self.d_model,
            "d_sae": self.d_sae,
            "dense_threshold": self.dense_threshold,
            "center_D": self.center_D.tolist(),
            "n": h["n"],
            "limbs": h["limbs"].tolist(),
            "fires_F": self.fires_F.tolist(),
            "err": np.concatenate(self._err).tolist() if self._err else [],
            "dev": np.concatenate(self._dev).tolist() if self._dev else [],
        }

    @classmethod
    def from_state(cls, s: Mapping) -> ReconStats:
        r = cls(s["d_model"], s["d_sae"], np.asarray(s["center_D"]), s["dense_threshold"])
        r.health = HealthAccumulator(s["n"], s["d_model"], torch.tensor(s["limbs"], dtype=torch.int64))
        r.fires_F = np.asarray(s["fires_F"], dtype=np.int64)
        if s["err"]:
            r._err, r._dev = (
                [np.asarray(s["err"], dtype=np.float64)],
                [np.asarray(s["dev"], dtype=np.float64)],
            )
        return r


@dataclass
class CEStats:
    """Sums over scored next-token predictions: CE of the clean, spliced and zero-ablated runs and KL(clean ‖ ·).

    ce_loss_recovered = (CE_zero - CE_spliced) / (CE_zero - CE_clean) (1 = as good as clean, 0 = as bad as zero
    ablation); ratios of pooled sums, so merging batches is exact."""

    n_tokens: int = 0
    n_sequences: int = 0
    ce_clean: float = 0.0
    ce_spliced: float = 0.0
    ce_zero: float = 0.0
    kl_spliced: float = 0.0
    kl_zero: float = 0.0

    def merge(self, other: CEStats) -> CEStats:
        for k in ("n_tokens", "n_sequences", "ce_clean", "ce_spliced", "ce_zero", "kl_spliced", "kl_zero"):
            setattr(self, k, getattr(self, k) + getattr(other, k))
        return self

    def summary(self) -> dict:
        n = self.n_tokens
        if n == 0:
            return {"ce_tokens": 0, "ce_sequences": self.n_sequences}
        clean, spl, zero = self.ce_clean / n, self.ce_spliced / n, self.ce_zero / n
        denom = zero - clean
        return {
            "ce_tokens": n,
            "ce_sequences": self.n_sequences,
            "ce_clean": clean,
            "ce_spliced": spl,
            "ce_zero_ablation": zero,
            "ce_increase": spl - clean,
            "ce_loss_recovered": (zero - spl) / denom if denom != 0 else float("nan"),
            "kl_spliced": self.kl_spliced / n,
            "kl_zero_ablation": self.kl_zero / n,
        }

    def to_json(self) -> dict:
        return dict(self.__dict__)


# ---------------------------------------------------------------------------------------------------------------
# evaluation batches: plain text or (prompt, response) records


@dataclass
class EvalBatch:
    """Padded ids plus two masks: ``read_BT`` = positions whose activations are evaluated (before the sink rule),
    ``target_BT`` = positions whose next-token prediction enters CE / KL (the token at t+1 is real)."""

    input_ids_BT: torch.Tensor
    attention_mask_BT: torch.Tensor
    position_ids_BT: torch.Tensor
    read_BT: torch.Tensor
    target_BT: torch.Tensor

    @property
    def n_sequences(self) -> int:
        return int(self.input_ids_BT.shape[0])


def _pack(
    rows: Sequence[tuple[Sequence[int], Sequence[int], Sequence[int]]], pad_id: int, max_batch_tokens: int
) -> list[EvalBatch]:
    """rows: (ids, read positions, target positions); length-sorted, right-padded batches under a token cap."""
    order = sorted(range(len(rows)), key=lambda i: (-len(rows[i][0]), i))
    groups: list[list[int]] = []
    cur: list[int] = []
    for i in order:
        longest = len(rows[cur[0]][0]) if cur else len(rows[i][0])
        if cur and longest * (len(cur) + 1) > max_batch_tokens:
            groups.append(cur)
            cur = []
        cur.append(i)
    if cur:
        groups.append(cur)
    out = []
    for g in groups:
        T = max(len(rows[i][0]) for i in g)
        ids = torch.full((len(g), T), pad_id, dtype=torch.long)
        att = torch.zeros((len(g), T), dtype=torch.long)
        read = torch.zeros((len(g), T), dtype=torch.bool)
        tgt = torch.zeros((len(g), T), dtype=torch.bool)
        for b, i in enumerate(g):
            seq, rp, tp = rows[i]
            ids[b, : len(seq)] = torch.as_tensor(list(seq), dtype=torch.long)
            att[b, : len(seq)] = 1
            read[b, list(rp)] = True
            tgt[b, list(tp)] = True
        pos = (att.cumsum(1) - 1).clamp(min=0)
        out.append(EvalBatch(ids, att, pos, read, tgt))
    return out


def batches_from_ids(
    seqs: Sequence[Sequence[int]], pad_id: int, max_batch_tokens: int = 2048
) -> list[EvalBatch]:
    """Plain token sequences: every real position is read; every position with a real next token is a target."""
    rows = [(list(s), range(len(s)), range(len(s) - 1)) for s in seqs]
    return _pack(rows, pad_id, max_batch_tokens)


def batches_from_samples(
    tokenizer,
    samples: Sequence[Sample],
    prompt_format: str = "auto",
    max_length: int = 2048,
    max_batch_tokens: int = 2048,
) -> list[EvalBatch]:
    """(prompt, response) records encoded exactly as MUI encodes them (:func:`saemui.inputs.encode_samples`,
    paper alignment): read = the response tokens' positions MUI scores; targets = the positions that predict
    those response tokens (t - 1), so CE / KL measure the model's answer, not its reading of the prompt."""
    from saemui.inputs import encode_samples

    enc = encode_samples(tokenizer, samples, "response", prompt_format, max_length)
    rows = []
    for e in enc:
        pos = [int(p) for p in e.score_pos]
        rows.append((e.ids.tolist(), pos, [p - 1 for p in pos if p > 0]))
    return _pack(rows, int(tokenizer.pad_token_id), max_batch_tokens)


# ---------------------------------------------------------------------------------------------------------------
# running the model


def _first(out: object) -> torch.Tensor:
    return out[0] if isinstance(out, tuple) else out


def _replace_first(out: object, h: torch.Tensor) -> object:
    return (h, *out[1:]) if isinstance(out, tuple) else h


def _capture_layers(lm: LoadedModel, batch: EvalBatch, layers: Sequence[int]) -> dict[int, torch.Tensor]:
    from saemui.capture import capture, get_backend, site_name

    sites = {site_name(layer, "resid_post"): layer for layer in layers}
    got = capture(
        get_backend("hf", lm), batch.input_ids_BT, batch.attention_mask_BT, list(sites), batch.position_ids_BT
    )
    return {sites[s]: t for s, t in got.items()}


def resolve_specials(lm: LoadedModel, special_ids: Iterable[int] | None = None) -> set[int]:
    """The given special ids, or the tokenizer's (:func:`saemui.inputs.special_ids`)."""
    from saemui.inputs import special_ids as tok_special_ids

    return set(tok_special_ids(lm.tokenizer)) if special_ids is None else set(special_ids)


@torch.no_grad()
def kept_activations(
    lm: LoadedModel,
    batch: EvalBatch,
    layers: Sequence[int],
    specials: Iterable[int],
    norm_factor: float | None = DEFAULT_NORM_FACTOR,
) -> Iterator[tuple[int, torch.Tensor, SinkCounts]]:
    """Per layer, the float32 activations [N, D] of the batch's read positions minus sink tokens, and the counts
    dropped; one forward for all layers (stopped after the deepest). Evaluation and SAE training capture share
    it, so both see exactly the same tokens."""
    acts = _capture_layers(lm, batch, layers)
    for layer in layers:
        a_BTD = acts[layer].float()
        keep_BT, cnt = sink_mask(
            a_BTD, batch.input_ids_BT, batch.attention_mask_BT, specials, norm_factor, read_BT=batch.read_BT
        )
        yield layer, a_BTD[keep_BT], cnt


@torch.no_grad()
def recon_eval(
    lm: LoadedModel,
    saes: Mapping[int, object],
    batches: Iterable[EvalBatch],
    special_ids: Iterable[int] | None = None,
    norm_factor: float | None = DEFAULT_NORM_FACTOR,
    centers: Mapping[int, torch.Tensor] | None = None,
    dense_threshold: float = DEFAULT_DENSE_THRESHOLD,
) -> tuple[dict[int, ReconStats], dict[int, SinkCounts]]:
    """Reconstruction statistics of each layer's SAE on the read positions of ``batches`` minus sink tokens.

    One forward per batch for all layers (stopped after the deepest). ``special_ids`` default to the tokenizer's
    special tokens (:func:`saemui.inputs.special_ids`). ``centers`` give the per-token FVE centre per layer (e.g.
    the training mean); default the SAE's ``b_dec``. Sink counts refer to read positions only."""
    specials = resolve_specials(lm, special_ids)
    layers = sorted(saes)
    stats: dict[int, ReconStats] = {}
    sinks = {layer: SinkCounts() for layer in layers}
    for layer in layers:
        sae = saes[layer]
        c = (centers or {}).get(layer)
        if c is None:
            c = getattr(sae, "b_dec", None)
        stats[layer] = ReconStats(lm.d_model, _d_sae(sae), c, dense_threshold)
    for batch in batches:
        for layer, x_ND, cnt in kept_activations(lm, batch, layers, specials, norm_factor):
            sinks[layer].merge(cnt)
            sae = saes[layer]
            f_NF = sae.encode(x_ND)
            stats[layer].add(x_ND, sae.decode(f_NF), f_NF)
    return stats, sinks


def _d_sae(sae: object) -> int:
    cfg = getattr(sae, "cfg", None)
    if cfg is not None and getattr(cfg, "d_sae", None):
        return int(cfg.d_sae)
    return int(sae.W_dec.shape[0])


def _ce_kl_sums(lpc_NV: torch.Tensor, logits_NV: torch.Tensor, tgt_N: torch.Tensor) -> tuple[float, float]:
    """Σ CE of the next tokens ``tgt_N`` and Σ KL(clean ‖ run) over N scored predictions (``logits_NV``, in the
    order of ``tgt_N``); ``lpc_NV`` = clean log-probs of the same predictions."""
    lp_NV = logits_NV.float().log_softmax(-1)
    ce = -lp_NV.gather(-1, tgt_N[:, None])[:, 0]
    kl = (lpc_NV.exp() * (lpc_NV - lp_NV)).sum(-1)
    return float(ce.double().sum()), float(kl.double().sum())


@torch.no_grad()
def ce_eval(
    lm: LoadedModel,
    saes: Mapping[int, object],
    batches: Iterable[EvalBatch],
    special_ids: Iterable[int] | None = None,
    norm_factor: float | None = DEFAULT_NORM_FACTOR,
    zero_cache: dict[int, CEStats] | None = None,
) -> dict[int, CEStats]:
    """CE / KL per layer with the SAE reconstruction spliced at that layer's block output.

    Splice positions: all non-sink real tokens of the layer (:func:`sink_mask` on the whole sequence, median of
    this batch); sinks, specials and pads keep their clean residual. Scored predictions: ``target_BT`` (where
    the next position is a real token). Zero ablation zeroes the same positions. Costs 1 + 2·len(saes) full
    forwards per batch, 1 + len(saes) when ``zero_cache`` already holds a layer's zero-ablation sums: they depend
    on the layer and the data only, so pass one dict for several SAEs of one layer and it is filled on first use
    (the caller must pass the same batches)."""
    specials = resolve_specials(lm, special_ids)
    blocks = lm.arch.layers(lm.model)
    out = {layer: CEStats() for layer in saes}
    cached = dict(zero_cache or {})
    zero_new = {layer: CEStats() for layer in saes if layer not in cached}

    keep_mask = accepts_logits_to_keep(lm.model)

    def logits(
        batch: EvalBatch, m_BT: torch.Tensor, layer: int | None = None, fn: Callable | None = None
    ) -> torch.Tensor:
        """Logits of the predictions ``m_BT`` selects (N × V, row-major order); with ``logits_to_keep`` the head
        runs on those positions only (a third of a batch here; Gemma-3's head is most of its forward)."""
        handle = None
        if layer is not None:

            def hook(mod, inp, o):
                h = _first(o)
                keep, _ = sink_mask(h, batch.input_ids_BT, batch.attention_mask_BT, specials, norm_factor)
                h2 = h.clone()
                h2[keep] = fn(h[keep].float()).to(h.dtype)
                return _replace_first(o, h2)

            handle = blocks[layer].register_forward_hook(hook)
        try:
            out = lm.model(
                input_ids=batch.input_ids_BT,
                attention_mask=batch.attention_mask_BT,
                position_ids=batch.position_ids_BT,
                use_cache=False,
                **({"logits_to_keep": m_BT} if keep_mask else {}),
            ).logits
            return out if keep_mask else out[m_BT]
        finally:
            if handle is not None:
                handle.remove()

    for batch in batches:
        att = batch.attention_mask_BT.bool()
        m_Bt = batch.target_BT[:, :-1].bool() & att[:, :-1] & att[:, 1:]
        tgt_N = batch.input_ids_BT[:, 1:][m_Bt]
        n = int(m_Bt.sum())
        # position t predicts token t + 1: the prediction mask over all T positions (the last predicts nothing)
        m_BT = torch.nn.functional.pad(m_Bt, (0, 1), value=False)
        clean_NV = logits(batch, m_BT)
        lpc_NV = clean_NV.float().log_softmax(-1)
        ce_clean, _ = _ce_kl_sums(lpc_NV, clean_NV, tgt_N)
        del clean_NV
        for layer, sae in saes.items():
            ce_s, kl_s = _ce_kl_sums(
                lpc_NV, logits(batch, m_BT, layer, lambda x, sae=sae: sae.decode(sae.encode(x))), tgt_N
            )
            out[layer].merge(
                CEStats(n, batch.n_sequences, ce_clean=ce_clean, ce_spliced=ce_s, kl_spliced=kl_s)
            )
            if layer in zero_new:
                ce_z, kl_z = _ce_kl_sums(lpc_NV, logits(batch, m_BT, layer, torch.zeros_like), tgt_N)
                zero_new[layer].merge(CEStats(n, batch.n_sequences, ce_zero=ce_z, kl_zero=kl_z))
    for layer in saes:
        z = zero_new[layer] if layer in zero_new else cached[layer]
        if z.n_tokens != out[layer].n_tokens:
            raise SaemuiError(
                f"layer {layer}: zero-ablation cache covers {z.n_tokens} predictions, not {out[layer].n_tokens}"
            )
        out[layer].ce_zero, out[layer].kl_zero = z.ce_zero, z.kl_zero
        if zero_cache is not None and layer in zero_new:
            zero_cache[layer] = z
    return out


def evaluate(
    lm: LoadedModel,
    saes: Mapping[int, object],
    batches: Sequence[EvalBatch],
    ce_batches: Sequence[EvalBatch] | None = None,
    norm_factor: float | None = DEFAULT_NORM_FACTOR,
    centers: Mapping[int, torch.Tensor] | None = None,
) -> dict[int, dict]:
    """Reconstruction + CE / KL summaries per layer, with the sink rule and shares (a card's per-layer row)."""
    rec, sinks = recon_eval(lm, saes, batches, norm_factor=norm_factor, centers=centers)
    ce = ce_eval(lm, saes, ce_batches if ce_batches is not None else batches, norm_factor=norm_factor)
    return {
        layer: {
            **rec[layer].summary(),
            **ce[layer].summary(),
            "sink_rule": sink_rule_text(norm_factor)
            if norm_factor is not None
            else "position 0 and specials",
            "sinks": sinks[layer].to_json(),
        }
        for layer in sorted(saes)
    }


def finite_or_none(x: float) -> float | None:
    """JSON has no NaN: summaries written to files map non-finite values to null."""
    return x if isinstance(x, (int, float)) and math.isfinite(x) else None


def json_safe(o: object) -> object:
    """JSON has no NaN: non-finite floats become null, recursively."""
    if isinstance(o, dict):
        return {k: json_safe(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [json_safe(v) for v in o]
    if isinstance(o, float):
        return finite_or_none(o)
    return o


# ---------------------------------------------------------------------------------------------------------------
# an SAE suite's health on any model (fine-tuned models of the zoo included)

HEALTH_SCHEMA = "saemui.sae_health/1"


def suite_health(
    lm: LoadedModel,
    saes_spec: str,
    samples: Sequence[Sample],
    layers: Sequence[int] | None = None,
    ce_samples: int | None = 200,
    prompt_format: str = "auto",
    max_length: int = 2048,
    max_batch_tokens: int = 2048,
    norm_factor: float | None = DEFAULT_NORM_FACTOR,
) -> dict:
    """How an SAE suite holds on ``lm``'s own residuals, on the response tokens of ``samples`` (the tokens MUI
    reads): per layer pooled / per-token FVE, L0, dead / dense, CE-loss recovered and KL (first ``ce_samples``
    records; None = all), with the sink rule and shares, plus medians over layers.

    Why: the shipped bundles are trained on a base model; a fine-tuned model's residuals can drift away from
    what the dictionary reconstructs, and feature-level MUI is only as meaningful as that reconstruction.
    """
    from saemui.saes import check_suite_for_model, open_suite

    if not samples:
        raise SaemuiError("suite_health: no samples")
    suite = open_suite(saes_spec)
    check_suite_for_model(suite, [lm.name, lm.hf_id], lm.n_layers)
    entries = [e for e in suite.entries if layers is None or e.layer in set(layers)]
    if layers is not None:
        missing = sorted(set(layers) - {e.layer for e in entries})
        if missing:
            raise SaemuiError(f"SAE suite {suite.name!r} has no SAE for layer(s) {missing}")
    saes = {e.layer: e.load(str(lm.device), "float32", False) for e in entries}
    batches = batches_from_samples(lm.tokenizer, samples, prompt_format, max_length, max_batch_tokens)
    ce_set = list(samples) if ce_samples is None else list(samples)[:ce_samples]
    ce_batches = batches_from_samples(lm.tokenizer, ce_set, prompt_format, max_length, max_batch_tokens)
    per_layer = evaluate(lm, saes, batches, ce_batches, norm_factor=norm_factor)

    def median(key: str) -> float | None:
        vals = [r.get(key) for r in per_layer.values()]
        vals = [v for v in vals if isinstance(v, (int, float)) and math.isfinite(v)]
        return float(np.median(vals)) if vals else None

    keys = (
        "fve_pooled",
        "fve_token_median",
        "ce_loss_recovered",
        "kl_spliced",
        "l0",
        "dead_frac",
        "dense_frac",
    )
    return {
        "schema": HEALTH_SCHEMA,
        "suite": suite.name,
        "suite_source": suite.source,
        "model": {"name": lm.name, "hf_id": lm.hf_id, "provenance": lm.provenance, "dtype": str(lm.dtype)},
        "n_samples": len(samples),
        "n_ce_samples": len(ce_set),
        "text": "response tokens (paper alignment: the positions MUI scores)",
        "sink_rule": sink_rule_text(norm_factor) if norm_factor is not None else "position 0 and specials",
        "medians": {k: median(k) for k in keys},
        "min_fve_pooled": min(
            (r["fve_pooled"] for r in per_layer.values() if math.isfinite(r["fve_pooled"])), default=None
        ),
        "per_layer": {str(k): v for k, v in per_layer.items()},
    }
