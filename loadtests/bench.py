"""`./init.sh bench`: the cluster against baselines measured in the same run, printed as ratios.

    python -m loadtests.bench [--runs 3] [--duration 10] [--connections 32] [--only chart ...]

Runs against the native stack that is already up (`./init.sh`), from this machine, on 127.0.0.1.
It starts its own baseline next to it (ports 38001-38003, 38010, 38080; state in var/bench/): the
one-line Flask app of `loadtests/baseline_app.py` under gunicorn with the services' own settings
module and the same worker/thread counts as the running replicas (read from their environment),
laid out like the cluster (three "replicas" and one "middleware", one gunicorn each) behind an
nginx rendered from the public entrypoint's own template. It stops the baseline at the end.

1. chart: `GET /api/chart` with a warm cache (nginx -> middleware -> Redis) vs the baseline view
   behind the same nginx location (nginx -> one gunicorn), max req/s with wrk;
2. registration: `POST /api/registrations` with a 400x300 JPEG (nginx -> 3 replicas) vs the
   baseline view parsing the same multipart form on 3 gunicorns; every 201 must be stored;
3. report: the whole XLSX report (>= 100,000 registrations; seeded if fewer) end to end
   through nginx and the middleware vs openpyxl alone writing the same rows in another process
   (`loadtests/baseline_report.py`), and the replica workers' peak memory growth meanwhile;
4. latency: registration p99 at half the measured max registration rate, from an open-loop
   (constant rate) generator that counts queueing delay from each request's intended send time.

The load generators are kept from starving the servers: wrk runs with one thread under
`nice -n 10`; the open-loop generator is one asyncio thread at a low fixed rate. Their CPU use
is printed. The result is a table and one JSON line; the exit status is 0 unless the bench could
not run (2) or a registration was lost or failed (1): a goal missed is reported, not an error.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import platform
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import requests

from common import records
from loadtests.workload import make_jpeg
from stack import seed, supervisor
from stack.parts import Part, all_parts, gunicorn, public_nginx
from stack.settings import INSTANCES, ROOT, Settings, load

HERE = Path(__file__).resolve().parent
BASELINE_PORTS = {"instances": [38001 + n for n in range(INSTANCES)], "middleware": 38010, "public": 38080,
                  "status": 38079}
REPORT_ROWS = 100_000
NICE = 10
GOALS = {"chart": ("≥", 0.8), "registration": ("≥", 0.25), "report": ("≤", 1.5), "report_memory_mb": ("<", 150),
         "png": ("", None)}
MEASUREMENTS = ["chart", "registration", "report", "latency"]
EXTRA = ["png"]  # only when asked for (--only png)


# --- the machine and the stack --------------------------------------------------------


def machine() -> dict:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with contextlib.suppress(OSError, ValueError):
        mem_kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
    return {"cores": os.cpu_count(), "cpu": model, "memory_gib": round(mem_kb / 2**20, 1),
            "kernel": platform.release(), "python": platform.python_version()}


def _environ(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    return dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)


def gunicorn_shape(s: Settings, part: Part) -> dict[str, str]:
    """The workers and threads the running part was started with (else the configured ones)."""
    env = _environ(supervisor.running_pid(s, part) or 0)
    return {name: env.get(name) or part.env[name] for name in ("GUNICORN_WORKERS", "GUNICORN_THREADS")}


def worker_pids(s: Settings, part: Part) -> list[int]:
    pid = supervisor.running_pid(s, part)
    if not pid:
        return []
    with contextlib.suppress(psutil.Error):
        return [child.pid for child in psutil.Process(pid).children()]
    return []


class Baseline:
    """The one-line app on the cluster's layout, started and stopped by the bench."""

    def __init__(self, s: Settings, shapes: dict[str, dict[str, str]]):
        self.settings = dataclasses.replace(s, var=s.var / "bench")
        bs, ports = self.settings, BASELINE_PORTS
        app = "loadtests.baseline_app:app"
        self.parts = [gunicorn(bs, f"baseline-instance-{n}", app, port, dict(shapes["instance"]))
                      for n, port in enumerate(ports["instances"], start=1)]
        self.parts.append(gunicorn(bs, "baseline-middleware", app, ports["middleware"], dict(shapes["middleware"])))
        self.parts.append(public_nginx(bs, "baseline-nginx", ports["instances"], ports["middleware"],
                                       ports["public"], ports["status"]))
        self.url = f"http://127.0.0.1:{ports['public']}"

    def __enter__(self) -> Baseline:
        self.stop()  # leftovers of an interrupted run
        try:
            for part in self.parts:
                supervisor.start(self.settings, part)
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        for part in reversed(self.parts):
            supervisor.stop(self.settings, part)


# --- wrk --------------------------------------------------------------------------------


def _wrk(url: str, script: str, connections: int, seconds: float, args: list[str] = ()) -> dict:
    command = ["nice", "-n", str(NICE), "wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "30s",
               "-s", str(HERE / "wrk" / script), url, "--", *args]
    before = os.times()
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 120)
    after = os.times()
    lines = [line for line in done.stdout.splitlines() if line.startswith("BENCH ")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout[-2000:]} {done.stderr[-2000:]}")
    result = json.loads(lines[-1][len("BENCH "):])
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    result["generator_cpu"] = cpu / seconds  # share of one core
    return result


def wrk_get(url: str, connections: int, seconds: float) -> dict:
    result = _wrk(url, "get.lua", connections, seconds)
    ok = result["statuses"].get("200", 0)
    result["rps"] = ok / result["duration_s"]
    result["failed"] = result["requests"] - ok + sum(result["errors"][k] for k in ("connect", "read", "write",
                                                                                    "timeout"))
    return result


def wrk_register(url: str, connections: int, window: float, drain: float, photo: Path, tag: str) -> dict:
    with tempfile.NamedTemporaryFile("r", prefix="bench-ids-", suffix=".txt") as ids_file:
        result = _wrk(url, "register.lua", connections, window + drain, [f"{window:g}", str(photo), tag,
                                                                          ids_file.name])
        result["ids"] = [line for line in ids_file.read().split() if line]
    created = result["statuses"].get("201", 0)
    result["created"] = created
    result["rps"] = created / result["window_s"] if result["window_s"] > 0 else 0.0
    errors = sum(result["errors"][k] for k in ("connect", "read", "write", "timeout"))
    result["failed"] = result["sent"] - created + errors
    return result


# --- the open-loop generator ----------------------------------------------------------


def multipart(name: str, city: str, photo: bytes) -> tuple[bytes, str]:
    boundary = "benchboundary" + secrets.token_hex(8)
    parts = []
    for field, value in (("name", name), ("city", city)):
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"\r\n\r\n{value}\r\n'.encode())
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="photo"; filename="id-card.jpg"\r\n'
                 "Content-Type: image/jpeg\r\n\r\n".encode() + photo + f"\r\n--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    status = int(head[0].split()[1])
    headers = {}
    for line in head[1:]:
        name, _, value = line.partition(":")
        if name:
            headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        chunks = []
        while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
            chunks.append(await reader.readexactly(size))
            await reader.readexactly(2)
        await reader.readuntil(b"\r\n")
        body = b"".join(chunks)
    else:
        body = await reader.read()
    return status, body, headers.get("connection", "").lower() == "close"


async def _open_loop(port: int, rate: float, seconds: float, make_request, connections: int) -> list[tuple]:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()
    results: list[tuple] = []
    total = int(rate * seconds)

    async def connect():
        return await asyncio.open_connection("127.0.0.1", port)

    async def worker():
        reader, writer = await connect()  # keep-alive connections, opened before the clock starts
        while (item := await queue.get()) is not None:
            index, intended = item
            try:
                if writer is None:
                    reader, writer = await connect()
                writer.write(make_request(index))
                await writer.drain()
                status, body, close = await _read_response(reader)
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
                status, body, close = -1, b"", True
            results.append((intended, loop.time(), status, body))
            if close and writer is not None:
                writer.close()
                writer = None
        if writer is not None:
            writer.close()

    workers = [asyncio.create_task(worker()) for _ in range(connections)]
    await asyncio.sleep(0.5)
    start = loop.time() + 0.1
    for index in range(total):
        intended = start + index / rate
        if (delay := intended - loop.time()) > 0:
            await asyncio.sleep(delay)
        queue.put_nowait((index, intended - start))  # latency counts from here, waiting included
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.gather(*workers)
    return [(intended, finished - start - intended, status, body) for intended, finished, status, body in results]


def open_loop(url: str, rate: float, seconds: float, warmup: float, photo: bytes, tag: str,
              connections: int = 64) -> dict:
    port = int(url.rsplit(":", 1)[1])
    host = url.split("//", 1)[1]

    def make_request(index: int) -> bytes:
        body, content_type = multipart(f"Bench {tag} open {index}x", "Quito", photo)
        return (f"POST /api/registrations HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode() + body

    cpu = time.process_time()
    samples = asyncio.run(_open_loop(port, rate, seconds + warmup, make_request, connections))
    cpu = time.process_time() - cpu
    created = [body for _, _, status, body in samples if status == 201]
    measured = sorted(latency for intended, latency, _, _ in samples if intended >= warmup)
    ids = [match.group(1) for body in created if (match := re.search(rb'"id":"([0-9a-f]{32})"', body))]
    return {
        "rate": rate, "requests": len(samples), "created": len(created),
        "failed": sum(1 for _, _, status, _ in samples if status != 201),
        "p50_ms": _percentile(measured, 50) * 1000, "p99_ms": _percentile(measured, 99) * 1000,
        "max_ms": measured[-1] * 1000 if measured else float("nan"),
        "generator_cpu": cpu / (seconds + warmup), "ids": [i.decode() for i in ids],
    }


def _percentile(ordered: list[float], p: float) -> float:
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))]


# --- the report -------------------------------------------------------------------------


def _status_kb(pid: int, field: str) -> int:
    match = re.search(rf"{field}:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return int(match.group(1)) if match else 0


class PeakMemory:
    """Peak RSS growth of processes over a block: VmHWM reset through clear_refs when allowed,
    else RSS sampled every 20 ms in a thread."""

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
        self.before = {pid: _status_kb(pid, "VmRSS") for pid in self.pids}
        self.peak = dict(self.before)
        if self._thread:
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            for pid in self.pids:
                with contextlib.suppress(OSError):
                    self.peak[pid] = max(self.peak[pid], _status_kb(pid, "VmRSS"))

    def __exit__(self, *exc) -> None:
        if self._thread:
            self._stop.set()
            self._thread.join()
        else:
            for pid in self.pids:
                with contextlib.suppress(OSError):
                    self.peak[pid] = _status_kb(pid, "VmHWM")

    def growth_mb(self) -> float:
        return max((self.peak[pid] - self.before[pid] for pid in self.pids), default=0) / 1024


def ensure_rows(s: Settings, db, wanted: int) -> int:
    have = db[records.REGISTRATIONS].count_documents({})
    if have < wanted:
        print(f"  seeding {wanted - have} registrations (the database holds {have})", flush=True)
        seed.run(s, wanted - have)
        have = db[records.REGISTRATIONS].count_documents({})
    return have


def remove_registrations(s: Settings, db, ids: list[str]) -> int:
    """Delete the bench's own registrations (records, then photos), so repeated runs leave the
    database at its seeded size and the report measures the same rows."""
    removed = 0
    store = requests.Session()
    store.headers["X-Photo-Store-Token"] = s.secrets["PHOTO_STORE_TOKEN"]
    base = f"http://127.0.0.1:{s.ports['PHOTO_STORE_PORT']}"
    for start in range(0, len(ids), 1000):
        chunk = ids[start:start + 1000]
        keys = [doc["photo_key"] for doc in db[records.REGISTRATIONS].find({"_id": {"$in": chunk}}, {"photo_key": 1})]
        removed += db[records.REGISTRATIONS].delete_many({"_id": {"$in": chunk}}).deleted_count
        for key in keys:
            store.delete(f"{base}/{key}", timeout=10)
    return removed


def download_report(s: Settings) -> tuple[float, int, str]:
    started = time.perf_counter()
    size = 0
    with requests.get(f"{s.public_url}/api/reports/cities.xlsx", auth=("admin", s.secrets["ADMIN_PASSWORD"]),
                      stream=True, timeout=600) as response:
        response.raise_for_status()
        for chunk in response.iter_content(1 << 20):
            size += len(chunk)
        served_by = response.headers.get("X-Served-By", "?")
    return time.perf_counter() - started, size, served_by


def baseline_report(s: Settings) -> dict:
    command = [sys.executable, "-m", "loadtests.baseline_report", "--mongo-url", s.mongo_url,
               "--db", s.get("MONGO_DB", "vaccination"), "--link-prefix", f"{s.public_url}/api/registrations/"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(f"baseline report failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout.splitlines()[-1])


# --- the measurements -------------------------------------------------------------------


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _get(url: str) -> requests.Response:
    response = requests.get(url, timeout=10)
    response.raise_for_status()
    return response


def measure_chart(s: Settings, baseline: Baseline, args, path: str = "/api/chart") -> dict:
    name = "chart" if path == "/api/chart" else "png"
    for _ in range(3):
        if _get(f"{s.public_url}/api/chart").json()["cache"] == "hit":
            break
    else:
        raise RuntimeError("the chart cache does not fill (is Redis up?)")
    _get(f"{s.public_url}{path}")
    _get(f"{baseline.url}{path}")
    runs = {"cluster": [], "baseline": []}
    for run in range(args.runs):
        for side, url in (("cluster", s.public_url), ("baseline", baseline.url)):
            wrk_get(f"{url}{path}", args.connections, args.warmup)
            result = wrk_get(f"{url}{path}", args.connections, args.duration)
            runs[side].append(result)
            print(f"  {name} {side:<8} run {run + 1}: {result['rps']:8.1f} req/s, p99"
                  f" {result['latency_ms']['p99']:.1f} ms, failed {result['failed']}, wrk cpu"
                  f" {result['generator_cpu']:.0%}", flush=True)
    if _get(f"{s.public_url}/api/chart").json()["cache"] != "hit":
        print("  (the chart cache expired during the runs: some answers came from the database)", flush=True)
    return _summary(name, runs, "rps")


def measure_registration(s: Settings, db, baseline: Baseline, photo: Path, args) -> dict:
    runs = {"cluster": [], "baseline": []}
    lost = 0
    for run in range(args.runs):
        for side, url in (("cluster", s.public_url), ("baseline", baseline.url)):
            for phase, window in (("warm-up", args.warmup), ("run", args.duration)):
                tag = f"r{secrets.token_hex(3)}"
                before = db[records.REGISTRATIONS].count_documents({}) if side == "cluster" else 0
                result = wrk_register(url, args.connections, window, args.drain, photo, tag)
                if side == "cluster":
                    stored = db[records.REGISTRATIONS].count_documents({}) - before
                    missing = len(result["ids"]) - db[records.REGISTRATIONS].count_documents(
                        {"_id": {"$in": result["ids"]}})
                    result.update(stored=stored, missing=missing)
                    lost += missing + abs(stored - result["created"])
                    args.created_ids.extend(result["ids"])
                if phase == "run":
                    runs[side].append(result)
                    extra = (f", acknowledged {result['created']}, stored {result['stored']}"
                             if side == "cluster" else "")
                    print(f"  registration {side:<8} run {run + 1}: {result['rps']:7.1f} req/s, failed"
                          f" {result['failed']}{extra}, wrk cpu {result['generator_cpu']:.0%}", flush=True)
    summary = _summary("registration", runs, "rps")
    cluster = runs["cluster"]
    summary.update(failed=sum(r["failed"] for r in cluster), acknowledged=sum(r["created"] for r in cluster),
                   stored=sum(r["stored"] for r in cluster), lost=lost)
    summary["met"] = summary["met"] and summary["failed"] == 0 and lost == 0
    return summary


def measure_report(s: Settings, db, args) -> dict:
    rows = ensure_rows(s, db, args.rows)
    replicas = [part for part in all_parts(s) if part.name.startswith("instance-")]
    cluster, memory, baseline = [], [], []
    for run in range(args.report_runs + 1):
        pids = [pid for part in replicas for pid in worker_pids(s, part)]
        with PeakMemory(pids) as peak:
            seconds, size, served_by = download_report(s)
        memory.append(peak.growth_mb())  # the warm-up too: a worker's first report may grow it most
        if run == 0:
            print(f"  report warm-up: {seconds:.2f} s, peak growth {peak.growth_mb():.1f} MB", flush=True)
            continue
        cluster.append(seconds)
        base = baseline_report(s)
        baseline.append(base["seconds"])
        print(f"  report run {run}: cluster {seconds:.2f} s ({size / 2**20:.1f} MiB, {served_by}), peak growth"
              f" {peak.growth_mb():.1f} MB [{peak.method}]; openpyxl alone {base['seconds']:.2f} s"
              f" ({base['rows']} rows)", flush=True)
    ratio = _median(cluster) / _median(baseline)
    op, goal = GOALS["report"]
    mem_op, mem_goal = GOALS["report_memory_mb"]
    return {"rows": rows, "cluster": _median(cluster), "baseline": _median(baseline), "ratio": ratio,
            "goal": f"{op} {goal}×", "met": ratio <= goal, "runs": {"cluster": cluster, "baseline": baseline},
            "memory_mb": max(memory), "memory_goal": f"{mem_op} {mem_goal} MB", "memory_met": max(memory) < mem_goal}


def measure_latency(s: Settings, db, baseline: Baseline, rate: float, photo: bytes, args) -> dict:
    results = {}
    for side, url in (("cluster", s.public_url), ("baseline", baseline.url)):
        before = db[records.REGISTRATIONS].count_documents({})
        result = open_loop(url, rate, args.latency_duration, args.warmup, photo, f"l{secrets.token_hex(3)}")
        if side == "cluster":
            result["stored"] = db[records.REGISTRATIONS].count_documents({}) - before
            args.created_ids.extend(result["ids"])
        results[side] = result
        print(f"  latency {side:<8} at {rate:.1f} req/s: p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f}"
              f" ms, max {result['max_ms']:.1f} ms, failed {result['failed']} of {result['requests']}"
              + (f", acknowledged {result['created']}, stored {result['stored']}" if side == "cluster" else "")
              + f", generator cpu {result['generator_cpu']:.0%}", flush=True)
    cluster, base = results["cluster"], results["baseline"]
    return {"rate": rate, "cluster": cluster["p99_ms"], "baseline": base["p99_ms"],
            "ratio": cluster["p99_ms"] / base["p99_ms"], "cluster_p50": cluster["p50_ms"],
            "baseline_p50": base["p50_ms"], "failed": cluster["failed"], "acknowledged": cluster["created"],
            "stored": cluster["stored"], "lost": abs(cluster["stored"] - cluster["created"])}


def _summary(name: str, runs: dict[str, list[dict]], key: str) -> dict:
    cluster = _median([r[key] for r in runs["cluster"]])
    baseline = _median([r[key] for r in runs["baseline"]])
    op, goal = GOALS[name]
    ratio = cluster / baseline if baseline else float("nan")
    return {"cluster": cluster, "baseline": baseline, "ratio": ratio, "goal": f"{op} {goal}×" if goal else "",
            "met": None if goal is None else ratio >= goal if op == "≥" else ratio <= goal,
            "runs": {side: [round(r[key], 2) for r in results] for side, results in runs.items()},
            "generator_cpu": max(r["generator_cpu"] for results in runs.values() for r in results)}


# --- output -----------------------------------------------------------------------------


def print_table(m: dict, results: dict, args) -> None:
    print(f"\nmachine: {m['cores']} cores ({m['cpu']}), {m['memory_gib']} GiB, Linux {m['kernel']},"
          f" Python {m['python']}")
    shapes = ", ".join(f"{name} {shape['GUNICORN_WORKERS']} workers x {shape['GUNICORN_THREADS']} threads"
                       for name, shape in results["shape"].items())
    print(f"gunicorn (gthread) per process, baseline alike: {shapes}; wrk: 1 thread, {args.connections}"
          f" connections, nice {NICE}, {args.duration:g} s after {args.warmup:g} s warm-up; medians of"
          f" {args.runs} runs (report: {args.report_runs})")
    rows = []
    if "chart" in results:
        r = results["chart"]
        rows.append(("chart JSON, cached (req/s)", f"{r['cluster']:.0f}", f"{r['baseline']:.0f}",
                     f"{r['ratio']:.2f}×", r["goal"], _yes(r["met"])))
    if "png" in results:
        r = results["png"]
        rows.append(("chart PNG, cached (req/s)", f"{r['cluster']:.0f}", f"{r['baseline']:.0f}",
                     f"{r['ratio']:.2f}×", "(reported)", ""))
    if "registration" in results:
        r = results["registration"]
        rows.append(("registration 400x300 JPEG (req/s)", f"{r['cluster']:.1f}", f"{r['baseline']:.0f}",
                     f"{r['ratio']:.2f}×", r["goal"] + ", 0 errors, all stored", _yes(r["met"])))
        rows.append(("  errors; acknowledged / stored", f"{r['failed']}; {r['acknowledged']} / {r['stored']}",
                     "", "", "", ""))
    if "report" in results:
        r = results["report"]
        rows.append((f"XLSX report, {r['rows']} rows (s)", f"{r['cluster']:.2f}", f"{r['baseline']:.2f}",
                     f"{r['ratio']:.2f}×", r["goal"], _yes(r["met"])))
        rows.append(("  replica peak memory growth (MB)", f"{r['memory_mb']:.1f}", "", "", r["memory_goal"],
                     _yes(r["memory_met"])))
    if "latency" in results:
        r = results["latency"]
        rows.append((f"registration p99 at {r['rate']:.1f} req/s (ms)", f"{r['cluster']:.0f}",
                     f"{r['baseline']:.0f}", f"{r['ratio']:.1f}×", "(reported)", ""))
    widths = [max(len(str(row[i])) for row in rows + [HEAD]) for i in range(len(HEAD))]
    for row in [HEAD, *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


HEAD = ("measurement", "cluster", "baseline", "ratio", "goal", "met")


def _yes(flag: bool) -> str:
    return "yes" if flag else "NO"


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtests.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=MEASUREMENTS + EXTRA,
                        help="run only these measurements (png: the chart image, only when named)")
    parser.add_argument("--runs", type=int, default=3, help="repetitions of the wrk measurements (median)")
    parser.add_argument("--duration", type=float, default=10, help="seconds of each measured wrk run")
    parser.add_argument("--warmup", type=float, default=3, help="seconds of warm-up before each run")
    parser.add_argument("--drain", type=float, default=3, help="registration runs: seconds to wait for answers")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections")
    parser.add_argument("--report-runs", type=int, default=3, help="repetitions of the report (median)")
    parser.add_argument("--rows", type=int, default=REPORT_ROWS, help="registrations the report must cover")
    parser.add_argument("--latency-duration", type=float, default=30, help="seconds of the open-loop run")
    parser.add_argument("--rate", type=float, help="open-loop rate (default: half the measured max)")
    parser.add_argument("--keep-registrations", action="store_true",
                        help="keep the registrations the bench made (by default they are removed at the end)")
    args = parser.parse_args()
    args.created_ids = []
    wanted = set(args.only or MEASUREMENTS)

    if not shutil.which("wrk"):
        print("wrk is not installed (Debian: apt-get install wrk; ./init.sh installs it)", file=sys.stderr)
        return 2
    s = load()
    parts = {part.name: part for part in all_parts(s)}
    down = [name for name in ("nginx", "middleware", *(f"instance-{n}" for n in range(1, INSTANCES + 1)))
            if not supervisor.healthy(parts[name])]
    if down:
        print(f"the stack is not answering ({', '.join(down)}); start it first with ./init.sh", file=sys.stderr)
        return 2
    db = records.connect(s.mongo_url)[s.get("MONGO_DB", "vaccination")]
    shape = {"instance": gunicorn_shape(s, parts["instance-1"]), "middleware": gunicorn_shape(s, parts["middleware"])}
    info = machine()
    results: dict = {"date": time.strftime("%Y-%m-%d"), "machine": info, "shape": shape}
    print(f"bench on {info['cores']} cores ({info['cpu']}), {info['memory_gib']} GiB; gunicorn {shape}", flush=True)

    try:
        with tempfile.TemporaryDirectory(prefix="bench-") as tmp, Baseline(s, shape) as baseline:
            photo = make_jpeg(400, 300)
            photo_path = Path(tmp) / "id-card.jpg"
            photo_path.write_bytes(photo)
            if "report" in wanted:
                results["report"] = measure_report(s, db, args)
            if "chart" in wanted:
                results["chart"] = measure_chart(s, baseline, args)
            if "png" in wanted:
                results["png"] = measure_chart(s, baseline, args, "/api/chart.png")
            if "registration" in wanted or ("latency" in wanted and not args.rate):
                results["registration"] = measure_registration(s, db, baseline, photo_path, args)
            if "latency" in wanted:
                rate = args.rate or results["registration"]["cluster"] / 2
                results["latency"] = measure_latency(s, db, baseline, rate, photo, args)
    finally:
        if args.created_ids and not args.keep_registrations:
            removed = remove_registrations(s, db, args.created_ids)
            print(f"  removed the bench's {removed} registrations and their photos", flush=True)

    print_table(info, results, args)
    print("BENCH_RESULT " + json.dumps(results, default=str))
    lost = any(results.get(k, {}).get(f, 0) for k in ("registration", "latency") for f in ("lost", "failed"))
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())
