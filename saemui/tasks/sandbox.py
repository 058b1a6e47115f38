"""Run untrusted model-written Python in a separate, limited process.

Not a security boundary (use a container for hostile code), but enough for benchmark completions that loop
forever, fork, eat memory, touch the network or exit early:

- a fresh ``python -I`` subprocess (isolated: no user site, no PYTHON* variables) in its own session, so the
  whole process group is killed with SIGKILL on timeout and again after a normal exit (stray children);
- ``RLIMIT_AS`` (memory), ``RLIMIT_CPU``, ``RLIMIT_FSIZE`` and ``RLIMIT_CORE`` set before exec;
- cwd is a fresh temporary directory, deleted afterwards; the environment is minimal (no proxies, no tokens);
- a guard prelude replaces ``socket.socket``/``create_connection``, ``os.fork``/``forkpty``/``system``/
  ``setsid``/``kill``/``killpg`` and ``subprocess.Popen`` by functions that raise, and turns ``sys.exit``/
  ``os._exit`` inside the program into a failure so that exiting before the tests cannot pass.

The program passes iff the prelude reaches its end and prints a per-run random token.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

_PRELUDE = r"""
import builtins, os, socket, subprocess, sys
TOKEN = sys.argv[1]
sys.argv = ["program.py"]
_print, _exit = builtins.print, os._exit
def _blocked(*a, **k):
    raise OSError("blocked in the saemui sandbox")
socket.socket = _blocked
socket.create_connection = _blocked
socket.socketpair = _blocked
for _name in ("fork", "forkpty", "system", "setsid", "setpgid", "kill", "killpg", "execv", "execve",
              "execvp", "execvpe", "spawnv", "spawnve", "posix_spawn", "posix_spawnp", "popen"):
    if hasattr(os, _name):
        setattr(os, _name, _blocked)
import posix
for _name in ("fork", "forkpty", "system", "setsid", "kill", "killpg", "execv", "execve"):
    if hasattr(posix, _name):
        setattr(posix, _name, _blocked)
subprocess.Popen = _blocked
def _no_exit(*a, **k):
    raise SystemExit("exit() called by the program")
os._exit = _no_exit
with open("program.py", encoding="utf-8") as _f:
    _src = _f.read()
try:
    exec(compile(_src, "program.py", "exec"), {"__name__": "__main__", "__builtins__": builtins})
except SystemExit as e:
    sys.stderr.write(f"program exited early: {e}\n")
    _exit(3)
except BaseException as e:
    sys.stderr.write(f"{type(e).__name__}: {e}\n")
    _exit(1)
sys.stdout.flush()
os.write(1, ("\n" + TOKEN + "\n").encode())
_exit(0)
"""


@dataclass
class ExecResult:
    """Outcome of one run: ``status`` is "passed", "failed" or "timeout"; ``detail`` the tail of stderr."""

    passed: bool
    status: str
    detail: str = ""


def _limits(memory_mb: int, cpu_s: int) -> None:
    import resource

    mem = memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 1))
    resource.setrlimit(resource.RLIMIT_FSIZE, (16 * 1024 * 1024, 16 * 1024 * 1024))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def run_program(program: str, timeout: float = 3.0, memory_mb: int = 1024) -> ExecResult:
    """Run ``program`` (Python source) in the sandbox; passed iff it runs to the end within ``timeout`` s."""
    token = secrets.token_hex(16)
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0"}
    with tempfile.TemporaryDirectory(prefix="saemui-exec-") as tmp:
        Path(tmp, "program.py").write_text(program, encoding="utf-8")
        Path(tmp, "_prelude.py").write_text(_PRELUDE, encoding="utf-8")
        out_path, err_path = Path(tmp, ".stdout"), Path(tmp, ".stderr")
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            proc = subprocess.Popen(
                [sys.executable, "-I", "_prelude.py", token],
                cwd=tmp,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
                preexec_fn=lambda: _limits(memory_mb, int(timeout) + 2),
            )
            try:
                code = proc.wait(timeout=timeout)
                timed_out = False
            except subprocess.TimeoutExpired:
                timed_out = True
            finally:
                _kill_group(proc.pid)  # the session id is the child's pid
                code = proc.wait()
        stdout = out_path.read_bytes()[-4096:].decode("utf-8", "replace")
        detail = err_path.read_bytes()[-2000:].decode("utf-8", "replace").strip()
    if timed_out:
        return ExecResult(False, "timeout", f"killed after {timeout:g} s")
    passed = code == 0 and token in stdout
    return ExecResult(passed, "passed" if passed else "failed", detail)
