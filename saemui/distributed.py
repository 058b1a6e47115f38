"""Data parallelism with torch.distributed: shard the samples, run MUI per rank, merge the counters.

MUI is a union over samples, so ranks never need to talk during the forward: each rank runs ``compute_mui`` on
its shard and the counters merge exactly afterwards (union by MAX, counts by SUM, per-sample sets by gather).
SAE health merges exactly too: every rank keeps integer-exact sums (:class:`saemui.health.HealthAccumulator`),
which add up to the single-process sums in any order. Works with ``gloo`` (CPU) and ``nccl`` (GPU). Typical use
(see ``scripts/mui_distributed.py``)::

    index, shard = shard_batches(lm, samples, cfg, rank, world)
    local = compute_mui(lm, shard, cfg) if shard else None  # more ranks than batches: some are idle
    merged = gather_result(local, index)  # same MUIResult on every rank

With :func:`shard_batches` every rank runs whole batches of the single-process plan, so each token is computed
with the same padding as in one process and the saved summary, arrays and sample table are byte-identical to a
single-process run on the same device, dtype and thread count. (A token's activations depend, in the last bits,
on the padded length of its batch; :func:`shard_samples` re-batches each shard, which keeps MUI, union, counts
and sets exact but moves SAE-health figures in their last few digits.)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributed as dist

from saemui.config import RunConfig
from saemui.counter import UtilizationCounter
from saemui.errors import SaemuiError
from saemui.health import HealthAccumulator, health_rows
from saemui.inputs import encode_samples, plan_batches
from saemui.models import LoadedModel
from saemui.records import Sample, assign_ids
from saemui.result import MUIResult, summary_counts


def shard_samples(samples: Sequence[Sample], rank: int, world: int) -> tuple[list[int], list[Sample]]:
    """This rank's share: (global positions, samples), strided so every rank gets a mix of lengths.

    Ids are assigned over the *whole* list first (position as id), so they stay unique across ranks and a merged
    result names samples exactly as a single-process run would.
    """
    if world < 1 or not 0 <= rank < world:
        raise SaemuiError(f"rank {rank} / world size {world} invalid")
    copies = assign_ids([Sample(s.prompt, s.response, s.id, s.correct, dict(s.meta)) for s in samples])
    index = list(range(rank, len(copies), world))
    return index, [copies[i] for i in index]


def shard_batches(
    lm: LoadedModel, samples: Sequence[Sample], cfg: RunConfig, rank: int, world: int
) -> tuple[list[int], list[Sample]]:
    """This rank's share as whole batches of the single-process batch plan: (global positions, samples).

    Batches go to the least-loaded rank (padded tokens) in plan order, longest first. Running ``compute_mui`` on
    the returned samples (kept in their global order) re-plans exactly these batches: the plan's cuts depend only
    on a batch's longest sample and size, never on the sample that follows. A rank may get no batch (more ranks
    than batches); it then passes None to :func:`gather_result`.
    """
    if world < 1 or not 0 <= rank < world:
        raise SaemuiError(f"rank {rank} / world size {world} invalid")
    cfg = cfg.resolved()
    copies = assign_ids([Sample(s.prompt, s.response, s.id, s.correct, dict(s.meta)) for s in samples])
    encoded = encode_samples(lm.tokenizer, copies, cfg.alignment, cfg.prompt_format, cfg.max_length)
    plan = plan_batches(encoded, cfg.max_batch_tokens, cfg.max_batch_size)
    load = [0] * world
    mine: list[list[int]] = []
    for batch in plan:
        r = min(range(world), key=lambda i: (load[i], i))
        load[r] += max(len(encoded[i].ids) for i in batch) * len(batch)
        if r == rank:
            mine.append(batch)
    index = sorted(i for batch in mine for i in batch)
    # The engine re-plans the shard; check it finds the same batches (positions are shard-local there).
    replanned = plan_batches([encoded[i] for i in index], cfg.max_batch_tokens, cfg.max_batch_size)
    if [[index[j] for j in batch] for batch in replanned] != mine:
        raise SaemuiError("internal: a shard's batches differ from the single-process plan")
    return index, [copies[i] for i in index]


def counter_from_result(result: MUIResult, index: Sequence[int] | None = None) -> UtilizationCounter:
    """Rebuild a counter from a result; ``index`` maps the result's sample positions to global positions."""
    n = int(result.summary["n_samples"])
    index = list(range(n)) if index is None else list(index)
    if len(index) != n:
        raise SaemuiError(f"index has {len(index)} entries, the result has {n} samples")
    a = result.arrays
    L = len(result.layers)
    if a["set_indptr"].size > 0 and a["set_indptr"].size != n * L + 1:
        raise SaemuiError(
            f"arrays.npz: set_indptr has {a['set_indptr'].size} entries, expected samples × layers + 1 = "
            f"{n * L + 1}"
        )
    return UtilizationCounter.from_arrays(a, list(result.layers), result.n_units, index)


def _collective_device(group=None) -> torch.device:
    # NCCL only reduces CUDA tensors; gloo only CPU ones.
    if dist.get_backend(group) == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_counter(counter: UtilizationCounter, group=None) -> UtilizationCounter:
    """Merge every rank's counter in place; afterwards each rank holds the counter of all samples.

    union: MAX over uint8 (a bitwise OR of 0/1; bool is not reducible on every backend); fire, keyfreq and token
    counts: SUM; seen samples and per-sample sets: ``all_gather_object`` (small: a few ids per sample and layer).
    Ranks must hold disjoint samples over the same layers and units.
    """
    world = dist.get_world_size(group)
    shapes: list = [None] * world
    dist.all_gather_object(shapes, (list(counter.layers), counter.n_units, counter.keep_sets), group=group)
    if any(s != shapes[0] for s in shapes):
        raise SaemuiError(f"ranks disagree on (layers, units, keep_sets): {shapes}")
    dev = _collective_device(group)
    home = counter.union_LU.device

    u8 = counter.union_LU.to(device=dev, dtype=torch.uint8)
    dist.all_reduce(u8, op=dist.ReduceOp.MAX, group=group)
    sums = []
    for t in (counter.fire_LU, counter.keyfreq_LU, counter.n_tokens_L):
        t = t.to(device=dev, dtype=torch.int64)
        dist.all_reduce(t, op=dist.ReduceOp.SUM, group=group)
        sums.append(t)

    seen: list = [None] * world
    dist.all_gather_object(seen, sorted(counter.samples_seen), group=group)
    merged: set[int] = set()
    for part in seen:
        overlap = merged.intersection(part)
        if overlap:
            raise SaemuiError(f"ranks share samples (e.g. {sorted(overlap)[:3]}): shard them disjointly")
        merged.update(part)
    counter.replace_counts(u8.bool().to(home), sums[0].to(home), sums[1].to(home), sums[2].cpu(), merged)
    if counter.keep_sets:
        sets: list = [None] * world
        dist.all_gather_object(sets, counter.flat_sets(), group=group)
        counter.clear_sets()
        for part in sets:
            counter.add_flat_sets(part)
    return counter


def _merge_health(parts: list[dict | None], counter: UtilizationCounter) -> list[dict]:
    sums: dict[int, HealthAccumulator] = {}
    for part in parts:
        for layer, state in (part or {}).items():
            sums.setdefault(layer, HealthAccumulator()).merge(HealthAccumulator(**state))
    return health_rows(counter.layers, counter.fire_LU.numpy(), counter.n_tokens_L.numpy(), sums)


def gather_result(local: MUIResult | None, index: Sequence[int], group=None) -> MUIResult:
    """Merge per-rank results of ``compute_mui`` over disjoint shards into the result of all samples.

    ``index``: the global sample positions of this rank's shard (from :func:`shard_batches` or
    :func:`shard_samples`); ``local`` None for a rank without samples. Collective: every rank must call it; every
    rank gets the merged result. MUI, union, counts, per-sample sets and SAE health equal a single-process run
    exactly (health: see the module docstring); timing and how the run was split go to ``run_info``.
    """
    world = dist.get_world_size(group)
    if local is None and len(index):
        raise SaemuiError(f"this rank has {len(index)} samples but no result")
    # Every rank needs the run's layout; an idle rank takes it from the first rank with samples.
    protos: list = [None] * world
    mine = None if local is None else (local.summary, local.run_info, local.layers, local.n_units)
    dist.all_gather_object(protos, mine, group=group)
    first = next((p for p in protos if p is not None), None)
    if first is None:
        raise SaemuiError("no rank measured any sample")
    summary, run_info, layers, n_units = first
    if local is None:
        keep_sets = bool(summary.get("config", {}).get("keep_sets", True))
        counter = UtilizationCounter(list(layers), n_units, device="cpu", keep_sets=keep_sets)
    else:
        counter = counter_from_result(local, index)
    counter = all_reduce_counter(counter, group=group)
    n = len(counter.samples_seen)
    if counter.samples_seen != set(range(n)):
        raise SaemuiError("merged shards do not cover sample positions 0..N-1 (use shard_batches)")

    rows: list = [None] * world
    local_rows = [] if local is None else [dict(r, index=g) for r, g in zip(local.samples, index)]
    dist.all_gather_object(rows, local_rows, group=group)
    all_rows = sorted((r for part in rows for r in part), key=lambda r: r["index"])

    health = None
    if local is not None and local.summary.get("sae_health") is not None:
        if local.health_sums is None:
            raise SaemuiError(
                "a rank's result carries no SAE-health sums (loaded from disk?): merge results straight from "
                "compute_mui"
            )
        health = {layer: h.state() for layer, h in local.health_sums.items()}
    healths: list = [None] * world
    dist.all_gather_object(healths, health, group=group)
    timings: list = [None] * world
    local_timing = {} if local is None else (local.run_info.get("timing") or {})
    dist.all_gather_object(timings, dict(local_timing, n_samples=len(index)), group=group)

    arrays = counter.arrays(n)
    s = dict(summary)
    # Keys already in the local summary keep their place, so the merged summary.json has a single run's layout.
    s.update(summary_counts(counter, all_rows, (s.get("config") or {}).get("first_tokens")))
    if s.get("sae_health") is not None:
        s["sae_health"] = _merge_health(healths, counter)
    # How the run was split, like its timing, varies between runs of the same measurement: run.json, never the
    # deterministic summary.
    run_info = dict(run_info)
    run_info["distributed"] = {
        "world_size": world,
        "backend": dist.get_backend(group),
        "merge": "union MAX (uint8), fire/keyfreq/tokens SUM, sets all_gather_object, SAE health exact sums",
    }
    run_info["timing"] = {
        "seconds_total": max(t.get("seconds_total", 0.0) for t in timings),
        "per_rank": timings,
        "note": "wall-clock per rank; the run's wall time is the slowest rank",
    }
    out = MUIResult(s, arrays, all_rows, run_info)
    out.set_mui_correct()
    return out
