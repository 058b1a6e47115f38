"""Building the zoo: evaluate one (model, task) point, and run every pending stage of the plan under per-root
locks. Records are written atomically; a killed build resumes from the stages and training states it left.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from saemui.engine import RunConfig, compute_mui
from saemui.errors import SaemuiError
from saemui.io import atomic_write_compact_json, atomic_write_json
from saemui.models import LoadedModel, load_model
from saemui.tasks import get_task
from saemui.tasks.pipeline import run_task
from saemui.zoo.finetune import load_zoo_model, train
from saemui.zoo.record import sae_fields, write_items_file, zoo_record
from saemui.zoo.spec import ZooModel, ZooSpec, ZooTask, eval_items
from saemui.zoo.stages import STAGE_SCHEMA, Stage, eval_fingerprint, generation_key, plan, zoo_cache


def evaluate(
    spec: ZooSpec, m: ZooModel, t: ZooTask, lm: LoadedModel, gen_cache: Path, progress: bool = False
) -> tuple[dict, dict]:
    """Generate, score and measure one (model, task) point. Returns (result record, timing info).

    The main measurement is :func:`~saemui.tasks.pipeline.run_task` in the neuron basis; the extra selection
    rules and the root's SAE basis (when the spec names a bundle) re-measure the same scored records.
    """
    task = get_task(t.name, **dict(t.options), max_new_tokens=t.max_new_tokens)
    items = eval_items(spec, t)
    t0 = time.perf_counter()
    cfg = RunConfig(units="neurons", threshold=spec.threshold, health=False)
    run = run_task(
        lm,
        task,
        items,
        cfg,
        style=spec.root_of(m).style,
        cache=gen_cache,
        batch_size=spec.gen_batch_size,
        progress=progress,
    )
    gen, cfg, s = run.generation, run.config, run.result.summary
    sens = [{"selection": s["selection"], "threshold": cfg.resolved().threshold, "mui": s["mui"]}]
    for rule in spec.extra_selections:
        r2 = compute_mui(
            lm, gen.samples, replace(cfg, threshold=rule, keep_sets=False), progress=progress
        ).summary
        sens.append({"selection": r2["selection"], "threshold": rule, "mui": r2["mui"]})
    sae = None
    bundle = dict(spec.saes).get(spec.root_of(m).name)
    if bundle:
        cfg_sae = RunConfig(units="sae", saes=bundle, prompt_format=gen.prompt_format, health=False)
        rs = compute_mui(lm, gen.samples, cfg_sae, progress=progress)
        sae = sae_fields(rs, len(gen.samples), spec.max_set_entries)
    record = zoo_record(
        spec, m, t, run, sens, sae, (lm.provenance or {}).get("sha256"), eval_fingerprint(spec, m, t)
    )
    timing = {
        "seconds_generate": gen.seconds,
        "seconds_mui": time.perf_counter() - t0 - gen.seconds,
        "n_generated": gen.n_generated,
    }
    return record, timing


@dataclass
class BuildReport:
    """What a build did: stages run and skipped, with wall-clock seconds per run stage."""

    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)


def build(
    spec: ZooSpec,
    results: Path,
    cache: Path | None = None,
    only: Sequence[str] | None = None,
    device: str | None = None,
    progress: bool = False,
    log_fn: Callable[[str], None] = print,
) -> BuildReport:
    """Run every pending stage of ``plan``; roots are loaded once each and reused for their derived models.

    Holds one lock file per root model in the zoo's cache directory: two builds that share a root (and so
    weight directories) cannot interleave, while builds of disjoint roots (``--only 'smollm2*'`` and
    ``--only 'gemma3*'``) can run side by side, one core each.
    """
    results = Path(results)
    root_dir = zoo_cache(spec, cache)
    stages = plan(spec, results, cache, only=only)
    report = BuildReport()
    root_dir.mkdir(parents=True, exist_ok=True)
    roots = sorted({spec.root_of(spec.model(s.model)).name for s in stages if s.needed})
    with contextlib.ExitStack() as locks:
        for r in roots:
            locks.enter_context(_build_lock(root_dir / f"build-{r}.lock"))
        _run_stages(spec, stages, results, root_dir, report, device, progress, log_fn)
    return report


@contextlib.contextmanager
def _build_lock(path: Path) -> Iterator[None]:
    # two builds of one root would train into the same weight directories: refuse the second one
    import fcntl  # POSIX only: imported here so that reading zoo records works everywhere

    with open(path, "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise SaemuiError(
                f"{path}: another build of this zoo is running on the same root model (wait for it, or stop it)"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _run_stages(
    spec: ZooSpec,
    stages: list[Stage],
    results: Path,
    root_dir: Path,
    report: BuildReport,
    device: str | None,
    progress: bool,
    log_fn: Callable[[str], None],
) -> None:
    for s in stages:
        if not s.needed:
            report.skipped.append(s.id)
    todo = [s for s in stages if s.needed]
    roots = list(dict.fromkeys(spec.root_of(spec.model(s.model)).name for s in todo))
    for root_name in roots:
        root = spec.model(root_name)
        log_fn(f"loading {root.base}")
        root_lm = load_model(root.base, device=device)
        mine = [s for s in todo if spec.root_of(spec.model(s.model)).name == root_name]
        for s in [x for x in mine if x.kind == "train"]:
            m = spec.model(s.model)
            log_fn(f"[{s.id}] training ({m.train_method}, {m.steps} steps)")
            t0 = time.perf_counter()
            info = train(spec, m, root_lm, root_dir / "weights" / m.name, progress=True, log_fn=log_fn)
            atomic_write_json(
                s.record, {"schema": STAGE_SCHEMA, "stage": s.id, "fingerprint": s.fingerprint, **info}
            )
            report.ran.append(s.id)
            report.seconds[s.id] = time.perf_counter() - t0
        evals = [x for x in mine if x.kind == "eval"]
        for model_name in dict.fromkeys(x.model for x in evals):
            m = spec.model(model_name)
            lm = load_zoo_model(spec, m, root_lm, root_dir / "weights")
            for s in [x for x in evals if x.model == model_name]:
                t = spec.task(s.task)
                t0 = time.perf_counter()
                gen_cache = (
                    root_dir / "generations" / f"{m.name}__{t.name}__{generation_key(spec, m, t)}.jsonl"
                )
                record, timing = evaluate(spec, m, t, lm, gen_cache, progress)
                atomic_write_compact_json(s.record, record)
                if not (results / "items" / f"{t.name}.json").is_file():
                    write_items_file(spec, t, results)
                atomic_write_json(
                    root_dir / "stages" / f"eval__{m.name}__{t.name}.json",
                    {"schema": STAGE_SCHEMA, "stage": s.id, "fingerprint": s.fingerprint, **timing},
                )
                report.ran.append(s.id)
                report.seconds[s.id] = time.perf_counter() - t0
                log_fn(
                    f"[{s.id}] accuracy {100 * record['accuracy']:.1f} %, MUI {100 * record['mui']:.4f} % "
                    f"({report.seconds[s.id]:.1f} s)"
                )
            del lm


__all__ = [
    "BuildReport",
    "build",
    "evaluate",
]
