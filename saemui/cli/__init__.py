"""The ``saemui`` command line; each subcommand calls the same public functions a notebook would.

Every subcommand is declared and wired to its handler here, in :func:`build_parser`: ``run``
(:mod:`saemui.cli.run`), ``report`` (:mod:`saemui.cli.report`), ``score`` and ``tasks``
(:mod:`saemui.cli.tasks`), ``plot`` (:mod:`saemui.cli.plot`), ``law`` (:mod:`saemui.cli.law`), ``sae-health``
(:mod:`saemui.cli.sae_health`), ``ablate`` (:mod:`saemui.cli.ablate`). Shared flags are declared once in
:mod:`saemui.cli.args`.
"""

from __future__ import annotations

import argparse
import logging
import sys

from saemui.cli import ablate, law, plot, report, run, sae_health, tasks
from saemui.cli.args import (
    RUN_GROUPS,
    add_code_execution_arg,
    add_extraction_arg,
    add_task_option_arg,
    parse_layers,
)
from saemui.cli.run import execute_run, format_summary, prepare_run, run_config
from saemui.errors import SaemuiError
from saemui.records import BUILTIN_SAMPLES


def _add_run(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="measure MUI of a model on prompt/response records",
        description="Measure the Model Utility Index. With no arguments: the embedded default model "
        "(SmolLM2-135M-Instruct) on the built-in samples, with the shipped SAE bundle when present "
        "(feature-level MUI), else MLP neurons. With --task: generate the model's responses to a task, score "
        "them, then measure MUI on them.",
    )
    for add_group in RUN_GROUPS:
        add_group(p)
    p.set_defaults(func=run.cmd_run)


def _add_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="write a self-contained HTML report of one or more runs",
        description="One static HTML file (no server, no network) with the MUI summary, per-layer bars, top "
        "units per layer with their contexts, histograms and logit-lens tokens (runs made with --explore), "
        "correct-vs-incorrect units and comparisons between runs.",
    )
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="result directories (saemui run --out)")
    p.add_argument("--out", default="report.html", help="HTML file to write (default report.html)")
    p.add_argument("--names", help="comma-separated display names, one per RUN_DIR")
    p.add_argument("--top", type=int, default=8, help="units per ranking per layer (default 8)")
    p.add_argument("--contexts", type=int, default=5, help="contexts shown per unit (default 5)")
    p.add_argument("--window", type=int, default=8, help="tokens either side of a context (default 8)")
    p.set_defaults(func=report.cmd_report)


def _add_score(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "score",
        help="score a response file with a task's scorer",
        description="Rescore responses without regenerating them: MUI-Eval (paper) result files, lm-eval "
        "--log_samples JSONL, or saemui records (a run's responses.jsonl). Prints accuracy and writes one "
        "scored record per item ({prompt, response, id, correct, meta}; usable as `saemui run --samples`).",
    )
    p.add_argument("--task", required=True, help="registered task name (see `saemui tasks`)")
    p.add_argument(
        "--responses", required=True, help="response file (JSON array or JSONL, optionally gzipped)"
    )
    p.add_argument("--format", default="auto", choices=["auto", "paper", "lm-eval", "jsonl"], dest="fmt")
    p.add_argument("--out", help="scored JSONL to write (default: <responses>.scored.jsonl beside the input)")
    add_task_option_arg(p)
    add_code_execution_arg(p)
    p.add_argument("--source", help="task data for --format jsonl (ids are matched to the task's items)")
    add_extraction_arg(p)
    p.set_defaults(func=tasks.cmd_score)


def _add_tasks(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tasks", help="list registered tasks", description="One line per registered task.")
    p.set_defaults(func=tasks.cmd_tasks)


def _add_plot(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "plot",
        help="zoo figures and tables from result files",
        description="Regenerate a zoo figure (PNG + PDF) and its table from results/zoo/*.json; offline, no model.",
    )
    p.add_argument("kind", choices=plot.KINDS)
    plot.add_plot_args(p)
    p.set_defaults(func=plot.cmd_plot)


def _add_law(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "law",
        help="fit the Utility Law over run directories",
        description="Fit MUI = a ln P + b and P = c + d ln MUI over `saemui run --task` result directories "
        "(one point per model), after subsampling every run to the smallest N; prints each run's accuracy "
        "(Wilson interval) and MUI, and per form the slope's t-interval and a bootstrap over runs.",
    )
    law.add_law_args(p)
    p.set_defaults(func=law.cmd_law)


def _add_sae_health(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sae-health",
        help="how an SAE suite reconstructs a model's residuals on response tokens",
        description="FVE (pooled and per token), L0, dead / dense features, CE-loss recovered and KL of an SAE "
        "suite on a model's own residuals, at the response tokens MUI reads, with sink tokens excluded by rule. "
        "Use it to check a base-model bundle on a fine-tuned model.",
    )
    sae_health.add_sae_health_args(p)
    p.set_defaults(func=sae_health.cmd_sae_health)


def _add_ablate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "ablate",
        help="causal check: ablate a run's key units and measure the gold log-probability",
        description="Ablate each sample's key units (from a run's kept sets) and, as controls, as many random "
        "units; write log p(response | prompt) clean, key-ablated and per random draw, and print the effect E "
        "with a paired item-bootstrap interval (protocol §8.5).",
    )
    ablate.add_ablate_args(p)
    p.set_defaults(func=ablate.cmd_ablate)


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
    for add in (
        _add_run,
        _add_report,
        _add_score,
        _add_tasks,
        _add_plot,
        _add_law,
        _add_sae_health,
        _add_ablate,
    ):
        add(sub)
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


__all__ = [
    "BUILTIN_SAMPLES",
    "build_parser",
    "execute_run",
    "format_summary",
    "main",
    "parse_layers",
    "prepare_run",
    "run_config",
]
