"""Benchmark saemui's MUI run against its limit and against the paper's recording pipeline (issue #7).

Measured in ONE invocation, on the same machine, model, SAEs and text, each case in a fresh subprocess (so peak RSS
is the case's own):

1. ``limit``: bare forward (stopped after the last SAE layer, no LM head) + SAE encode of the scored tokens of
   every layer; the result is discarded, nothing is counted.
2. ``saemui``: ``compute_mui`` with the counter and per-sample sets on (``health=False``: the limit decodes
   nothing either; a ``+health`` row shows what the optional SAE-health decode costs).
3. ``paper``: a re-implementation of MUI-Eval's SAE pipeline (gs/get_sae_*.py + depict_sae.py): batch size 1,
   full forward caching every layer's residual, encode every position, write every activated (>0) feature as a
   (pos, layer, feature, value) JSON record, read the file back, topscore η·max per (sample, layer) and the union
   in plain Python. Run on a small subset and reported per token.

Also: peak memory at two sample counts, bytes written per sample, fp32 vs bf16/fp16 selection agreement on real
activations, Gemma-2-9B / Llama-3.1-8B-shaped random models with full-width (131k) encoder-only SAEs streamed a
group at a time, a width sweep, and 1- vs 2-process data parallelism (gloo).

    python scripts/bench_mui.py --smoke --out bench-smoke.json     # CI-sized, a few minutes on 2 cores
    python scripts/bench_mui.py --out bench.json [--saes PATH]     # the full run (idle machine only!)

Without ``--saes`` a synthetic SAE suite with the shipped bundle's shapes (SmolLM2: 30 layers, d_in 576, TopK
width 1024, k=32) is written to a temp directory. No GPU number is ever invented: without CUDA the GPU columns say
so. Wall-clock numbers move with machine load: compare the ratios from one run.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

import torch  # noqa: E402

SHARED_DATA = REPO.parent / "shared" / "data"
TAG = "@@BENCH@@ "
NO_GPU = "not measured (no GPU)"

# Real shapes of the paper's models; "built" is what fits in 24 GiB: real d_model and layer count, so the SAE path
# (what MUI adds) is exact, with MLP/attention/vocab shrunk (they only change the forward's cost).
SHAPES = {
    "gemma2-9b": {
        "model_type": "gemma2",
        "d_model": 3584,
        "n_layers": 42,
        "real": {"d_mlp": 14336, "heads": 16, "kv_heads": 8, "head_dim": 256, "vocab": 256000},
        "built": {"d_mlp": 512, "heads": 2, "kv_heads": 1, "head_dim": 256},
        "sae": "Gemma Scope 9B res width_131k (JumpReLU)",
        "d_sae": 131072,
    },
    "llama3.1-8b": {
        "model_type": "llama",
        "d_model": 4096,
        "n_layers": 32,
        "real": {"d_mlp": 14336, "heads": 32, "kv_heads": 8, "head_dim": 128, "vocab": 128256},
        "built": {"d_mlp": 512, "heads": 2, "kv_heads": 1, "head_dim": 128},
        "sae": "Llama Scope LXR 32x (131,072 features)",
        "d_sae": 131072,
    },
}


# --------------------------------------------------------------------------------------------------- utilities


def peak_rss() -> int:
    """Peak resident set size of this process in bytes (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def current_rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def gpu_peak() -> int | None:
    return torch.cuda.max_memory_allocated() if torch.cuda.is_available() else None


def sync(device: str) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def json_loader():
    """orjson as in the official depict code when importable, else the stdlib (slower: recorded)."""
    try:
        import orjson

        return orjson.loads, "orjson"
    except ImportError:
        return json.loads, "json (orjson not installed)"


# ------------------------------------------------------------------------------------------------------ inputs


def bench_samples(n: int) -> list:
    """GSM8K test questions with their reference solutions as responses (human-written, but the length and token
    mix of real answers), cycled with fresh ids past 1,319; the built-in samples when ../shared is absent."""
    import re

    from saemui.records import BUILTIN_SAMPLES, Sample, read_samples

    gsm = SHARED_DATA / "gsm8k" / "test.jsonl"
    if gsm.is_file():
        items = json.loads(gsm.read_text())
        base = [
            Sample(it["question"], re.sub(r"<<[^>]*>>", "", it["answer"]).replace("#### ", "The answer is "))
            for it in items
        ]
    else:
        base = read_samples(BUILTIN_SAMPLES)
    return [Sample(base[i % len(base)].prompt, base[i % len(base)].response, id=str(i)) for i in range(n)]


def write_samples_file(path: Path, n: int, short: bool = False) -> Path:
    """``short``: prompt and response cut to a few words, for the memory cases, where the number of samples
    (per-sample state) matters, not their length."""
    from saemui.records import Sample, write_samples

    samples = bench_samples(n)
    if short:
        samples = [Sample(s.prompt[:80], s.response[:120], id=s.id) for s in samples]
    write_samples(path, samples)
    return path


def read_first(path: str, n: int | None) -> list:
    from saemui.records import read_samples

    return read_samples(path)[:n]


# --------------------------------------------------------------------------------------------------- SAE suites


def write_smollm2_suite(root: Path, n_layers: int = 30, width: int = 1024, k: int = 32) -> Path:
    """Synthetic TopK SAEs with the shipped SmolLM2 bundle's shapes, one sae-lens directory per layer."""
    from saemui.testing import save_synthetic_sae

    root.mkdir(parents=True, exist_ok=True)
    for layer in range(n_layers):
        d = root / f"layer_{layer:02d}"
        if not (d / "cfg.json").is_file():
            save_synthetic_sae(d, 576, width, f"blocks.{layer}.hook_resid_post", arch="topk", seed=layer, k=k)
    return root


def write_wide_suite(root: Path, d_in: int, d_sae: int, layers: list[int], seed: int = 0) -> Path:
    """Random JumpReLU SAEs of full width in sae-lens format: ONE weight file symlinked into a directory per layer
    (each cfg.json names its own hook), so 42 × 1.9 GB is neither generated nor stored.

    Inputs are layer-normalised (``normalize_activations: layer_norm``) and the threshold is set at 3.37σ, so
    about 50 of 131k features fire per token whatever the random model's residual scale: Gemma/Llama Scope's L0.
    The file holds a real (zero) W_dec, which the encoder-only loader skips.
    """
    import sae_lens
    from safetensors.torch import save_file

    root.mkdir(parents=True, exist_ok=True)
    weights = root / "_weights.safetensors"
    if not weights.is_file():
        g = torch.Generator().manual_seed(seed)
        state = {
            "W_enc": torch.randn(d_in, d_sae, generator=g).div_(d_in**0.5),
            "b_enc": torch.zeros(d_sae),
            "b_dec": torch.zeros(d_in),
            "threshold": torch.full((d_sae,), 3.37),
            "W_dec": torch.zeros(d_sae, d_in),
        }
        tmp = root / "_weights.tmp"
        save_file(state, str(tmp))
        os.replace(tmp, weights)
        del state
    for layer in layers:
        d = root / f"layer_{layer:02d}"
        d.mkdir(exist_ok=True)
        cfg = {
            "d_in": d_in,
            "d_sae": d_sae,
            "dtype": "float32",
            "device": "cpu",
            "apply_b_dec_to_input": True,
            "normalize_activations": "layer_norm",
            "reshape_activations": "none",
            "architecture": "jumprelu",
            # sae-lens reads metadata only from configs that carry its version (else: legacy layout).
            "metadata": {
                "sae_lens_version": sae_lens.__version__,
                "sae_lens_training_version": sae_lens.__version__,
                "hook_name": f"blocks.{layer}.hook_resid_post",
                "model_name": "random",
                "model_from_pretrained_kwargs": {},
            },
        }
        (d / "cfg.json").write_text(json.dumps(cfg))
        link = d / "sae_weights.safetensors"
        if not link.exists():
            link.symlink_to(weights)
    return root


# ------------------------------------------------------------------------------------------------------ models


def build_random_model(shape: str, device: str = "cpu"):
    """A random-weight model with the real d_model and layer count of ``shape`` (see SHAPES), built in memory."""
    from transformers import AutoModelForCausalLM, Gemma2Config, LlamaConfig

    from saemui.arch import get_arch
    from saemui.models import LoadedModel
    from saemui.testing import tiny_tokenizer

    sh = SHAPES[shape]
    b = sh["built"]
    tok = tiny_tokenizer()
    kw = dict(
        vocab_size=len(tok),
        hidden_size=sh["d_model"],
        intermediate_size=b["d_mlp"],
        num_hidden_layers=sh["n_layers"],
        num_attention_heads=b["heads"],
        num_key_value_heads=b["kv_heads"],
        head_dim=b["head_dim"],
        max_position_embeddings=4096,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=2,
        tie_word_embeddings=True,
    )
    cfg = Gemma2Config(**kw) if sh["model_type"] == "gemma2" else LlamaConfig(**kw)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg).to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    n_params = sum(p.numel() for p in model.parameters())
    return LoadedModel(
        model=model,
        tokenizer=tok,
        name=f"random:{shape}",
        hf_id=f"random:{shape}",
        arch=get_arch(model),
        device=torch.device(device),
        dtype=torch.float32,
        provenance={"format": "random", "shape": shape, "built": b, "n_params": n_params},
    )


def load_bench_model(spec: str, device: str):
    if spec.startswith("random:"):
        return build_random_model(spec.split(":", 1)[1], device)
    from saemui.models import load_model

    return load_model("smollm2-135m-instruct" if spec == "smollm2" else spec, device=device)


# ------------------------------------------------------------------------------------------------------- cases


# bench spec key -> RunConfig field; a key the spec leaves out keeps RunConfig's default
_SPEC_FIELDS = {
    "threshold": "threshold",
    "max_length": "max_length",
    "prompt_format": "prompt_format",
    "group_size": "sae_group_size",
    "sae_dtype": "sae_dtype",
    "keep_sets": "keep_sets",
    "encode_chunk": "encode_chunk",
    "max_batch_tokens": "max_batch_tokens",
}


def _run_config(spec: dict):
    from saemui.config import RunConfig

    fields = {field: spec[key] for key, field in _SPEC_FIELDS.items() if key in spec}
    return RunConfig(units="sae", saes=spec["saes"], health=spec.get("health", False), **fields)


def _token_counts(lm, samples, cfg) -> dict:
    from saemui.inputs import encode_samples

    c = cfg.resolved()
    enc = encode_samples(lm.tokenizer, samples, c.alignment, c.prompt_format, c.max_length)
    return {"input_tokens": sum(len(e.ids) for e in enc), "scored_tokens": sum(len(e.score_pos) for e in enc)}


def limit_pass(lm, samples, cfg, device: str) -> dict:
    """Forward + encode, nothing else: the same tokenization, batches, SAE loading and streaming as saemui."""
    from saemui.capture import get_backend
    from saemui.inputs import collate, encode_samples, plan_batches
    from saemui.saes import open_suite

    c = cfg.resolved()
    t0 = time.perf_counter()
    suite = open_suite(c.saes)
    enc = encode_samples(lm.tokenizer, samples, c.alignment, c.prompt_format, c.max_length)
    # as the engine does: a plan up front, each batch's tensors built when it runs
    plan = plan_batches(enc, c.max_batch_tokens, c.max_batch_size)
    backend = get_backend(c.backend, lm)
    size = c.sae_group_size or len(suite.entries)
    t_loop = 0.0
    for first in range(0, len(suite.entries), size):
        saes = {
            e.hook_name: e.load(device, c.sae_dtype or "float32", True)
            for e in suite.entries[first : first + size]
        }
        for idx in plan:
            tb = time.perf_counter()
            batch = collate([enc[i] for i in idx], lm.tokenizer.pad_token_id, c.padding_side, device)

            def on_act(site: str, acts_BTD: torch.Tensor, batch=batch, saes=saes) -> None:
                sae = saes[site]
                x_ND = acts_BTD.reshape(-1, acts_BTD.shape[-1])[batch.flat_N]
                for j in range(0, x_ND.shape[0], c.encode_chunk):
                    sae.encode(x_ND[j : j + c.encode_chunk])

            backend.run(
                batch.input_ids_BT, batch.attention_mask_BT, list(saes), on_act, batch.position_ids_BT
            )
            sync(device)
            t_loop += time.perf_counter() - tb
        del saes, on_act
        gc.collect()  # as the engine does per group: SAEs with input normalisation sit in reference cycles
    return {"seconds": time.perf_counter() - t0, "seconds_loop": t_loop}


def saemui_pass(lm, samples, cfg, device: str, save_to: Path | None = None) -> tuple[dict, object]:
    from saemui.engine import compute_mui

    t0 = time.perf_counter()
    res = compute_mui(lm, samples, cfg, progress=False)
    sync(device)
    out = {
        "seconds": time.perf_counter() - t0,
        "seconds_loop": res.run_info["timing"]["seconds_forward_and_score"],
        "mui": res.mui,
        "n_samples": res.summary["n_samples"],
        "l0_mean": _mean([h["l0"] for h in res.summary.get("sae_health") or []]),
    }
    if save_to is not None:
        res.save(save_to)
        n = max(1, res.summary["n_samples"])
        sets = res.arrays["set_indptr"].nbytes + res.arrays["set_units"].nbytes
        out.update(
            {
                "result_dir_bytes": dir_bytes(save_to),
                "sets_bytes_raw": sets,
                "sets_bytes_per_sample": sets / n,
                "result_bytes_per_sample": dir_bytes(save_to) / n,
                "arrays_npz_bytes": (save_to / "arrays.npz").stat().st_size,
            }
        )
    return out, res


def _mean(xs: list) -> float | None:
    return sum(xs) / len(xs) if xs else None


def paper_pass(lm, samples, spec: dict, device: str, workdir: Path) -> dict:
    """Re-implementation of MUI-Eval's SAE pipeline (gs/get_sae_gemma.py → depict_sae.py), kept faithful in what
    costs time: batch size 1, every layer's residual cached from one full forward (the code's run_with_cache
    caches every hook; caching only resid_post here is generous to it), all SAEs resident in fp32, encode of every
    position, per-record Python dicts from per-element tensor iteration, ``json.dumps`` per sample appended to a
    JSONL file; then reading it back and topscore selection + union with Python lists, sorts and sets."""
    from saemui.capture import block_output
    from saemui.inputs import encode_samples
    from saemui.saes import open_suite

    loads, loader_name = json_loader()
    eta = float(spec.get("eta", 0.9))
    suite = open_suite(spec["saes"])
    saes = [(e.layer, e.load(device, "float32", True)) for e in suite.entries]
    n_units = int(saes[0][1].cfg.d_sae)
    enc = encode_samples(lm.tokenizer, samples, "response", "auto", spec.get("max_length", 2048))
    path = workdir / "paper_features.jsonl"
    path.unlink(missing_ok=True)
    blocks = lm.arch.layers(lm.model)
    t_fwd = t_enc = t_rec = 0.0
    n_records = 0
    for e, s in zip(enc, samples):
        ids = torch.as_tensor(e.ids, dtype=torch.long, device=device)[None]
        cache: dict[int, torch.Tensor] = {}
        hooks = [
            blocks[layer].register_forward_hook(
                lambda m, i, o, layer=layer, c=cache: c.__setitem__(layer, block_output(o).detach().clone())
            )
            for layer, _ in saes
        ]
        t = time.perf_counter()
        with torch.inference_mode():
            lm.model(input_ids=ids, use_cache=False)  # the whole model, LM head included
        sync(device)
        t_fwd += time.perf_counter() - t
        for h in hooks:
            h.remove()

        t = time.perf_counter()
        found = []
        with torch.inference_mode():
            for layer, sae in saes:
                acts = sae.encode(cache[layer].float())  # [1, T, F]: every position, prompt included
                a = acts[0, e.response_start : len(e.ids)]
                pos, feat = (a > 0).nonzero(as_tuple=True)
                vals = a[pos, feat]
                found.append((layer, pos.cpu(), feat.cpu(), vals.cpu()))
        cache.clear()
        t_enc += time.perf_counter() - t

        t = time.perf_counter()
        record = {"prompt": s.prompt, "response": s.response, "features": [], "loss": []}
        for layer, pos, feat, vals in found:
            info = [
                {"pos_index": int(p), "feat_index": int(f), "value": float(v)}
                for p, f, v in zip(pos, feat, vals)
            ]
            n_records += len(info)
            record["features"].append({"layer": layer, "feature_info": info})
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        t_rec += time.perf_counter() - t

    t = time.perf_counter()
    union: set[tuple[int, int]] = set()
    with open(path, "rb") as fh:
        for line in fh:
            item = loads(line)
            per_layer: dict[int, list[dict]] = {}
            for entry in item["features"]:
                lst = per_layer.setdefault(entry["layer"], [])
                for fi in entry["feature_info"]:
                    lst.append({"neuron": fi["feat_index"], "score": fi["value"]})
            chosen: set[tuple[int, int]] = set()
            for layer, units in per_layer.items():
                if not units:
                    continue
                ranked = sorted(units, key=lambda x: x["score"], reverse=True)
                cut = ranked[0]["score"] * eta
                for u in ranked:
                    if u["score"] < cut:
                        break
                    chosen.add((layer, u["neuron"]))
            union |= chosen
    t_sel = time.perf_counter() - t
    n_scored = sum(len(e.ids) - e.response_start for e in enc)
    n_input = sum(len(e.ids) for e in enc)
    total = t_fwd + t_enc + t_rec + t_sel
    return {
        "n_samples": len(samples),
        "input_tokens": n_input,
        "scored_tokens": n_scored,
        "seconds": total,
        "seconds_forward": t_fwd,
        "seconds_encode_extract": t_enc,
        "seconds_record_write": t_rec,
        "seconds_read_select": t_sel,
        "seconds_per_scored_token": total / max(1, n_scored),
        "stage_seconds_per_scored_token": {
            "forward": t_fwd / max(1, n_scored),
            "encode_extract": t_enc / max(1, n_scored),
            "record_write": t_rec / max(1, n_scored),
            "read_select": t_sel / max(1, n_scored),
        },
        "json_bytes": path.stat().st_size,
        "json_bytes_per_sample": path.stat().st_size / max(1, len(samples)),
        "json_bytes_per_scored_token": path.stat().st_size / max(1, n_scored),
        "records": n_records,
        "records_per_scored_token": n_records / max(1, n_scored),
        "json_reader": loader_name,
        "mui": len(union) / (n_units * len(saes)),
        "union": sorted(union),
    }


def run_worker(spec: dict) -> dict:
    torch.set_num_threads(int(spec.get("threads") or os.cpu_count() or 1))
    device = spec.get("device", "cpu")
    case = spec["case"]
    t = time.perf_counter()
    lm = load_bench_model(spec["model"], device)
    out: dict = {
        "case": case,
        "model": spec["model"],
        "model_provenance": lm.provenance,
        "seconds_model_load": time.perf_counter() - t,
        "torch_threads": torch.get_num_threads(),
    }
    samples = read_first(spec["samples"], spec.get("n"))
    workdir = Path(spec["workdir"])
    if case in ("limit", "saemui", "memory"):
        cfg = _run_config(spec)
        out.update(_token_counts(lm, samples, cfg))
        if spec.get("warmup", True):
            # First calls pay for lazy initialisation (allocator, oneDNN kernels): keep them out of the timing.
            warm = samples[: min(2, len(samples))]
            limit_pass(lm, warm, cfg, device) if case == "limit" else saemui_pass(lm, warm, cfg, device)
        out["rss_before_run"] = current_rss()
        if case == "limit":
            out.update(limit_pass(lm, samples, cfg, device))
        else:
            res_dir = workdir / f"result-{case}-{spec.get('label', 'x')}"
            shutil.rmtree(res_dir, ignore_errors=True)
            r, _ = saemui_pass(lm, samples, cfg, device, save_to=res_dir)
            out.update(r)
            shutil.rmtree(res_dir, ignore_errors=True)
    elif case == "paper":
        from saemui.config import RunConfig

        r = paper_pass(lm, samples, spec, device, workdir)
        union = {tuple(x) for x in r.pop("union")}
        cfg = RunConfig(
            units="sae",
            saes=spec["saes"],
            threshold=f"topscore:{spec.get('eta', 0.9)}",
            alignment="response",
            health=False,
            max_length=spec.get("max_length", 2048),
        )
        s_out, res = saemui_pass(lm, samples, cfg, device)
        ours = {(res.layers[r_], int(u)) for r_, u in zip(*res.arrays["union_LU"].nonzero())}
        r.update(
            {
                "saemui_on_subset_seconds": s_out["seconds"],
                "saemui_on_subset_mui": s_out["mui"],
                "same_union_as_saemui": union == ours,
                "union_size_paper": len(union),
                "union_size_saemui": len(ours),
            }
        )
        out.update(r)
    elif case == "precision":
        from saemui.compare import selection_agreement

        runs = {}
        for dt in spec["dtypes"]:
            cfg = _run_config(dict(spec, sae_dtype=dt))
            r, res = saemui_pass(lm, samples, cfg, device)
            runs[dt] = (r, res)
        ref_r, ref = runs[spec["dtypes"][0]]
        out.update(_token_counts(lm, samples, _run_config(spec)))
        out["runs"] = {}
        for dt, (r, res) in runs.items():
            out["runs"][dt] = {"seconds": r["seconds"], "mui": r["mui"], **selection_agreement(ref, res)}
    elif case == "profile":
        out.update(profile_pass(lm, samples, _run_config(spec), device))
    else:
        raise ValueError(case)
    out["peak_rss"] = peak_rss()
    out["gpu_peak"] = gpu_peak()
    return out


def profile_pass(lm, samples, cfg, device: str) -> dict:
    """Where saemui's time goes: torch operator self-time and Python-level cumulative time."""
    import cProfile
    import io
    import pstats

    from torch.profiler import ProfilerActivity, profile

    from saemui.engine import compute_mui

    compute_mui(lm, samples[:2], cfg, progress=False)  # warm-up
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        t = time.perf_counter()
        compute_mui(lm, samples, cfg, progress=False)
        t_prof = time.perf_counter() - t
    ka = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in ka)
    ops = sorted(ka, key=lambda e: e.self_cpu_time_total, reverse=True)[:18]
    op_rows = [
        {
            "op": e.key,
            "self_cpu_ms": e.self_cpu_time_total / 1e3,
            "share": e.self_cpu_time_total / total,
            "calls": e.count,
        }
        for e in ops
    ]
    pr = cProfile.Profile()
    pr.enable()
    t = time.perf_counter()
    compute_mui(lm, samples, cfg, progress=False)
    t_cp = time.perf_counter() - t
    pr.disable()
    buf = io.StringIO()
    st = pstats.Stats(pr, stream=buf)
    st.sort_stats("cumulative").print_stats(30)
    fn_rows = []
    for (file, line, name), (_cc, nc, tt, ct, _callers) in st.stats.items():
        if "saemui" in file or "sae_lens" in file or "capture" in file:
            fn_rows.append(
                {"fn": f"{Path(file).name}:{line}:{name}", "calls": nc, "tottime": tt, "cumtime": ct}
            )
    fn_rows.sort(key=lambda r: r["cumtime"], reverse=True)
    return {
        "seconds_under_torch_profiler": t_prof,
        "seconds_under_cprofile": t_cp,
        "torch_ops": op_rows,
        "python_functions": fn_rows[:25],
    }


# ------------------------------------------------------------------------------------------------- orchestrator


def spawn(spec: dict, log: list[str]) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    for line in p.stdout.splitlines():
        if line.startswith(TAG):
            r = json.loads(line[len(TAG) :])
            r["subprocess_seconds"] = time.perf_counter() - t
            return r
    log.append(
        f"worker {spec.get('case')}/{spec.get('label')} failed (rc={p.returncode}):\n{p.stderr[-4000:]}"
    )
    print(log[-1], file=sys.stderr)
    return {"case": spec.get("case"), "label": spec.get("label"), "error": p.stderr[-2000:]}


def run_distributed(spec: dict, worlds: list[int], log: list[str]) -> dict:
    """1 process (all cores) vs N gloo processes (cores / N threads each) through torchrun."""
    from saemui.result import load_result

    script = REPO / "scripts" / "mui_distributed.py"
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", MASTER_ADDR="127.0.0.1")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    wd = Path(spec["workdir"])
    args = [
        "--model",
        spec["model"] if spec["model"] != "smollm2" else "smollm2-135m-instruct",
        "--samples",
        spec["samples"],
        "--limit",
        str(spec["n"]),
        "--saes",
        spec["saes"],
        "--no-health",
        "--max-length",
        str(spec.get("max_length", 2048)),
    ]
    out: dict = {"runs": {}}
    results = {}
    for w in worlds:
        res_dir, tj = wd / f"dist-{w}", wd / f"dist-{w}.json"
        shutil.rmtree(res_dir, ignore_errors=True)
        if w == 1:
            cmd = [sys.executable, str(script)]
        else:
            cmd = [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--nproc_per_node",
                str(w),
                "--master_addr",
                "127.0.0.1",
                "--master_port",
                str(free_port()),
                str(script),
            ]
        t = time.perf_counter()
        p = subprocess.run(
            cmd + args + ["--out", str(res_dir), "--timing-json", str(tj)],
            capture_output=True,
            text=True,
            env=env,
        )
        wall = time.perf_counter() - t
        if p.returncode != 0 or not tj.is_file():
            log.append(f"distributed world={w} failed:\n{p.stderr[-4000:]}")
            print(log[-1], file=sys.stderr)
            out["runs"][w] = {"error": p.stderr[-2000:]}
            continue
        tm = json.loads(tj.read_text())
        tm["seconds_process_wall"] = wall
        results[w] = load_result(res_dir)
        out["runs"][w] = tm
    if 1 in results:
        ref = results[1]
        for w, r in results.items():
            out["runs"][w]["same_mui_as_1"] = r.mui == ref.mui
            out["runs"][w]["same_union_as_1"] = bool((r.arrays["union_LU"] == ref.arrays["union_LU"]).all())
            out["runs"][w]["same_sets_as_1"] = bool(
                (r.arrays["set_indptr"] == ref.arrays["set_indptr"]).all()
                and (r.arrays["set_units"] == ref.arrays["set_units"]).all()
            )
            out["runs"][w]["speedup_vs_1"] = out["runs"][1]["seconds_wall"] / out["runs"][w]["seconds_wall"]
    return out


def plan(args: argparse.Namespace) -> dict:
    """Sizes of every case: --smoke is CI-sized, the default is the full run (~30 min on an idle 2-core box)."""
    if args.smoke:
        return {
            "n_main": 8,
            "max_length": 160,
            "repeats": 1,
            "n_paper": 2,
            "mem": (10, 100),
            "n_precision": 6,
            "n_dist": 8,
            "big_width": 8192,
            "big_layers": 3,
            "big_n": 2,
            "big_chars": 24,
            "big_group": 2,
            "sweep_widths": [2048, 8192],
            "sweep_layers": 2,
            "n_profile": 4,
        }
    return {
        "n_main": 120,
        "max_length": 256,
        "repeats": 2,
        "n_paper": 8,
        "mem": (200, 2000),
        "n_precision": 32,
        "n_dist": 48,
        "big_width": 131072,
        "big_layers": None,
        "big_n": 4,
        "big_chars": 40,
        "big_group": 4,
        "sweep_widths": [16384, 32768, 65536, 131072],
        "sweep_layers": 4,
        "n_profile": 24,
    }


ALL_CASES = ("main", "paper", "memory", "precision", "big", "sweep", "dist", "profile")


def orchestrate(args: argparse.Namespace) -> dict:
    from saemui.provenance import cpu_model, machine_info, package_versions
    from saemui.saes import find_bundles

    p = plan(args)
    if args.mem_samples:
        p["mem"] = tuple(int(x) for x in args.mem_samples.split(","))
    if args.max_length:
        p["max_length"] = args.max_length
    cases = args.cases.split(",") if args.cases else list(ALL_CASES)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="saemui-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    log: list[str] = []
    model = args.model
    saes = args.saes
    if saes is None and model == "smollm2":
        shipped = find_bundles("smollm2-135m-instruct") + find_bundles("HuggingFaceTB/SmolLM2-135M-Instruct")
        saes = str(shipped[0]) if shipped else None
    sae_desc = saes or "synthetic TopK (30 layers × 1024, k=32, random weights)"
    if saes is None:
        print("writing synthetic SmolLM2-shaped SAE suite ...", file=sys.stderr)
        saes = str(write_smollm2_suite(work / "saes-smollm2"))
    n_file = max(p["n_main"], p["mem"][1], p["n_precision"], p["n_dist"], p["n_profile"], p["n_paper"])
    samples = args.samples or str(write_samples_file(work / "samples.jsonl", n_file))
    base = {
        "model": model,
        "saes": saes,
        "samples": samples,
        "workdir": str(work),
        "device": args.device,
        "threads": args.threads,
    }
    out: dict = {
        "smoke": args.smoke,
        "plan": p,
        "machine": machine_info() | {"cpu_model": cpu_model(), "gpu": torch.cuda.is_available()},
        "versions": package_versions(),
        "model": model,
        "saes": sae_desc,
        "text": f"samples file {args.samples}"
        if args.samples
        else "GSM8K test question + reference solution (../shared/data)"
        if (SHARED_DATA / "gsm8k" / "test.jsonl").is_file()
        else "built-in default samples",
        "load_average_at_start": os.getloadavg(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cases": {},
        "log": log,
    }
    C = out["cases"]

    def checkpoint() -> None:
        # Partial results survive an interrupted run (the full run takes ~30 min on 2 cores).
        if args.out:
            out["summary"] = summarize(out)
            Path(args.out).write_text(json.dumps(out, indent=2, default=str) + "\n")

    main_spec = dict(base, n=p["n_main"], max_length=p["max_length"])

    if "main" in cases:
        runs: dict[str, list] = {"limit": [], "saemui": [], "saemui_health": []}
        for rep in range(p["repeats"]):
            # Alternate the order so slow drifts in machine load hit both sides alike.
            order = ["limit", "saemui"] if rep % 2 == 0 else ["saemui", "limit"]
            for c in order:
                runs[c].append(spawn(dict(main_spec, case=c, label=f"main{rep}"), log))
        runs["saemui_health"].append(spawn(dict(main_spec, case="saemui", label="health", health=True), log))
        C["main"] = {k: _best(v) for k, v in runs.items()} | {"all_runs": runs}

    checkpoint()
    if "paper" in cases:
        C["paper"] = spawn(dict(base, case="paper", n=p["n_paper"], max_length=p["max_length"]), log)

    checkpoint()
    if "memory" in cases:
        short = str(write_samples_file(work / "samples-short.jsonl", p["mem"][1], short=True))
        C["memory"] = {
            str(n): spawn(
                dict(
                    base,
                    case="memory",
                    samples=short,
                    n=n,
                    prompt_format="raw",
                    label=f"mem{n}",
                    warmup=False,
                ),
                log,
            )
            for n in p["mem"]
        }

    checkpoint()
    if "precision" in cases:
        C["precision"] = spawn(
            dict(
                base,
                case="precision",
                n=p["n_precision"],
                max_length=p["max_length"],
                dtypes=["float32", "bfloat16", "float16"],
            ),
            log,
        )

    checkpoint()
    if "big" in cases:
        C["big"] = {}
        for shape, sh in SHAPES.items():
            layers = list(range(p["big_layers"] or sh["n_layers"]))
            print(f"writing {shape}-shaped SAE suite (width {p['big_width']}) ...", file=sys.stderr)
            suite = write_wide_suite(
                work / f"saes-{shape}-{p['big_width']}", sh["d_model"], p["big_width"], layers
            )
            spec = dict(
                base,
                model=f"random:{shape}",
                saes=str(suite),
                samples=_big_samples_file(work, p["big_chars"]),
                prompt_format="raw",
                n=p["big_n"],
                group_size=p["big_group"],
                encode_chunk=256,
                warmup=False,
            )
            C["big"][shape] = {
                "limit": spawn(dict(spec, case="limit", label=f"{shape}-limit"), log),
                "saemui": spawn(dict(spec, case="saemui", label=f"{shape}-saemui"), log),
                "layers": len(layers),
                "width": p["big_width"],
                "group_size": p["big_group"],
            }
            if not args.keep_workdir:
                shutil.rmtree(suite, ignore_errors=True)

    checkpoint()
    if "sweep" in cases:
        shape = "llama3.1-8b"
        sh = SHAPES[shape]
        C["sweep"] = {"shape": shape, "layers": p["sweep_layers"], "widths": {}}
        for width in p["sweep_widths"]:
            suite = write_wide_suite(
                work / f"saes-sweep-{width}", sh["d_model"], width, list(range(p["sweep_layers"]))
            )
            spec = dict(
                base,
                model=f"random:{shape}",
                saes=str(suite),
                samples=_big_samples_file(work, p["big_chars"]),
                prompt_format="raw",
                n=p["big_n"],
                encode_chunk=256,
            )
            C["sweep"]["widths"][str(width)] = {
                "limit": spawn(dict(spec, case="limit", label=f"sweep{width}-limit"), log),
                "saemui": spawn(dict(spec, case="saemui", label=f"sweep{width}-saemui"), log),
            }
            if not args.keep_workdir:
                shutil.rmtree(suite, ignore_errors=True)

    checkpoint()
    if "dist" in cases:
        C["dist"] = run_distributed(dict(base, n=p["n_dist"], max_length=p["max_length"]), [1, 2], log)

    checkpoint()
    if "profile" in cases:
        C["profile"] = spawn(dict(base, case="profile", n=p["n_profile"], max_length=p["max_length"]), log)

    out["load_average_at_end"] = os.getloadavg()
    out["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    out["summary"] = summarize(out)
    if not args.keep_workdir:
        shutil.rmtree(work, ignore_errors=True)
    return out


def _big_samples_file(work: Path, response_chars: int) -> str:
    """Built-in samples cut short for the paper-scale cases (131k-wide encodes cost ~1 s per token per model on
    2 cores); their random models use the tiny test tokenizer (~400 tokens, so ~2-3 characters per token)."""
    from saemui.records import BUILTIN_SAMPLES, Sample, read_samples, write_samples

    path = work / f"samples-big-{response_chars}.jsonl"
    write_samples(
        path,
        [Sample(s.prompt[:40], s.response[:response_chars], id=s.id) for s in read_samples(BUILTIN_SAMPLES)],
    )
    return str(path)


def _best(runs: list[dict]) -> dict:
    ok = [r for r in runs if "error" not in r]
    return min(ok, key=lambda r: r["seconds"]) if ok else (runs[0] if runs else {})


# ------------------------------------------------------------------------------------------------------ report


def _tps(r: dict, key: str = "input_tokens", t: str = "seconds") -> float | None:
    return r[key] / r[t] if r and "error" not in r and r.get(t) else None


def summarize(out: dict) -> dict:
    C = out["cases"]
    s: dict = {"gpu": NO_GPU if not out["machine"]["gpu"] else "see cases"}
    if "main" in C:
        lim, ours, hl = C["main"]["limit"], C["main"]["saemui"], C["main"]["saemui_health"]
        if "error" not in lim and "error" not in ours:
            s["ratio_2_over_1_cpu"] = lim["seconds"] / ours["seconds"]
            s["ratio_2_over_1_cpu_loop_only"] = lim["seconds_loop"] / ours["seconds_loop"]
            s["tokens_per_s"] = {"limit": _tps(lim), "saemui": _tps(ours), "saemui_health": _tps(hl)}
            s["scored_tokens_per_s"] = {
                "limit": _tps(lim, "scored_tokens"),
                "saemui": _tps(ours, "scored_tokens"),
            }
    if "paper" in C and "error" not in C["paper"]:
        pp = C["paper"]
        s["paper_seconds_per_scored_token"] = pp["seconds_per_scored_token"]
        s["paper_tokens_per_s"] = _tps(pp)
        s["paper_same_union_as_saemui"] = pp["same_union_as_saemui"]
        if "main" in C and "error" not in C["main"]["saemui"]:
            ours = C["main"]["saemui"]
            ours_spt = ours["seconds"] / ours["scored_tokens"]
            s["ratio_2_over_3_cpu"] = pp["seconds_per_scored_token"] / ours_spt
            sets_ps = ours.get("sets_bytes_per_sample")
            # Per scored token, so samples of different lengths compare fairly.
            ours_sets_pt = ours["sets_bytes_raw"] / ours["scored_tokens"]
            s["sets_bytes_per_sample"] = sets_ps
            s["paper_json_bytes_per_sample"] = pp["json_bytes_per_sample"]
            s["sets_over_paper_json"] = ours_sets_pt / pp["json_bytes_per_scored_token"]
    if "memory" in C:
        m = C["memory"]
        ks = sorted(m, key=int)
        if len(ks) == 2 and all("error" not in m[k] for k in ks):
            s["peak_rss_ratio_large_over_small"] = m[ks[1]]["peak_rss"] / m[ks[0]]["peak_rss"]
            s["peak_rss_bytes"] = {k: m[k]["peak_rss"] for k in ks}
    if "precision" in C and "error" not in C["precision"]:
        s["precision"] = {
            dt: {
                k: r.get(k)
                for k in ("mui_diff_points", "union_jaccard", "sets_identical", "mean_set_jaccard")
            }
            for dt, r in C["precision"]["runs"].items()
        }
    if "big" in C:
        s["big"] = {}
        for shape, b in C["big"].items():
            if "error" in b["limit"] or "error" in b["saemui"]:
                continue
            s["big"][shape] = {
                "limit_tokens_per_s": _tps(b["limit"]),
                "saemui_tokens_per_s": _tps(b["saemui"]),
                "ratio_2_over_1": b["limit"]["seconds"] / b["saemui"]["seconds"],
                "peak_rss_gib": b["saemui"]["peak_rss"] / 2**30,
            }
    if "dist" in C:
        s["dist"] = {
            w: {
                k: r.get(k)
                for k in (
                    "seconds_wall",
                    "speedup_vs_1",
                    "same_mui_as_1",
                    "same_union_as_1",
                    "same_sets_as_1",
                )
            }
            for w, r in C["dist"]["runs"].items()
        }
    return s


def _f(x, fmt: str = "{:.1f}") -> str:
    return "—" if x is None else fmt.format(x)


def _gib(x) -> str:
    return "—" if x is None else f"{x / 2**30:.2f} GiB"


def table(out: dict) -> str:
    C, S = out["cases"], out["summary"]
    lines = [
        f"saemui benchmark ({'smoke' if out['smoke'] else 'full'}) — {out['machine']['cpu_model']}, "
        f"{out['machine']['cpu_count']} cores, torch threads {out['machine']['torch_threads']}, GPU: "
        f"{'none' if not out['machine']['gpu'] else 'yes'}; load avg at start {out['load_average_at_start'][0]:.2f}",
        f"model {out['model']}; SAEs {out['saes']}; text: {out['text']}",
        "",
        f"{'case':<34}{'tok/s CPU':>11}{'scored tok/s':>14}{'peak RSS':>12}  {'GPU':<24}{'bytes/sample':>14}",
    ]

    def row(name, r, bps=None):
        if not r or "error" in r:
            lines.append(f"{name:<34}{'FAILED':>11}")
            return
        lines.append(
            f"{name:<34}{_f(_tps(r)):>11}{_f(_tps(r, 'scored_tokens')):>14}{_gib(r.get('peak_rss')):>12}  "
            f"{NO_GPU if r.get('gpu_peak') is None else _gib(r['gpu_peak']):<24}{_f(bps, '{:,.0f}'):>14}"
        )

    if "main" in C:
        n = C["main"]["saemui"].get("n_samples")
        row(f"1 limit (fwd+encode), {n} samples", C["main"]["limit"])
        row("2 saemui (counter+sets)", C["main"]["saemui"], C["main"]["saemui"].get("sets_bytes_per_sample"))
        row("2h saemui + SAE health (decode)", C["main"]["saemui_health"], None)
    if "paper" in C and "error" not in C["paper"]:
        pp = C["paper"]
        row(f"3 paper pipeline, {pp['n_samples']} samples", pp, pp["json_bytes_per_sample"])
    lines.append("")
    lines.append("ratios vs targets")
    r21 = S.get("ratio_2_over_1_cpu")
    lines.append(
        f"  2/1 CPU end-to-end        {_f(r21, '{:.3f}')}  (target ≥ 0.9)   loop only {_f(S.get('ratio_2_over_1_cpu_loop_only'), '{:.3f}')}"
    )
    lines.append(f"  2/1 GPU                   {NO_GPU}  (target ≥ 0.9)")
    lines.append(
        f"  2/3 CPU per scored token  {_f(S.get('ratio_2_over_3_cpu'), '{:.0f}×')}  (target ≥ 300× is for GPU)"
    )
    lines.append(f"  2/3 GPU                   {NO_GPU}  (target ≥ 300×)")
    if "peak_rss_ratio_large_over_small" in S:
        a, b = sorted(S["peak_rss_bytes"], key=int)
        lines.append(
            f"  peak RSS {b} / {a} samples  {S['peak_rss_ratio_large_over_small']:.3f}  (target ≤ 1.05)   "
            f"{_gib(S['peak_rss_bytes'][a])} → {_gib(S['peak_rss_bytes'][b])}"
        )
    if "sets_over_paper_json" in S:
        lines.append(
            f"  stored sets / paper JSON   {100 * S['sets_over_paper_json']:.4f} %  (target ≤ 1 %)   "
            f"per scored token; per sample {S['sets_bytes_per_sample']:,.0f} B vs {S['paper_json_bytes_per_sample']:,.0f} B"
        )
    if "paper" in C and "error" not in C["paper"]:
        pp = C["paper"]
        st = pp["stage_seconds_per_scored_token"]
        lines.append(
            "  paper per scored token: "
            + ", ".join(f"{k} {1e3 * v:.2f} ms" for k, v in st.items())
            + f"; {pp['records_per_scored_token']:.0f} records/token; same union as saemui: {pp['same_union_as_saemui']}"
        )
    if "precision" in S:
        lines.append("")
        lines.append("SAE encode dtype vs fp32 (same tokens)")
        for dt, r in C["precision"]["runs"].items():
            lines.append(
                f"  {dt:<9} {r['seconds']:8.1f} s  MUI {100 * r['mui']:.4f}%  Δ {r['mui_diff_points']:+.4f} pt  "
                f"union J {r['union_jaccard']:.4f}  sets identical {100 * r.get('sets_identical', 0):.1f}%  "
                f"mean set J {r.get('mean_set_jaccard', 0):.4f}"
            )
    if "memory" in C:
        lines.append("")
        lines.append("peak memory (fresh process per case; short raw-format samples, ~35 tokens each)")
        for k in sorted(C["memory"], key=int):
            r = C["memory"][k]
            if "error" in r:
                lines.append(f"  {k:>5} samples  FAILED")
                continue
            lines.append(
                f"  {k:>5} samples  peak RSS {_gib(r['peak_rss'])}  (after load {_gib(r['rss_before_run'])})  "
                f"{_f(_tps(r))} tok/s  sets {r['sets_bytes_per_sample']:.0f} B/sample"
            )
    if "big" in C:
        lines.append("")
        lines.append(
            "paper-scale shapes (random weights, built locally; encoder-only, group-at-a-time, health off)"
        )
        for shape, b in C["big"].items():
            sh = SHAPES[shape]
            lines.append(
                f"  {shape}: d_model {sh['d_model']}, {b['layers']} layers, SAE width {b['width']:,}, "
                f"group {b['group_size']} (built MLP {sh['built']['d_mlp']}, heads {sh['built']['heads']})"
            )
            for c in ("limit", "saemui"):
                r = b[c]
                if "error" in r:
                    lines.append(f"    {c:<7} FAILED")
                    continue
                lines.append(
                    f"    {c:<7} {_f(_tps(r), '{:.2f}')} tok/s ({_f(_tps(r, 'scored_tokens'), '{:.2f}')} scored)  "
                    f"peak RSS {_gib(r['peak_rss'])}  GPU {NO_GPU}"
                    + (f"  L0 {r['l0_mean']:.1f}" if r.get("l0_mean") is not None else "")
                )
            if shape in S.get("big", {}):
                lines.append(f"    2/1 = {S['big'][shape]['ratio_2_over_1']:.3f}")
    if "sweep" in C:
        lines.append("")
        sw = C["sweep"]
        lines.append(f"width sweep ({sw['shape']} shape, {sw['layers']} layers)")
        for w, b in sw["widths"].items():
            lim, ours = b["limit"], b["saemui"]
            if "error" in lim or "error" in ours:
                lines.append(f"  width {int(w):>7,}  FAILED")
                continue
            lines.append(
                f"  width {int(w):>7,}  limit {_tps(lim, 'scored_tokens'):8.2f}  saemui {_tps(ours, 'scored_tokens'):8.2f} "
                f"scored tok/s  2/1 {lim['seconds'] / ours['seconds']:.3f}  peak RSS {_gib(ours['peak_rss'])}"
            )
    if "dist" in C:
        lines.append("")
        lines.append("data parallel (torchrun, gloo, CPU): same MUI/union/sets as 1 process?")
        for w, r in C["dist"]["runs"].items():
            if "error" in r:
                lines.append(f"  {w} proc  FAILED")
                continue
            lines.append(
                f"  {w} proc × {r['threads_per_rank']} thread(s)  {r['seconds_wall']:.1f} s  speedup {r.get('speedup_vs_1', 0):.2f}  "
                f"MUI {100 * r['mui']:.4f}%  same MUI {r.get('same_mui_as_1')}  union {r.get('same_union_as_1')}  sets {r.get('same_sets_as_1')}"
            )
    if "profile" in C and "error" not in C["profile"]:
        lines.append("")
        lines.append("profile of saemui (torch self CPU time, top ops)")
        for o in C["profile"]["torch_ops"][:10]:
            lines.append(
                f"  {o['op']:<40} {o['self_cpu_ms']:10.1f} ms  {100 * o['share']:5.1f}%  {o['calls']} calls"
            )
    if out["log"]:
        lines.append("")
        lines.append(f"{len(out['log'])} failure(s): see 'log' in the JSON output")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="CI-sized run (small counts, narrow big-shape SAEs)")
    ap.add_argument("--out", default=None, help="write all measurements as JSON here")
    ap.add_argument(
        "--saes", default=None, help="SAE suite for the model (default: shipped bundle or synthetic)"
    )
    ap.add_argument("--model", default="smollm2", help="smollm2 (embedded default) or a model path/spec")
    ap.add_argument("--cases", default=None, help=f"comma-separated subset of {','.join(ALL_CASES)}")
    ap.add_argument(
        "--mem-samples", default=None, help="two sample counts for the memory case, e.g. 200,2000"
    )
    ap.add_argument("--samples", default=None, help="samples file (jsonl) instead of GSM8K / built-in text")
    ap.add_argument("--max-length", type=int, default=None, help="token cap per sample (default: per plan)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch threads per case (default: all cores)")
    ap.add_argument("--workdir", default=None, help="scratch directory (default: a temp dir, removed after)")
    ap.add_argument("--keep-workdir", action="store_true")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        r = run_worker(json.loads(args.worker))
        print(TAG + json.dumps(r, default=str))
        return 0
    out = orchestrate(args)
    text = table(out)
    out["table"] = text
    print(text)
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=2, default=str) + "\n")
    return 1 if out["log"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
