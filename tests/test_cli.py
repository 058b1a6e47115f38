"""The saemui command line: a real run on a tiny model, and bad input → one-line error, exit 2, no result."""

import json
import subprocess
import sys

import pytest

from saemui.cli import main, parse_layers
from saemui.result import load_result
from saemui.testing import save_tiny_model


@pytest.fixture(scope="module")
def tiny_path(tiny_dir):
    return str(save_tiny_model(tiny_dir, "llama"))


@pytest.fixture
def samples_file(tmp_path):
    f = tmp_path / "s.jsonl"
    f.write_text(
        '{"prompt": "Hi", "response": "Paris is nice.", "correct": true}\n'
        '{"prompt": "Code", "response": "def f(x): return x", "correct": false}\n'
    )
    return f


def test_run_writes_result_and_prints_summary(tiny_path, samples_file, tmp_path, capsys):
    rc = main(
        [
            "run",
            "--model",
            tiny_path,
            "--samples",
            str(samples_file),
            "--neurons",
            "--threshold",
            "topk:2",
            "--out",
            str(tmp_path / "out"),
            "--quiet",
        ]
    )
    assert rc == 0
    out = capsys.readouterr().out
    assert "MUI" in out and "accuracy   50.0 %" in out
    res = load_result(tmp_path / "out")
    assert res.summary["selection"] == "topk:2" and res.summary["n_samples"] == 2


@pytest.mark.parametrize(
    "args,match",
    [
        (["--samples", "MISSING.jsonl"], "no such file"),
        (["--threshold", "topscore:2"], "out of range"),
        (["--layers", "a-b"], "--layers"),
        (["--limit", "0"], "--limit"),
        (["--saes", "/nonexistent/sae"], "no such directory"),
        (["--model", "/nonexistent/model.gguf"], "no such GGUF file"),
    ],
)
def test_bad_input_exit_2_one_line(tiny_path, samples_file, tmp_path, capsys, args, match):
    base = [
        "run",
        "--model",
        tiny_path,
        "--samples",
        str(samples_file),
        "--neurons",
        "--out",
        str(tmp_path / "o"),
        "--quiet",
    ]
    # later flags override earlier ones (argparse), so the bad value wins
    rc = main(base + args if "--saes" not in args else [a for a in base if a != "--neurons"] + args)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and err[0].startswith("saemui: error:") and match in err[0]
    assert not (tmp_path / "o").exists()


def test_unwritable_output(tiny_path, samples_file, tmp_path, capsys):
    # A path under a regular file cannot be created, even by root (permission bits would not stop root).
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    rc = main(
        [
            "run",
            "--model",
            tiny_path,
            "--samples",
            str(samples_file),
            "--neurons",
            "--out",
            str(blocker / "x"),
        ]
    )
    assert rc == 2 and "not writable" in capsys.readouterr().err


def test_parse_layers():
    assert parse_layers("0-2,5") == [0, 1, 2, 5] and parse_layers(None) is None


def test_console_script_help():
    out = subprocess.run(
        [sys.executable, "-m", "saemui.cli", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "run" in out and "MUI" in out
    out = subprocess.run(
        [sys.executable, "-m", "saemui.cli", "run", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for flag in ("--model", "--saes", "--neurons", "--threshold", "--limit", "--out"):
        assert flag in out


def test_builtin_samples_are_valid():
    from saemui.records import BUILTIN_SAMPLES, read_samples

    s = read_samples(BUILTIN_SAMPLES)
    assert len(s) == 32 and all(x.response for x in s)
    assert json.loads(BUILTIN_SAMPLES.read_text().splitlines()[0])["meta"]["generator"] == "greedy"


def test_plot_kinds_match_the_reproducers():
    # `saemui plot` offers saemui.analysis.KINDS (saemui.reproduce is slow to import): each needs a reproducer
    from saemui.cli.plot import KINDS
    from saemui.reproduce import REPRODUCERS

    assert list(KINDS) == list(REPRODUCERS)
