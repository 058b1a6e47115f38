"""Training the zoo's derived models: (prompt, response) pairs, the response-only loss, a resumable LoRA or full
fine-tune, and loading a model point (root, fine-tune or checkpoint) as a :class:`~saemui.models.LoadedModel`.

Training data: arith items generated with a different seed than the eval items and with every eval question
removed, the ARC train split, or (contaminated controls) the eval items themselves with their gold answers.
Training resumes from its last ``save_every`` state. ``peft`` is imported only when a LoRA model is trained or
loaded: it is an optional dependency (``pip install saemui[zoo]``).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import json
import math
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from saemui.arch import get_arch
from saemui.errors import SaemuiError
from saemui.inputs import prompt_ids
from saemui.io import atomic_write_bytes
from saemui.models import LoadedModel, load_model, sha256_file
from saemui.provenance import weights_digest
from saemui.tasks import get_task
from saemui.tasks.arith import generate as arith_items
from saemui.tasks.generation import prompt_format_for, resolve_style
from saemui.tasks.sources import find_data_file
from saemui.zoo.spec import ZooModel, ZooSpec, eval_items
from saemui.zoo.stages import digest, train_fingerprint

#: a training stage without ``save_every`` still saves its resumable state this often (steps)
STATE_EVERY = 50


# ----- data ------------------------------------------------------------------------------------------------


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
        banned = set()
        for t in spec.tasks:
            if t.name.startswith("arith"):
                banned |= {it.fields["question"] for it in eval_items(spec, t)}
        per = max(1, d.n // len(d.levels))
        out = []
        for lvl in d.levels:
            task = get_task(f"arith-{lvl}")
            # draw extra items so the set keeps its size after removing eval questions (arith-1 has 100 sums)
            kept = [
                it for it in arith_items(lvl, 4 * per, d.seed + lvl) if it.fields["question"] not in banned
            ]
            out += [(task.format_prompt(it, style), gold_response("arith", it)) for it in kept[:per]]
        return out
    # arc-train: the shared train split has the options inside the question and a worked answer
    path = find_data_file("arc/train.jsonl")
    if path is None:
        raise SaemuiError("arc-train data: arc/train.jsonl not found in the shared data (../shared/data)")
    recs = json.loads(Path(path).read_text())[: d.n]
    if style == "chat":
        return [(r["question"], r["answer"]) for r in recs]
    return [("Question: " + r["question"] + "\nAnswer: ", r["answer"]) for r in recs]


# ----- training ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _quiet_peft() -> Iterator[None]:
    # peft (0.21) probes a transformers attribute that transformers 5 deprecates; the notice is not ours to fix
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        yield


def _save_state(path: Path, state: dict) -> None:
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def response_loss(model, input_ids_BT, attention_mask_BT, labels_BT):
    """Mean next-token cross-entropy over the labelled (response) tokens, as ``model(labels=...).loss``.

    Only the positions from the batch's first labelled token on go through the LM head (``logits_to_keep``):
    prompts never need logits, and on Gemma-3 (262k vocabulary) the head is most of a training step's FLOPs.
    """
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
    style = resolve_style(root_lm, spec.root_of(m).style)
    pairs = training_pairs(spec, m, style)
    saves = tuple(range(m.save_every, m.steps, m.save_every)) if m.save_every else ()
    return train_on_pairs(
        m, root_lm, out_dir, pairs, train_fingerprint(spec, m), style, saves, progress, log_fn
    )


def train_on_pairs(
    m: ZooModel,
    root_lm,
    out_dir: Path,
    pairs: list[tuple[str, str]],
    fp: str,
    style: str,
    save_steps: tuple[int, ...] = (),
    progress: bool = True,
    log_fn: Callable[[str], None] = print,
) -> dict:
    """The training loop behind :func:`train`, on given (prompt, response) pairs in ``style``.

    m: optimisation settings (``train_method``, ``lora_r``/``lora_alpha``, ``lr``, ``steps``, ``batch_size``,
    ``seed``, ``max_length``); fp: the stage fingerprint a resumable state must match; save_steps: steps whose
    weights are kept as ``step-K`` (the resumable state is written there and every ``STATE_EVERY`` steps).
    """
    fmt = prompt_format_for(style)
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
    start, before = 0, 0.0
    if state_file.is_file():
        st = torch.load(state_file, weights_only=True)
        if st.get("fingerprint") == fp:
            with torch.no_grad():
                for n, v in st["params"].items():
                    params[n].copy_(v)
            opt.load_state_dict(st["optimizer"])
            start = int(st["step"])
            # the seconds of the kept steps, so a resumed stage reports its whole cost, not its last segment's
            before = float(st.get("seconds", 0.0))
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
        if done in save_steps and done < m.steps:
            save_weights(f"step-{done}")
        if (done in save_steps or done % STATE_EVERY == 0) and done < m.steps:
            _save_state(
                state_file,
                {
                    "fingerprint": fp,
                    "step": done,
                    "params": {n: p.detach().cpu() for n, p in params.items()},
                    "optimizer": opt.state_dict(),
                    "seconds": before + time.perf_counter() - t0,
                },
            )
    save_weights("final")
    state_file.unlink(missing_ok=True)
    return {
        "pairs": len(pairs),
        "method": method,
        "style": style,
        "final_loss": losses[-1] if losses else None,
        "seconds": before + time.perf_counter() - t0,
        "resumed_at_step": start,
    }


def load_zoo_model(spec: ZooSpec, m: ZooModel, root_lm: LoadedModel, weights: Path) -> LoadedModel:
    """The model point ``m`` as a LoadedModel (``root_lm`` for roots; LoRA adapters merged into a copy)."""
    if m.derivation == "none":
        return root_lm
    src = spec.model(m.base) if m.derivation == "checkpoint-of" else m
    tag = f"step-{m.step}" if m.derivation == "checkpoint-of" else "final"
    d = weights / src.name / tag
    if not d.exists():
        raise SaemuiError(f"zoo model {m.name!r}: weights {d} missing (run the train:{src.name} stage)")
    return load_trained(root_lm, d, src.train_method, m.name)


def load_trained(root_lm: LoadedModel, d: Path, method: str | None, name: str) -> LoadedModel:
    """Weights saved by :func:`train_on_pairs` in ``d`` (an HF directory for ``full``, an adapter for ``lora``)
    on top of ``root_lm``, as a LoadedModel named ``zoo:<name>`` whose provenance digest names these weights."""
    if method == "full":
        lm = load_model(str(d), device=str(root_lm.device), dtype=str(root_lm.dtype).replace("torch.", ""))
        # the weights digest goes into provenance: generation caches and records then name these weights
        prov = dict(lm.provenance, format="zoo-full", root=root_lm.provenance, sha256=weights_digest(d))
        return replace(lm, name=f"zoo:{name}", hf_id=root_lm.hf_id, provenance=prov)
    from peft import PeftModel

    adapter = d / "adapter_model.safetensors"
    with _quiet_peft():
        merged = PeftModel.from_pretrained(copy.deepcopy(root_lm.model), d).merge_and_unload().eval()
    for p in merged.parameters():
        p.requires_grad_(False)
    root_sha = (root_lm.provenance or {}).get("sha256") or digest(root_lm.provenance)
    sha = hashlib.sha256(f"{root_sha}:{sha256_file(adapter)}".encode()).hexdigest()
    prov = {"format": "zoo-lora", "root": root_lm.provenance, "adapter": str(adapter), "sha256": sha}
    return LoadedModel(
        model=merged.to(torch.device(root_lm.device)),
        tokenizer=root_lm.tokenizer,
        name=f"zoo:{name}",
        hf_id=root_lm.hf_id,
        arch=get_arch(merged),
        device=root_lm.device,
        dtype=root_lm.dtype,
        provenance=prov,
    )


__all__ = [
    "STATE_EVERY",
    "gold_response",
    "load_trained",
    "load_zoo_model",
    "response_loss",
    "train",
    "train_on_pairs",
    "training_pairs",
]
