"""MUI over many processes / GPUs: each rank measures a shard, counters merge by all-reduce, rank 0 saves.

CPU (gloo), two processes on one machine::

    torchrun --nproc_per_node 2 scripts/mui_distributed.py --saes PATH --samples FILE.jsonl --out runs/x

GPUs (nccl): the same with one process per GPU; each rank uses ``cuda:LOCAL_RANK``. Without torchrun
(no ``WORLD_SIZE`` in the environment) it runs as a single process, which is the reference the merge must equal.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

from saemui.cli.args import (
    add_data_args,
    add_model_args,
    add_performance_args,
    add_units_args,
    run_config_fields,
)
from saemui.distributed import gather_result, shard_batches
from saemui.engine import RunConfig, compute_mui
from saemui.models import load_model
from saemui.records import BUILTIN_SAMPLES, read_samples


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The MUI flags of ``saemui run`` (model, units and threshold, data, performance) plus the driver's own."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_args(p, device_help="default: cuda:LOCAL_RANK when CUDA exists, else cpu")
    add_units_args(p)
    add_data_args(p)
    add_performance_args(p)
    g = p.add_argument_group("distributed")
    g.add_argument(
        "--threads", type=int, default=None, help="torch threads per rank (default: cores / local ranks)"
    )
    g.add_argument("--out", required=True, help="result directory (written by rank 0)")
    g.add_argument("--timing-json", default=None, help="rank 0 also writes wall times here")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    # Ranks on one machine share its cores: without a cap each would start cores-many threads and thrash.
    torch.set_num_threads(args.threads or max(1, (os.cpu_count() or 1) // local_world))
    device = args.device or (f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    if world > 1:
        backend = "nccl" if device.startswith("cuda") else "gloo"
        if device.startswith("cuda"):
            torch.cuda.set_device(torch.device(device))
        dist.init_process_group(backend, timeout=timedelta(minutes=30))

    t0 = time.perf_counter()
    lm = load_model(args.model, device=device, dtype=args.dtype)
    samples = read_samples(args.samples or BUILTIN_SAMPLES)[: args.limit]
    cfg = RunConfig(units="neurons" if args.neurons else "sae", saes=args.saes, **run_config_fields(args))
    # Whole batches of the single-process plan per rank: the merged result is then byte-identical to one process.
    index, shard = shard_batches(lm, samples, cfg, rank, world)
    t1 = time.perf_counter()
    # With more ranks than batches a rank has nothing to measure; it still joins the merge.
    local = compute_mui(lm, shard, cfg, progress=rank == 0) if shard or world == 1 else None
    t2 = time.perf_counter()
    result = gather_result(local, index) if world > 1 else local
    t3 = time.perf_counter()
    if rank == 0:
        result.save(args.out)
        times = {
            "world_size": world,
            "threads_per_rank": torch.get_num_threads(),
            "seconds_setup": t1 - t0,
            "seconds_mui": t2 - t1,
            "seconds_merge": t3 - t2,
            # The merge is collective, so rank 0 passes it only after the slowest rank: this is the run's wall time.
            "seconds_wall": t3 - t1,
            "mui": result.mui,
            "n_samples": result.summary["n_samples"],
            "n_tokens": result.summary["n_tokens"],
            "response_tokens": sum(r["n_response_tokens"] for r in result.samples),
        }
        if args.timing_json:
            Path(args.timing_json).write_text(json.dumps(times, indent=2) + "\n")
        print(
            f"MUI {100 * result.mui:.4f}% over {times['n_samples']} samples on {world} rank(s) -> {args.out}"
        )
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
