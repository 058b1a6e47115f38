"""The HTML report: content for neuron and SAE runs, self-containment, escaping, CLI, headless Chromium."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from saemui.cli import main
from saemui.engine import RunConfig, compute_mui
from saemui.explore import explore_run
from saemui.records import Sample
from saemui.report import _context_html, build_report, load_run, write_report

SAMPLES = [
    Sample("What is 2 + 3?", "The answer is 5.", correct=True),
    Sample("Name a capital.", "Paris is the capital of France.", correct=False),
    Sample("Count to ten.", "1 2 3 4 5 6 7 8 9 10", correct=True),
    Sample("Describe a fox.", "The quick brown fox jumps over the lazy dog.", correct=False),
    Sample("Say something odd.", '<script>alert(1)</script> & "quotes"', correct=True, id="odd<b>"),
]


@pytest.fixture(scope="module")
def runs(tiny_llama, tmp_path_factory) -> dict[str, Path]:
    from saemui.testing import save_synthetic_sae

    root = tmp_path_factory.mktemp("report-runs")
    saes = root / "saes"
    for layer in range(3):
        save_synthetic_sae(saes / f"l{layer}", 64, 128, f"blocks.{layer}.hook_resid_post", seed=layer)
    out = {
        "neurons": root / "neurons",
        "sae": root / "sae",
        "sae2": root / "sae-half",
        "plain": root / "plain",
    }
    explore_run(
        tiny_llama, SAMPLES, RunConfig(units="neurons", threshold="topk:2"), out["neurons"], progress=False
    )
    explore_run(tiny_llama, SAMPLES, RunConfig(units="sae", saes=str(saes)), out["sae"], progress=False)
    explore_run(tiny_llama, SAMPLES[:3], RunConfig(units="sae", saes=str(saes)), out["sae2"], progress=False)
    compute_mui(tiny_llama, SAMPLES, RunConfig(units="neurons", threshold="topk:2"), False).save(out["plain"])
    return out


def external_urls(page: str) -> list[str]:
    return re.findall(r"(?:https?:)?//[^\s\"'<>)]+", page)


def check_self_contained(page: str) -> None:
    assert not re.search(r"<(link|img|iframe|object|embed)\b", page, re.I)
    assert not re.search(r"\bsrc\s*=", page, re.I)
    assert "url(" not in page and "@import" not in page and "fetch(" not in page
    for url in external_urls(page):
        assert url.startswith("https://www.neuronpedia.org/"), url


@pytest.mark.parametrize("kind", ["neurons", "sae"])
def test_report_single_run(runs, kind):
    run = load_run(runs[kind])
    page = build_report([run], n_top=4, n_show=3)
    check_self_contained(page)
    assert "MUI summary" in page and "<svg class=chart" in page
    res = run.result
    for layer in res.layers:
        assert f'id="r0-l{layer}"' in page
    assert page.count("top by firing count") == len(res.layers)
    assert page.count("top by key-set frequency") == len(res.layers)
    # every unit card has a histogram, logit-lens tokens and highlighted contexts
    cards = re.findall(r"<div class=card id=r0-l\d+-u\d+>.*?</div></div></div>", page)
    assert cards and all("<svg class=hist" in c and "logit lens ↑" in c and "<mark" in c for c in cards)
    # readable histograms, per-token shading, one context per sample per unit, top and quantile contexts
    assert all('<svg class=hist width="400" height="130"' in c for c in cards)
    assert any(re.search(r"<i class=s[1-8]>", c) for c in cards)
    kinds = set()
    for c in cards:
        sids = re.findall(r"<span class=sid>(.*?)</span>", c)
        assert len(sids) == len(set(sids)), "two contexts from one sample in a card"
        kinds.update(re.findall(r"<small>(top|q\d+)</small>", c))
    assert "top" in kinds and any(k.startswith("q") for k in kinds)
    # the per-sample view lists each sample with its key units per layer
    assert page.count('<div class=smp data-run="0"') == len(res.samples) and "select class=ssel" in page
    assert f"{100 * res.mui:.3f}%" in page
    assert "Correct vs incorrect responses" in page and "Fisher" in page
    assert "Compare" not in page.split("<main>")[0]  # no comparison tab for a single run
    # text from responses and ids is escaped, never live markup
    assert "<script>alert" not in page
    ctx = run.ctx
    shown = _context_html(run, 4, ctx.first_scored[4] + 1, 60)
    assert "alert(1)" in shown and "<script" not in shown and "&amp;" in shown and "&quot;" in shown
    assert "odd<b>" not in page
    assert page.count("<script>") == 1


def test_report_compares_runs_and_links_neuronpedia(runs):
    a, b = load_run(runs["sae"], "all samples"), load_run(runs["sae2"], "first three")
    b.neuronpedia = {0: "gpt2-small/0-res-jb"}
    page = build_report([a, b, load_run(runs["neurons"])], n_top=3)
    check_self_contained(page)
    assert 'data-tab="compare"' in page and "Jaccard" in page
    assert "Key only in all samples" in page and "Key only in first three" in page
    assert "not comparable" in page  # SAE features vs neurons
    links = [u for u in external_urls(page)]
    assert links and all(
        re.fullmatch(r"https://www\.neuronpedia\.org/gpt2-small/0-res-jb/\d+", u) for u in links
    )
    assert 'href="https://www.neuronpedia.org/gpt2-small/0-res-jb/' in page


def test_report_without_contexts(runs):
    page = build_report([load_run(runs["plain"])])
    check_self_contained(page)
    assert "saemui run --explore" in page and "top by firing count" in page
    assert "<mark" not in page.split("<main>")[1].split("</ul>", 1)[1]  # only the legend uses <mark>


def test_cli_run_explore_and_report(tiny_llama, runs, tmp_path):
    data = tmp_path / "s.jsonl"
    data.write_text("".join(json.dumps(s.to_json()) + "\n" for s in SAMPLES))
    model_dir = tiny_llama.name
    out = tmp_path / "cli-run"
    argv = ["run", "--model", model_dir, "--neurons", "--samples", str(data), "--out", str(out), "--quiet"]
    assert main([*argv, "--threshold", "topk:2", "--explore"]) == 0
    assert (out / "contexts.npz").is_file()
    html_out = tmp_path / "r.html"
    assert (
        main(["report", str(out), str(runs["neurons"]), "--out", str(html_out), "--names", "cli,fixture"])
        == 0
    )
    page = html_out.read_text()
    assert "cli" in page and "fixture" in page and "Jaccard" in page
    assert main(["report", str(out), "--out", str(html_out), "--names", "a,b"]) == 2
    assert main(["report", str(tmp_path / "missing"), "--out", str(html_out)]) == 2


def _chromium(args: list[str], user_dir: Path) -> subprocess.CompletedProcess:
    exe = shutil.which("chromium")
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--hide-scrollbars",
        f"--user-data-dir={user_dir}",
        "--enable-logging=stderr",
        "--v=0",
    ]
    return subprocess.run([exe, *flags, *args], capture_output=True, text=True, timeout=120)


def console_messages(stderr: str) -> list[str]:
    # Chromium logs every console message and uncaught exception of the page as "...:CONSOLE..." lines.
    return [ln for ln in stderr.splitlines() if ":CONSOLE" in ln or "Uncaught" in ln]


@pytest.mark.skipif(
    shutil.which("chromium") is None, reason="Chromium not installed (apt-get install chromium)"
)
def test_report_in_headless_chromium(runs, tmp_path):
    # the detector itself: a page with an error must be caught
    bad = tmp_path / "bad.html"
    bad.write_text("<html><body><script>undefinedFunction()</script></body></html>")
    assert console_messages(_chromium(["--dump-dom", bad.as_uri()], tmp_path / "ud0").stderr)

    page = tmp_path / "report.html"
    write_report([runs["neurons"], runs["sae"], runs["sae2"]], page, names=["neurons", "sae", "sae-half"])
    dom = _chromium(["--dump-dom", page.as_uri() + "#run1"], tmp_path / "ud1")
    assert not console_messages(dom.stderr), console_messages(dom.stderr)
    assert 'data-ready="1"' in dom.stdout  # the script ran to its end
    # the tab from the URL is shown, the others hidden by the script
    assert re.search(r'<section class="tab" id="tab-run1">', dom.stdout)
    assert re.search(r'<section class="tab" id="tab-overview" hidden="">', dom.stdout)
    assert dom.stdout.count("top by firing count") == 9 and "Jaccard" in dom.stdout

    shot_dir = Path(os.environ.get("SAEMUI_SCREENSHOT_DIR", tmp_path))
    shot_dir.mkdir(parents=True, exist_ok=True)
    for width in (1400, 900):
        for tab in ("overview", "run1"):
            png = shot_dir / f"report-{tab}-{width}.png"
            r = _chromium(
                [f"--screenshot={png}", f"--window-size={width},2000", page.as_uri() + f"#{tab}"],
                tmp_path / f"ud-{width}",
            )
            assert not console_messages(r.stderr), console_messages(r.stderr)
            data = png.read_bytes()
            assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
            assert int.from_bytes(data[16:20], "big") == width  # PNG width from the IHDR chunk
    # at 900 px nothing is wider than the window: the page does not scroll sideways
    probe = tmp_path / "probe.html"
    probe.write_text(
        page.read_text().replace(
            "document.body.setAttribute('data-ready','1');",
            "document.body.setAttribute('data-ready','1');document.body.setAttribute('data-sw',"
            "String(document.documentElement.scrollWidth));",
        )
    )
    dom = _chromium(["--window-size=900,2000", "--dump-dom", probe.as_uri() + "#run1"], tmp_path / "ud3")
    sw = int(re.search(r'data-sw="(\d+)"', dom.stdout).group(1))
    assert sw <= 900, sw


def test_shaded_context_matches_scores(runs):
    """The shading of each token follows the unit's recorded score on it (an independent re-reading of the
    stored window), and the marked token is the sample's peak."""
    from saemui.report import SHADES, _shown_html

    run = load_run(runs["neurons"])
    (layer, unit), shown = next(iter(sorted(run.ctx.shown.items())))
    c = shown[0]
    vmax = max(x.value for x in shown)
    html_ = _shown_html(run, c, 6, vmax)
    target_next = run.result.summary["config"].get("alignment") == "predicting"
    # the peak is the window's maximum, at its centre
    finite = c.scores[np.isfinite(c.scores)]
    assert c.value == pytest.approx(float(finite.max()), rel=1e-2) and c.pos - c.pos0 == len(c.scores) // 2
    levels = [int(x) for x in re.findall(r"class=s(\d)", html_)]
    want = [
        min(SHADES, math.ceil(SHADES * float(v) / vmax))
        for p, v in zip(range(c.pos0, c.pos0 + len(c.scores)), c.scores)
        if abs(p - c.pos) <= 6 and np.isfinite(v) and v > 0 and not (p == c.pos + 1 and target_next)
    ]
    assert sorted(levels) == sorted(want)


def test_significance_note_when_groups_are_too_small():
    from saemui.report import min_fisher_p

    # 2 vs 2 samples: the most extreme table has p = 1/C(4,2) * 2 = 1/3, never significant
    assert min_fisher_p(2, 2) == pytest.approx(1 / 3)
    assert min_fisher_p(10, 10) < 0.05
    page_note = __import__("saemui.report", fromlist=["_significance_note"])._significance_note

    class R:
        samples = [{"correct": True}] * 2 + [{"correct": False}] * 2

    assert "No unit can reach significance" in page_note(R(), 10)
    R.samples = [{"correct": True}] * 30 + [{"correct": False}] * 30
    assert page_note(R(), 1) == ""


def test_report_size_budget(runs, tmp_path):
    """Three tiny runs (5, 5 and 3 samples, 3 layers each) stay under 500 kB: the shaded contexts, histograms
    and the per-sample view must not blow the page up. A page grows with layers × units with a card (≤ 2 n_top
    per layer) × shown contexts, and with the number of samples only through the per-sample view (≤ 100)."""
    out = write_report([runs["neurons"], runs["sae"], runs["sae2"]], tmp_path / "r.html")
    size = out.stat().st_size
    print(f"report size: {size} bytes")
    assert size < 500_000


def test_report_compares_mui_at_equal_n(runs):
    import itertools

    a, b = load_run(runs["sae"], "five"), load_run(runs["sae2"], "three")
    page = build_report([a, b], n_top=2)
    assert "MUI at N = 3" in page and "N = 5, 3" in page and "every distinct subset used (exact)" in page
    # hand: the mean union over all C(5, 3) subsets of the 5-sample run's key sets
    ptr, flat = a.result.flat_keys()
    sets = [set(flat[ptr[i] : ptr[i + 1]].tolist()) for i in range(5)]
    denom = len(a.result.layers) * a.result.n_units
    mean = np.mean(
        [len(set().union(*(sets[i] for i in c))) / denom for c in itertools.combinations(range(5), 3)]
    )
    row = page.split("<td>five</td>", 1)[1].split("</tr>", 1)[0]
    assert f"{100 * mean:.3f}%" in row
    assert "MUI at N" not in build_report([a], n_top=2)
