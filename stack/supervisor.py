"""Start, stop and watch parts: pid files, log files and health checks."""

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from stack.part import Part
from stack.settings import ROOT, Settings


def pid_file(s: Settings, part: Part) -> Path:
    return s.run_dir / f"{part.name}.pid"


def _start_time(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat (clock ticks after boot); None when gone or a zombie.

    The kernel reuses pids, so a pid alone can name an unrelated process once ours has died;
    the pair (pid, start time) names one process for the life of the machine.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = stat.rpartition(")")[2].split()  # the command name in (...) may hold spaces
    return None if fields[0] == "Z" else int(fields[19])


def _leads_group(pid: int) -> bool:
    """Every part is started in a session of its own; anything else is not ours to killpg."""
    try:
        return os.getpgid(pid) == pid
    except (ProcessLookupError, PermissionError):
        return False


def _write_pid(path: Path, pid: int) -> None:
    path.write_text(f"{pid} {_start_time(pid) or 0}\n")  # 0 never matches: it died already


def running_pid(s: Settings, part: Part) -> int | None:
    """The part's pid, only while that pid is still the process we started."""
    path = pid_file(s, part)
    try:
        pid_text, started = path.read_text().split()
        pid, recorded = int(pid_text), int(started)
    except (FileNotFoundError, ValueError):
        return None
    actual = _start_time(pid)
    if actual is None or not _leads_group(pid):
        return None
    return pid if actual == recorded else None


def healthy(part: Part, timeout: float = 1.0) -> bool:
    if part.health.startswith("tcp://"):
        host, port = part.health[len("tcp://") :].rsplit(":", 1)
        try:
            with socket.create_connection((host, int(port)), timeout=timeout):
                return True
        except OSError:
            return False
    try:
        with urllib.request.urlopen(part.health, timeout=timeout) as response:  # noqa: S310 - our own http URL
            return 200 <= response.status < 300
    except (urllib.error.URLError, OSError):
        return False


def port_taken(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.3)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def start(s: Settings, part: Part, wait: float = 60.0) -> int:
    pid = running_pid(s, part)
    if pid:
        return pid
    if port_taken(part.port):
        raise RuntimeError(
            f"{part.name}: port {part.port} is already in use by another program; "
            f"set a different port (see the README's configuration table)"
        )
    for folder in (s.log_dir, s.run_dir):
        folder.mkdir(parents=True, exist_ok=True)
    if part.prepare:
        part.prepare()
    env = {**os.environ, **{k: v for k, v in part.env.items() if v is not None}}
    with open(s.log_dir / f"{part.name}.log", "ab") as log:  # the child keeps its own descriptor
        process = subprocess.Popen(
            part.argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=ROOT,
            env=env,
            start_new_session=True,
        )
    _write_pid(pid_file(s, part), process.pid)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"{part.name} exited with status {process.returncode}; see {s.log_dir / (part.name + '.log')}"
            )
        if healthy(part):
            return process.pid
        time.sleep(0.2)
    raise RuntimeError(f"{part.name} did not pass its health check ({part.health}) within {wait:.0f}s")


def stop(s: Settings, part: Part, grace: float = 25.0) -> bool:
    """SIGTERM the part's process group (graceful: gunicorn finishes in-flight requests)."""
    pid = running_pid(s, part)
    if not pid:
        pid_file(s, part).unlink(missing_ok=True)
        return False
    started = _start_time(pid)
    _signal_group(pid, signal.SIGCONT)  # a frozen part cannot act on SIGTERM
    _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and _alive(pid, started):
        time.sleep(0.1)
    if _alive(pid, started):
        _kill_group(pid, started)
    pid_file(s, part).unlink(missing_ok=True)
    return True


def kill(s: Settings, part: Part) -> bool:
    """SIGKILL the part's process group: a machine that dies at once, nothing finished."""
    pid = running_pid(s, part)
    if not pid:
        return False
    _kill_group(pid, _start_time(pid))
    pid_file(s, part).unlink(missing_ok=True)
    return True


def _kill_group(pid: int, started: int | None) -> None:
    _signal_group(pid, signal.SIGKILL)
    while _alive(pid, started):
        time.sleep(0.05)
    # the leader's end is not the group's: gunicorn's workers, still exiting, hold the port a
    # moment longer, and a start at once would find it taken
    deadline = time.monotonic() + 10
    while _group_lives(pid) and time.monotonic() < deadline:
        time.sleep(0.05)


def _group_lives(pgid: int) -> bool:
    """Some process of the group has not exited yet (a zombie has: it holds nothing)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def _signal_running(s: Settings, part: Part, sig: int) -> None:
    pid = running_pid(s, part)
    if not pid:
        raise RuntimeError(f"{part.name} is not running")
    _signal_group(pid, sig)


def freeze(s: Settings, part: Part, frozen: bool) -> None:
    """Simulate a machine that hangs rather than dies (SIGSTOP), and thaw it (SIGCONT)."""
    _signal_running(s, part, signal.SIGSTOP if frozen else signal.SIGCONT)


# Parts whose whole process group takes SIGHUP as "read your files again"; to a gunicorn
# group it would be fatal (its workers die of it), so nothing else is reloaded this way.
RELOADABLE = ("prometheus", "alertmanager")


def reload(s: Settings, part: Part) -> None:
    """SIGHUP the part's process group: Prometheus and Alertmanager read their files again.
    Their HTTP lifecycle endpoints stay off, so reloading takes this machine's user, not a request."""
    if part.name not in RELOADABLE:
        raise ValueError(f"{part.name} cannot be reloaded; only {', '.join(RELOADABLE)} (restart it instead)")
    _signal_running(s, part, signal.SIGHUP)


def _signal_group(pid: int, sig: int) -> None:
    if not _leads_group(pid):  # gone, or the pid now belongs to someone else's process
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _alive(pid: int, started: int | None) -> bool:
    """Still the very process that was started at `started` (a reaped or reused pid is not)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # reap it if it is our own child
    return started is not None and _start_time(pid) == started
