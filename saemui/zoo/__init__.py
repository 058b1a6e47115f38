"""The model zoo: a declarative set of model points (bases, fine-tunes, checkpoints, contaminated controls)
evaluated at equal N on fixed tasks, built in resumable stages.

The Utility Law is a statement *across* models, and offline there are only two real ones (SmolLM2-135M-Instruct
and Gemma-3-270M). The zoo derives more from them (derivations: :mod:`saemui.zoo.spec`), trains them
(:mod:`saemui.zoo.finetune`), plans and fingerprints the stages (:mod:`saemui.zoo.stages`), evaluates every point
through :func:`saemui.tasks.run_task` and writes one record per point (:mod:`saemui.zoo.builder`), in the format
that :mod:`saemui.zoo.record` defines and reads back.
"""

from __future__ import annotations

from saemui.zoo.builder import BuildReport, build, evaluate
from saemui.zoo.finetune import (
    STATE_EVERY,
    gold_response,
    load_zoo_model,
    response_loss,
    train,
    training_pairs,
)
from saemui.zoo.record import (
    RESULT_SCHEMA,
    load_items,
    load_records,
    result_path,
    results_dir,
    write_items_file,
    zoo_record,
)
from saemui.zoo.spec import (
    DATA_KINDS,
    DERIVATIONS,
    GEMMA,
    SMOL,
    SMOL_SAES,
    SMOL_SAES_V1,
    TrainData,
    ZooModel,
    ZooSpec,
    ZooTask,
    contaminated_tasks,
    eval_items,
    in_domain_tasks,
    real_zoo,
    tiny_zoo,
    validate,
)
from saemui.zoo.stages import (
    STAGE_SCHEMA,
    ZOO_VERSION,
    Rates,
    Stage,
    eval_fingerprint,
    format_plan,
    generation_key,
    plan,
    train_fingerprint,
    zoo_cache,
)

__all__ = [
    "BuildReport",
    "DATA_KINDS",
    "DERIVATIONS",
    "GEMMA",
    "RESULT_SCHEMA",
    "Rates",
    "SMOL",
    "SMOL_SAES",
    "SMOL_SAES_V1",
    "STAGE_SCHEMA",
    "STATE_EVERY",
    "Stage",
    "TrainData",
    "ZOO_VERSION",
    "ZooModel",
    "ZooSpec",
    "ZooTask",
    "build",
    "contaminated_tasks",
    "eval_fingerprint",
    "eval_items",
    "evaluate",
    "format_plan",
    "generation_key",
    "gold_response",
    "in_domain_tasks",
    "load_items",
    "load_records",
    "load_zoo_model",
    "plan",
    "real_zoo",
    "response_loss",
    "result_path",
    "results_dir",
    "tiny_zoo",
    "train",
    "train_fingerprint",
    "training_pairs",
    "validate",
    "write_items_file",
    "zoo_cache",
    "zoo_record",
]
