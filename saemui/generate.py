"""Batched greedy generation with stop sequences: the model's own responses for MUI.

Deterministic: greedy decoding, fixed batch order (length-sorted), no sampling. Prompts are built exactly as the
MUI engine builds them (:func:`saemui.inputs.prompt_ids`), so the scored prompt is the one the model answered.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from tqdm.auto import tqdm

from saemui.inputs import prompt_ids
from saemui.models import LoadedModel
from saemui.tasks.base import truncate_at_stop


@torch.inference_mode()
def generate(
    lm: LoadedModel,
    prompts: Sequence[str],
    max_new_tokens: int = 64,
    stop: Sequence[str] = (),
    prompt_format: str = "auto",
    batch_size: int = 16,
    progress: bool = True,
) -> list[str]:
    """Greedy responses for ``prompts``; left padding (generation appends on the right)."""
    tok = lm.tokenizer
    ids = [prompt_ids(tok, p, prompt_format) for p in prompts]
    order = sorted(range(len(ids)), key=lambda i: (-len(ids[i]), i))
    out: list[str] = [""] * len(ids)
    eos = tok.eos_token_id
    for start in tqdm(range(0, len(order), batch_size), desc="generate", disable=not progress):
        idx = order[start : start + batch_size]
        T = max(len(ids[i]) for i in idx)
        inp = torch.full((len(idx), T), tok.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(idx), T), dtype=torch.long)
        for b, i in enumerate(idx):
            inp[b, T - len(ids[i]) :] = torch.tensor(ids[i])
            mask[b, T - len(ids[i]) :] = 1
        gen = lm.model.generate(
            input_ids=inp.to(lm.device),
            attention_mask=mask.to(lm.device),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=eos,
            pad_token_id=tok.pad_token_id,
            stop_strings=list(stop) or None,
            tokenizer=tok if stop else None,
        )
        for b, i in enumerate(idx):
            text = tok.decode(gen[b, T:], skip_special_tokens=True)
            out[i] = truncate_at_stop(text, stop).strip()
    return out
