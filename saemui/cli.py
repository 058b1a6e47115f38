"""The ``saemui`` command line; each subcommand calls the same public functions a notebook would."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from saemui.errors import SaemuiError

if TYPE_CHECKING:
    from saemui.engine import RunConfig

BUILTIN_SAMPLES = Path(__file__).parent / "data" / "default_samples.jsonl"

# Modules that add subcommands: each defines ``add_parser(subparsers)`` (one line per feature keeps merges clean).
SUBCOMMAND_MODULES: list[str] = [
    "saemui.report",
    "saemui.tasks.cli",  # score, tasks; adds --task to run
    "saemui.plot_cli",  # plot (zoo figures from result files)
]


def parse_layers(text: str | None) -> list[int] | None:
    """``"0,3,5"`` or ``"0-29"`` or ``"0-9,20"`` → sorted layer list."""
    if not text:
        return None
    out: set[int] = set()
    try:
        for part in text.split(","):
            a, _, b = part.partition("-")
            out.update(range(int(a), int(b) + 1) if b else [int(a)])
    except ValueError:
        raise SaemuiError(f"--layers {text!r}: expected comma-separated layers or ranges like 0-29") from None
    return sorted(out)


def _add_run(sub) -> None:
    p = sub.add_parser(
        "run",
        help="measure MUI of a model on prompt/response records",
        description="Measure the Model Utility Index. With no arguments: the embedded default model "
        "(SmolLM2-135M-Instruct) on the built-in samples, with the shipped SAE bundle when present "
        "(feature-level MUI), else MLP neurons.",
    )
    p.add_argument(
        "--model",
        default="smollm2-135m-instruct",
        help="registry name (smollm2-135m-instruct, gemma3-270m), a .gguf file, a local HF directory or an HF id",
    )
    p.add_argument(
        "--samples", help="JSONL file of {prompt, response[, id, correct]} records (default: built-in set)"
    )
    p.add_argument(
        "--saes", help="SAE bundle dir, sae-lens dir, or sae-lens RELEASE[:ID] (default: shipped bundle)"
    )
    p.add_argument("--neurons", action="store_true", help="MLP-neuron MUI instead of SAE features")
    p.add_argument(
        "--threshold",
        help="key-unit rule: topscore:ETA | topk:K | global_topk:K | positive "
        "(default: topscore:0.9 for SAEs, topk:0.001 for neurons)",
    )
    p.add_argument(
        "--alignment",
        choices=["response", "predicting"],
        help="scored positions: response (paper) or predicting (corrected); default per unit type",
    )
    p.add_argument("--neuron-site", default="down_input", choices=["down_input", "gate_act"])
    p.add_argument("--layers", help="layers to include, e.g. 0-29 or 0,5,10 (default: all)")
    p.add_argument("--limit", type=int, help="use only the first N records")
    p.add_argument("--out", help="result directory (default: runs/<model>-<basis>)")
    p.add_argument(
        "--max-length", type=int, default=2048, help="tokens of prompt+response kept (default 2048)"
    )
    p.add_argument("--batch-tokens", type=int, default=4096, help="padded tokens per batch (default 4096)")
    p.add_argument("--prompt-format", default="auto", choices=["auto", "chat", "raw"])
    p.add_argument("--backend", default="hf", choices=["hf", "tl"], help="capture backend (default hf)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: cuda if available)")
    p.add_argument("--dtype", default=None, help="model dtype (default: float32 on CPU, bfloat16 on CUDA)")
    p.add_argument("--sae-group-size", type=int, help="SAEs held in memory at once (default: all)")
    p.add_argument("--no-sets", action="store_true", help="do not keep per-sample key sets")
    p.add_argument("--no-health", action="store_true", help="skip SAE health metrics (encoder-only loading)")
    p.add_argument(
        "--checkpoint-every",
        type=int,
        default=20,
        help="save resumable progress every N batches beside --out (default 20; 0 = never)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument(
        "--explore",
        action="store_true",
        help="also keep max-activating contexts, histograms and logit-lens tokens (contexts.npz, for saemui report)",
    )
    p.set_defaults(func=cmd_run)


def _is_local(spec: str | None) -> bool:
    from saemui.models import MODEL_SOURCES

    return spec is None or spec in MODEL_SOURCES or Path(spec).exists()


def prepare_run(args: argparse.Namespace) -> None:
    """Process-wide settings of a run, before any model library is used."""
    if _is_local(args.model) and _is_local(args.saes):
        # Everything is on disk: make sure no library reaches for the Hub behind our back.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.checkpoint_every < 0:
        raise SaemuiError(
            f"--checkpoint-every {args.checkpoint_every}: expected 0 (off) or a positive number"
        )
    if args.quiet:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()


def execute_run(
    args: argparse.Namespace,
    lm,
    samples,
    cfg,
    out: Path,
    extra_summary: dict | None = None,
    run_info: dict | None = None,
):
    """compute → save (checkpointed unless --checkpoint-every 0; --explore adds feature contexts) → result."""
    from saemui import checkpoint
    from saemui.engine import compute_mui

    ckpt_dir = checkpoint.checkpoint_dir_for(out) if args.checkpoint_every else None
    if getattr(args, "explore", False):
        from saemui.explore import explore_run

        # The context collector is not checkpointed: an --explore run restarts from scratch after a crash.
        result, _ = explore_run(lm, samples, cfg, out, progress=not args.quiet)
        if extra_summary or run_info:
            result.summary.update(extra_summary or {})
            result.run_info.update(run_info or {})
            result.save(out)
    else:
        result = compute_mui(
            lm,
            samples,
            cfg,
            progress=not args.quiet,
            checkpoint_dir=ckpt_dir,
            checkpoint_every=args.checkpoint_every or 1,
            extra_summary=extra_summary,
        )
        result.run_info.update(run_info or {})
        result.save(out)
    if ckpt_dir is not None:
        checkpoint.clear(ckpt_dir)
    return result


def cmd_run(args: argparse.Namespace) -> int:
    prepare_run(args)
    from saemui.models import load_model
    from saemui.records import read_samples

    samples = read_samples(args.samples or BUILTIN_SAMPLES)
    if args.limit is not None:
        if args.limit < 1:
            raise SaemuiError(f"--limit {args.limit}: expected a positive number of records")
        samples = samples[: args.limit]
    cfg = run_config(args)
    out = Path(args.out) if args.out else _default_out(args.model, cfg)
    _check_writable(out)
    lm = load_model(args.model, device=args.device, dtype=args.dtype)
    result = execute_run(args, lm, samples, cfg, out)
    print(format_summary(result, out))
    return 0


def run_config(args: argparse.Namespace) -> RunConfig:
    """The resolved RunConfig of ``saemui run`` arguments (SAE bundle lookup included)."""
    from saemui.engine import RunConfig
    from saemui.saes import find_bundles

    saes = args.saes
    if not args.neurons and not saes:
        bundles = find_bundles(args.model) or find_bundles(_hf_id(args.model))
        if bundles:
            saes = str(bundles[0])
        else:
            print(
                f"saemui: no SAE bundle found for {args.model!r}; measuring MLP-neuron MUI (pass --saes for features)",
                file=sys.stderr,
            )
    units = "sae" if (saes and not args.neurons) else "neurons"
    return RunConfig(
        units=units,
        saes=saes if units == "sae" else None,
        threshold=args.threshold,
        alignment=args.alignment,
        neuron_site=args.neuron_site,
        layers=parse_layers(args.layers),
        prompt_format=args.prompt_format,
        max_length=args.max_length,
        max_batch_tokens=args.batch_tokens,
        backend=args.backend,
        sae_group_size=args.sae_group_size,
        health=not args.no_health,
        keep_sets=not args.no_sets,
    ).resolved()


def _hf_id(model: str) -> str:
    from saemui.models import MODEL_SOURCES

    return MODEL_SOURCES[model].hf_id if model in MODEL_SOURCES else model


def _default_out(model: str, cfg) -> Path:
    basis = Path(cfg.saes).name if cfg.units == "sae" else f"neurons-{cfg.neuron_site}"
    return Path("runs") / f"{Path(model).name.replace('/', '_')}-{basis.replace(':', '_').replace('/', '_')}"


def _check_writable(out: Path) -> None:
    parent = out.resolve().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise SaemuiError(f"{out}: output directory not writable ({parent} is a file, not a directory)")
    if not os.access(parent, os.W_OK):
        raise SaemuiError(f"{out}: output directory not writable ({parent} is read-only for this user)")


def format_summary(result, out: Path | None = None) -> str:
    s = result.summary
    pl = s["per_layer"]
    lines = [
        f"model      {s['model']['name']} ({s['model']['hf_id']}, {s['model']['dtype']} on {s['model']['device']})",
        f"units      {s['units']['kind']}: {s['units']['basis']} — {s['units']['n_units']} units × {s['units']['n_layers']} layers",
        f"selection  {s['selection']}, alignment {s['config']['alignment']}",
        f"data       {s['n_samples']} samples, {s['n_tokens']} scored tokens"
        + (f", {s['n_truncated_samples']} truncated" if s["n_truncated_samples"] else ""),
        f"MUI        {s['mui_percent']:.4f} %  (per layer min {100 * min(pl):.3f} %, max {100 * max(pl):.3f} %)",
    ]
    if s.get("task"):
        t = s["task"]
        lines.insert(3, f"task       {t['name']} ({t['style']} style), {t['n_items']} items")
    if s.get("accuracy") is not None:
        lines.append(f"accuracy   {100 * s['accuracy']:.1f} % of {s['n_labelled']} labelled")
    if s.get("mui_correct") is not None:
        lines.append(f"MUI(correct only) {100 * s['mui_correct']:.4f} % over {s.get('n_correct')} samples")
    if s.get("sae_health"):
        import statistics

        ev = [h["explained_variance"] for h in s["sae_health"] if h.get("explained_variance") is not None]
        l0 = [h["l0"] for h in s["sae_health"]]
        lines.append(
            f"SAE health median L0 {statistics.median(l0):.1f}"
            + (f", median explained variance {statistics.median(ev):.3f}" if ev else "")
        )
    run = result.run_info or {}
    tps = (run.get("timing") or {}).get("tokens_per_second")
    lines.append(
        f"speed      {tps:.0f} tokens/s (forward + scoring, {run['machine']['cpu_count']} CPUs)"
        if tps
        else "speed      n/a"
    )
    if out is not None:
        lines.append(f"written    {out}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    from saemui import __version__

    ap = argparse.ArgumentParser(
        prog="saemui",
        description="Model Utility Index (MUI): the fraction of a model's SAE features or MLP neurons a task uses. "
        "Offline by default; see README.md.",
    )
    ap.add_argument("--version", action="version", version=f"saemui {__version__}")
    ap.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")
    _add_run(sub)
    import importlib

    for name in SUBCOMMAND_MODULES:
        importlib.import_module(name).add_parser(sub)
    return ap


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="saemui: %(message)s")
    if not args.command:
        ap.print_help()
        return 0
    try:
        return args.func(args)
    except SaemuiError as e:
        print(f"saemui: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("saemui: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
