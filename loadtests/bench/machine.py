"""What the bench ran on, and the shape of the running services it copies."""

from __future__ import annotations

import contextlib
import os
import platform
import re
from pathlib import Path

import psutil

from common import gunicorn_conf
from stack import supervisor
from stack.parts import Part
from stack.settings import Settings


def describe() -> dict:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cores": os.cpu_count(),
        "cpu": model,
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def gunicorn_shape(s: Settings, part: Part) -> dict[str, str]:
    """The workers and threads the running part was started with, else the configured ones, else
    the services' own defaults (what an unset value means, and the baseline then gets too)."""
    env: dict[str, str] = {}
    with contextlib.suppress(psutil.Error, ValueError):
        env = psutil.Process(supervisor.running_pid(s, part) or 0).environ()
    defaults = {"GUNICORN_WORKERS": gunicorn_conf.workers, "GUNICORN_THREADS": gunicorn_conf.threads}
    return {name: env.get(name) or part.env[name] or str(default) for name, default in defaults.items()}


def worker_pids(s: Settings, part: Part) -> list[int]:
    pid = supervisor.running_pid(s, part)
    with contextlib.suppress(psutil.Error, ValueError):
        return [child.pid for child in psutil.Process(pid).children()] if pid else []
    return []


def status_kb(pid: int, field: str) -> int:
    match = re.search(rf"{field}:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return int(match.group(1)) if match else 0
