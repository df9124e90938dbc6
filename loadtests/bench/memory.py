"""Peak memory growth of processes over a block of code."""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path

from loadtests.bench.machine import status_kb


class PeakMemory:
    """Peak RSS growth of processes over a block: the kernel's high-water mark (VmHWM) reset
    through clear_refs when allowed, so the true peak rather than a sample; else RSS sampled
    every 20 ms in a thread."""

    def __init__(self, pids: list[int]):
        self.pids = pids
        self.method = "VmHWM (reset via clear_refs)"
        self.before: dict[int, int] = {}
        self.peak: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> PeakMemory:
        try:
            for pid in self.pids:
                Path(f"/proc/{pid}/clear_refs").write_text("5")
        except OSError:
            self.method = "VmRSS sampled every 20 ms"
            self._thread = threading.Thread(target=self._sample, daemon=True)
        self.before = {pid: status_kb(pid, "VmRSS") for pid in self.pids}
        self.peak = dict(self.before)
        if self._thread:
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            for pid in self.pids:
                with contextlib.suppress(OSError):
                    self.peak[pid] = max(self.peak[pid], status_kb(pid, "VmRSS"))

    def __exit__(self, *exc) -> None:
        if self._thread:
            self._stop.set()
            self._thread.join()
        else:
            for pid in self.pids:
                with contextlib.suppress(OSError):
                    self.peak[pid] = status_kb(pid, "VmHWM")

    def growth_mb(self) -> float:
        return max((self.peak[pid] - self.before[pid] for pid in self.pids), default=0) / 1024
