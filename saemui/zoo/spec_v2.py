"""The Study v2 zoo (``docs/study/protocol.md`` §3–§5, §7–§9): roots, candidate tasks, the runs of §4's table,
and how their law-task references resolve once stage 0 has decided the law tasks.

The spec is complete before stage 0 runs: runs name their data symbolically ("mix", "E1", "E2+E3", ...) and
:func:`resolve_sources` turns those names into task shares for a given tuple of law tasks (decided from the
stage-0 records by :func:`saemui.zoo.stages_v2.law_outcome`, with the rule of §3.2).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path

from saemui.errors import SaemuiError
from saemui.zoo.settings import SETTING_NAMES, TF_SETTINGS, check_setting_names
from saemui.zoo.spec import _NAME_OK, GEMMA, SMOL, SMOL_SAES, ZooModel, ZooTask

#: symbolic training sources of §4 ("E2+E3" with fewer than 3 law tasks: the law tasks other than E1)
SOURCES: tuple[str, ...] = ("mix", "E1", "E2", "E3", "E2+E3", "arc-train")
ROLES: tuple[str, ...] = ("law", "seed", "dose")
#: §9's CPU plan (hours) per stage group, printed beside the computed plan
PROTOCOL_PLAN_H: dict[str, float] = {
    "0": 0.6,
    "1": 1.9,
    "2": 3.5,
    "3": 1.1,
    "4": 1.8,
    "5": 2.0,
    "6": 0.55,
    "loads": 0.7,
    "total": 12.2,
}
GROUPS: dict[str, str] = {
    "items": "items files",
    "0": "0 eligibility",
    "1": "1 training, law",
    "2": "2 law evals",
    "2h": "2h SAE health",
    "3": "3 twins",
    "4": "4 Cor. 1",
    "5": "5 Cor. 2",
    "6": "6 causal",
}


@dataclass(frozen=True)
class StudyRun:
    """One training run: a row of §4's table, an extra R* seed (§8.1) or a dose run (§8.2).

    name: the table's id (``S1``, ``G4``) or ``<R*>-seed<k>`` / ``<R*>-dose<d>``; the model point is
        ``<root>-<name>`` and its checkpoints ``<root>-<name>@<step>``.
    root: the root model's name in the spec. method: ``"lora"`` (all linear layers but the LM head,
        lora_alpha = 2r) or ``"full"``. lora_r: LoRA rank (None for full fine-tunes).
    lr, steps, seed: AdamW with constant lr, batch and length from the spec; seed orders the data, initialises
        LoRA and offsets the training generators (seed 1000 + seed).
    data: (source, share) pairs, shares summing to 1; sources of :data:`SOURCES`.
    checkpoints: steps below ``steps`` whose weights are kept and evaluated on task C (the final step always is).
    dose: fraction of task C's eval items (gold answers in the training template) replacing as many clean pairs
        (§8.2); 0 for clean runs.
    role: ``"law"`` (an independent clean law point), ``"seed"`` (R* seeds 1–2, §8.1) or ``"dose"`` (§8.2).
    """

    name: str
    root: str
    method: str
    lr: float
    data: tuple[tuple[str, float], ...]
    steps: int
    seed: int
    lora_r: int | None = 8
    checkpoints: tuple[int, ...] = ()
    dose: float = 0.0
    role: str = "law"

    @property
    def model(self) -> str:
        return f"{self.root}-{self.name}"

    @property
    def lora_alpha(self) -> int | None:
        return None if self.lora_r is None else 2 * self.lora_r


@dataclass(frozen=True)
class StudySpec:
    """The v2 zoo.

    name: zoo id (cache sub-directory ``zoo/<name>``). roots: the two base models with explicit styles (chat
    for SmolLM2-Instruct, base for Gemma-3), one family each. candidates: stage-0 tasks in priority order (§3.1).
    runs: every training run. n_items: eval items (and twins) per task. n_pairs, batch_size, max_length:
    training pairs, batch and sequence cap of every run. max_law_tasks: law tasks taken (§3.2: the first three
    two-family candidates). settings / tf_settings: §5 setting names measured on generated / teacher-forced
    text. saes: root name → SAE bundle for the SAE settings. train_seed / twin_seed: generator seeds of training
    items (plus the run's seed) and twins. eligibility_alpha / eligibility_margin: §3.2's test (0.05, 0.05).
    rstar: the R* runs (seed 0) whose finals, with the two bases, are the causal check's points (§8.5).
    causal_draws / causal_acc_draws: random control draws of the log-prob arm (5) and of the accuracy arm (2);
    causal_seed: their seed (draw d uses ``default_rng([seed, d])``). health_layers / health_ce_samples: the layers
    and the first responses on which SAE health measures CE-loss recovered and KL (W10; FVE, L0, dead and dense
    at every layer on all responses). twins_on / tf_b_on: ``"law"`` = every law task has twin (TF-B) evals,
    ``"C"`` = task C only (§9 cuts 3 and 4). cuts: which of §9's cuts :func:`apply_cuts` applied (a record).
    base_shots / shot_seed: exemplars in the base-style prompts of arith-style candidates; 1 = each task's one
    hand-written exemplar (registered), more = that many items of the task's own generator at ``shot_seed``
    (deviation D1 of §11, :func:`saemui.zoo.data_v2.root_task`).
    family: None for §3.2's two-family study; a root's name for case (3) of §11's m < 3 entry (no two-family
    task under the registered prompts nor D1): the study's tasks are that root's one-family candidates (the first
    ``max_law_tasks`` in priority order), task C the first of them, and every run, causal point and corollary is
    within that root. The other root keeps its stage-0 evaluations, which decided the case.
    """

    name: str
    roots: tuple[ZooModel, ...]
    candidates: tuple[ZooTask, ...]
    runs: tuple[StudyRun, ...]
    n_items: int = 200
    n_pairs: int = 600
    batch_size: int = 8
    max_length: int = 256
    max_law_tasks: int = 3
    settings: tuple[str, ...] = SETTING_NAMES
    tf_settings: tuple[str, ...] = TF_SETTINGS
    saes: tuple[tuple[str, str], ...] = ()
    train_seed: int = 1000
    twin_seed: int = 1
    eligibility_alpha: float = 0.05
    eligibility_margin: float = 0.05
    max_set_entries: int = 60000
    gen_batch_size: int = 16
    rstar: tuple[str, ...] = ("S1", "G1")
    causal_draws: int = 5
    causal_acc_draws: int = 2
    causal_seed: int = 0
    health_layers: tuple[int, ...] = (5, 15, 25)
    health_ce_samples: int = 50
    twins_on: str = "law"
    tf_b_on: str = "law"
    cuts: tuple[int, ...] = ()
    base_shots: int = 1
    shot_seed: int = 999
    family: str | None = None

    def root(self, name: str) -> ZooModel:
        for r in self.roots:
            if r.name == name:
                return r
        raise SaemuiError(f"zoo {self.name!r}: no root named {name!r}")

    def run(self, name: str) -> StudyRun:
        for r in self.runs:
            if r.name == name or r.model == name:
                return r
        raise SaemuiError(f"zoo {self.name!r}: no run named {name!r}")

    def candidate(self, name: str) -> ZooTask:
        for t in self.candidates:
            if t.name == name:
                return t
        raise SaemuiError(f"zoo {self.name!r}: no candidate task named {name!r}")

    def sae_bundle(self, root: str) -> str | None:
        return dict(self.saes).get(root)

    def studied(self, root: str) -> bool:
        """Whether ``root`` is part of the study beyond stage 0 (every root unless the spec is one-family)."""
        return self.family in (None, root)


def validate_v2(spec: StudySpec) -> StudySpec:
    """Check the spec; one-line SaemuiError naming the run and the problem."""
    where = f"zoo {spec.name!r}"
    if len(spec.roots) != 2:
        raise SaemuiError(f"{where}: expected two roots (one per family), got {len(spec.roots)}")
    for r in spec.roots:
        if r.derivation != "none" or r.style not in ("chat", "base"):
            raise SaemuiError(f"{where}: root {r.name!r} must be a plain model with style chat or base")
    if not spec.candidates:
        raise SaemuiError(f"{where}: no candidate tasks")
    if len({t.name for t in spec.candidates}) != len(spec.candidates):
        raise SaemuiError(f"{where}: a candidate task appears twice")
    if spec.n_items < 2 or spec.n_pairs < 1 or spec.batch_size < 1 or spec.max_law_tasks < 1:
        raise SaemuiError(f"{where}: n_items >= 2, n_pairs, batch_size and max_law_tasks >= 1 are required")
    check_setting_names(spec.settings, where)
    check_setting_names(spec.tf_settings, where)
    if "P0" not in spec.settings or "P0" not in spec.tf_settings:
        raise SaemuiError(f"{where}: the primary setting P0 must be measured")
    roots = {r.name for r in spec.roots}
    if spec.family is not None and spec.family not in roots:
        raise SaemuiError(f"{where}: family {spec.family!r} is not a root")
    for root, _ in spec.saes:
        if root not in roots:
            raise SaemuiError(f"{where}: saes names {root!r}, which is not a root")
    models = [r.model for r in spec.runs]
    dup = sorted({m for m in models if models.count(m) > 1})
    if dup:
        raise SaemuiError(f"{where}: run {dup[0]!r} appears twice")
    for run in spec.runs:
        w = f"{where} run {run.name!r}"
        if not run.name or not set(run.model) <= _NAME_OK or "@" in run.model:
            raise SaemuiError(f"{w}: name may only use letters, digits and . _ -")
        if run.root not in roots:
            raise SaemuiError(f"{w}: root {run.root!r} is not a root of the zoo")
        if not spec.studied(run.root):
            raise SaemuiError(f"{w}: a one-family study ({spec.family}) has runs of that root only")
        if run.method not in ("lora", "full"):
            raise SaemuiError(f"{w}: method must be lora or full, got {run.method!r}")
        if (run.method == "lora") != (run.lora_r is not None):
            raise SaemuiError(f"{w}: lora_r is given for LoRA runs and only for them")
        if run.role not in ROLES:
            raise SaemuiError(f"{w}: role must be one of {', '.join(ROLES)}, got {run.role!r}")
        if run.steps < 1 or run.lr <= 0:
            raise SaemuiError(f"{w}: steps and lr must be positive")
        if not run.data:
            raise SaemuiError(f"{w}: no training data")
        for src, share in run.data:
            if src not in SOURCES:
                raise SaemuiError(f"{w}: data source {src!r} unknown (expected one of {', '.join(SOURCES)})")
            if share <= 0:
                raise SaemuiError(f"{w}: data share of {src!r} must be positive")
        if abs(sum(s for _, s in run.data) - 1) > 1e-9:
            raise SaemuiError(f"{w}: data shares must sum to 1, got {sum(s for _, s in run.data)}")
        if sorted(set(run.checkpoints)) != list(run.checkpoints) or any(
            not 0 < k < run.steps for k in run.checkpoints
        ):
            raise SaemuiError(f"{w}: checkpoints must be increasing steps between 1 and {run.steps - 1}")
        if not 0 <= run.dose <= 1:
            raise SaemuiError(f"{w}: dose must be a fraction in [0, 1], got {run.dose}")
        if (run.role == "dose") != (run.dose > 0):
            raise SaemuiError(f"{w}: a dose run has dose > 0 and only dose runs do")
    for name in spec.rstar:
        if name not in {r.name for r in spec.runs} or spec.run(name).role != "law":
            raise SaemuiError(f"{where}: rstar names {name!r}, which is not a clean law run")
    if spec.causal_draws < 1 or spec.causal_acc_draws < 1:
        raise SaemuiError(f"{where}: the causal check needs at least one random draw per arm")
    if spec.health_ce_samples < 1 or not spec.health_layers:
        raise SaemuiError(f"{where}: SAE health needs CE layers and at least one CE sample")
    if spec.base_shots < 1:
        raise SaemuiError(f"{where}: base_shots must be >= 1, got {spec.base_shots}")
    if spec.twins_on not in ("law", "C") or spec.tf_b_on not in ("law", "C"):
        raise SaemuiError(f"{where}: twins_on and tf_b_on must be 'law' or 'C'")
    if spec.cuts != tuple(range(1, len(spec.cuts) + 1)) or len(spec.cuts) > len(CUTS):
        raise SaemuiError(f"{where}: cuts must be §9's first n cuts in order (1, 2, …), got {spec.cuts}")
    return spec


#: §9's cuts, in the order they apply when the re-planned build exceeds 10.5 h (docs/study/protocol.md §9)
CUTS: dict[int, str] = {
    1: "causal accuracy arm with 1 random draw",
    2: "no Gemma 10 % dose run",
    3: "twins of tasks other than C dropped (Cor. 3's reference becomes C's twins)",
    4: "TF-B only on task C",
}


def apply_cuts(spec: StudySpec, n: int) -> StudySpec:
    """``spec`` with §9's first ``n`` cuts applied (0 = none), the cuts recorded in ``spec.cuts``.

    Cut 2 drops the dose-10 % run of the second root (Gemma in the real zoo), whatever its name."""
    if not 0 <= n <= len(CUTS):
        raise SaemuiError(f"§9 has cuts 1-{len(CUTS)}; got {n}")
    out = replace(spec, cuts=tuple(range(1, n + 1)))
    if n >= 1:
        out = replace(out, causal_acc_draws=1)
    if n >= 2:
        second = spec.roots[1].name
        out = replace(
            out,
            runs=tuple(r for r in out.runs if not (r.root == second and r.role == "dose" and r.dose == 0.1)),
        )
    if n >= 3:
        out = replace(out, twins_on="C")
    if n >= 4:
        out = replace(out, tf_b_on="C")
    return validate_v2(out)


# ----- resolution of the symbolic data ----------------------------------------------------------------------


def resolve_sources(data: tuple[tuple[str, float], ...], law: tuple[str, ...]) -> list[tuple[str, Fraction]]:
    """(task or ``"arc-train"``, share) for a run's symbolic data and the law tasks E1.. in priority order.

    "mix" = equal shares of the law tasks; "E<j>" = the j-th law task, or the last one when there are fewer than
    j; "E2+E3" = the law tasks other than E1 in equal shares (E1 itself when it is the only one). Shares of one
    task from several parts are added; the order is first appearance.
    """
    if not law:
        raise SaemuiError("no law tasks: the runs' training data cannot be resolved")
    out: dict[str, Fraction] = {}

    def add(task: str, share: Fraction) -> None:
        out[task] = out.get(task, Fraction(0)) + share

    for src, share in data:
        s = Fraction(share).limit_denominator(10**6)
        if src == "mix":
            for t in law:
                add(t, s / len(law))
        elif src == "E2+E3":
            rest = law[1:3] or law[:1]
            for t in rest:
                add(t, s / len(rest))
        elif src.startswith("E"):
            j = int(src[1:])
            add(law[min(j, len(law)) - 1], s)
        elif src == "arc-train":
            add("arc-train", s)
        else:
            raise SaemuiError(f"data source {src!r} unknown")
    return list(out.items())


def allocate(n: int, shares: list[tuple[str, Fraction]]) -> list[tuple[str, int]]:
    """Split ``n`` pairs over the shares: floor of each exact share, the remainder one by one to the largest
    fractional parts (ties: first listed)."""
    exact = [(k, share * n) for k, share in shares]
    counts = {k: int(v) for k, v in exact}
    left = n - sum(counts.values())
    order = sorted(range(len(exact)), key=lambda i: (-(exact[i][1] - int(exact[i][1])), i))
    for i in order[:left]:
        counts[exact[i][0]] += 1
    return [(k, counts[k]) for k, _ in shares]


# ----- the v2 zoo and its tiny twin --------------------------------------------------------------------------

SMOL_ROOT = ZooModel("smollm2", SMOL, style="chat")
GEMMA_ROOT = ZooModel("gemma3", GEMMA, style="base")

#: §3.1 candidates in priority order; 48 new tokens for arith-style tasks, 64 for arc (v1's budgets), 256 for
#: gsm8k. Candidate 7 (gsm8k) is piloted because stage 0 left fewer than three law tasks among 1-6 (§3.1, §11);
#: its eval items are drawn after 1-6, so their sets (and stage-0 records) are unchanged by its presence.
CANDIDATES: tuple[ZooTask, ...] = (
    ZooTask("arith-1", (("distinct", True), ("operand_max", 29)), max_new_tokens=48, prompt_tokens=45),
    ZooTask("arith-2", (("distinct", True),), max_new_tokens=48, prompt_tokens=45),
    ZooTask("arith-3", (("distinct", True),), max_new_tokens=48, prompt_tokens=75),
    ZooTask("arith-2d1d", max_new_tokens=48, prompt_tokens=45),
    ZooTask("arith-larger", max_new_tokens=48, prompt_tokens=50),
    ZooTask("arc", max_new_tokens=64, prompt_tokens=130),
    ZooTask("gsm8k", max_new_tokens=256, prompt_tokens=170),
)

MIX = (("mix", 1.0),)
MIX_ARC = (("mix", 0.5), ("arc-train", 0.5))
#: R*'s checkpoints (§4, §8.1): 10, 20, 40, 60, 90 and the final step 120
RSTAR_CHECKPOINTS = (10, 20, 40, 60, 90)
DOSES = (0.1, 0.3, 1.0)


def _extras(rstar: StudyRun) -> list[StudyRun]:
    """R* seeds 1-2 (§8.1) and R* seed 0 with the contamination doses (§8.2; checkpoints 60 and 120)."""
    out = []
    for s in (1, 2):
        out.append(
            StudyRun(
                f"{rstar.name}-seed{s}",
                rstar.root,
                rstar.method,
                rstar.lr,
                rstar.data,
                rstar.steps,
                s,
                rstar.lora_r,
                rstar.checkpoints,
                role="seed",
            )
        )
    for d in DOSES:
        out.append(
            StudyRun(
                f"{rstar.name}-dose{round(100 * d)}",
                rstar.root,
                rstar.method,
                rstar.lr,
                rstar.data,
                rstar.steps,
                rstar.seed,
                rstar.lora_r,
                (60,),
                dose=d,
                role="dose",
            )
        )
    return out


#: how many of §9's cuts the build applies: fixed from the re-plan after stage 0 (measured rates), before any
#: fine-tuned result exists, and logged in the protocol's §11
V2_CUTS = 0
#: deviation D1 of §11 (5 in-task exemplars in Gemma's arith prompts): on, since the gsm8k pilot left m = 0 (§11, 2026-12-01)
V2_D1 = True
D1_SHOTS = 5
#: case (3) of §11's m < 3 entry: D1 left m = 0 too (§11, 2026-12-01), so the study is SmolLM2's alone
V2_FAMILY: str | None = "smollm2"


def zoo_v2(cuts: int | None = None, d1: bool | None = None, family: str | None = V2_FAMILY) -> StudySpec:
    """The Study v2 zoo as §4's table: S1–S10 (SmolLM2), G1–G6 (Gemma), R* seeds 1–2 and doses 10 / 30 / 100 %
    per family; candidates 1–7 of §3.1 (7 piloted, §11); every §5 setting; the shipped SmolLM2 SAE bundle; then
    §9's first ``cuts`` cuts (default :data:`V2_CUTS`, the logged decision); ``d1``: deviation D1 of §11 (default
    :data:`V2_D1`); ``family``: the one-family study of §11's case (3) (default :data:`V2_FAMILY`; None = the
    registered two-family design), which keeps that root's runs and R* only."""
    sm, gm = "smollm2", "gemma3"
    smol = [
        StudyRun("S1", sm, "lora", 2e-4, MIX, 120, 0, 8, RSTAR_CHECKPOINTS),
        StudyRun("S2", sm, "lora", 2e-4, MIX, 40, 3, 8),
        StudyRun("S3", sm, "lora", 1e-4, (("E1", 1.0),), 80, 4, 4),
        StudyRun("S4", sm, "lora", 5e-4, (("E2+E3", 1.0),), 80, 5, 32),
        StudyRun("S5", sm, "lora", 5e-5, MIX, 60, 6, 8),
        StudyRun("S6", sm, "lora", 2e-4, MIX_ARC, 120, 7, 16),
        StudyRun("S7", sm, "lora", 2e-4, (("arc-train", 1.0),), 60, 8, 8),
        StudyRun("S8", sm, "lora", 2e-4, (("E3", 1.0),), 120, 11, 8),
        StudyRun("S9", sm, "full", 2e-5, MIX, 60, 9, None),
        StudyRun("S10", sm, "full", 1e-5, MIX_ARC, 120, 10, None),
    ]
    gemma = [
        StudyRun("G1", gm, "lora", 2e-4, MIX, 120, 0, 8, RSTAR_CHECKPOINTS),
        StudyRun("G2", gm, "lora", 1e-4, (("E1", 1.0),), 40, 3, 4),
        StudyRun("G3", gm, "lora", 5e-4, (("E2+E3", 1.0),), 60, 4, 32),
        StudyRun("G4", gm, "lora", 5e-5, MIX, 60, 5, 8),
        StudyRun("G5", gm, "lora", 2e-4, MIX_ARC, 80, 6, 16),
        StudyRun("G6", gm, "full", 2e-5, MIX, 60, 7, None),
    ]
    runs = (*smol, *gemma, *_extras(smol[0]), *_extras(gemma[0]))
    spec = validate_v2(
        StudySpec(
            "v2",
            (SMOL_ROOT, GEMMA_ROOT),
            CANDIDATES,
            runs,
            saes=(("smollm2", SMOL_SAES),),
            base_shots=D1_SHOTS if (V2_D1 if d1 is None else d1) else 1,
        )
    )
    if family is not None:
        spec = one_family(spec, family)
    return apply_cuts(spec, V2_CUTS if cuts is None else cuts)


def one_family(spec: StudySpec, family: str) -> StudySpec:
    """``spec`` as the one-family study of §11's case (3): ``family``'s runs and R* only, both roots kept."""
    runs = tuple(r for r in spec.runs if r.root == family)
    rstar = tuple(n for n in spec.rstar if any(r.name == n for r in runs))
    return validate_v2(replace(spec, runs=runs, rstar=rstar, family=family))


def tiny_zoo_v2(
    llama_dir: str | Path, gemma_dir: str | Path, llama_saes: str | Path | None = None
) -> StudySpec:
    """A seconds-long v2 zoo on two tiny random models (tests): 3 arith candidates at N = 8, two law tasks, an
    R* with one checkpoint and its 50 % dose run (LoRA), a full fine-tune of the Gemma root on E2 (the Gemma
    "R*" of the causal check); P0 and one first-T setting. llama_saes: an SAE suite of the llama root (every
    layer) for the causal check's SAE arm and SAE health (CE at layers 0 and 2 on the first 4 responses).

    Random models answer nothing correctly, so §3.2's test would leave no law task: the tiny spec sets the
    eligibility level and margin so that every candidate passes (the resolution code path is the real one).
    """
    sm, gm = "tiny-llama", "tiny-gemma"
    cands = (
        ZooTask("arith-1", (("distinct", True), ("operand_max", 29)), max_new_tokens=6, prompt_tokens=20),
        ZooTask("arith-2d1d", max_new_tokens=6, prompt_tokens=20),
        ZooTask("arith-larger", max_new_tokens=6, prompt_tokens=20),
    )
    runs = (
        StudyRun("S1", sm, "lora", 1e-2, MIX, 4, 0, 4, (2,)),
        StudyRun("G1", gm, "full", 3e-3, (("E2", 1.0),), 2, 3, None),
        StudyRun("S1-dose50", sm, "lora", 1e-2, MIX, 4, 0, 4, (2,), dose=0.5, role="dose"),
    )
    return validate_v2(
        StudySpec(
            "tiny-v2",
            (ZooModel(sm, str(llama_dir), style="chat"), ZooModel(gm, str(gemma_dir), style="base")),
            cands,
            runs,
            n_items=8,
            n_pairs=24,
            batch_size=4,
            max_length=64,
            max_law_tasks=2,
            settings=("P0", "P0-first4"),
            eligibility_alpha=1.01,
            eligibility_margin=-1.0,
            gen_batch_size=8,
            saes=((sm, str(llama_saes)),) if llama_saes else (),
            health_layers=(0, 2),
            health_ce_samples=4,
        )
    )


__all__ = [
    "CANDIDATES",
    "D1_SHOTS",
    "CUTS",
    "DOSES",
    "GEMMA_ROOT",
    "GROUPS",
    "PROTOCOL_PLAN_H",
    "ROLES",
    "RSTAR_CHECKPOINTS",
    "SMOL_ROOT",
    "SOURCES",
    "V2_CUTS",
    "V2_D1",
    "V2_FAMILY",
    "StudyRun",
    "StudySpec",
    "allocate",
    "apply_cuts",
    "one_family",
    "resolve_sources",
    "tiny_zoo_v2",
    "validate_v2",
    "zoo_v2",
]
