"""What the bench ran on, the shape of the running services it copies, and how quiet the machine was."""

from __future__ import annotations

import contextlib
import os
import platform
import re
import time
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


QUIET_SHARE = 0.10  # other processes using more of the machine than this: the figure is suspect


def _tree(pid: int) -> list[psutil.Process]:
    with contextlib.suppress(psutil.Error):
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    return []


def _cpu_seconds(processes: list[psutil.Process]) -> dict[int, float]:
    seconds = {}
    for process in processes:
        with contextlib.suppress(psutil.Error):
            times = process.cpu_times()
            seconds[process.pid] = times.user + times.system
    return seconds


class Quietness:
    """How busy the machine was with other work while a figure ran: the load average, and the
    share of all cores' time used by processes that are neither the stack, its baselines, nor
    the bench and its load generators (measured from /proc's CPU times, so a process that came
    and went in between still counts)."""

    def __init__(self, roots: list[int]):
        self.roots = roots  # the stack's and the baselines' processes (their children are found)

    def ours(self) -> list[psutil.Process]:
        return [process for pid in [*self.roots, os.getpid()] for process in _tree(pid)]

    def __enter__(self) -> Quietness:
        self.load = os.getloadavg()[0]
        self.wall = time.monotonic()
        self.system = psutil.cpu_times()
        self.mine = os.times()
        self.theirs = _cpu_seconds(self.ours())
        return self

    def __exit__(self, *exc) -> None:
        wall = time.monotonic() - self.wall
        now = psutil.cpu_times()
        busy = sum(getattr(now, f) - getattr(self.system, f) for f in ("user", "system", "nice", "irq", "softirq"))
        mine = os.times()
        ours = sum(
            getattr(mine, f) - getattr(self.mine, f) for f in ("user", "system", "children_user", "children_system")
        )
        end = _cpu_seconds(self.ours())
        ours += sum(end[pid] - start for pid, start in self.theirs.items() if pid in end and pid != os.getpid())
        cores = os.cpu_count() or 1
        self.result = {
            "load_avg": [round(self.load, 2), round(os.getloadavg()[0], 2)],
            "others_share": round(max(busy - ours, 0.0) / (wall * cores), 3) if wall > 0 else 0.0,
            "seconds": round(wall, 1),
        }
        self.result["quiet"] = self.result["others_share"] <= QUIET_SHARE

    def line(self) -> str:
        r = self.result
        verdict = "quiet" if r["quiet"] else "NOT quiet: other work used the cores, the figure is suspect"
        return (
            f"  machine during it: load average {r['load_avg'][0]:.2f} -> {r['load_avg'][1]:.2f}, other processes"
            f" {r['others_share']:.0%} of {os.cpu_count()} cores over {r['seconds']:.0f} s ({verdict})"
        )


SETTLE_SHARE = 0.25  # the idle stack (two Prometheus servers, exporters) uses about a tenth
SETTLE_WITHIN_S = 90


def settle() -> str:
    """Waits until the machine is nearly idle, so that one figure does not pay for the one
    before it (a report's or a registration burst's aftermath: the database's checkpoints, the
    counters' corrections, Prometheus reading the new series), or until SETTLE_WITHIN_S; the line
    saying which."""
    started = time.monotonic()
    while True:
        share = psutil.cpu_percent(interval=2) / 100  # all cores, over these 2 s
        waited = time.monotonic() - started
        if share <= SETTLE_SHARE:
            return f"  settled: the machine {share:.0%} busy after {waited:.0f} s"
        if waited >= SETTLE_WITHIN_S:
            return f"  NOT settled: the machine still {share:.0%} busy after {waited:.0f} s"


def roots(s: Settings, parts: list[Part]) -> list[int]:
    """The running processes of these parts (started by the supervisor under these settings)."""
    return [pid for part in parts if (pid := supervisor.running_pid(s, part))]
