"""Offline test assets: a tiny trained tokenizer, tiny random-weight models of each supported family, and
synthetic SAEs saved in sae-lens format. Nothing here touches the network.

Part of the package (not of ``tests/``) because the benchmark and the tiny zoo build use the same assets.
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch

CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "What is 2 + 3? The answer is 5.",
    "Paris is the capital of France. Berlin is the capital of Germany.",
    "def square(x):\n    return x * x",
    "Answer: 42. Question: what is six times seven?",
    "Soft rain on the roof, whispers of the grey morning.",
    "Plants absorb carbon dioxide and release oxygen.",
    "1 2 3 4 5 6 7 8 9 10 11 12 100 1000",
] * 4


@functools.cache
def tiny_tokenizer(bos: bool = False):
    """A byte-level BPE tokenizer (vocab ≈ 400) with ChatML specials; ``bos`` makes it prepend <|im_start|>."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS, trainer)
    if bos:
        tok.post_processor = processors.TemplateProcessing(
            single="<|im_start|> $A", special_tokens=[("<|im_start|>", 1)]
        )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|im_end|>",
        unk_token="<|endoftext|>",
    )
    fast.chat_template = CHATML
    return fast


def _config(family: str, vocab: int):
    from transformers import Gemma3TextConfig, GPT2Config, LlamaConfig

    if family == "llama":
        return LlamaConfig(
            vocab_size=vocab,
            hidden_size=64,
            intermediate_size=96,
            num_hidden_layers=3,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=256,
            tie_word_embeddings=True,
            bos_token_id=1,
            eos_token_id=2,
            pad_token_id=2,
        )
    if family == "gemma":
        return Gemma3TextConfig(
            vocab_size=vocab,
            hidden_size=64,
            intermediate_size=96,
            num_hidden_layers=3,
            num_attention_heads=4,
            num_key_value_heads=1,
            head_dim=16,
            max_position_embeddings=256,
            sliding_window=32,
            bos_token_id=1,
            eos_token_id=2,
            pad_token_id=2,
        )
    if family == "gpt2":
        return GPT2Config(
            vocab_size=vocab, n_embd=64, n_layer=3, n_head=4, n_positions=256, bos_token_id=1, eos_token_id=2
        )
    raise ValueError(family)


def save_tiny_model(root: Path, family: str, seed: int = 0, bos: bool = False) -> Path:
    """A random-weight model of ``family`` saved as a local HF directory (config.json + safetensors)."""
    from transformers import AutoModelForCausalLM

    out = root / f"tiny-{family}{'-bos' if bos else ''}-{seed}"
    if (out / "config.json").is_file():
        return out
    tok = tiny_tokenizer(bos)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(_config(family, len(tok)))
    # Random init gives tiny, near-identical activations; scale weights so units separate clearly.
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.mul_(8.0)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def save_synthetic_sae(
    path: Path,
    d_in: int,
    d_sae: int,
    hook_name: str,
    arch: str = "standard",
    seed: int = 0,
    metadata: dict | None = None,
    dtype: str = "float32",
    **cfg_kwargs,
) -> Path:
    """A random SAE in sae-lens on-disk format; encoder biases are shifted so only some features fire."""
    from sae_lens import (
        JumpReLUSAE,
        JumpReLUSAEConfig,
        StandardSAE,
        StandardSAEConfig,
        TopKSAE,
        TopKSAEConfig,
    )

    classes = {
        "standard": (StandardSAE, StandardSAEConfig),
        "topk": (TopKSAE, TopKSAEConfig),
        "jumprelu": (JumpReLUSAE, JumpReLUSAEConfig),
    }
    sae_cls, cfg_cls = classes[arch]
    md = {"hook_name": hook_name, "model_name": "tiny", "model_from_pretrained_kwargs": {}}
    md.update(metadata or {})
    if arch == "topk":
        cfg_kwargs.setdefault("k", 8)
    cfg = cfg_cls(d_in=d_in, d_sae=d_sae, dtype=dtype, **cfg_kwargs)
    for k, v in md.items():
        cfg.metadata[k] = v
    torch.manual_seed(seed)
    sae = sae_cls(cfg)
    with torch.no_grad():
        sae.W_enc.normal_(0, 1.0 / d_in**0.5)
        sae.b_enc.fill_(-0.5)
        sae.b_dec.normal_(0, 0.1)
        if arch == "jumprelu":
            sae.threshold.fill_(0.1)
    sae.save_model(path)
    return path
