"""Each figure: the cluster and its baseline measured alternately, run after run."""

from __future__ import annotations

import secrets
import string
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
import urllib3

from common.stats import percentile
from loadtests.bench import baseline as baselines
from loadtests.bench import data, verdicts
from loadtests.bench.load import Wrk, open_loop, saturated
from loadtests.bench.machine import worker_pids
from loadtests.bench.memory import PeakMemory
from loadtests.bench.report import download, summary_total
from stack.parts import all_parts
from stack.settings import Settings

SIDES = ("cluster", "baseline")


def new_name(kind: str) -> str:
    """Names must be letters, and a run's names must be its own."""
    return f"Bench {kind} {''.join(secrets.choice(string.ascii_lowercase) for _ in range(6))}"


def registration_form(name: str, photo: bytes, city: str = "Quito") -> tuple[bytes, str]:
    """The multipart form a browser sends: name, city and the photo as a JPEG file."""
    return urllib3.encode_multipart_formdata(
        {"name": name, "city": city, "photo": ("id-card.jpg", photo, "image/jpeg")}
    )


def _line(name: str, side: str, run: int, result: dict, extra: str = "") -> None:
    warn = "  (the generator was near its limit: this figure measures it)" if saturated(result) else ""
    print(
        f"  {name} {side:<8} run {run}: {result['rps']:8.1f} req/s, p99 {result['latency_ms']['p99']:.1f} ms,"
        f" failed {result['failed']}{extra}, wrk {result['generator_cpu']:.2f} cores ({result['threads']}"
        f" threads){warn}",
        flush=True,
    )


def _with_generator(summary: dict, results: dict[str, list[dict]]) -> dict:
    summary["generator_cpu"] = {side: round(max(r["generator_cpu"] for r in runs), 2) for side, runs in results.items()}
    summary["generator_saturated"] = any(saturated(r) for runs in results.values() for r in runs)
    return summary


def chart(s: Settings, base: baselines.BaselineService, wrk: Wrk, args, path: str = "/api/chart") -> dict:
    """Max req/s of the cached chart through nginx and the middleware vs the one-line view."""
    name = "chart" if path == "/api/chart" else "png"
    for _ in range(3):
        if requests.get(f"{s.public_url}/api/chart", timeout=10).json()["cache"] == "hit":
            break
    else:
        raise RuntimeError("the chart cache does not fill (is Redis up?)")
    results: dict[str, list[dict]] = {side: [] for side in SIDES}
    for run in range(1, args.runs + 1):
        for side, url in (("cluster", s.public_url), ("baseline", base.url)):
            wrk.get(f"{url}{path}", args.warmup)
            result = wrk.get(f"{url}{path}", args.duration)
            results[side].append(result)
            _line(name, side, run, result)
    if requests.get(f"{s.public_url}/api/chart", timeout=10).json()["cache"] != "hit":
        print("  (the chart cache expired during the runs: some answers came from the database)", flush=True)
    summary = verdicts.summarize(name, [r["rps"] for r in results["cluster"]], [r["rps"] for r in results["baseline"]])
    summary["failed"] = sum(r["failed"] for r in results["cluster"])
    return _with_generator(summary, results)


def png_after_refresh(s: Settings, args, concurrent: int = 24) -> dict:
    """The chart image as page views meet it right after a report's refresh, when none has been
    drawn for the new totals: `concurrent` requests at once, the time until all are answered,
    against the same burst on totals already drawn (each round: a one-city report, then both)."""
    city = requests.get(f"{s.public_url}/api/chart", timeout=30).json()["cities"][0]["city"]
    auth = ("admin", s.secrets["ADMIN_PASSWORD"])
    image = f"{s.public_url}/api/chart.png"

    def burst() -> float:
        started = time.perf_counter()
        with ThreadPoolExecutor(concurrent) as pool:
            answers = list(pool.map(lambda _: requests.get(image, timeout=60), range(concurrent)))
        if {a.status_code for a in answers} != {200}:
            raise RuntimeError(f"the chart image answered {sorted({a.status_code for a in answers})}")
        return (time.perf_counter() - started) * 1000

    fresh, drawn = [], []
    for run in range(1, args.runs + 1):
        report = requests.get(f"{s.public_url}/api/reports/cities.xlsx", params={"city": city}, auth=auth, timeout=120)
        if report.status_code != 200:
            raise RuntimeError(f"the report answered {report.status_code}")
        fresh.append(burst())
        drawn.append(burst())
        print(f"  png burst run {run}: {concurrent} after a refresh {fresh[-1]:.0f} ms, drawn {drawn[-1]:.0f} ms")
    summary = verdicts.summarize("png", fresh, drawn)
    summary["concurrent"] = concurrent
    return summary


def registration(s: Settings, db, base: baselines.BaselineService, wrk: Wrk, photo: bytes, tmp: Path, args) -> dict:
    """Max registrations/s (400x300 JPEG) vs the one-line view receiving the very same POST:
    the same wrk script, the same bytes. Every 201 must be stored."""
    name = new_name("max")
    args.bench_names.append(name)
    body, content_type = registration_form(name, photo)
    form = tmp / "registration.form"
    form.write_bytes(body)
    results: dict[str, list[dict]] = {side: [] for side in SIDES}
    acknowledged: list[str] = []
    for run in range(1, args.runs + 1):
        for side, url in (("cluster", s.public_url), ("baseline", base.url)):
            for phase, seconds in (("warm-up", args.warmup), ("run", args.duration)):
                result = wrk.post(f"{url}/api/registrations", seconds, form, content_type)
                if side == "cluster":
                    acknowledged.extend(result["ids"])
                if phase == "run":
                    results[side].append(result)
                    _line("registration", side, run, result, f", 201 {result['created']}")
    summary = verdicts.summarize(
        "registration", [r["rps"] for r in results["cluster"]], [r["rps"] for r in results["baseline"]]
    )
    lost = verdicts.lost_registrations(acknowledged, data.stored(db, acknowledged))
    summary.update(
        failed=sum(r["failed"] for r in results["cluster"]),
        acknowledged=len(acknowledged),
        stored=len(acknowledged) - len(lost),
        lost=len(lost),
    )
    summary["met"] = bool(summary["met"]) and summary["failed"] == 0 and not lost
    return _with_generator(summary, results)


def report(s: Settings, db, args) -> dict:
    """The whole XLSX report end to end vs openpyxl alone writing the same workbook; the time to
    its first byte; the replica workers' peak memory growth meanwhile."""
    rows = data.ensure_rows(s, db, args.rows)
    replicas = [part for part in all_parts(s) if part.name.startswith("instance-")]
    cluster, first_byte, memory, baseline = [], [], [], []
    for run in range(args.report_runs + 1):
        pids = [pid for part in replicas for pid in worker_pids(s, part)]
        with PeakMemory(pids) as peak:
            got = download(s)
        memory.append(peak.growth_mb())  # the warm-up too: a worker's first report may grow it most
        if run == 0:
            print(
                f"  report warm-up: {got['seconds']:.2f} s, first byte {got['first_byte_s']:.2f} s, peak growth"
                f" {peak.growth_mb():.1f} MB",
                flush=True,
            )
            continue
        base = baselines.report(s)
        cluster.append(got["seconds"])
        first_byte.append(got["first_byte_s"])
        baseline.append(base["seconds"])
        print(
            f"  report run {run}: cluster {got['seconds']:.2f} s (first byte {got['first_byte_s']:.2f} s,"
            f" {got['bytes'] / 2**20:.1f} MiB, {got['served_by']}), peak growth {peak.growth_mb():.1f} MB"
            f" [{peak.method}]; openpyxl alone {base['seconds']:.2f} s ({base['rows']} rows)",
            flush=True,
        )
    summary = verdicts.summarize("report", cluster, baseline)
    first = verdicts.median(first_byte)
    summary.update(
        rows=rows,
        first_byte_s=first,
        first_byte_runs=[round(v, 3) for v in first_byte],
        first_byte_goal=verdicts.goal_text("first_byte_s", " s"),
        first_byte_met=verdicts.met("first_byte_s", first),
        memory_mb=max(memory),
        memory_goal=verdicts.goal_text("report_memory_mb", " MB"),
        memory_met=verdicts.met("report_memory_mb", max(memory)),
    )
    return summary


def latency(s: Settings, db, base: baselines.BaselineService, rate: float, photo: bytes, args) -> dict:
    """Registration latency at a fixed rate (open loop), both sides."""
    results = {}
    for side, url in (("cluster", s.public_url), ("baseline", base.url)):
        name = new_name("open")
        args.bench_names.append(name)
        result = open_loop(
            f"{url}/api/registrations", rate, args.latency_duration, args.warmup, *registration_form(name, photo)
        )
        if side == "cluster":
            result["stored"] = len(data.stored(db, result["ids"]))
        results[side] = result
        print(
            f"  latency {side:<8} at {rate:.1f} req/s: p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f}"
            f" ms, max {result['max_ms']:.1f} ms, failed {result['failed']} of {result['requests']}"
            + (f", acknowledged {result['created']}, stored {result['stored']}" if side == "cluster" else "")
            + f", generator {result['generator_cpu']:.2f} cores",
            flush=True,
        )
    cluster, other = results["cluster"], results["baseline"]
    return {
        "rate": rate,
        "cluster": cluster["p99_ms"],
        "baseline": other["p99_ms"],
        "ratio": verdicts.ratio(cluster["p99_ms"], other["p99_ms"]),
        "cluster_p50": cluster["p50_ms"],
        "baseline_p50": other["p50_ms"],
        "failed": cluster["failed"],
        "acknowledged": cluster["created"],
        "stored": cluster["stored"],
        "lost": cluster["created"] - cluster["stored"],
        "generator_cpu": {side: round(r["generator_cpu"], 2) for side, r in results.items()},
    }


def _report_with_traffic(s: Settings, body: bytes, content_type: str, clients: int):
    """One whole report downloaded while `clients` register one after another and one reader
    reads the chart every 0.1 s: (the download, [(seconds, status, id)], [chart read ms])."""
    url = f"{s.public_url}/api/registrations"
    stop = threading.Event()
    sent: list[tuple[float, int, str | None]] = []
    read: list[float] = []

    def client():
        http = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=5, read=30))
        while not stop.is_set():
            started = time.perf_counter()
            try:
                answer = http.request("POST", url, body=body, headers={"Content-Type": content_type})
                status, stored = answer.status, answer.json().get("id") if answer.status == 201 else None
            except urllib3.exceptions.HTTPError:
                status, stored = -1, None
            sent.append((time.perf_counter() - started, status, stored))

    def chart_reader():
        while not stop.is_set():
            started = time.perf_counter()
            requests.get(f"{s.public_url}/api/chart", timeout=30)
            read.append((time.perf_counter() - started) * 1000)
            stop.wait(0.1)

    workers = [threading.Thread(target=client) for _ in range(clients)]
    workers.append(threading.Thread(target=chart_reader))
    for worker in workers:
        worker.start()
    started = time.perf_counter()
    try:
        got = download(s, keep=True)
    except (urllib3.exceptions.HTTPError, RuntimeError) as error:  # a report that broke is a result too
        got = {"seconds": time.perf_counter() - started, "error": str(error)[:200]}
    finally:
        stop.set()
        for worker in workers:
            worker.join()
    return got, sent, read


def during_report(s: Settings, db, photo: bytes, args) -> dict:
    """Registrations during a whole report: `args.during_clients` clients registering one after
    another and a chart reader, for as long as a whole report streams; then whether the chart's
    total equals the report's own rows (the report refreshes it from its counts). Each run is a
    new report; the first is a warm-up."""
    rows = data.ensure_rows(s, db, args.rows)
    latencies: list[float] = []
    chart_ms: list[float] = []
    failed: dict[str, int] = {}
    acknowledged: list[str] = []
    matches, runs, broken = [], [], 0
    for run in range(args.report_runs + 1):
        name = new_name("during")
        args.bench_names.append(name)
        body, content_type = registration_form(name, photo)
        got, sent, read = _report_with_traffic(s, body, content_type, args.during_clients)
        in_report = summary_total(got.pop("body")) if "body" in got else None
        chart = requests.get(f"{s.public_url}/api/chart", timeout=30).json()
        if in_report is None:
            print(f"  the report broke after {got['seconds']:.1f} s: {got['error']}", flush=True)
        times = [seconds * 1000 for seconds, _, _ in sent]
        errors = [status for _, status, _ in sent if status != 201]
        print(
            f"  during report {'warm-up' if run == 0 else f'run {run}'}: report {got['seconds']:.2f} s,"
            f" {len(sent)} registrations p99 {percentile(times, 99):.0f} ms, worst {max(times, default=0):.0f} ms,"
            f" failed {len(errors)}; chart reads worst {max(read, default=0):.0f} ms; report rows {in_report},"
            f" chart total {chart['total']} ({chart['cache']})",
            flush=True,
        )
        acknowledged.extend(stored for _, status, stored in sent if stored)
        if run == 0:
            continue
        latencies.extend(times)
        chart_ms.extend(read)
        for status in errors:
            failed[str(status)] = failed.get(str(status), 0) + 1
        matches.append(chart["total"] == in_report)
        runs.append({"report_s": round(got["seconds"], 2), "registrations": len(sent), "report_rows": in_report})
        broken += in_report is None
    p99, worst = percentile(latencies, 99), max(latencies, default=float("nan"))
    lost = verdicts.lost_registrations(acknowledged, data.stored(db, acknowledged))
    failures = sum(failed.values())
    return {
        "rows": rows,
        "clients": args.during_clients,
        "registrations": len(latencies),
        "p50_ms": percentile(latencies, 50),
        "p99_ms": p99,
        "worst_ms": worst,
        "failed": failures,
        "failed_by_status": failed,
        "lost": len(lost),
        "chart_worst_ms": max(chart_ms, default=float("nan")),
        "chart_equals_report": all(matches),
        "reports_broken": broken,
        "runs": runs,
        "goal": f"p99 {verdicts.goal_text('during_report_p99_ms', ' ms')}, worst"
        f" {verdicts.goal_text('during_report_worst_ms', ' ms')}, 0 failed, chart = report rows",
        "met": verdicts.met("during_report_p99_ms", p99)
        and verdicts.met("during_report_worst_ms", worst)
        and failures == 0
        and not lost
        and not broken
        and all(matches),
    }
