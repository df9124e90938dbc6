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

from stack.parts import Part
from stack.settings import ROOT, Settings


def pid_file(s: Settings, part: Part) -> Path:
    return s.run_dir / f"{part.name}.pid"


def running_pid(s: Settings, part: Part) -> int | None:
    try:
        pid = int(pid_file(s, part).read_text())
        os.kill(pid, 0)
    except (FileNotFoundError, ValueError, ProcessLookupError):
        return None
    except PermissionError:
        return pid
    # a pid is reused by the kernel; make sure it is still our part (a zombie is not alive)
    try:
        if Path(f"/proc/{pid}/stat").read_text().split(") ")[-1].startswith("Z"):
            return None
    except FileNotFoundError:
        return None
    return pid


def healthy(part: Part, timeout: float = 1.0) -> bool:
    if part.health.startswith("tcp://"):
        host, port = part.health[len("tcp://"):].rsplit(":", 1)
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
        raise RuntimeError(f"{part.name}: port {part.port} is already in use by another program; "
                           f"set a different port (see the README's configuration table)")
    for folder in (s.log_dir, s.run_dir):
        folder.mkdir(parents=True, exist_ok=True)
    if part.prepare:
        part.prepare()
    env = {**os.environ, **{k: v for k, v in part.env.items() if v is not None}}
    with open(s.log_dir / f"{part.name}.log", "ab") as log:  # the child keeps its own descriptor
        process = subprocess.Popen(part.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   cwd=ROOT, env=env, start_new_session=True)
    pid_file(s, part).write_text(str(process.pid))
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{part.name} exited with status {process.returncode}; "
                               f"see {s.log_dir / (part.name + '.log')}")
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
    _signal_group(pid, signal.SIGCONT)  # a frozen part cannot act on SIGTERM
    _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.1)
    if _alive(pid):
        _signal_group(pid, signal.SIGKILL)
        while _alive(pid):
            time.sleep(0.1)
    pid_file(s, part).unlink(missing_ok=True)
    return True


def freeze(s: Settings, part: Part, frozen: bool) -> None:
    """Simulate a machine that hangs rather than dies (SIGSTOP), and thaw it (SIGCONT)."""
    pid = running_pid(s, part)
    if not pid:
        raise RuntimeError(f"{part.name} is not running")
    _signal_group(pid, signal.SIGSTOP if frozen else signal.SIGCONT)


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)


def _alive(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # reap it if it is our own child
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return not Path(f"/proc/{pid}/stat").read_text().split(") ")[-1].startswith("Z")
    except FileNotFoundError:
        return False
