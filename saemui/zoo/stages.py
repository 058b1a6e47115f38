"""The zoo's stages and their bookkeeping: fingerprints, the plan (what is done, what must run) and its CPU cost.

Stages: ``train:<model>`` (writes weights under ``$SAEMUI_CACHE/zoo/<zoo>/weights/<model>/``) and
``eval:<model>:<task>`` (writes ``<results>/<model>__<task>.json``). Every stage has a fingerprint of everything
that determines its output (the model's derivation chain, the training data, the task, N, the MUI settings);
a stage whose record exists with the same fingerprint is skipped, so ``build_zoo.py`` can be killed and re-run
across sessions.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from saemui.errors import SaemuiError
from saemui.models import cache_dir
from saemui.zoo.record import result_path
from saemui.zoo.spec import GEMMA, SMOL, ZooModel, ZooSpec, ZooTask, validate

STAGE_SCHEMA = "saemui-zoo-stage/1"
#: bump when the meaning of a stage's output changes (forces a rebuild of every stage)
ZOO_VERSION = 1


@dataclass(frozen=True)
class Rates:
    """CPU rates for the cost estimate (``--plan``); defaults measured on the 2-core development machine.

    fwd_tok_s: forward tokens/s per root model spec (SmolLM2-135M measured ≈ 450 on the 2-core machine;
        Gemma-3-270M assumed half of that: twice the parameters, 262k-row unembedding).
    default_fwd: rate for roots not listed (tiny test models are far faster; the estimate is then an upper bound).
    gen_factor: generated tokens/s = forward rate / gen_factor (one token per step at batch 16 with a KV cache
        uses the cores far worse than a prefill).
    train_factor: a training token costs this many forward tokens (forward + backward ≈ 3).
    load_s: seconds to load a root (GGUF dequantize cached: ≈ 25 s SmolLM2, 55 s Gemma).
    """

    fwd_tok_s: tuple[tuple[str, float], ...] = ((SMOL, 450.0), (GEMMA, 225.0))
    default_fwd: float = 450.0
    gen_factor: float = 4.0
    train_factor: float = 3.0
    load_s: tuple[tuple[str, float], ...] = ((SMOL, 25.0), (GEMMA, 55.0))

    def fwd(self, root: str) -> float:
        return dict(self.fwd_tok_s).get(root, self.default_fwd)

    def load(self, root: str) -> float:
        return dict(self.load_s).get(root, 5.0)


@dataclass
class Stage:
    """One unit of work: ``train:<model>`` or ``eval:<model>:<task>``.

    fingerprint: digest of everything that determines the output; done: a matching record exists.
    cost_s: estimated CPU seconds (from ``Rates``); record: where the stage's JSON record lives.
    measured_s: wall-clock seconds the stage took when it ran (from its timing record), for calibrating rates.
    """

    id: str
    kind: str
    model: str
    task: str | None
    fingerprint: str
    cost_s: float
    record: Path
    done: bool = False
    needed: bool = True
    measured_s: float | None = None


def digest(obj: object) -> str:
    """Short stable hash of a JSON-able object (fingerprints of stages and zoo model weights)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _model_identity(m: ZooModel, spec: ZooSpec) -> list[dict]:
    return [asdict(x) for x in spec.chain(m)]


def train_fingerprint(spec: ZooSpec, m: ZooModel) -> str:
    extra = {}
    if m.data is not None and m.data.kind in ("eval-items", "arith"):
        # the eval items decide both the contaminated data and what a clean arith set must leave out
        extra = {"eval": [asdict(t) for t in spec.tasks], "n_items": spec.n_items}
    return digest({"v": ZOO_VERSION, "chain": _model_identity(m, spec), **extra})


def eval_fingerprint(spec: ZooSpec, m: ZooModel, t: ZooTask) -> str:
    src = spec.model(m.base) if m.derivation == "checkpoint-of" else m
    return digest(
        {
            "v": ZOO_VERSION,
            "model": _model_identity(m, spec),
            "train": train_fingerprint(spec, src) if src.trains else None,
            "task": asdict(t),
            "n_items": spec.n_items,
            "threshold": spec.threshold,
            "extra_selections": list(spec.extra_selections),
            "saes": dict(spec.saes).get(spec.root_of(m).name),
            "max_set_entries": spec.max_set_entries,
        }
    )


def generation_key(spec: ZooSpec, m: ZooModel, t: ZooTask) -> str:
    """Key of a (model, task) generation cache: weights and prompts only, so changing the MUI settings
    (thresholds, SAE bundles) re-measures MUI without regenerating."""
    src = spec.model(m.base) if m.derivation == "checkpoint-of" else m
    return digest(
        {
            "model": _model_identity(m, spec),
            "train": train_fingerprint(spec, src) if src.trains else None,
            "task": asdict(t),
            "n_items": spec.n_items,
        }
    )


def zoo_cache(spec: ZooSpec, cache: Path | None = None) -> Path:
    """``<cache>/zoo/<zoo name>`` (default cache: ``$SAEMUI_CACHE``): weights, generations and stage records."""
    return (cache or cache_dir()) / "zoo" / spec.name


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _train_tokens(m: ZooModel, spec: ZooSpec) -> float:
    # prompt + answer of a training pair, capped by max_length; arith/eval pairs are short, ARC ones long
    per = {"arith": 70, "eval-items": 90, "arc-train": 300}.get(m.data.kind if m.data else "", 100)
    return m.steps * m.batch_size * min(per, m.max_length)


def plan(
    spec: ZooSpec,
    results: Path,
    cache: Path | None = None,
    rates: Rates | None = None,
    only: Sequence[str] | None = None,
) -> list[Stage]:
    """All stages in execution order, with ``done`` (record matches) and ``needed`` (must run) set.

    only: model names or glob patterns (``fnmatch``) restricting the evals; trains run only when an eval that
    needs their weights is pending.
    """
    validate(spec)
    rates = rates or Rates()
    root_dir = zoo_cache(spec, cache)
    selected = [m for m in spec.models if not only or any(fnmatch.fnmatchcase(m.name, pat) for pat in only)]
    if only and not selected:
        raise SaemuiError(f"--only {','.join(only)}: matches no model of zoo {spec.name!r}")
    stages: list[Stage] = []
    pending_weights: set[str] = set()
    evals: list[Stage] = []
    for m in selected:
        root = spec.root_of(m).base
        fwd = rates.fwd(root)
        for t in spec.tasks:
            fp = eval_fingerprint(spec, m, t)
            rec = result_path(results, m.name, t.name)
            old = _read_json(rec)
            done = bool(old and old.get("fingerprint") == fp)
            n = spec.n_items
            gen = n * t.max_new_tokens / (fwd / rates.gen_factor) + n * t.prompt_tokens / fwd
            mui = n * (t.prompt_tokens + t.max_new_tokens / 2) / fwd * (1 + len(spec.extra_selections))
            if dict(spec.saes).get(spec.root_of(m).name):
                mui *= 1 + 1 / (1 + len(spec.extra_selections))
            st = Stage(f"eval:{m.name}:{t.name}", "eval", m.name, t.name, fp, gen + mui, rec, done, not done)
            timing = _read_json(root_dir / "stages" / f"eval__{m.name}__{t.name}.json")
            if done and timing and timing.get("fingerprint") == fp:
                st.measured_s = timing.get("seconds_generate", 0.0) + timing.get("seconds_mui", 0.0)
            evals.append(st)
            if not done and m.derivation != "none":
                pending_weights.add(m.base if m.derivation == "checkpoint-of" else m.name)
    for m in spec.models:
        if not m.trains:
            continue
        fp = train_fingerprint(spec, m)
        rec = root_dir / "stages" / f"train__{m.name}.json"
        old = _read_json(rec)
        done = bool(
            old and old.get("fingerprint") == fp and (root_dir / "weights" / m.name / "final").exists()
        )
        if m.name not in pending_weights and not done:
            continue  # nobody needs it now
        cost = _train_tokens(m, spec) * rates.train_factor / rates.fwd(spec.root_of(m).base)
        st = Stage(f"train:{m.name}", "train", m.name, None, fp, cost, rec, done, not done)
        st.measured_s = old.get("seconds") if done and old else None
        stages.append(st)
    return stages + evals


def format_plan(spec: ZooSpec, stages: list[Stage], rates: Rates | None = None) -> str:
    """A table of stages with status and estimated CPU time, plus per-root load time and the total."""
    rates = rates or Rates()
    lines = [
        f"zoo {spec.name!r}: {len(spec.models)} models × {len(spec.tasks)} tasks, N={spec.n_items} per task"
    ]
    lines.append(f"{'stage':<48} {'status':<7} {'est. CPU':>9} {'measured':>9}")
    todo = 0.0
    roots = set()
    for s in stages:
        status = "done" if s.done else "todo"
        took = _fmt_s(s.measured_s) if s.measured_s is not None else "-"
        lines.append(f"{s.id:<48} {status:<7} {_fmt_s(s.cost_s):>9} {took:>9}")
        if s.needed:
            todo += s.cost_s
            roots.add(spec.root_of(spec.model(s.model)).base)
    loads = sum(rates.load(r) for r in roots)
    all_roots = {spec.root_of(spec.model(s.model)).base for s in stages}
    total = sum(s.cost_s for s in stages) + sum(rates.load(r) for r in all_roots)
    lines.append(
        f"remaining: {sum(s.needed for s in stages)} of {len(stages)} stages, ≈ {_fmt_s(todo + loads)} "
        f"(incl. {_fmt_s(loads)} model loads); all stages from scratch ≈ {_fmt_s(total)}"
    )
    timed = [s for s in stages if s.measured_s]
    if timed:
        ratio = sum(s.measured_s for s in timed) / sum(s.cost_s for s in timed)
        lines.append(
            f"measured / estimated over {len(timed)} finished stage(s): {ratio:.2f} "
            "(scale the remaining estimate, or pass measured --rate values)"
        )
    lines.append(
        "rates: forward "
        + ", ".join(f"{k} {v:.0f} tok/s" for k, v in rates.fwd_tok_s)
        + f" (others {rates.default_fwd:.0f}); generation = forward/{rates.gen_factor:g}; "
        f"training = {rates.train_factor:g}× forward. Generation is costed at the full max_new_tokens "
        "(an upper bound: answers usually stop early). Figures move ±2× with machine load."
    )
    return "\n".join(lines)


def _fmt_s(s: float) -> str:
    if s < 90:
        return f"{s:.0f} s"
    if s < 5400:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.2f} h"


__all__ = [
    "Rates",
    "STAGE_SCHEMA",
    "Stage",
    "ZOO_VERSION",
    "digest",
    "eval_fingerprint",
    "format_plan",
    "generation_key",
    "plan",
    "train_fingerprint",
    "zoo_cache",
]
