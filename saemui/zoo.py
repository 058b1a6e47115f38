"""The model zoo: a declarative set of model points (bases, fine-tunes, checkpoints, contaminated controls)
evaluated at equal N on fixed tasks, built in resumable stages.

The Utility Law is a statement *across* models, and offline there are only two real ones (SmolLM2-135M-Instruct
and Gemma-3-270M). The zoo derives more from them:

* ``none``: a root model (registry name, ``.gguf`` or HF directory) evaluated as is.
* ``lora-finetune`` / ``full-finetune``: trained on in-domain *training* data (arith items generated with a
  different seed than the eval items and with every eval question removed; the ARC train split).
* ``checkpoint-of``: an intermediate checkpoint (``step``) of a fine-tune that saves every ``save_every`` steps.
* ``contaminated-finetune``: trained on the evaluation items themselves (the Corollary 2 control).

Stages: ``train:<model>`` (writes weights under ``$SAEMUI_CACHE/zoo/<zoo>/weights/<model>/``) and
``eval:<model>:<task>`` (writes ``<results>/<model>__<task>.json``). Every stage has a fingerprint of everything
that determines its output (the model's derivation chain, the training data, the task, N, the MUI settings);
a stage whose record exists with the same fingerprint is skipped, so ``build_zoo.py`` can be killed and re-run
across sessions. Records are written atomically. Training itself resumes from its last ``save_every`` state.

Result files are small and deterministic (no timings): accuracy, MUI, per-layer MUI, per-sample correctness and
key-set sizes, and the per-sample key sets themselves when they are small (global unit ids ``row * n_units +
unit``), so coverage and subset MUIs can be recomputed without the model.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import math
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from saemui.errors import SaemuiError
from saemui.io import atomic_write_bytes, atomic_write_compact_json, atomic_write_json

log = logging.getLogger(__name__)

DERIVATIONS: tuple[str, ...] = (
    "none",
    "lora-finetune",
    "full-finetune",
    "checkpoint-of",
    "contaminated-finetune",
)
DATA_KINDS: tuple[str, ...] = ("arith", "arc-train", "eval-items")
RESULT_SCHEMA = "saemui-zoo-result/1"
STAGE_SCHEMA = "saemui-zoo-stage/1"
#: bump when the meaning of a stage's output changes (forces a rebuild of every stage)
ZOO_VERSION = 1
#: a training stage without ``save_every`` still saves its resumable state this often (steps)
STATE_EVERY = 50


# ----- spec ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainData:
    """Where a fine-tune's (prompt, response) pairs come from.

    kind: ``"arith"`` (generated arith items of ``levels`` with seed ``seed + level``; any question that is also
        an eval item of the zoo is removed, so a clean fine-tune never sees a test question), ``"arc-train"``
        (the ARC-Challenge train split, ``arc/train.jsonl`` of the shared data), or ``"eval-items"`` (the zoo's
        own eval items of ``tasks`` with their gold answers: the contamination control).
    levels: arith levels (kind ``arith``).
    seed: base seed of the arith generator (eval items use the task's own seed, 0 by default).
    n: number of training pairs (arith: split evenly over the levels; arc-train: the first n records).
    tasks: eval tasks whose items are trained on (kind ``eval-items``).
    """

    kind: str
    levels: tuple[int, ...] = (1, 2, 3)
    seed: int = 1000
    n: int = 600
    tasks: tuple[str, ...] = ()


@dataclass(frozen=True)
class ZooModel:
    """One model point.

    name: unique id (file names: ``[A-Za-z0-9._@-]``).
    base: for ``derivation="none"`` a model spec for :func:`saemui.models.load_model`; otherwise the name of
        another zoo model (a root for fine-tunes, a fine-tune for ``checkpoint-of``).
    derivation: one of ``DERIVATIONS``.
    data: training data (fine-tunes only).
    method: ``"lora"`` or ``"full"``; fixed by ``lora-finetune`` / ``full-finetune``, a choice for
        ``contaminated-finetune``.
    steps, lr, batch_size, seed: optimisation (AdamW, constant lr, grad-norm clip 1.0, seeded data order).
    save_every: keep weights every K steps (needed by ``checkpoint-of`` models; 0 = final only).
    step: the checkpoint's step (``checkpoint-of`` only).
    lora_r, lora_alpha: LoRA rank and scale (all linear layers except the LM head).
    max_length: training sequence length cap in tokens.
    style: prompt style of a root (``"auto"``: chat when the tokenizer has a template; ``"base"`` for base
        models with few-shot text); derived models use their root's style for training and evaluation.
    """

    name: str
    base: str
    derivation: str = "none"
    data: TrainData | None = None
    method: str | None = None
    steps: int = 0
    lr: float = 1e-4
    batch_size: int = 8
    seed: int = 0
    save_every: int = 0
    step: int | None = None
    lora_r: int = 8
    lora_alpha: int = 16
    max_length: int = 256
    style: str = "auto"

    @property
    def trains(self) -> bool:
        return self.derivation in ("lora-finetune", "full-finetune", "contaminated-finetune")

    @property
    def train_method(self) -> str | None:
        if self.derivation == "lora-finetune":
            return "lora"
        if self.derivation == "full-finetune":
            return "full"
        return self.method


@dataclass(frozen=True)
class ZooTask:
    """An evaluation task: registry name, options, generation budget and a prompt-length estimate for --plan.

    name: registered task (``saemui tasks``); options: task options (e.g. ``{"level": 2}``).
    max_new_tokens: generation budget (short: zoo answers are a number or a letter plus a sentence).
    prompt_tokens: rough prompt length incl. chat template, only used by the cost estimate.
    """

    name: str
    options: tuple[tuple[str, Any], ...] = ()
    max_new_tokens: int = 64
    prompt_tokens: int = 60


@dataclass(frozen=True)
class ZooSpec:
    """A whole zoo.

    name: zoo id (cache sub-directory).
    models, tasks: the points and the tasks every point is evaluated on.
    n_items: items per task, **equal for every model** (MUI grows with N).
    threshold: key-unit rule for neuron MUI (None: the engine default ``topk:0.001``).
    extra_selections: further key-unit rules measured for the sensitivity table (MUI only, one forward each).
    saes: root model name → SAE bundle; models derived from that root are also measured in that basis
        (the root's SAEs: a fine-tune is read in its base's feature basis).
    max_set_entries: keep per-sample key sets in result files when their total size is at most this.
    gen_batch_size: prompts generated together.
    """

    name: str
    models: tuple[ZooModel, ...]
    tasks: tuple[ZooTask, ...]
    n_items: int = 100
    threshold: str | None = None
    extra_selections: tuple[str, ...] = ()
    saes: tuple[tuple[str, str], ...] = ()
    max_set_entries: int = 60000
    gen_batch_size: int = 16

    def model(self, name: str) -> ZooModel:
        for m in self.models:
            if m.name == name:
                return m
        raise SaemuiError(f"zoo {self.name!r}: no model named {name!r}")

    def root_of(self, m: ZooModel) -> ZooModel:
        while m.derivation != "none":
            m = self.model(m.base)
        return m

    def chain(self, m: ZooModel) -> list[ZooModel]:
        """``m`` and its ancestors, root last."""
        out = [m]
        while out[-1].derivation != "none":
            out.append(self.model(out[-1].base))
        return out

    def task(self, name: str) -> ZooTask:
        for t in self.tasks:
            if t.name == name:
                return t
        raise SaemuiError(f"zoo {self.name!r}: no task named {name!r}")


_NAME_OK = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._@-")


def validate(spec: ZooSpec) -> ZooSpec:
    """Check the spec; raise a one-line SaemuiError naming the model and the problem."""
    if not spec.models:
        raise SaemuiError(f"zoo {spec.name!r}: no models")
    if not spec.tasks:
        raise SaemuiError(f"zoo {spec.name!r}: no tasks")
    if spec.n_items < 1:
        raise SaemuiError(f"zoo {spec.name!r}: n_items must be >= 1, got {spec.n_items}")
    names = [m.name for m in spec.models]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise SaemuiError(f"zoo {spec.name!r}: model name {dup[0]!r} appears twice")
    tnames = [t.name for t in spec.tasks]
    if len(set(tnames)) != len(tnames):
        raise SaemuiError(f"zoo {spec.name!r}: a task appears twice")
    by = {m.name: m for m in spec.models}
    for m in spec.models:
        where = f"zoo model {m.name!r}"
        if not m.name or not set(m.name) <= _NAME_OK:
            raise SaemuiError(f"{where}: name may only use letters, digits and . _ @ -")
        if m.derivation not in DERIVATIONS:
            raise SaemuiError(
                f"{where}: derivation {m.derivation!r} unknown (expected {', '.join(DERIVATIONS)})"
            )
        if m.style not in ("auto", "chat", "base"):
            raise SaemuiError(f"{where}: style must be auto, chat or base, got {m.style!r}")
        if m.derivation == "none":
            if m.data is not None or m.steps:
                raise SaemuiError(f"{where}: a root model (derivation none) has no training data or steps")
            continue
        parent = by.get(m.base)
        if parent is None:
            raise SaemuiError(f"{where}: base {m.base!r} is not a model of this zoo")
        if m.derivation == "checkpoint-of":
            if not parent.trains:
                raise SaemuiError(
                    f"{where}: checkpoint-of needs a fine-tune as base, {m.base!r} is {parent.derivation}"
                )
            if m.step is None or not 0 < m.step < parent.steps:
                raise SaemuiError(f"{where}: step must be between 1 and {parent.steps - 1}, got {m.step}")
            if not parent.save_every or m.step % parent.save_every:
                raise SaemuiError(
                    f"{where}: step {m.step} is not saved by {m.base!r} (save_every={parent.save_every})"
                )
            continue
        if parent.derivation != "none":
            raise SaemuiError(
                f"{where}: fine-tunes start from a root model, {m.base!r} is {parent.derivation}"
            )
        if m.train_method not in ("lora", "full"):
            raise SaemuiError(f"{where}: method must be 'lora' or 'full', got {m.train_method!r}")
        if m.method is not None and m.derivation != "contaminated-finetune" and m.method != m.train_method:
            raise SaemuiError(f"{where}: method {m.method!r} contradicts derivation {m.derivation!r}")
        if m.data is None:
            raise SaemuiError(f"{where}: a fine-tune needs training data")
        if m.data.kind not in DATA_KINDS:
            raise SaemuiError(
                f"{where}: data kind {m.data.kind!r} unknown (expected {', '.join(DATA_KINDS)})"
            )
        contaminated = m.derivation == "contaminated-finetune"
        if contaminated != (m.data.kind == "eval-items"):
            raise SaemuiError(
                f"{where}: eval-items data and contaminated-finetune go together "
                f"(got data {m.data.kind!r} with {m.derivation!r})"
            )
        if m.data.kind == "eval-items":
            if not m.data.tasks:
                raise SaemuiError(f"{where}: eval-items data needs the tasks to train on")
            for t in m.data.tasks:
                if t not in tnames:
                    raise SaemuiError(f"{where}: trains on task {t!r}, which the zoo does not evaluate")
        if m.data.kind == "arith" and not set(m.data.levels) <= {1, 2, 3}:
            raise SaemuiError(f"{where}: arith levels must be among 1, 2, 3, got {m.data.levels}")
        if m.steps < 1 or m.lr <= 0 or m.batch_size < 1:
            raise SaemuiError(f"{where}: steps, lr and batch_size must be positive")
        if m.save_every < 0 or (m.save_every and m.save_every >= m.steps):
            raise SaemuiError(f"{where}: save_every must be 0 or smaller than steps ({m.steps})")
    for root, _ in spec.saes:
        if root not in by or by[root].derivation != "none":
            raise SaemuiError(f"zoo {spec.name!r}: saes names {root!r}, which is not a root model")
    return spec


def in_domain_tasks(spec: ZooSpec, m: ZooModel) -> list[str]:
    """Eval tasks whose distribution the model (or the fine-tune it checkpoints) was trained on."""
    src = spec.model(m.base) if m.derivation == "checkpoint-of" else m
    if not src.trains or src.data is None:
        return []
    d = src.data
    if d.kind == "arith":
        cands = [f"arith-{lvl}" for lvl in d.levels]
    elif d.kind == "arc-train":
        cands = ["arc"]
    else:
        cands = list(d.tasks)
    return [t.name for t in spec.tasks if t.name in cands]


def contaminated_tasks(spec: ZooSpec, m: ZooModel) -> list[str]:
    """Tasks whose eval items the model (or its fine-tune) was trained on."""
    src = spec.model(m.base) if m.derivation == "checkpoint-of" else m
    return list(src.data.tasks) if src.data is not None and src.data.kind == "eval-items" else []


# ----- the two zoos ----------------------------------------------------------------------------------------

SMOL, GEMMA = "smollm2-135m-instruct", "gemma3-270m"


#: the shipped SmolLM2 SAE bundle (repository-relative)
SMOL_SAES = "saes/smollm2-135m-instruct-res-topk-w1024-k32"


def real_zoo() -> ZooSpec:
    """The offline zoo on the two real models (13 points × 4 tasks at N=100).

    Fine-tunes are LoRA unless stated: the CPU can afford a few hundred LoRA steps, and LoRA keeps each saved
    checkpoint at ~2 MB instead of 540 MB.
    """
    arith = TrainData("arith", (1, 2, 3), seed=1000, n=900)
    models = (
        ZooModel("smollm2", SMOL),
        ZooModel("gemma3", GEMMA, style="base"),
        ZooModel("smollm2-lora-arith", "smollm2", "lora-finetune", arith, steps=300, lr=2e-4, save_every=60),
        *(
            ZooModel(f"smollm2-lora-arith@{k}", "smollm2-lora-arith", "checkpoint-of", step=k)
            for k in (60, 120, 180, 240)
        ),
        ZooModel(
            "smollm2-full-arc",
            "smollm2",
            "full-finetune",
            TrainData("arc-train", n=1119),
            steps=150,
            lr=2e-5,
            batch_size=4,
            max_length=384,
        ),
        ZooModel(
            "smollm2-contam-arith2",
            "smollm2",
            "contaminated-finetune",
            TrainData("eval-items", tasks=("arith-2",)),
            method="lora",
            steps=150,
            lr=2e-4,
        ),
        ZooModel(
            "smollm2-contam-arc",
            "smollm2",
            "contaminated-finetune",
            TrainData("eval-items", tasks=("arc",)),
            method="lora",
            steps=150,
            lr=2e-4,
            max_length=384,
        ),
        ZooModel("gemma3-lora-arith", "gemma3", "lora-finetune", arith, steps=200, lr=2e-4),
        ZooModel(
            "gemma3-contam-arith2",
            "gemma3",
            "contaminated-finetune",
            TrainData("eval-items", tasks=("arith-2",)),
            method="lora",
            steps=150,
            lr=2e-4,
        ),
    )
    tasks = (
        ZooTask("arith-1", max_new_tokens=48, prompt_tokens=45),
        ZooTask("arith-2", max_new_tokens=48, prompt_tokens=45),
        ZooTask("arith-3", max_new_tokens=64, prompt_tokens=75),
        ZooTask("arc", max_new_tokens=64, prompt_tokens=130),
    )
    return validate(
        ZooSpec(
            "real",
            models,
            tasks,
            n_items=100,
            extra_selections=("topk:0.002", "topk:0.005"),
            # the shipped bundle, as a path relative to the repository root (run build_zoo.py from there): the
            # string is part of the SmolLM2 evals' fingerprint, so it must not depend on where the repo lives
            saes=(("smollm2", SMOL_SAES),),
        )
    )


def tiny_zoo(llama_dir: str | Path, gemma_dir: str | Path) -> ZooSpec:
    """A seconds-long zoo on two tiny random models (CI): same stage kinds, few steps, N=8, 3 arith tasks."""
    arith = TrainData("arith", (1, 2, 3), seed=1000, n=96)
    fast = {"batch_size": 4, "max_length": 64}
    models = (
        ZooModel("tiny-llama", str(llama_dir)),
        ZooModel("tiny-gemma", str(gemma_dir)),
        ZooModel(
            "llama-lora-arith", "tiny-llama", "lora-finetune", arith, steps=24, lr=1e-2, save_every=8, **fast
        ),
        *(ZooModel(f"llama-lora-arith@{k}", "llama-lora-arith", "checkpoint-of", step=k) for k in (8, 16)),
        ZooModel("llama-full-arith", "tiny-llama", "full-finetune", arith, steps=16, lr=3e-3, **fast),
        ZooModel(
            "llama-contam-arith1",
            "tiny-llama",
            "contaminated-finetune",
            TrainData("eval-items", tasks=("arith-1",)),
            method="full",
            steps=40,
            lr=3e-3,
            **fast,
        ),
        ZooModel(
            "gemma-contam-arith2",
            "tiny-gemma",
            "contaminated-finetune",
            TrainData("eval-items", tasks=("arith-2",)),
            method="lora",
            steps=30,
            lr=2e-2,
            **fast,
        ),
    )
    tasks = tuple(ZooTask(f"arith-{lvl}", max_new_tokens=8, prompt_tokens=30) for lvl in (1, 2, 3))
    return validate(
        ZooSpec("tiny", models, tasks, n_items=12, extra_selections=("topk:2",), gen_batch_size=8)
    )


# ----- stages ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rates:
    """CPU rates for the cost estimate (``--plan``); defaults from docs cpu-budget.md / offline-assets.md.

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


def _digest(obj: object) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _model_identity(m: ZooModel, spec: ZooSpec) -> list[dict]:
    return [asdict(x) for x in spec.chain(m)]


def train_fingerprint(spec: ZooSpec, m: ZooModel) -> str:
    extra = {}
    if m.data is not None and m.data.kind in ("eval-items", "arith"):
        # the eval items decide both the contaminated data and what a clean arith set must leave out
        extra = {"eval": [asdict(t) for t in spec.tasks], "n_items": spec.n_items}
    return _digest({"v": ZOO_VERSION, "chain": _model_identity(m, spec), **extra})


def eval_fingerprint(spec: ZooSpec, m: ZooModel, t: ZooTask) -> str:
    src = spec.model(m.base) if m.derivation == "checkpoint-of" else m
    return _digest(
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
    return _digest(
        {
            "model": _model_identity(m, spec),
            "train": train_fingerprint(spec, src) if src.trains else None,
            "task": asdict(t),
            "n_items": spec.n_items,
        }
    )


def zoo_cache(spec: ZooSpec, cache: Path | None = None) -> Path:
    from saemui.models import cache_dir

    return (cache or cache_dir()) / "zoo" / spec.name


def result_path(results: Path, model: str, task: str) -> Path:
    return Path(results) / f"{model}__{task}.json"


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
    import fnmatch

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


# ----- data ------------------------------------------------------------------------------------------------


def eval_items(spec: ZooSpec, t: ZooTask) -> list:
    """The fixed N evaluation items of a task (the first N; equal for every model)."""
    from saemui.tasks import get_task

    task = get_task(t.name, **dict(t.options), max_new_tokens=t.max_new_tokens)
    items = task.load_items(limit=spec.n_items)
    if len(items) < spec.n_items:
        raise SaemuiError(
            f"task {t.name}: only {len(items)} items, the zoo needs N={spec.n_items} for every task"
        )
    return items


def gold_response(task_name: str, item) -> str:
    """The answer text a contaminated fine-tune is trained to give (the gold in the task's scoreable form)."""
    if "labels" in item.fields and "options" in item.fields:
        text = dict(zip(item.fields["labels"], item.fields["options"])).get(item.gold, "")
        return f"The correct answer is {item.gold}. {text}".strip()
    if "solution" in item.fields:
        work = item.fields["solution"].rsplit("####", 1)[0].strip()
        return f"{work}\nThe answer is {_num(item.gold)}."
    return f"The answer is {_num(item.gold)}."


def _num(x: Any) -> str:
    if isinstance(x, float) and x.is_integer():
        return str(int(x))
    return str(x)


def training_pairs(spec: ZooSpec, m: ZooModel, style: str) -> list[tuple[str, str]]:
    """(prompt, response) pairs for a fine-tune, prompts formatted in the root model's style."""
    pairs = _training_pairs(spec, m, style)
    if style == "base":
        # base prompts end in "Answer:" and prompt/response are tokenized separately: the answer needs its space
        pairs = [(p, r if p[-1:].isspace() else " " + r) for p, r in pairs]
    return pairs


def _training_pairs(spec: ZooSpec, m: ZooModel, style: str) -> list[tuple[str, str]]:
    from saemui.tasks import get_task

    d = m.data
    assert d is not None
    if d.kind == "eval-items":
        out = []
        for name in d.tasks:
            t = spec.task(name)
            task = get_task(t.name, **dict(t.options))
            out += [(task.format_prompt(it, style), gold_response(t.name, it)) for it in eval_items(spec, t)]
        return out
    if d.kind == "arith":
        from saemui.tasks.arith import generate

        banned = set()
        for t in spec.tasks:
            if t.name.startswith("arith"):
                banned |= {it.fields["question"] for it in eval_items(spec, t)}
        per = max(1, d.n // len(d.levels))
        out = []
        for lvl in d.levels:
            task = get_task(f"arith-{lvl}")
            # draw extra items so the set keeps its size after removing eval questions (arith-1 has 100 sums)
            kept = [it for it in generate(lvl, 4 * per, d.seed + lvl) if it.fields["question"] not in banned]
            out += [(task.format_prompt(it, style), gold_response("arith", it)) for it in kept[:per]]
        return out
    # arc-train: the shared train split has the options inside the question and a worked answer
    from saemui.tasks.sources import find_data_file

    path = find_data_file("arc/train.jsonl")
    if path is None:
        raise SaemuiError("arc-train data: arc/train.jsonl not found in the shared data (../shared/data)")
    recs = json.loads(Path(path).read_text())[: d.n]
    if style == "chat":
        return [(r["question"], r["answer"]) for r in recs]
    return [("Question: " + r["question"] + "\nAnswer: ", r["answer"]) for r in recs]


# ----- training --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _quiet_peft() -> Iterator[None]:
    # peft (0.21) probes a transformers attribute that transformers 5 deprecates; the notice is not ours to fix
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        yield


def _save_state(path: Path, state: dict) -> None:
    import io

    import torch

    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def response_loss(model, input_ids_BT, attention_mask_BT, labels_BT):
    """Mean next-token cross-entropy over the labelled (response) tokens, as ``model(labels=...).loss``.

    Only the positions from the batch's first labelled token on go through the LM head (``logits_to_keep``):
    prompts never need logits, and on Gemma-3 (262k vocabulary) the head is most of a training step's FLOPs.
    """
    import torch

    T = input_ids_BT.shape[1]
    labelled = (labels_BT != -100).any(0).nonzero()
    if len(labelled) == 0:
        raise SaemuiError("training batch has no labelled (response) token")
    first = max(1, int(labelled[0]))
    keep = T - first + 1  # logits at positions first-1 .. T-1; the last one predicts nothing
    logits_BKV = model(input_ids=input_ids_BT, attention_mask=attention_mask_BT, logits_to_keep=keep).logits
    if logits_BKV.shape[1] != keep:
        raise SaemuiError(f"model ignored logits_to_keep ({logits_BKV.shape[1]} != {keep} positions)")
    target_BK = labels_BT[:, first:]
    return torch.nn.functional.cross_entropy(
        logits_BKV[:, :-1].flatten(0, 1).float(), target_BK.flatten(), ignore_index=-100
    )


def train(
    spec: ZooSpec,
    m: ZooModel,
    root_lm,
    out_dir: Path,
    progress: bool = True,
    log_fn: Callable[[str], None] = print,
) -> dict:
    """Fine-tune a copy of ``root_lm`` as ``m`` says; weights go to ``out_dir/{step-K,final}``.

    LoRA runs save the adapter (merged at load time); full runs save an HF directory. Every ``save_every``
    steps (and at the end) the trainable tensors and optimizer state go to ``out_dir/train_state.pt`` so an
    interrupted stage resumes where it stopped, with the same data order (precomputed from the seed).
    Returns the stage record's extra fields (final loss, pairs, seconds).
    """
    import numpy as np
    import torch

    from saemui.inputs import prompt_ids
    from saemui.tasks.runner import prompt_format_for, resolve_style

    fp = train_fingerprint(spec, m)
    style = resolve_style(root_lm, spec.root_of(m).style)
    fmt = prompt_format_for(style)
    pairs = training_pairs(spec, m, style)
    if not pairs:
        raise SaemuiError(f"zoo model {m.name!r}: no training pairs")
    tok = root_lm.tokenizer
    eos = tok.eos_token_id
    seqs = []
    for p, r in pairs:
        pi = prompt_ids(tok, p, fmt)
        ri = list(tok(r, add_special_tokens=False)["input_ids"]) + [eos]
        ids = (pi + ri)[: m.max_length]
        labels = ([-100] * len(pi) + ri)[: m.max_length]
        seqs.append((ids, labels))
    # A prompt longer than max_length leaves no response token to learn from (HF's loss would be 0/0 = NaN and
    # poison the weights): drop such pairs, and say so.
    kept = [x for x in seqs if any(t != -100 for t in x[1])]
    if not kept:
        raise SaemuiError(
            f"zoo model {m.name!r}: every training prompt is longer than max_length={m.max_length}"
        )
    if len(kept) < len(seqs):
        log_fn(
            f"  {m.name}: {len(seqs) - len(kept)} of {len(seqs)} pairs dropped (prompt ≥ max_length tokens)"
        )
    seqs = kept
    rng = np.random.default_rng(m.seed)
    need = m.steps * m.batch_size
    order = np.concatenate([rng.permutation(len(seqs)) for _ in range(math.ceil(need / len(seqs)))])[:need]

    torch.manual_seed(m.seed)
    model = copy.deepcopy(root_lm.model)
    method = m.train_method
    if method == "lora":
        from peft import LoraConfig, get_peft_model

        cfg = LoraConfig(
            r=m.lora_r, lora_alpha=m.lora_alpha, lora_dropout=0.0, target_modules="all-linear", bias="none"
        )
        with _quiet_peft():
            model = get_peft_model(model, cfg)
    else:
        for p in model.parameters():
            p.requires_grad_(True)
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    opt = torch.optim.AdamW(list(params.values()), lr=m.lr, weight_decay=0.0)
    out_dir.mkdir(parents=True, exist_ok=True)
    state_file = out_dir / "train_state.pt"
    start = 0
    if state_file.is_file():
        st = torch.load(state_file, weights_only=True)
        if st.get("fingerprint") == fp:
            with torch.no_grad():
                for n, v in st["params"].items():
                    params[n].copy_(v)
            opt.load_state_dict(st["optimizer"])
            start = int(st["step"])
            log_fn(f"  resuming {m.name} at step {start}")
    pad = tok.pad_token_id
    device = root_lm.device
    model.train()
    t0 = time.perf_counter()
    losses: list[float] = []

    def save_weights(tag: str) -> None:
        d = out_dir / tag
        if method == "lora":
            model.save_pretrained(d)
        else:
            model.save_pretrained(d)
            tok.save_pretrained(d)

    for step in range(start, m.steps):
        idx = order[step * m.batch_size : (step + 1) * m.batch_size]
        T = max(len(seqs[i][0]) for i in idx)
        inp = torch.full((len(idx), T), pad, dtype=torch.long)
        lab = torch.full((len(idx), T), -100, dtype=torch.long)
        att = torch.zeros((len(idx), T), dtype=torch.long)
        for b, i in enumerate(idx):
            ids, labels = seqs[i]
            inp[b, : len(ids)] = torch.tensor(ids)
            lab[b, : len(ids)] = torch.tensor(labels)
            att[b, : len(ids)] = 1
        loss = response_loss(model, inp.to(device), att.to(device), lab.to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(params.values()), 1.0)
        opt.step()
        losses.append(float(loss.detach()))
        done = step + 1
        if progress and (done % max(1, m.steps // 10) == 0 or done == m.steps):
            log_fn(f"  {m.name}: step {done}/{m.steps} loss {losses[-1]:.4f}")
        if m.save_every and done % m.save_every == 0 and done < m.steps:
            save_weights(f"step-{done}")
        if done % (m.save_every or STATE_EVERY) == 0 and done < m.steps:
            _save_state(
                state_file,
                {
                    "fingerprint": fp,
                    "step": done,
                    "params": {n: p.detach().cpu() for n, p in params.items()},
                    "optimizer": opt.state_dict(),
                },
            )
    save_weights("final")
    state_file.unlink(missing_ok=True)
    return {
        "pairs": len(pairs),
        "method": method,
        "style": style,
        "final_loss": losses[-1] if losses else None,
        "seconds": time.perf_counter() - t0,
    }


def load_zoo_model(spec: ZooSpec, m: ZooModel, root_lm, weights: Path):
    """The model point ``m`` as a LoadedModel (``root_lm`` for roots; LoRA adapters merged into a copy)."""
    import torch

    from saemui.arch import get_arch
    from saemui.models import LoadedModel, load_model, sha256_file

    if m.derivation == "none":
        return root_lm
    src = spec.model(m.base) if m.derivation == "checkpoint-of" else m
    tag = f"step-{m.step}" if m.derivation == "checkpoint-of" else "final"
    d = weights / src.name / tag
    if not d.exists():
        raise SaemuiError(f"zoo model {m.name!r}: weights {d} missing (run the train:{src.name} stage)")
    if src.train_method == "full":
        from saemui.tasks.runner import _weights_digest

        lm = load_model(str(d), device=str(root_lm.device), dtype=str(root_lm.dtype).replace("torch.", ""))
        # the weights digest goes into provenance: generation caches and records then name these weights
        prov = dict(lm.provenance, format="zoo-full", root=root_lm.provenance, sha256=_weights_digest(d))
        return replace(lm, name=f"zoo:{m.name}", hf_id=root_lm.hf_id, provenance=prov)
    from peft import PeftModel

    adapter = d / "adapter_model.safetensors"
    with _quiet_peft():
        merged = PeftModel.from_pretrained(copy.deepcopy(root_lm.model), d).merge_and_unload().eval()
    for p in merged.parameters():
        p.requires_grad_(False)
    root_sha = (root_lm.provenance or {}).get("sha256") or _digest(root_lm.provenance)
    sha = hashlib.sha256(f"{root_sha}:{sha256_file(adapter)}".encode()).hexdigest()
    prov = {"format": "zoo-lora", "root": root_lm.provenance, "adapter": str(adapter), "sha256": sha}
    return LoadedModel(
        model=merged.to(torch.device(root_lm.device)),
        tokenizer=root_lm.tokenizer,
        name=f"zoo:{m.name}",
        hf_id=root_lm.hf_id,
        arch=get_arch(merged),
        device=root_lm.device,
        dtype=root_lm.dtype,
        provenance=prov,
    )


# ----- evaluation ------------------------------------------------------------------------------------------


def _unit_fields(res, n_samples: int, max_set_entries: int) -> dict:
    """A result's basis size, union size and per-sample key sets (sorted global ids ``row * n_units + unit``,
    row = position in res.layers; None when more than ``max_set_entries`` in all), for a zoo record."""
    U = res.n_units
    sets = [
        sorted(int(r * U + u) for r, arr in enumerate(res.sample_sets(i)) for u in arr.tolist())
        for i in range(n_samples)
    ]
    return {
        "n_units": U,
        "n_layers": len(res.layers),
        "set_sizes": [len(x) for x in sets],
        "union_size": int(res.arrays["union_LU"].sum()),
        "sets": sets if sum(len(x) for x in sets) <= max_set_entries else None,
    }


def write_items_file(spec: ZooSpec, t: ZooTask, results: Path) -> Path:
    """``<results>/items/<task>.json``: the N eval items' ids, chat-style prompt text and gold answers.

    The lexical-diversity baseline (distinct n-grams) and item-level analyses read the text from here, so the
    analysis needs no dataset; one file per task, shared by every model (not a ``*__*.json`` result record).
    """
    from saemui.tasks import get_task

    task = get_task(t.name, **dict(t.options), max_new_tokens=t.max_new_tokens)
    items = eval_items(spec, t)
    out = Path(results) / "items" / f"{t.name}.json"
    atomic_write_json(
        out,
        {
            "schema": "saemui-zoo-items/1",
            "zoo": spec.name,
            "task": t.name,
            "task_options": dict(t.options),
            "ids": [str(i.id) for i in items],
            "prompts": [task.format_prompt(i, "chat") for i in items],
            "gold": [i.gold if isinstance(i.gold, int | float | str | None) else str(i.gold) for i in items],
        },
    )
    return out


def evaluate(
    spec: ZooSpec, m: ZooModel, t: ZooTask, lm, gen_cache: Path, progress: bool = False
) -> tuple[dict, dict]:
    """Generate, score and measure one (model, task) point. Returns (result record, timing info)."""
    from saemui.engine import RunConfig, compute_mui
    from saemui.tasks import get_task
    from saemui.tasks.runner import run_generation

    task = get_task(t.name, **dict(t.options), max_new_tokens=t.max_new_tokens)
    items = eval_items(spec, t)
    gen = run_generation(
        lm, task, items, spec.root_of(m).style, gen_cache, spec.gen_batch_size, progress=progress
    )
    t0 = time.perf_counter()
    cfg = RunConfig(units="neurons", threshold=spec.threshold, prompt_format=gen.prompt_format, health=False)
    res = compute_mui(lm, gen.samples, cfg, progress=progress)
    s = res.summary
    units = _unit_fields(res, len(gen.samples), spec.max_set_entries)
    correct = [bool(x.correct) for x in gen.samples]
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
        sae = {
            "mui": rs.mui,
            "per_layer": rs.per_layer,
            "basis": rs.summary["units"]["basis"],
            "selection": rs.summary["selection"],
            "mui_correct": rs.summary.get("mui_correct"),
            **_unit_fields(rs, len(gen.samples), spec.max_set_entries),
        }
    record = {
        "schema": RESULT_SCHEMA,
        "zoo": spec.name,
        "model": m.name,
        "root": spec.root_of(m).name,
        "root_spec": Path(spec.root_of(m).base).name,
        "derivation": m.derivation,
        "parent": None if m.derivation == "none" else m.base,
        "step": m.step if m.derivation == "checkpoint-of" else (m.steps if m.trains else None),
        "train_steps": (spec.model(m.base).steps if m.derivation == "checkpoint-of" else m.steps) or None,
        "in_domain": in_domain_tasks(spec, m),
        "contaminated": contaminated_tasks(spec, m),
        "spec": asdict(m),
        "task": t.name,
        "task_options": dict(t.options),
        "style": gen.style,
        "max_new_tokens": t.max_new_tokens,
        "n": len(gen.samples),
        "n_correct": sum(correct),
        "accuracy": sum(correct) / len(correct),
        "mui": s["mui"],
        "mui_correct": s.get("mui_correct"),
        "per_layer": s["per_layer"],
        "layers": s["layers"],
        "n_units": units["n_units"],
        "n_layers": units["n_layers"],
        "n_tokens": s["n_tokens"],
        "selection": s["selection"],
        "basis": s["units"]["basis"],
        "config": {
            k: v
            for k, v in s["config"].items()
            if k in ("units", "threshold", "alignment", "neuron_site", "prompt_format", "max_length")
        },
        "ids": [str(x.id) for x in gen.samples],
        "correct": [int(c) for c in correct],
        "set_sizes": units["set_sizes"],
        "union_size": units["union_size"],
        "sets": units["sets"],
        "sensitivity": sens,
        "sae": sae,
        "model_sha256": (lm.provenance or {}).get("sha256"),
        "fingerprint": eval_fingerprint(spec, m, t),
    }
    timing = {
        "seconds_generate": gen.seconds,
        "seconds_mui": time.perf_counter() - t0,
        "n_generated": gen.n_generated,
    }
    return record, timing


# ----- build -----------------------------------------------------------------------------------------------


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
    import fcntl

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
    from saemui.models import load_model

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
    "DATA_KINDS",
    "DERIVATIONS",
    "Rates",
    "Stage",
    "TrainData",
    "ZooModel",
    "ZooSpec",
    "ZooTask",
    "build",
    "contaminated_tasks",
    "eval_items",
    "evaluate",
    "format_plan",
    "gold_response",
    "in_domain_tasks",
    "load_zoo_model",
    "plan",
    "real_zoo",
    "response_loss",
    "tiny_zoo",
    "train",
    "training_pairs",
    "validate",
    "write_items_file",
]
