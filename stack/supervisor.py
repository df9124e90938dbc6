"""Run parts under supervisord, one per state folder: it restarts a part that dies, with backoff,
and leaves one that keeps dying FATAL (crash-looping) for a person. This module writes its
configuration from the parts it is given and drives it over its private socket; freezing,
killing and reloading signal a part's whole process group, as a machine would feel it."""

import contextlib
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import xmlrpc.client
from collections.abc import Iterable
from pathlib import Path

from supervisor.xmlrpc import SupervisorTransport

from stack.part import Part
from stack.parts import all_parts
from stack.settings import PAIR, ROOT, Settings

SUPERVISORD = str(Path(sys.executable).parent / "supervisord")
# A part that dies within STARTSECS of its start did not start: supervisord tries again after
# 1, 2, 3 s, then marks it FATAL and leaves it down. One that dies later, once running, is
# restarted at once (and counted: stack/restart_exporter.py).
STARTSECS = 3
STARTRETRIES = 3
STOP_GRACE_S = 25  # gunicorn finishes in-flight requests (graceful_timeout 20 s)

# supervisord's states, as ./init.sh status names them
RUNNING, STARTING, BACKOFF, FATAL = "RUNNING", "STARTING", "BACKOFF", "FATAL"
STATE_WORDS = {BACKOFF: "retrying", FATAL: "crash-looping"}


def conf_dir(s: Settings) -> Path:
    return s.run_dir / "supervisor"


def _socket_path(s: Settings) -> Path:
    return conf_dir(s) / "supervisor.sock"


def server_url(s: Settings) -> str:
    return f"unix://{_socket_path(s)}"


def _quote(value: str) -> str:
    """supervisord expands %(name)s in every value and splits environment= at commas."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'.replace("%", "%%")


def program_conf(s: Settings, part: Part) -> str:
    env = ",".join(f"{name}={_quote(value)}" for name, value in part.env.items() if value is not None)
    section = f"eventlistener:{part.name}" if part.listens_to else f"program:{part.name}"
    lines = [
        f"[{section}]",
        f"command={shlex.join(part.argv).replace('%', '%%')}",
        f"directory={ROOT}",
        *([f"environment={env}"] if env else []),
        "autostart=false",
        "autorestart=true",
        f"startsecs={STARTSECS}",
        f"startretries={STARTRETRIES}",
        f"stopwaitsecs={STOP_GRACE_S}",
        # the signal goes to the part's process group: gunicorn's workers, nginx's, mongod's
        "stopasgroup=true",
        "killasgroup=true",
    ]
    if part.listens_to:  # its stdout speaks supervisord's event protocol; stderr is the log
        # events wait here while it is down (restarting, say): up to a burst of every part's
        lines += [f"events={part.listens_to}", "buffer_size=1000", f"stderr_logfile={s.log_dir / (part.name + '.log')}"]
    else:
        lines += ["redirect_stderr=true", f"stdout_logfile={s.log_dir / (part.name + '.log')}"]
    lines += ["stdout_logfile_maxbytes=0", "stderr_logfile_maxbytes=0"]  # appended, like every log of var/log
    return "\n".join(lines) + "\n"


def _main_conf(s: Settings) -> str:
    here = conf_dir(s)
    return f"""[unix_http_server]
file={_socket_path(s)}
chmod=0700

[supervisord]
logfile={s.log_dir / "supervisord.log"}
logfile_maxbytes=10MB
pidfile={here / "supervisord.pid"}
umask=077
directory={ROOT}

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl={server_url(s)}

[include]
files = {here / "programs"}/*.conf
"""


def rpc(s: Settings):
    """supervisord's XML-RPC interface (`.supervisor.*`) over its unix socket."""
    return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=SupervisorTransport(None, None, server_url(s)))


def supervisord_pid(s: Settings) -> int | None:
    try:
        return rpc(s).supervisor.getPID()
    except (OSError, xmlrpc.client.Fault):
        return None


def _ensure_supervisord(s: Settings) -> None:
    if supervisord_pid(s):
        return
    for folder in (s.log_dir, conf_dir(s) / "programs"):
        folder.mkdir(parents=True, exist_ok=True)
    conf = conf_dir(s) / "supervisord.conf"
    conf.write_text(_main_conf(s))
    # it daemonises (a session of its own) and inherits this environment, which it hands on
    subprocess.run([SUPERVISORD, "-c", str(conf)], check=True, cwd=ROOT)
    deadline = time.monotonic() + 15
    while not supervisord_pid(s):
        if time.monotonic() > deadline:
            raise RuntimeError(f"supervisord did not answer on {_socket_path(s)}; see {s.log_dir}/supervisord.log")
        time.sleep(0.1)


def _register(s: Settings, part: Part) -> None:
    """Write the part's section and have supervisord take it in (what `supervisorctl update` does)."""
    path = conf_dir(s) / "programs" / f"{part.name}.conf"
    text = program_conf(s, part)
    if path.exists() and path.read_text() == text and _info(s, part) is not None:
        return
    path.write_text(text)
    server = rpc(s).supervisor
    added, changed, _removed = server.reloadConfig()[0]
    for name in changed:
        with contextlib.suppress(xmlrpc.client.Fault):
            server.stopProcessGroup(name)
        server.removeProcessGroup(name)
    for name in added + changed:
        server.addProcessGroup(name)


def _info(s: Settings, part: Part) -> dict | None:
    try:
        return rpc(s).supervisor.getProcessInfo(part.name)
    except (OSError, xmlrpc.client.Fault):
        return None


def state(s: Settings, part: Part) -> str:
    """supervisord's word for the part (RUNNING, BACKOFF, FATAL, STOPPED...); STOPPED without one."""
    info = _info(s, part)
    return info["statename"] if info else "STOPPED"


def running_pid(s: Settings, part: Part) -> int | None:
    """The pid leading the part's process group while supervisord has it running."""
    info = _info(s, part)
    if not info or info["statename"] not in (RUNNING, STARTING) or not info["pid"]:
        return None
    return info["pid"] if _leads_group(info["pid"]) else None


def _leads_group(pid: int) -> bool:
    """supervisord starts every part in a process group of its own; anything else is not ours."""
    try:
        return os.getpgid(pid) == pid
    except (ProcessLookupError, PermissionError):
        return False


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


def stack_is_up(s: Settings, names: Iterable[str] | None = None) -> bool:
    """The one "is the stack up?" of the tools that drive it (drill, chaos, bench, load,
    hostile uploads): every part named (all by default) passes its health check; if not, says
    which do not, on stderr."""
    wanted = set(names) if names is not None else None
    down = [p.name for p in all_parts(s) if (wanted is None or p.name in wanted) and not healthy(p)]
    if down:
        print(f"the stack is not fully up ({', '.join(down)}); start it with ./init.sh", file=sys.stderr)
    return not down


def port_taken(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.3)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def start(s: Settings, part: Part, wait: float = 60.0) -> int:
    """Start the part under supervisord (idempotent) and wait for its health check."""
    _ensure_supervisord(s)
    if state(s, part) not in (RUNNING, STARTING, BACKOFF):
        if port_taken(part.port):
            raise RuntimeError(
                f"{part.name}: port {part.port} is already in use by another program; "
                f"set a different port (see the README's configuration table)"
            )
        s.run_dir.mkdir(parents=True, exist_ok=True)
        if part.prepare:  # at a deliberate start; supervisord's restarts reuse what it prepared
            part.prepare()
        _register(s, part)
        with contextlib.suppress(xmlrpc.client.Fault):  # ALREADY_STARTED: someone was quicker
            rpc(s).supervisor.startProcess(part.name, False)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        info = _info(s, part)
        if info and info["statename"] in (FATAL, "STOPPED"):
            raise RuntimeError(
                f"{part.name} could not be started ({info['statename']}: {info['spawnerr'] or 'it exited'}); "
                f"see {s.log_dir / (part.name + '.log')}"
            )
        pid = running_pid(s, part)
        if pid and healthy(part):
            return pid
        time.sleep(0.2)
    raise RuntimeError(f"{part.name} did not pass its health check ({part.health}) within {wait:.0f}s")


def stop(s: Settings, part: Part) -> bool:
    """Stop the part for good (SIGTERM to its group, SIGKILL after the grace period); supervisord
    goes too once it has nothing left to run. False when it was not running."""
    pid = running_pid(s, part)
    if pid:
        _signal_group(pid, signal.SIGCONT)  # a frozen part cannot act on SIGTERM
    was = state(s, part)
    if was in (RUNNING, STARTING, BACKOFF):
        with contextlib.suppress(xmlrpc.client.Fault):  # NOT_RUNNING: it died meanwhile
            rpc(s).supervisor.stopProcess(part.name, True)
    _shutdown_when_idle(s)
    return was in (RUNNING, STARTING, BACKOFF)


def _shutdown_when_idle(s: Settings) -> None:
    pid = supervisord_pid(s)
    if not pid:
        return
    server = rpc(s).supervisor
    if any(info["statename"] in (RUNNING, STARTING, BACKOFF) for info in server.getAllProcessInfo()):
        return
    server.shutdown()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and _still_running(pid):
        time.sleep(0.05)


def kill(s: Settings, part: Part) -> bool:
    """SIGKILL the part's process group, a machine that dies: nothing finished, nobody told.
    supervisord sees it exit and starts it again."""
    pid = running_pid(s, part)
    if not pid:
        return False
    _signal_group(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    # until supervisord has seen it die: before that, it still reports the dead pid as running
    while time.monotonic() < deadline and (_still_running(pid) or (_info(s, part) or {}).get("pid") == pid):
        time.sleep(0.02)
    return True


def power_cut(s: Settings, parts: list[Part]) -> list[str]:
    """SIGKILL supervisord and every running part's process group in one go, as a power cut
    would: nothing finishes, nothing is restarted until ./init.sh starts the stack again.
    Returns the names of the parts it killed, once every one of them is gone."""
    victims = [(part.name, pid) for part in parts if (pid := running_pid(s, part))]
    own = supervisord_pid(s)
    for pid in ([own] if own else []) + [pid for _, pid in victims]:
        _signal_group(pid, signal.SIGKILL)
    deadline = time.monotonic() + 15
    for pid in ([own] if own else []) + [pid for _, pid in victims]:
        while _still_running(pid) and time.monotonic() < deadline:
            time.sleep(0.02)
    return [name for name, _ in victims]


def _still_running(pid: int) -> bool:
    """The process exists and is not a zombie (one whose parent died with it waits for init)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


def _signal_running(s: Settings, part: Part, sig: int) -> None:
    pid = running_pid(s, part)
    if not pid:
        raise RuntimeError(f"{part.name} is not running")
    _signal_group(pid, sig)


def freeze(s: Settings, part: Part, frozen: bool) -> None:
    """Simulate a machine that hangs rather than dies (SIGSTOP), and thaw it (SIGCONT).
    supervisord only watches for exits, so a frozen part is left alone, not restarted."""
    _signal_running(s, part, signal.SIGSTOP if frozen else signal.SIGCONT)


# Parts whose whole process group takes SIGHUP as "read your files again"; to a gunicorn
# group it would be fatal (its workers die of it), so nothing else is reloaded this way.
RELOADABLE = tuple(f"{kind}-{n}" for kind in ("prometheus", "alertmanager") for n in PAIR)


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
