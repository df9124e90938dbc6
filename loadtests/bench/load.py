"""Load generation: wrk for the maximum rate, an open-loop generator for latency at a fixed rate.

wrk runs with several threads and a script that sends one prebuilt request (see loadtests/wrk/),
so it is not what limits the figure; its CPU time is measured (the children's times around the
run) and printed next to every figure: a generator near 100 % of a core per thread would be
measuring itself.
"""

from __future__ import annotations

import json
import os
import queue
import re
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import urllib3

from common.stats import percentile

WRK_SCRIPTS = Path(__file__).resolve().parent.parent / "wrk"
NETWORK_ERRORS = ("connect", "read", "write", "timeout")


@dataclass
class Wrk:
    threads: int = 2
    connections: int = 32
    nice: int = 0

    def run(self, url: str, script: str, seconds: float, args: list[str] = ()) -> dict:
        command = [
            "wrk",
            f"-t{self.threads}",
            f"-c{max(self.connections, self.threads)}",
            f"-d{seconds:g}s",
            "--timeout",
            "30s",
            "-s",
            str(WRK_SCRIPTS / script),
            url,
            "--",
            *args,
        ]
        if self.nice:
            command = ["nice", "-n", str(self.nice), *command]
        before = os.times()
        done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 120)
        after = os.times()
        lines = [line for line in done.stdout.splitlines() if line.startswith("BENCH ")]
        if done.returncode != 0 or not lines:
            raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout[-2000:]} {done.stderr[-2000:]}")
        result = json.loads(lines[-1][len("BENCH ") :])
        cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
        result["generator_cpu"] = cpu / result["duration_s"]  # in cores (1.0 = one core busy)
        result["threads"] = self.threads
        return result

    def get(self, url: str, seconds: float) -> dict:
        """GET url for `seconds`: rps counts the 2xx/3xx answers."""
        result = self.run(url, "get.lua", seconds)
        ok = result["requests"] - result["errors"]["status"]
        result.update(
            rps=ok / result["duration_s"],
            failed=result["errors"]["status"] + sum(result["errors"][k] for k in NETWORK_ERRORS),
        )
        return result

    def post(self, url: str, seconds: float, body: Path, content_type: str) -> dict:
        """POST the same body to url for `seconds`: rps counts the 201s, `ids` their ids."""
        with tempfile.NamedTemporaryFile("r", prefix="bench-ids-", suffix=".txt") as ids:
            result = self.run(url, "post.lua", seconds, [str(body), content_type, ids.name])
            result["ids"] = ids.read().split()
        created = result["statuses"].get("201", 0)
        result.update(
            created=created,
            rps=created / result["duration_s"],
            failed=result["requests"] - created + sum(result["errors"][k] for k in NETWORK_ERRORS),
        )
        return result


def saturated(result: dict) -> bool:
    """True when the generator itself used most of its threads' CPU: the figure is suspect."""
    return result["generator_cpu"] > 0.8 * result["threads"]


def open_loop(
    url: str, rate: float, seconds: float, warmup: float, body: bytes, content_type: str, connections: int = 32
) -> dict:
    """POST `body` at a constant rate whatever the answers (open loop): each request's latency
    counts from its intended send time, so time spent waiting for a free connection (queueing
    in a slow server) is counted, as a real client would see it."""
    pool = urllib3.PoolManager(
        maxsize=connections, block=True, retries=False, timeout=urllib3.Timeout(connect=5, read=60)
    )
    work: queue.Queue = queue.Queue()
    samples: list[tuple[float, float, int, bytes]] = []
    total = int(rate * (seconds + warmup))

    def sender():
        while (intended := work.get()) is not None:
            try:
                response = pool.request("POST", url, body=body, headers={"Content-Type": content_type})
                status, data = response.status, response.data
            except urllib3.exceptions.HTTPError:
                status, data = -1, b""
            samples.append((intended - start, time.monotonic() - intended, status, data))

    workers = [threading.Thread(target=sender, daemon=True) for _ in range(connections)]
    cpu = time.process_time()
    start = time.monotonic() + 0.1
    for worker in workers:
        worker.start()
    for index in range(total):
        intended = start + index / rate
        if (delay := intended - time.monotonic()) > 0:
            time.sleep(delay)
        work.put(intended)
    for _ in workers:
        work.put(None)
    for worker in workers:
        worker.join()
    cpu = time.process_time() - cpu
    pool.clear()
    measured = [latency for intended, latency, _, _ in samples if intended >= warmup]
    created = [data for _, _, status, data in samples if status == 201]
    ids = [m.group(1).decode() for data in created if (m := re.search(rb'"id":"([0-9a-f]{32})"', data))]
    return {
        "rate": rate,
        "requests": len(samples),
        "created": len(created),
        "failed": sum(1 for _, _, status, _ in samples if status != 201),
        "p50_ms": percentile(measured, 50) * 1000,
        "p99_ms": percentile(measured, 99) * 1000,
        "max_ms": max(measured, default=float("nan")) * 1000,
        "generator_cpu": cpu / (seconds + warmup),
        "ids": ids,
    }
