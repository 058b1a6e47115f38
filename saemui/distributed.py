"""Data parallelism with torch.distributed: shard the samples, run MUI per rank, merge the counters.

MUI is a union over samples, so ranks never need to talk during the forward: each rank runs ``compute_mui`` on
its shard and the counters merge exactly afterwards (union by MAX, counts by SUM, per-sample sets by gather).
Works with ``gloo`` (CPU) and ``nccl`` (GPU). Typical use (see ``scripts/mui_distributed.py``)::

    index, shard = shard_samples(samples, rank, world)
    local = compute_mui(lm, shard, cfg)
    merged = gather_result(local, index)  # same MUIResult on every rank
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributed as dist

from saemui.counter import UtilizationCounter
from saemui.errors import SaemuiError
from saemui.health import firing_stats
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


def _merge_health(parts: list[list[dict] | None], counter: UtilizationCounter) -> list[dict] | None:
    if not parts or parts[0] is None:
        return None
    fire = counter.fire_LU.numpy()
    ntok = counter.n_tokens_L.numpy()
    out = []
    for r, layer in enumerate(counter.layers):
        row = firing_stats(layer, fire[r], int(ntok[r]))
        # Per-token means merge exactly as token-weighted means; explained variance needs the global mean of x,
        # which ranks do not share, so its merge is approximate (flagged below).
        rows = [p[r] for p in parts if p is not None]
        weights = [float(p.get("_n_tokens", 0)) for p in rows]
        for key in ("mse", "l2_ratio", "cossim", "explained_variance"):
            vals = [(w, p.get(key)) for w, p in zip(weights, rows) if p.get(key) is not None and w > 0]
            if vals:
                row[key] = sum(w * v for w, v in vals) / sum(w for w, _ in vals)
        out.append(row)
    return out


def gather_result(local: MUIResult, index: Sequence[int], group=None) -> MUIResult:
    """Merge per-rank results of ``compute_mui`` over disjoint shards into the result of all samples.

    ``index``: the global sample positions of this rank's shard (from :func:`shard_samples`). Collective: every
    rank must call it; every rank gets the merged result. MUI, union, counts and per-sample sets equal a
    single-process run exactly; timing is kept per rank.
    """
    world = dist.get_world_size(group)
    counter = all_reduce_counter(counter_from_result(local, index), group=group)
    n = len(counter.samples_seen)
    if counter.samples_seen != set(range(n)):
        raise SaemuiError("merged shards do not cover sample positions 0..N-1 (use shard_samples)")

    rows: list = [None] * world
    dist.all_gather_object(rows, [dict(r, index=g) for r, g in zip(local.samples, index)], group=group)
    all_rows = sorted((r for part in rows for r in part), key=lambda r: r["index"])

    health = local.summary.get("sae_health")
    if health is not None:
        nt = local.arrays["n_tokens_L"]
        health = [dict(h, _n_tokens=int(nt[r])) for r, h in enumerate(health)]
    healths: list = [None] * world
    dist.all_gather_object(healths, health, group=group)
    timings: list = [None] * world
    dist.all_gather_object(
        timings, dict(local.run_info.get("timing") or {}, n_samples=len(index)), group=group
    )

    arrays = counter.arrays(n)
    s = dict(local.summary)
    # Keys already in the local summary keep their place, so the merged summary.json has a single run's layout.
    s.update(summary_counts(counter, all_rows))
    s.update(
        {
            "sae_health": _merge_health(healths, counter),
            "distributed": {
                "world_size": world,
                "backend": dist.get_backend(group),
                "merge": "union MAX (uint8), fire/keyfreq/tokens SUM, sets all_gather_object",
                "explained_variance": "token-weighted mean of per-rank values (approximate)",
            },
        }
    )
    # Timing varies between identical runs, so it goes to run.json, never into the deterministic summary.
    run_info = dict(local.run_info)
    run_info["timing"] = {
        "seconds_total": max(t.get("seconds_total", 0.0) for t in timings),
        "per_rank": timings,
        "note": "wall-clock per rank; the run's wall time is the slowest rank",
    }
    out = MUIResult(s, arrays, all_rows, run_info)
    out.set_mui_correct()
    return out
