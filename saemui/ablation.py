"""Causal ablation of a run's key units (protocol §8.5): per-sample masks, gold log-probabilities, ablated generation.

The question is whether the units MUI calls "key" for a sample matter to that sample more than as many other
units do. Everything here works per **sample**: in a batch, row b gets its own sets, so one forward serves many
samples with different ablations.

- **Neurons**: sample b's key neurons of layer L get down-projection input (``act(gate)·up``, the ``down_input``
  coefficient MUI scores) 0 at every position of row b, through a forward pre-hook on that layer's
  ``down_proj`` (:mod:`saemui.arch`). This equals zeroing those columns of ``down_proj.weight`` for that row.
- **SAE features**: at ``blocks.L.hook_resid_post`` (the output of decoder layer L), the residual of row b loses
  each key feature's decoder contribution, ``sae.decode(a·m) − sae.decode(0)`` with ``a`` the features' activations
  on the residual as it arrives (upstream ablations included) and ``m`` the row's feature mask: activation × decoder
  row, with whatever rescaling the SAE's decoder applies (e.g. ``rescale_acts_by_decoder_norm``).
- **Controls** (:func:`random_control_sets`): per (sample, layer) as many units drawn uniformly from the layer's
  non-key neurons, or for SAEs from the features active (> 0) on the sample at that layer but not key.

Log-probabilities (:func:`gold_logprobs`) use the engine's prompt encoding (:func:`saemui.inputs.encode_samples`,
``predicting`` alignment): the summed tokens are exactly the positions MUI scores at P0. Ablated generation
(:func:`generate_ablated`) repeats :func:`saemui.tasks.generation.generate`'s loop (greedy, left padding,
length-sorted batches, the task's stops) with the masks active.

Smoke example (a tiny random model, no benchmark, no network)::

    >>> import tempfile, pathlib
    >>> from saemui.models import load_model
    >>> from saemui.testing import save_tiny_model
    >>> from saemui.records import Sample
    >>> from saemui.ablation import Ablation, gold_logprobs
    >>> lm = load_model(str(save_tiny_model(pathlib.Path(tempfile.mkdtemp()), "llama")), device="cpu")
    >>> samples = [Sample("What is 2 + 3?", "The answer is 5."), Sample("Paris is", "the capital of France.")]
    >>> key = Ablation("key", neurons=[{0: [1, 5], 2: [7]}, {1: [3]}])
    >>> lp = gold_logprobs(lm, samples, [None, key])  # [2 conditions, 2 samples], nats
    >>> bool((lp[0] != lp[1]).all())
    True

The §8.5 pipeline for one point is :func:`logprob_arm` (key sets from a run's result, 5 random draws) and
:func:`accuracy_arm` (greedy generation of a task's items with the free-generation run's key sets ablated);
:mod:`saemui.analysis.causal` turns their arrays into the effect E, ΔAcc and the verdict.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from saemui.capture import block_output, get_backend, parse_site, site_name
from saemui.errors import SaemuiError
from saemui.inputs import collate, encode_samples, plan_batches
from saemui.io import atomic_write_json
from saemui.models import LoadedModel, accepts_logits_to_keep
from saemui.readers import read_json
from saemui.records import Sample

if TYPE_CHECKING:
    from saemui.result import MUIResult
    from saemui.tasks.base import Item, Task

#: one sample's units: model layer → unit indices (neurons of that layer's MLP, or features of its SAE)
UnitSets = Mapping[int, Sequence[int] | np.ndarray]
ARM_FORMAT = "saemui-causal-logprob/1"


@dataclass(frozen=True)
class Ablation:
    """One condition: what is ablated in each sample (by sample position); None = nothing of that kind.

    name: label in records ("clean", "key", "random0", …).
    neurons: per sample, layer → MLP neuron indices whose down_input coefficient is set to 0.
    features: per sample, layer → SAE feature indices whose decoder contribution is removed (needs ``saes``).
    """

    name: str
    neurons: Sequence[UnitSets | None] | None = None
    features: Sequence[UnitSets | None] | None = None

    def rows(self, idx: Sequence[int]) -> tuple[list | None, list | None]:
        """The per-row sets of a batch holding samples ``idx``."""
        pick = lambda sets: None if sets is None else [sets[i] for i in idx]  # noqa: E731
        return pick(self.neurons), pick(self.features)


def _row_masks(
    rows: Sequence[UnitSets | None], n_layers: int, width: int | Mapping[int, int], what: str
) -> dict[int, torch.Tensor]:
    """layer → bool [B, width] (True = ablate) for the layers where some row ablates something; ``width`` is the
    units per layer, or per layer a mapping (layers absent from it are refused)."""
    masks: dict[int, torch.Tensor] = {}
    for b, sets in enumerate(rows):
        for layer, units in (sets or {}).items():
            idx = np.asarray(units, dtype=np.int64).reshape(-1)
            if not idx.size:
                continue
            if not 0 <= int(layer) < n_layers:
                raise SaemuiError(
                    f"{what} ablation: layer {layer} does not exist (model has {n_layers} layers)"
                )
            if isinstance(width, Mapping) and int(layer) not in width:
                raise SaemuiError(f"{what} ablation at layer {layer}: no SAE given for that layer")
            w = width[int(layer)] if isinstance(width, Mapping) else width
            if idx.min() < 0 or idx.max() >= w:
                bad = idx.min() if idx.min() < 0 else idx.max()
                raise SaemuiError(f"{what} ablation: layer {layer} has unit index {bad} outside 0..{w - 1}")
            m = masks.setdefault(int(layer), torch.zeros((len(rows), w), dtype=torch.bool))
            m[b, torch.from_numpy(idx)] = True
    return masks


def _check_rows(x: torch.Tensor, m: torch.Tensor, where: str) -> None:
    if x.shape[0] != m.shape[0]:
        raise SaemuiError(
            f"{where}: the forward has {x.shape[0]} rows but {m.shape[0]} per-row sets were given"
        )


@contextmanager
def ablated(
    lm: LoadedModel,
    neurons: Sequence[UnitSets | None] | None = None,
    features: Sequence[UnitSets | None] | None = None,
    saes: Mapping[int, Any] | None = None,
) -> Iterator[None]:
    """Within the block, every forward of ``lm.model`` ablates per batch row: row b loses ``neurons[b]`` (layer →
    MLP neurons: down_input coefficient 0) and ``features[b]`` (layer → SAE features of ``saes[layer]``: decoder
    contribution subtracted from ``blocks.L.hook_resid_post``), at every position. The forward's batch must have
    ``len(neurons)`` (``len(features)``) rows; generation with a KV cache is fine (rows stay rows)."""
    blocks = lm.arch.layers(lm.model)
    handles = []
    try:
        if neurons is not None:
            for layer, m in _row_masks(neurons, lm.n_layers, lm.d_mlp, "neuron").items():
                m = m.to(lm.device)

                def pre_hook(module, args, m=m, layer=layer):
                    x = args[0]
                    _check_rows(x, m, f"neuron ablation at layer {layer}")
                    # masked_fill, not x * keep: exact zeros even where x is inf/nan, other entries untouched
                    return (
                        x.masked_fill(m.view(m.shape[0], *([1] * (x.dim() - 2)), m.shape[1]), 0.0),
                        *args[1:],
                    )

                handles.append(lm.arch.down_proj(blocks[layer]).register_forward_pre_hook(pre_hook))
        if features is not None:
            saes = saes or {}
            widths = {int(k): int(v.cfg.d_sae) for k, v in saes.items()}
            for layer, m in _row_masks(features, lm.n_layers, widths, "SAE feature").items():
                hook = _feature_hook(saes[layer], m, layer, lm.device)
                handles.append(blocks[layer].register_forward_hook(hook))
        yield
    finally:
        for h in handles:
            h.remove()


def _feature_hook(sae, m: torch.Tensor, layer: int, device: torch.device):
    m = m.to(device)
    rows = m.any(1)
    zero = None

    def hook(module, args, out):
        nonlocal zero
        h = block_output(out)
        _check_rows(h, m, f"SAE feature ablation at layer {layer}")
        x = h[rows].to(sae.dtype)
        acts = sae.encode(x)
        kept = acts.masked_fill(~m[rows].view(-1, *([1] * (acts.dim() - 2)), m.shape[1]), 0.0)
        if zero is None:
            zero = sae.decode(torch.zeros_like(kept[:1]))
        # decode(a·m) − decode(0): the key features' share of the reconstruction, b_dec and the SAE's own
        # rescaling handled by its decoder (rescale_acts_by_decoder_norm divides by the decoder norms)
        delta = sae.decode(kept) - zero
        new = h.clone()
        new[rows] = h[rows] - delta.to(h.dtype)
        return (new, *out[1:]) if isinstance(out, tuple) else new

    return hook


# ----- key sets and controls ----------------------------------------------------------------------------------


def key_sets(result: MUIResult) -> list[dict[int, np.ndarray]]:
    """The run's per-sample key units, by sample position: layer (model layer) → unit indices (int64)."""
    n = int(result.summary["n_samples"])
    layers = result.layers
    return [
        {layer: units.astype(np.int64) for layer, units in zip(layers, result.sample_sets(i))}
        for i in range(n)
    ]


def random_control_sets(
    keys: Sequence[UnitSets],
    n_units: int,
    n_draws: int = 5,
    seed: int = 0,
    candidates: Sequence[UnitSets] | None = None,
) -> tuple[list[list[dict[int, np.ndarray]]], np.ndarray]:
    """Random controls of the same sizes: per draw d, sample i and layer L, ``len(keys[i][L])`` units drawn uniformly
    without replacement from the candidates minus the key units.

    candidates: per sample, layer → eligible units (SAE arm: the features active on the sample at that layer);
        None → every unit ``0..n_units-1`` of the layer (neuron arm: the non-key neurons).
    Draw d uses ``numpy.random.default_rng([seed, d])``, visiting samples in order and layers in increasing order,
    so draws do not depend on batching. Returns (draws[d][i] = layer → sorted units, shortfall [N, n_draws]: units
    that could not be drawn because fewer candidates than key units remained; the control is then smaller).
    """
    if n_draws < 1:
        raise SaemuiError(f"n_draws: expected a positive number of random draws, got {n_draws}")
    if candidates is not None and len(candidates) != len(keys):
        raise SaemuiError(f"candidates: expected one entry per sample ({len(keys)}), got {len(candidates)}")
    short = np.zeros((len(keys), n_draws), dtype=np.int64)
    draws = []
    for d in range(n_draws):
        rng = np.random.default_rng([seed, d])
        out = []
        for i, ks in enumerate(keys):
            one: dict[int, np.ndarray] = {}
            for layer in sorted(ks):
                key = np.unique(np.asarray(ks[layer], dtype=np.int64))
                if not key.size:
                    continue
                pool = (
                    np.arange(n_units, dtype=np.int64)
                    if candidates is None
                    else np.unique(np.asarray(candidates[i].get(layer, ()), dtype=np.int64))
                )
                pool = pool[~np.isin(pool, key)]
                k = min(key.size, pool.size)
                short[i, d] += key.size - k
                one[layer] = np.sort(rng.choice(pool, size=k, replace=False)) if k else pool[:0]
            out.append(one)
        draws.append(out)
    return draws, short


def load_saes(
    lm: LoadedModel, spec: str | os.PathLike, layers: Sequence[int] | None = None
) -> dict[int, Any]:
    """The SAEs of ``spec`` (bundle or sae-lens directory, :func:`saemui.saes.open_suite`) with decoders, by model
    layer; residual-stream SAEs only (the ablation subtracts at ``blocks.L.hook_resid_post``)."""
    from saemui.saes import check_compatible, check_suite_for_model, open_suite

    suite = open_suite(spec)
    check_suite_for_model(suite, [lm.name, lm.hf_id], lm.n_layers)
    entries = [e for e in suite.entries if layers is None or e.layer in layers]
    missing = sorted(set(layers or ()) - {e.layer for e in entries})
    if missing:
        raise SaemuiError(
            f"SAE suite {suite.name!r} has no SAE for layer(s) {missing} (it covers {suite.layers})"
        )
    out = {}
    for e in entries:
        if parse_site(e.hook_name)[1] != "resid_post":
            raise SaemuiError(
                f"SAE {e.sae_id}: hook {e.hook_name!r}; feature ablation needs residual-stream SAEs"
            )
        sae = e.load(str(lm.device), "float32", False)
        check_compatible(sae, e, lm.d_model, lm.d_mlp, lm.n_layers)
        out[e.layer] = sae
    return out


@torch.inference_mode()
def active_features(
    lm: LoadedModel,
    samples: Sequence[Sample],
    saes: Mapping[int, Any],
    alignment: str = "response",
    prompt_format: str = "auto",
    max_length: int = 2048,
    max_batch_tokens: int = 4096,
    max_batch_size: int = 16,
) -> list[dict[int, np.ndarray]]:
    """Per sample, layer → the SAE features with activation > 0 at some position the run scored (clean forward,
    positions of ``alignment``): the pool the SAE control draws from."""
    enc = encode_samples(lm.tokenizer, samples, alignment, prompt_format, max_length)
    out: list[dict[int, np.ndarray]] = [{} for _ in samples]
    backend = get_backend("hf", lm)
    sites = {site_name(layer, "resid_post"): layer for layer in sorted(saes)}
    for group in plan_batches(enc, max_batch_tokens, max_batch_size):
        batch = collate([enc[i] for i in group], lm.tokenizer.pad_token_id, "right", lm.device)
        B = len(group)

        def on_act(site: str, t: torch.Tensor, batch=batch, B=B) -> None:
            layer = sites[site]
            sae = saes[layer]
            x = t.reshape(-1, t.shape[-1])[batch.flat_N].to(sae.dtype)
            fired = (sae.encode(x) > 0).float() if x.shape[0] else torch.zeros((0, int(sae.cfg.d_sae)))
            seen = torch.zeros((B, fired.shape[1]), device=fired.device).index_add_(0, batch.seg_N, fired) > 0
            for b, i in enumerate(batch.sample_index):
                out[i][layer] = torch.nonzero(seen[b]).flatten().cpu().numpy().astype(np.int64)

        backend.run(batch.input_ids_BT, batch.attention_mask_BT, list(sites), on_act, batch.position_ids_BT)
    return out


# ----- gold log-probabilities ---------------------------------------------------------------------------------


@torch.inference_mode()
def gold_logprobs(
    lm: LoadedModel,
    samples: Sequence[Sample],
    ablations: Sequence[Ablation | None] = (None,),
    saes: Mapping[int, Any] | None = None,
    prompt_format: str = "auto",
    max_length: int = 2048,
    max_batch_tokens: int = 2048,
    max_batch_size: int = 8,
    padding_side: str = "right",
) -> np.ndarray:
    """log p(response | prompt) of each sample, summed over its response tokens (nats), under each condition.

    Returns float64 [len(ablations), N]; None in ``ablations`` is the clean model. Tokens are those MUI scores with
    the ``predicting`` alignment (special tokens in the response are neither scored nor summed); a sample without
    response tokens gets 0. Every condition reuses one batch plan, so clean and ablated values see the same
    padding. Logits are computed only at the needed columns (``logits_to_keep``) to bound memory (vocab × tokens).
    """
    enc = encode_samples(lm.tokenizer, samples, "predicting", prompt_format, max_length)
    for a in ablations:
        for what, sets in (("neurons", a and a.neurons), ("features", a and a.features)):
            if sets is not None and len(sets) != len(samples):
                raise SaemuiError(
                    f"ablation {a.name!r}: {what} has {len(sets)} entries for {len(samples)} samples"
                )
    out = np.zeros((len(ablations), len(samples)), dtype=np.float64)
    keep_cols = accepts_logits_to_keep(lm.model)
    for group in plan_batches(enc, max_batch_tokens, max_batch_size):
        batch = collate([enc[i] for i in group], lm.tokenizer.pad_token_id, padding_side, lm.device)
        if not batch.n_tokens:
            continue
        T = batch.input_ids_BT.shape[1]
        col_N = batch.flat_N % T
        kwargs = {}
        if keep_cols:
            cols = torch.unique(col_N)
            kwargs["logits_to_keep"] = cols
            col_N = torch.searchsorted(cols, col_N)
        for c, a in enumerate(ablations):
            neurons, features = a.rows(group) if a is not None else (None, None)
            with ablated(lm, neurons, features, saes):
                logits = lm.model(
                    input_ids=batch.input_ids_BT,
                    attention_mask=batch.attention_mask_BT,
                    position_ids=batch.position_ids_BT,
                    use_cache=False,
                    **kwargs,
                ).logits
            lg = logits[batch.seg_N, col_N].float()
            lp = lg.gather(1, batch.target_N[:, None]).squeeze(1) - torch.logsumexp(lg, dim=-1)
            per_row = torch.zeros(len(group), dtype=torch.float64).index_add_(
                0, batch.seg_N.cpu(), lp.double().cpu()
            )
            out[c, batch.sample_index] = per_row.numpy()
    return out


# ----- ablated generation -------------------------------------------------------------------------------------


@torch.inference_mode()
def generate_ablated(
    lm: LoadedModel,
    prompts: Sequence[str],
    ablations: Sequence[Ablation | None] = (None,),
    saes: Mapping[int, Any] | None = None,
    max_new_tokens: int = 64,
    stop: Sequence[str] = (),
    prompt_format: str = "auto",
    batch_size: int = 16,
) -> list[list[str]]:
    """Greedy responses to ``prompts`` under each condition ([len(ablations)][N]): :func:`saemui.tasks.generation.
    generate` (same batches, left padding, stops) with each batch generated inside :func:`ablated`, so the clean
    condition (None) gives its responses. Ablation sets are indexed by prompt position."""
    from saemui.tasks.generation import generate

    def around(a: Ablation | None):
        def enter(idx: list[int]):
            neurons, features = a.rows(idx) if a is not None else (None, None)
            return ablated(lm, neurons, features, saes)

        return enter

    return [
        generate(
            lm,
            prompts,
            max_new_tokens,
            stop,
            prompt_format,
            batch_size,
            progress=False,
            around_batch=around(a),
        )
        for a in ablations
    ]


# ----- the two arms of §8.5 -----------------------------------------------------------------------------------


def _basis(result: MUIResult) -> str:
    kind = (result.summary.get("units") or {}).get("kind")
    if kind not in ("neurons", "sae"):
        raise SaemuiError(f"result: unit kind {kind!r} (expected 'neurons' or 'sae')")
    return kind


def result_samples(result: MUIResult) -> list[Sample]:
    """The run's (prompt, response) records from its sample rows (results written since prompts were kept)."""
    rows = result.samples
    if any("prompt" not in r or "response" not in r for r in rows):
        raise SaemuiError(
            "result: its samples.csv has no prompt/response columns; pass the records as samples="
        )
    return [Sample(str(r["prompt"]), str(r["response"]), str(r["id"]), r.get("correct")) for r in rows]


def _sae_spec(result: MUIResult) -> str:
    src = (result.summary.get("units") or {}).get("sae_source") or {}
    spec = src.get("path") or src.get("release")
    if not spec:
        raise SaemuiError("result: its summary names no SAE source; pass saes=")
    return str(spec)


def _prepare(lm: LoadedModel, result: MUIResult, saes: Mapping[int, Any] | str | os.PathLike | None):
    basis = _basis(result)
    keys = key_sets(result)
    if basis == "neurons":
        if result.n_units != lm.d_mlp:
            raise SaemuiError(f"result: {result.n_units} neurons per layer, the model's MLP has {lm.d_mlp}")
        return basis, keys, None
    if saes is None or isinstance(saes, str | os.PathLike):
        saes = load_saes(lm, saes or _sae_spec(result), result.layers)
    missing = sorted(set(result.layers) - set(saes))
    if missing:
        raise SaemuiError(f"saes: no SAE for layer(s) {missing} of the result")
    return basis, keys, saes


@dataclass
class LogprobArm:
    """Arm (a) of §8.5 for one point: gold log-probabilities clean, key-ablated and under random controls.

    ids: sample ids (the run's order). basis: "neurons" or "sae". clean, key: [N] log p(gold | prompt), nats.
    random: [N, R] one column per draw. n_key: [N] key units ablated per sample (all layers). n_tokens: [N] gold
    tokens summed. shortfall: [N, R] units a control could not draw (fewer candidates than key units).
    """

    ids: list[str]
    basis: str
    clean: np.ndarray
    key: np.ndarray
    random: np.ndarray
    n_key: np.ndarray
    n_tokens: np.ndarray
    shortfall: np.ndarray
    seed: int = 0
    meta: dict = field(default_factory=dict)

    @property
    def delta_key(self) -> np.ndarray:
        """Δlogp of the key ablation per item: clean minus ablated (positive = the ablation hurt)."""
        return self.clean - self.key

    @property
    def delta_random(self) -> np.ndarray:
        """[N, R] Δlogp of each random control."""
        return self.clean[:, None] - self.random

    def to_dict(self) -> dict:
        arrays = {
            k: getattr(self, k).tolist() for k in ("clean", "key", "random", "n_key", "n_tokens", "shortfall")
        }
        return {
            "format": ARM_FORMAT,
            "ids": self.ids,
            "basis": self.basis,
            "seed": self.seed,
            "meta": self.meta,
            **arrays,
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write as JSON atomically (floats round-trip exactly)."""
        atomic_write_json(Path(path), self.to_dict())
        return Path(path)


def load_logprob_arm(path: str | os.PathLike) -> LogprobArm:
    d = read_json(Path(path), dict, "causal log-prob record")
    if d.get("format") != ARM_FORMAT:
        raise SaemuiError(f"{path}: field 'format' is {d.get('format')!r}, expected {ARM_FORMAT!r}")
    try:
        arr = {k: np.asarray(d[k], dtype=float) for k in ("clean", "key", "random")}
        ints = {k: np.asarray(d[k], dtype=np.int64) for k in ("n_key", "n_tokens", "shortfall")}
        return LogprobArm(
            [str(i) for i in d["ids"]],
            str(d["basis"]),
            **arr,
            **ints,
            seed=int(d["seed"]),
            meta=d.get("meta") or {},
        )
    except (KeyError, TypeError, ValueError) as e:
        raise SaemuiError(
            f"{path}: not a complete causal log-prob record ({type(e).__name__}: {e})"
        ) from None


def logprob_arm(
    lm: LoadedModel,
    result: MUIResult,
    samples: Sequence[Sample] | None = None,
    saes: Mapping[int, Any] | str | os.PathLike | None = None,
    n_draws: int = 5,
    seed: int = 0,
    max_batch_tokens: int = 2048,
    max_batch_size: int = 8,
) -> LogprobArm:
    """Arm (a) of §8.5: with the key sets of ``result`` (e.g. the teacher-forced gold pass, set G), log p(gold |
    prompt) clean, with each sample's key units ablated (all layers at once), and under ``n_draws`` random controls
    of the same sizes. ``samples`` default to the run's own records (prompt + gold response); the prompt format and
    max length are the run's. SAE runs: ``saes`` (loaded dict or spec; default the run's SAE source); the control
    draws among the features active on the sample's scored positions."""
    basis, keys, saes_ = _prepare(lm, result, saes)
    samples = list(samples) if samples is not None else result_samples(result)
    ids = [str(r["id"]) for r in result.samples]
    if len(samples) != len(ids) or any(s.id is not None and str(s.id) != i for s, i in zip(samples, ids)):
        raise SaemuiError(
            "samples: expected the run's records in its order (ids differ from the result's samples)"
        )
    cfg = result.summary.get("config") or {}
    fmt, max_length = cfg.get("prompt_format", "auto"), int(cfg.get("max_length", 2048))
    if basis == "neurons":
        draws, short = random_control_sets(keys, lm.d_mlp, n_draws, seed)
        kind = "neurons"
    else:
        pool = active_features(lm, samples, saes_, cfg.get("alignment", "response"), fmt, max_length)
        draws, short = random_control_sets(keys, result.n_units, n_draws, seed, candidates=pool)
        kind = "features"
    conds = [None, Ablation("key", **{kind: keys})]
    conds += [Ablation(f"random{d}", **{kind: draws[d]}) for d in range(n_draws)]
    lp = gold_logprobs(lm, samples, conds, saes_, fmt, max_length, max_batch_tokens, max_batch_size)
    enc = encode_samples(lm.tokenizer, samples, "predicting", fmt, max_length)
    return LogprobArm(
        ids=ids,
        basis=basis,
        clean=lp[0],
        key=lp[1],
        random=lp[2:].T.copy(),
        n_key=np.array([sum(len(v) for v in k.values()) for k in keys], dtype=np.int64),
        n_tokens=np.array([len(e.score_pos) for e in enc], dtype=np.int64),
        shortfall=short,
        seed=seed,
        meta={"model": lm.name, "selection": result.summary.get("selection"), "prompt_format": fmt},
    )


@dataclass
class AccuracyArm:
    """Arm (b) of §8.5 for one point: correctness of greedy answers clean, key-ablated and under random controls.

    ids: item ids. clean, key: [N] bool. random: [N, R] bool. responses: condition name → responses (item order).
    """

    ids: list[str]
    clean: np.ndarray
    key: np.ndarray
    random: np.ndarray
    responses: dict[str, list[str]] = field(default_factory=dict)
    shortfall: np.ndarray | None = None


def accuracy_arm(
    lm: LoadedModel,
    task: Task | str,
    items: Sequence[Item],
    result: MUIResult,
    style: str | None = None,
    saes: Mapping[int, Any] | str | os.PathLike | None = None,
    n_draws: int = 2,
    seed: int = 0,
    clean_from_result: bool = False,
    batch_size: int = 16,
) -> AccuracyArm:
    """Arm (b) of §8.5: greedy answers to ``items`` with each item's key units (from ``result``, the model's
    free-generation run on these items, matched by id) ablated, and under ``n_draws`` random controls; scored by
    the task. The clean arm is regenerated in the same batches (``clean_from_result``: take the run's own
    ``correct`` instead, saving one generation). ``style`` defaults to the run's records' ``meta["style"]``."""
    from saemui.tasks.base import get_task
    from saemui.tasks.generation import prompt_format_for
    from saemui.tasks.responses import make_sample

    task = get_task(task)
    basis, keys, saes_ = _prepare(lm, result, saes)
    by_id = {str(r["id"]): i for i, r in enumerate(result.samples)}
    missing = [str(it.id) for it in items if str(it.id) not in by_id]
    if missing:
        raise SaemuiError(f"items: item {missing[0]!r} is not among the result's samples")
    pos = [by_id[str(it.id)] for it in items]
    if style is None:
        styles = {((result.samples[p].get("meta") or {}).get("style")) for p in pos}
        if len(styles) != 1 or None in styles:
            raise SaemuiError("style: the result's records do not name one prompt style; pass style=")
        style = styles.pop()
    item_keys = [keys[p] for p in pos]
    if basis == "neurons":
        draws, short = random_control_sets(item_keys, lm.d_mlp, n_draws, seed)
        kind = "neurons"
    else:
        records = result_samples(result)
        rec = [records[p] for p in pos]
        cfg = result.summary.get("config") or {}
        pool = active_features(
            lm,
            rec,
            saes_,
            cfg.get("alignment", "response"),
            cfg.get("prompt_format", "auto"),
            int(cfg.get("max_length", 2048)),
        )
        draws, short = random_control_sets(item_keys, result.n_units, n_draws, seed, candidates=pool)
        kind = "features"
    conds: list[Ablation | None] = [] if clean_from_result else [None]
    conds += [Ablation("key", **{kind: item_keys})] + [
        Ablation(f"random{d}", **{kind: draws[d]}) for d in range(n_draws)
    ]
    prompts = [task.format_prompt(it, style) for it in items]
    gen = generate_ablated(
        lm,
        prompts,
        conds,
        saes_,
        task.max_new_tokens,
        task.stop_sequences(style),
        prompt_format_for(style),
        batch_size,
    )
    names = [c.name if c is not None else "clean" for c in conds]
    correct = {
        n: np.array(
            [bool(make_sample(task, it, r, p, style).correct) for it, r, p in zip(items, resp, prompts)]
        )
        for n, resp in zip(names, gen)
    }
    if clean_from_result:
        correct["clean"] = np.array([bool(result.samples[p].get("correct")) for p in pos])
    return AccuracyArm(
        ids=[str(it.id) for it in items],
        clean=correct["clean"],
        key=correct["key"],
        random=np.stack([correct[f"random{d}"] for d in range(n_draws)], axis=1),
        responses=dict(zip(names, gen)),
        shortfall=short,
    )


__all__ = [
    "ARM_FORMAT",
    "Ablation",
    "AccuracyArm",
    "LogprobArm",
    "UnitSets",
    "ablated",
    "accuracy_arm",
    "active_features",
    "generate_ablated",
    "gold_logprobs",
    "key_sets",
    "load_logprob_arm",
    "load_saes",
    "logprob_arm",
    "random_control_sets",
    "result_samples",
]
