"""The v2 zoo's files under ``results/zoo-v2`` (protocol §3.3, §4): their paths, writers and readers.

- ``items/<task>.json`` (:data:`ITEMS_SCHEMA`): a candidate task's N eval items and N twins (ids, fields, gold,
  chat prompt text), its chance level and the §3.3 check counts;
- ``<model>__<task>__<set>.json`` (:data:`RESULT_SCHEMA`): one point's record on one item set, set ∈
  :data:`SETS` (``verbatim`` eval items, ``twins``, teacher-forced ``G`` and ``B``): accuracy, the settings of §5
  by name (``settings[name]``), τ, empty and budget-capped counts;
- ``items/<model>__<task>__<set>.json`` (:data:`TEXTS_SCHEMA`): the point's generated text (responses and their
  scores), so MUI can be recomputed under any rule without generating, and set B can be read from a base's file;
- ``eligibility.json`` (:data:`ELIGIBILITY_SCHEMA`): the stage-0 outcome (§3.2), derived from the records;
- ``causal/<point>__<task>__<arm>.json`` (:data:`CAUSAL_SCHEMA`): one arm of the causal check (§8.5) at one point,
  with every per-item array :mod:`saemui.analysis.causal` needs (see :func:`read_causal`);
- ``sae_health/<point>.json`` (:data:`HEALTH_SCHEMA_V2`): the SAE suite's health on the point's own residuals
  (W10): FVE, L0, dead and dense at every layer, CE-loss recovered and KL at a few layers.

Records hold no timings: a rebuild on the same machine reproduces them byte for byte.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from saemui.errors import SaemuiError
from saemui.readers import read_json
from saemui.result import MUIResult
from saemui.tasks.base import Item

RESULT_SCHEMA = "saemui-zoo-result/2"
ITEMS_SCHEMA = "saemui-zoo-items/2"
TEXTS_SCHEMA = "saemui-zoo-texts/2"
ELIGIBILITY_SCHEMA = "saemui-zoo-eligibility/2"
CAUSAL_SCHEMA = "saemui-zoo-causal/2"
HEALTH_SCHEMA_V2 = "saemui-zoo-sae-health/2"
#: arms of the causal check: neurons at P0 with G's key sets (a), neurons at P0 with the point's own
#: free-generation key sets (b), SAE features at sae-0.9 with G's key sets (a, the SAE arm)
CAUSAL_ARMS: tuple[str, ...] = ("logprob", "accuracy", "sae-logprob")
DEFAULT_RESULTS_V2 = "results/zoo-v2"
#: item sets a point is measured on: generated answers to the eval items or to their twins, teacher-forced
#: gold answers (G) and the family base's own answers (B)
SETS: tuple[str, ...] = ("verbatim", "twins", "G", "B")


def record_path(results: Path, model: str, task: str, item_set: str) -> Path:
    return Path(results) / f"{model}__{task}__{item_set}.json"


def texts_path(results: Path, model: str, task: str, item_set: str) -> Path:
    return Path(results) / "items" / f"{model}__{task}__{item_set}.json"


def items_path(results: Path, task: str) -> Path:
    return Path(results) / "items" / f"{task}.json"


def eligibility_path(results: Path) -> Path:
    return Path(results) / "eligibility.json"


_R = TypeVar("_R", bound=Mapping[str, Any])


def study_tasks(elig: Mapping[str, Any]) -> tuple[list[str], str | None]:
    """(the tasks a study builds on, task C) from ``eligibility.json``'s content: §3.2's law tasks, or the
    ``one_family_study`` block's tasks when the two-family outcome left none (§11, case (3))."""
    one = elig.get("one_family_study")
    if one:
        return list(one.get("tasks") or []), one.get("C")
    law = list(elig.get("law_tasks") or [])
    return law, elig.get("C") or (law[0] if law else None)


def study_records(records: Sequence[_R], elig: Mapping[str, Any]) -> list[_R]:
    """The records a study's analyses read: all of them, or in a one-family study (§11, case (3)) the family's
    only; the other root's stage-0 records decided the case and take no part in any fit or corollary."""
    family = (elig.get("one_family_study") or {}).get("family")
    return [r for r in records if family is None or r.get("root") == family]


NOT_TESTABLE = "not testable on two families (m = 0)"


def causal_path(results: Path, model: str, task: str, arm: str) -> Path:
    return Path(results) / "causal" / f"{model}__{task}__{arm}.json"


def health_path(results: Path, model: str) -> Path:
    return Path(results) / "sae_health" / f"{model}.json"


def item_json(it: Item) -> dict[str, Any]:
    return {"id": str(it.id), "fields": it.fields, "gold": it.gold}


def item_from_json(d: dict[str, Any]) -> Item:
    return Item(id=str(d["id"]), fields=dict(d["fields"]), gold=d["gold"])


def read_items_file(path: Path) -> dict[str, Any]:
    """An items file, checked for its schema; ``items`` and ``twins`` as :class:`Item` lists."""
    d = read_json(path, dict, "zoo items file", schema=ITEMS_SCHEMA, kind="v2 items file")
    return {
        **d,
        "items": [item_from_json(x) for x in d["items"]],
        "twins": [item_from_json(x) for x in d["twins"]],
    }


def read_texts(path: Path) -> dict[str, Any]:
    """A point's generated-text file (``ids``, ``responses``, ``correct``)."""
    d = read_json(path, dict, "zoo texts file", schema=TEXTS_SCHEMA, kind="v2 texts file")
    if len(d.get("ids", [])) != len(d.get("responses", [])):
        raise SaemuiError(f"{path}: ids and responses differ in length")
    return d


def setting_fields(res: MUIResult, max_set_entries: int) -> dict[str, Any]:
    """One setting's entry in a record: MUI, per-layer MUI, selection and config, per-sample key-set sizes and
    scored positions, and the key sets themselves (global ids ``row * n_units + unit``) when at most
    ``max_set_entries`` in all; a first-T setting also keeps the engine's ``short_samples`` count (§7.2)."""
    s = res.summary
    U, L = res.n_units, len(res.layers)
    n = len(res.samples)
    sets = [
        sorted(int(r * U + u) for r, arr in enumerate(res.sample_sets(i)) for u in arr.tolist())
        for i in range(n)
    ]
    cfg = s.get("config", {})
    out = {
        "mui": res.mui,
        "mui_correct": s.get("mui_correct"),
        "per_layer": res.per_layer,
        "layers": res.layers,
        "n_units": U,
        "n_layers": L,
        "selection": s["selection"],
        "basis": s["units"]["basis"],
        "config": {
            k: v
            for k, v in cfg.items()
            if k
            in (
                "units",
                "threshold",
                "alignment",
                "neuron_site",
                "prompt_format",
                "max_length",
                "first_tokens",
            )
        },
        "n_tokens": s["n_tokens"],
        "set_sizes": [len(x) for x in sets],
        "union_size": int(res.arrays["union_LU"].sum()),
        "sets": sets if sum(len(x) for x in sets) <= max_set_entries else None,
    }
    if s.get("sae_health") is not None:
        out["sae_health"] = s["sae_health"]
    if s.get("short_samples") is not None:
        # §7.2's "short" flag needs per-sample position counts, which the record does not keep otherwise
        out["short_samples"] = s["short_samples"]
    return out


def scored_positions(res: MUIResult) -> list[int]:
    """Scored positions per sample (the engine's ``n_scored``)."""
    return [int(r["n_scored"]) for r in res.samples]


def length_fields(
    res: MUIResult | None, max_new_tokens: int | None, texts_tokens: Sequence[int] | None = None
) -> dict[str, Any]:
    """τ (mean scored positions per non-empty sample, §1), empty responses (no scored position, §6.5) and
    responses whose tokenized length reaches ``max_new_tokens`` (counted, §6.5; re-tokenized text, so an answer
    stopped by the budget may count one token short: counted at ``>= max_new_tokens - 1``)."""
    if res is None:
        return {"tau": None, "n_empty": None, "n_at_max_new_tokens": None}
    pos = scored_positions(res)
    nonempty = [p for p in pos if p > 0]
    resp = [int(r["n_response_tokens"]) for r in res.samples]
    return {
        "tau": sum(nonempty) / len(nonempty) if nonempty else 0.0,
        "n_empty": len(pos) - len(nonempty),
        "n_at_max_new_tokens": None if max_new_tokens is None else sum(t >= max_new_tokens - 1 for t in resp),
    }


def read_causal(path: str | Path) -> dict[str, Any]:
    """A causal-check record, checked for its schema and the per-item arrays of its arm.

    Log-prob arms (``logprob``, ``sae-logprob``) are also :func:`saemui.ablation.load_logprob_arm` records:
    ``clean`` and ``key`` [N] log p(gold | prompt) in nats, ``random`` [N][R]; Δlogp = clean − ablated, so
    E = :func:`saemui.analysis.causal.causal_effect` (clean − key, clean − random). The accuracy arm holds 0/1
    ``clean``, ``key`` [N] and ``random`` [N][R]: ΔAcc = :func:`saemui.analysis.causal.accuracy_effect` (clean,
    key, random). ``effect`` is what the stage computed from these arrays.
    """
    d = read_json(Path(path), dict, "zoo causal record", schema=CAUSAL_SCHEMA, kind="v2 causal record")
    n = len(d.get("ids", []))
    arrays = ("clean", "key", "random")
    if d.get("arm") not in CAUSAL_ARMS or any(len(d.get(k) or []) != n for k in arrays):
        raise SaemuiError(f"{path}: arm {d.get('arm')!r} with per-item arrays of unequal length")
    return d


def load_records_v2(results: str | Path) -> list[dict]:
    """Every v2 record in a directory (sorted by file name)."""
    d = Path(results)
    if not d.is_dir():
        raise SaemuiError(f"{d}: no zoo-v2 results directory (build it with scripts/build_zoo.py --spec v2)")
    out = []
    for f in sorted(d.glob("*__*__*.json")):
        rec = read_json(f, dict, "zoo-v2 record", schema=RESULT_SCHEMA, kind="v2 zoo record")
        out.append(rec)
    return out


__all__ = [
    "CAUSAL_ARMS",
    "CAUSAL_SCHEMA",
    "DEFAULT_RESULTS_V2",
    "ELIGIBILITY_SCHEMA",
    "HEALTH_SCHEMA_V2",
    "ITEMS_SCHEMA",
    "RESULT_SCHEMA",
    "SETS",
    "TEXTS_SCHEMA",
    "causal_path",
    "eligibility_path",
    "NOT_TESTABLE",
    "study_records",
    "study_tasks",
    "health_path",
    "item_from_json",
    "item_json",
    "items_path",
    "length_fields",
    "load_records_v2",
    "read_causal",
    "read_items_file",
    "read_texts",
    "record_path",
    "scored_positions",
    "setting_fields",
    "texts_path",
]
