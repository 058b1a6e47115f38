"""From (prompt, response) records to token ids, scored positions and padded batches.

Prompt and response are tokenized separately and concatenated as ids: re-tokenizing ``prompt + response`` and
cutting at ``len(tok(prompt))`` shifts the boundary when BPE merges across it (official-code bug 6). The chat
template comes from the tokenizer (``apply_chat_template`` with ``add_generation_prompt``), so a template's
literal BOS is not doubled. Which positions are scored:
- ``response`` (paper alignment): the response tokens' own positions; a neuron's target token is the token at
  that position (what the official code computed).
- ``predicting`` (corrected alignment): the positions whose *next* token is a response token (from the last
  prompt token to the second-to-last response token); the target is that next token (the paper's equation).
Special tokens (BOS, EOS, chat markers, pads) are never scored, nor targets. With ``first_tokens`` T only each
sample's first T scored positions (of its alignment) are kept; a sample with fewer keeps all it has. Neither
choice changes the ids, so several settings share one encoding (:func:`realign`) and one padded batch
(:func:`collate_views`).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from saemui.errors import SaemuiError
from saemui.records import Sample

log = logging.getLogger(__name__)

ALIGNMENTS = ("response", "predicting")
PROMPT_FORMATS = ("auto", "chat", "raw")


@dataclass
class Encoded:
    """One sample as ids. ``score_pos``/``target`` are aligned arrays of scored positions and their targets.

    int32 numpy arrays, not Python lists: a run keeps every sample encoded, and lists cost ~9× the memory.
    """

    index: int
    ids: np.ndarray
    response_start: int
    score_pos: np.ndarray
    target: np.ndarray
    n_response_tokens: int
    truncated: int


def special_ids(tokenizer) -> set[int]:
    ids = set(getattr(tokenizer, "all_special_ids", []) or [])
    for i, tok in (getattr(tokenizer, "added_tokens_decoder", None) or {}).items():
        if getattr(tok, "special", False):
            ids.add(int(i))
    return ids


def prompt_ids(tokenizer, prompt: str, prompt_format: str) -> list[int]:
    if prompt_format not in PROMPT_FORMATS:
        raise SaemuiError(
            f"prompt format {prompt_format!r} unknown (expected one of {', '.join(PROMPT_FORMATS)})"
        )
    has_template = bool(getattr(tokenizer, "chat_template", None))
    if prompt_format == "chat" and not has_template:
        raise SaemuiError(
            "prompt format 'chat' requested but the tokenizer has no chat template (use --prompt-format raw)"
        )
    if prompt_format == "chat" or (prompt_format == "auto" and has_template):
        out = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], tokenize=True, add_generation_prompt=True
        )
        if hasattr(out, "keys"):  # transformers 5 may return a BatchEncoding
            out = out["input_ids"]
        return list(out)
    return list(tokenizer(prompt, add_special_tokens=True)["input_ids"])


def encode_sample(
    tokenizer,
    index: int,
    sample: Sample,
    alignment: str,
    prompt_format: str,
    max_length: int,
    specials: set[int],
    first_tokens: int | None = None,
) -> Encoded:
    if alignment not in ALIGNMENTS:
        raise SaemuiError(
            f"alignment {alignment!r} unknown (expected 'response' (paper) or 'predicting' (corrected))"
        )
    p = prompt_ids(tokenizer, sample.prompt, prompt_format)
    r = list(tokenizer(sample.response, add_special_tokens=False)["input_ids"]) if sample.response else []
    if len(p) >= max_length:
        raise SaemuiError(
            f"sample {sample.id!r}: prompt alone has {len(p)} tokens, not below max_length={max_length} "
            "(raise --max-length or shorten the prompt)"
        )
    truncated = max(0, len(p) + len(r) - max_length)
    if truncated:
        r = r[: len(r) - truncated]
    ids = np.asarray(p + r, dtype=np.int32)
    pos, tgt = score_positions(ids, len(p), alignment, specials, first_tokens)
    return Encoded(index, ids, len(p), pos, tgt, len(r), truncated)


def score_positions(
    ids: np.ndarray, start: int, alignment: str, specials: set[int], first_tokens: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Scored positions and their targets (int32) of one sequence whose response starts at ``start``.

    ``first_tokens``: keep only the first T scored positions (in sequence order); fewer are kept as they are.
    """
    if alignment not in ALIGNMENTS:
        raise SaemuiError(
            f"alignment {alignment!r} unknown (expected 'response' (paper) or 'predicting' (corrected))"
        )
    ids_l = ids.tolist()
    resp = [i for i in range(start, len(ids_l)) if ids_l[i] not in specials]
    # predicting: the position before each response token, whose target is that token
    pos = resp if alignment == "response" else [i - 1 for i in resp]
    tgt = [ids_l[i] for i in resp]
    if first_tokens is not None:
        pos, tgt = pos[:first_tokens], tgt[:first_tokens]
    return np.asarray(pos, dtype=np.int32), np.asarray(tgt, dtype=np.int32)


def _check_first_tokens(first_tokens: int | None) -> None:
    if first_tokens is not None and (
        not isinstance(first_tokens, int) or isinstance(first_tokens, bool) or first_tokens < 1
    ):
        raise SaemuiError(
            f"first_tokens={first_tokens!r}: expected a number of scored positions >= 1 (None = all)"
        )


def encode_samples(
    tokenizer,
    samples: Sequence[Sample],
    alignment: str,
    prompt_format: str = "auto",
    max_length: int = 2048,
    first_tokens: int | None = None,
) -> list[Encoded]:
    """Every sample encoded (see :func:`encode_sample`); ``first_tokens`` keeps each sample's first T scored
    positions only (``RunConfig.first_tokens``)."""
    _check_first_tokens(first_tokens)
    specials = special_ids(tokenizer)
    enc = [
        encode_sample(tokenizer, i, s, alignment, prompt_format, max_length, specials, first_tokens)
        for i, s in enumerate(samples)
    ]
    n_trunc = sum(1 for e in enc if e.truncated)
    if n_trunc:
        log.warning(
            "%d sample(s) longer than max_length=%d: response tails truncated (recorded per sample)",
            n_trunc,
            max_length,
        )
    n_empty = sum(1 for e in enc if len(e.score_pos) == 0)
    if n_empty:
        log.warning("%d sample(s) have no scored response tokens; they add no key units", n_empty)
    if msg := prompt_format_warning(tokenizer, samples, prompt_format):
        log.warning("%s", msg)
    return enc


def realign(
    tokenizer, encoded: Sequence[Encoded], alignment: str, first_tokens: int | None = None
) -> list[Encoded]:
    """The same encoded samples scored at other positions (another alignment and/or first-T cut), without
    tokenizing again: the ids (shared, not copied) do not depend on either, only the scored positions do."""
    _check_first_tokens(first_tokens)
    specials = special_ids(tokenizer)
    return [
        dataclasses.replace(e, score_pos=pos, target=tgt)
        for e in encoded
        for pos, tgt in [score_positions(e.ids, e.response_start, alignment, specials, first_tokens)]
    ]


def prompt_format_warning(tokenizer, samples: Sequence[Sample], prompt_format: str) -> str | None:
    """A warning text when records say (``meta["style"]``, written by task runs and ``saemui score``) that their
    responses answered prompts in another format than the one they are scored with: the model then read a
    different prompt than the one it answered (docs/method.md §7 Q24)."""
    has_template = bool(getattr(tokenizer, "chat_template", None))
    used = "chat" if prompt_format == "chat" or (prompt_format == "auto" and has_template) else "raw"
    # a task's style → the prompt format it was generated with (tasks.generation.prompt_format_for)
    generated = {"chat": "chat", "base": "raw"}
    other = [s for s in samples if generated.get(s.meta.get("style")) not in (None, used)]
    if not other:
        return None
    style = other[0].meta["style"]
    return (
        f"{len(other)} record(s) were generated with {style}-style prompts ({generated[style]} format) but are "
        f"scored with prompt format {used}; pass --prompt-format {generated[style]} to score the prompt that "
        "was answered"
    )


@dataclass
class Batch:
    """Right- (or left-) padded ids with flat indices of scored tokens.

    flat_N: index into the flattened [B·T] positions of each scored token; seg_N: its row in the batch;
    target_N: its target token id; sample_index: original sample index of each row.
    """

    input_ids_BT: torch.Tensor
    attention_mask_BT: torch.Tensor
    position_ids_BT: torch.Tensor
    flat_N: torch.Tensor
    seg_N: torch.Tensor
    target_N: torch.Tensor
    sample_index: list[int]

    @property
    def n_tokens(self) -> int:
        return int(self.flat_N.numel())


def plan_batches(
    encoded: Sequence[Encoded], max_batch_tokens: int = 4096, max_batch_size: int = 32
) -> list[list[int]]:
    """Length-sorted groups of sample positions under a padded-token budget (order does not affect MUI)."""
    order = sorted(range(len(encoded)), key=lambda i: (-len(encoded[i].ids), encoded[i].index))
    plan: list[list[int]] = []
    group: list[int] = []
    longest = 0
    for i in order:
        n = len(encoded[i].ids)
        if group and (max(longest, n) * (len(group) + 1) > max_batch_tokens or len(group) >= max_batch_size):
            plan.append(group)
            group, longest = [], 0
        group.append(i)
        longest = max(longest, n)
    if group:
        plan.append(group)
    return plan


def collate(group: list[Encoded], pad_id: int, padding_side: str = "right", device="cpu") -> Batch:
    """One batch's tensors from encoded samples (a :func:`plan_batches` group); ``padding_side`` "right" or
    "left" (validated by ``RunConfig.resolved``)."""
    return collate_views([group], pad_id, padding_side, device)[0]


def collate_views(
    views: Sequence[list[Encoded]], pad_id: int, padding_side: str = "right", device="cpu"
) -> list[Batch]:
    """One batch per view of the same samples (the same ids, scored at other positions: :func:`realign`); the
    padded ids, mask and position ids are built once and shared by every view's batch, so one forward serves
    all of them."""
    group = views[0]
    B, T = len(group), max(len(e.ids) for e in group)
    ids = torch.full((B, T), pad_id, dtype=torch.long)
    mask = torch.zeros((B, T), dtype=torch.long)
    offsets = []
    for b, e in enumerate(group):
        off = T - len(e.ids) if padding_side == "left" else 0
        ids[b, off : off + len(e.ids)] = torch.from_numpy(e.ids)
        mask[b, off : off + len(e.ids)] = 1
        offsets.append(b * T + off)
    pos = (mask.cumsum(1) - 1).clamp(min=0)
    ids, mask, pos = ids.to(device), mask.to(device), pos.to(device)

    def cat(parts: list[np.ndarray]) -> torch.Tensor:
        return torch.from_numpy(np.concatenate(parts).astype(np.int64)).to(device)

    out = []
    for view in views:
        if [e.index for e in view] != [e.index for e in group]:
            raise ValueError("collate_views: every view must hold the same samples in the same order")
        # whole arrays, not per-element Python loops over numpy scalars
        flat = [e.score_pos.astype(np.int64) + o for e, o in zip(view, offsets)]
        seg = [np.full(len(e.score_pos), b, dtype=np.int64) for b, e in enumerate(view)]
        out.append(
            Batch(
                input_ids_BT=ids,
                attention_mask_BT=mask,
                position_ids_BT=pos,
                flat_N=cat(flat),
                seg_N=cat(seg),
                target_N=cat([e.target for e in view]),
                sample_index=[e.index for e in view],
            )
        )
    return out
