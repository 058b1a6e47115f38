"""Code tasks: extraction rules and the sandbox (timeouts, forks, memory, network, early exit)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from saemui.tasks import Item, get_task
from saemui.tasks.code import extract_code, signature_and_description
from saemui.tasks.sandbox import run_program

REPO = Path(__file__).resolve().parents[1]
PROMPT = 'def add(a: int, b: int) -> int:\n    """ Add two numbers.\n    >>> add(1, 2)\n    3\n    """\n'
TEST = "def check(candidate):\n    assert candidate(1, 2) == 3\n    assert candidate(-1, 1) == 0\n"
ITEM = Item(id="t/0", fields={"prompt": PROMPT, "test": TEST, "entry_point": "add"})


def test_extract_code_rules() -> None:
    fenced = "Here:\n```python\ndef add(a, b):\n    return a + b\n```\nDone."
    assert extract_code(fenced, "add") == "    return a + b"
    unfenced = "def add(a, b):\n    x = a\n\n    return x + b\nprint('hi')"
    assert extract_code(unfenced, "add") == "    x = a\n\n    return x + b"
    other = "def helper(a, b):\n    return a + b\n"
    assert extract_code(other, "add") == "    return a + b"
    assert extract_code("return a + b", "add") == "    return a + b"


def test_chat_prompt_official_format() -> None:
    sig, desc = signature_and_description(PROMPT, "add")
    assert sig == "add(a: int, b: int) -> int"
    assert desc == "Add two numbers.\n>>> add(1, 2)\n3\n"
    task = get_task("humaneval")
    prompt = task.format_prompt(ITEM, "chat")
    assert prompt == f"Write a Python function `{sig}` to solve the following problem:\n{desc}\n{PROMPT}"
    assert task.format_prompt(ITEM, "base").endswith(PROMPT + "\n\nAnswer: ")
    assert task.stop_sequences("base") == ["\n\nQuestion:"]


def test_scoring_refuses_without_opt_in() -> None:
    from saemui import SaemuiError
    from saemui.tasks.base import task_options

    for name in ("humaneval", "mbpp"):
        with pytest.raises(SaemuiError, match="--allow-code-execution.*allow_code_execution=True") as e:
            get_task(name).score("```python\ndef add(a, b):\n    return a + b\n```", ITEM)
        assert "\n" not in str(e.value)
        # a permission, not an option of the task: run directories and fingerprints do not change with it
        assert task_options(get_task(name, allow_code_execution=True)) == task_options(get_task(name))


def test_pass_and_fail() -> None:
    task = get_task("humaneval", allow_code_execution=True)
    assert task.score("```python\ndef add(a: int, b: int) -> int:\n    return a + b\n```", ITEM)
    assert not task.score("```python\ndef add(a: int, b: int) -> int:\n    return a - b\n```", ITEM)
    assert not task.score("    return a +", ITEM)  # syntax error


def test_infinite_loop_is_killed_within_timeout() -> None:
    t0 = time.monotonic()
    res = run_program(PROMPT + "    while True:\n        pass\n" + TEST + "check(add)\n", timeout=1.0)
    assert res.status == "timeout" and not res.passed
    assert time.monotonic() - t0 < 4.0


def test_fork_loop_is_blocked() -> None:
    body = "    import os\n    while True:\n        os.fork()\n"
    t0 = time.monotonic()
    res = run_program(PROMPT + body + TEST + "check(add)\n", timeout=2.0)
    assert not res.passed and res.status == "failed"
    assert "blocked" in res.detail
    assert time.monotonic() - t0 < 5.0


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def _procs_named(name: str) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        try:
            if d.name.isdigit() and (d / "comm").read_text().strip() == name and _alive(int(d.name)):
                out.append(int(d.name))
        except OSError:
            pass
    return out


def test_forked_children_are_killed_with_the_group() -> None:
    # libc fork through ctypes bypasses the os.fork guard: the process-group (and PID namespace) kill must still
    # get every child. Children rename themselves so that the host can find them in /proc.
    from saemui.tasks.sandbox import isolation

    if isolation() == "none":
        res = run_program("import ctypes\n", timeout=2.0)
        assert not res.passed and "ctypes" in res.detail
        return
    name = "saemui" + os.urandom(4).hex()
    program = (
        "import ctypes, time\n"
        "libc = ctypes.CDLL(None)\n"
        "for _ in range(3):\n"
        "    if libc.fork() == 0:\n"
        f"        libc.prctl(15, ctypes.c_char_p({name.encode()!r}), 0, 0, 0)\n"
        "        while True:\n"
        "            time.sleep(0.05)\n"
        "while True:\n"
        "    time.sleep(0.05)\n"
    )
    import threading

    seen: set[int] = set()
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            seen.update(_procs_named(name))
            time.sleep(0.05)

    t = threading.Thread(target=watch)
    t.start()
    res = run_program(program, timeout=1.5)
    done.set()
    t.join()
    assert res.status == "timeout"
    assert len(seen) == 3
    deadline = time.monotonic() + 3.0
    while _procs_named(name) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _procs_named(name)


def test_memory_network_and_early_exit_fail() -> None:
    hog = run_program("x = bytearray(3 * 1024 ** 3)\n", timeout=3.0, memory_mb=512)
    assert not hog.passed and "MemoryError" in hog.detail
    net = run_program("import socket\nsocket.create_connection(('127.0.0.1', 9))\n")
    assert not net.passed and "blocked" in net.detail
    early = run_program("import sys\nsys.exit(0)\nassert False\n")
    assert not early.passed and "exited early" in early.detail
    hard = run_program("import os\nos._exit(0)\n")
    assert not hard.passed
    assert run_program("print('ok')\n").passed


def test_runs_in_a_fresh_temp_dir() -> None:
    program = (
        "import os\nassert os.getcwd() != " + repr(os.getcwd()) + "\nassert 'HTTP_PROXY' not in os.environ\n"
    )
    os.environ.setdefault("HTTP_PROXY", "http://127.0.0.1:9")
    try:
        assert run_program(program).passed
    finally:
        if os.environ.get("HTTP_PROXY") == "http://127.0.0.1:9":
            del os.environ["HTTP_PROXY"]


def test_canonical_humaneval_solutions_pass() -> None:
    path = REPO / ".." / "shared" / "data" / "humaneval" / "test.jsonl"
    if not path.exists():
        pytest.skip(f"shared data missing: {path}")
    from saemui.tasks.sources import read_records

    task = get_task("humaneval", allow_code_execution=True)
    recs = read_records(path)[:2]
    for i, rec in enumerate(recs):
        item = task.item_from_record(rec, i)
        assert task.score("```python\n" + rec["prompt"] + rec["canonical_solution"] + "```", item)
        assert not task.score("```python\n" + rec["prompt"] + "    return None\n```", item)


def test_cli_flag_reaches_code_tasks_only() -> None:
    from saemui.cli import build_parser
    from saemui.cli.tasks import build_task

    assert build_task("humaneval", []).allow_code_execution is False
    assert build_task("humaneval", [], allow_code_execution=True).allow_code_execution is True
    assert build_task("mbpp", [], allow_code_execution=True).allow_code_execution is True
    # a permission, not a task option: other tasks accept the flag and are unchanged
    assert build_task("arith-1", [], allow_code_execution=True) == get_task("arith-1")
    parser = build_parser()
    for argv in (["run", "--task", "humaneval"], ["score", "--task", "mbpp", "--responses", "r.jsonl"]):
        assert parser.parse_args(argv).allow_code_execution is False
        assert parser.parse_args([*argv, "--allow-code-execution"]).allow_code_execution is True
