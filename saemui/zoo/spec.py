"""The zoo's declaration: model points, tasks and settings as frozen dataclasses, their validation, the two zoos
(``real_zoo()`` on the two offline models, ``tiny_zoo()`` on tiny random models for tests) and the fixed N
evaluation items every model answers.

Derivations:

* ``none``: a root model (registry name, ``.gguf`` or HF directory) evaluated as is.
* ``lora-finetune`` / ``full-finetune``: trained on in-domain *training* data (arith items generated with a
  different seed than the eval items and with every eval question removed; the ARC train split).
* ``checkpoint-of``: an intermediate checkpoint (``step``) of a fine-tune that saves every ``save_every`` steps.
* ``contaminated-finetune``: trained on the evaluation items themselves (the Corollary 2 control).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from saemui.errors import SaemuiError
from saemui.tasks import Item, get_task

DERIVATIONS: tuple[str, ...] = (
    "none",
    "lora-finetune",
    "full-finetune",
    "checkpoint-of",
    "contaminated-finetune",
)
DATA_KINDS: tuple[str, ...] = ("arith", "arc-train", "eval-items")


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


#: the shipped SmolLM2 SAE bundle (repository-relative), the one zoo v2 measures in (protocol §11)
SMOL_SAES = "saes/smollm2-135m-instruct-res-batchtopk-w1024-k64-v2"
#: the v1 bundle zoo v1 was measured in. Its path is part of every v1 SmolLM2 fingerprint, so it stays; the
#: bundle left the tree with v2 (restore: git checkout e3429e0 -- saes/smollm2-135m-instruct-res-topk-w1024-k32)
SMOL_SAES_V1 = "saes/smollm2-135m-instruct-res-topk-w1024-k32"


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
            saes=(("smollm2", SMOL_SAES_V1),),
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


# ----- evaluation items -------------------------------------------------------------------------------------


def eval_items(spec: ZooSpec, t: ZooTask) -> list[Item]:
    """The fixed N evaluation items of a task (the first N; equal for every model)."""
    task = get_task(t.name, **dict(t.options), max_new_tokens=t.max_new_tokens)
    items = task.load_items(limit=spec.n_items)
    if len(items) < spec.n_items:
        raise SaemuiError(
            f"task {t.name}: only {len(items)} items, the zoo needs N={spec.n_items} for every task"
        )
    return items


__all__ = [
    "DATA_KINDS",
    "DERIVATIONS",
    "GEMMA",
    "SMOL",
    "SMOL_SAES",
    "SMOL_SAES_V1",
    "TrainData",
    "ZooModel",
    "ZooSpec",
    "ZooTask",
    "contaminated_tasks",
    "eval_items",
    "in_domain_tasks",
    "real_zoo",
    "tiny_zoo",
    "validate",
]
