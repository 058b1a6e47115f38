"""Static safety rules over saemui's own source: no unpickling of files, no eval/exec of model output."""

import ast
import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "saemui"


def _calls(pattern: str):
    for f in SRC.rglob("*.py"):
        text = f.read_text()
        for m in re.finditer(pattern, text):
            # the whole call up to its closing parenthesis on the same logical chunk
            yield f, text[m.start() : text.find(")", m.start()) + 1]


def test_torch_load_is_weights_only():
    calls = list(_calls(r"torch\.load\("))
    assert calls, "expected checkpoint loading to exist"
    for f, call in calls:
        assert "weights_only=True" in call, f"{f}: {call}"


def test_numpy_load_never_unpickles():
    for f, call in _calls(r"np\.load\("):
        assert "allow_pickle=False" in call, f"{f}: {call}"


def test_no_pickle_module_and_exec_only_in_sandbox():
    for f in SRC.rglob("*.py"):
        text = f.read_text()
        assert not re.search(r"^\s*import pickle|^\s*from pickle", text, re.M), f
        calls = [
            n
            for n in ast.walk(ast.parse(text))
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in ("eval", "exec")
        ]
        if calls:
            assert f.name == "sandbox.py", f"{f}: eval/exec outside the sandbox"
