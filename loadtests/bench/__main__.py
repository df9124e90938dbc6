"""`./init.sh bench`: the cluster against baselines measured in the same run, printed as ratios.

    python -m loadtests.bench [--runs 3] [--duration 10] [--threads 2] [--connections 32] [--only chart ...]

Runs against the native stack that is already up (`./init.sh`), on 127.0.0.1, and starts its
own baselines next to it (see baseline.py; ports 38001-38080 moved by PORT_OFFSET, state in
var/bench/), stopping them at the end. The figures:

1. chart: `GET /api/chart` with a warm cache (nginx -> middleware) vs the one-line view behind
   the same nginx location and gunicorn layout, max req/s with wrk;
2. registration: `POST /api/registrations` with a 400x300 JPEG (nginx -> 3 replicas) vs the
   one-line view receiving the very same multipart POST through the same layout, both driven by
   the same wrk script and body; every 201 must be stored;
3. report: the whole XLSX report end to end vs openpyxl write-only writing the same sheets, rows
   and values (`loadtests/baseline_report.py`), the time to its first byte, and the replica
   workers' peak memory growth meanwhile;
   during: registrations during a whole report: clients registering one after another and a
   chart reader while the report streams (p99, worst, failures), and the chart's total after it
   against the report's rows;
4. latency: registration p99 at half the measured max rate, from an open-loop generator that
   counts queueing delay from each request's intended send time;
5. png, only when named: the cached chart image (max req/s, as the chart), and 24 images at
   once right after a report's refresh vs the same burst once the new totals are drawn.

Every ratio is the median of the pairs' ratios (cluster then baseline, --runs pairs, each side
warmed up first), printed with their range. Each figure starts once the machine has settled
(nearly idle after the figure before it, machine.settle), and prints the load average and the
share of the machine other processes used meanwhile, and says when the machine was not quiet.
The load generator's CPU (in cores) is printed beside each figure, and flagged when it neared
its limit. The result is a table and one JSON line; the exit status is 0 unless the bench could
not run (2) or a registration was lost or failed (1): a goal missed is reported, not an error.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from loadtests.bench import figures, machine, printing
from loadtests.bench.baseline import BaselineService
from loadtests.bench.data import remove
from loadtests.bench.load import Wrk
from loadtests.workload import make_jpeg
from stack import supervisor
from stack.parts import all_parts
from stack.settings import INSTANCES, load

MEASUREMENTS = ["chart", "registration", "report", "during", "latency"]
EXTRA = ["png"]  # only when asked for (--only png)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m loadtests.bench", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only",
        nargs="+",
        choices=MEASUREMENTS + EXTRA,
        help="run only these measurements (png: the chart image, only when named)",
    )
    parser.add_argument("--runs", type=int, default=5, help="pairs of wrk measurements (median, range)")
    parser.add_argument("--duration", type=float, default=10, help="seconds of each measured wrk run")
    parser.add_argument("--warmup", type=float, default=3, help="seconds of warm-up before each run")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections")
    parser.add_argument("--nice", type=int, default=0, help="run wrk under nice -n N (0: not)")
    parser.add_argument("--report-runs", type=int, default=5, help="pairs of reports (median, range)")
    parser.add_argument("--rows", type=int, default=250_000, help="registrations the report must cover")
    parser.add_argument("--during-clients", type=int, default=6, help="clients registering during a report")
    parser.add_argument("--latency-duration", type=float, default=30, help="seconds of the open-loop run")
    parser.add_argument("--rate", type=float, help="open-loop rate (default: half the measured max)")
    parser.add_argument(
        "--keep-registrations",
        action="store_true",
        help="keep the registrations the bench made (by default they are removed at the end)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    args.bench_names = []
    wanted = set(args.only or MEASUREMENTS)
    if not shutil.which("wrk"):
        print("wrk is not installed (Debian: apt-get install wrk; ./init.sh installs it)", file=sys.stderr)
        return 2
    s = load()
    if not supervisor.stack_is_up(s, ("nginx", "middleware", *(f"instance-{n}" for n in range(1, INSTANCES + 1)))):
        return 2
    parts = {part.name: part for part in all_parts(s)}
    db = s.database()
    shape = {
        "instance": machine.gunicorn_shape(s, parts["instance-1"]),
        "middleware": machine.gunicorn_shape(s, parts["middleware"]),
    }
    info = machine.describe()
    results: dict = {"date": time.strftime("%Y-%m-%d"), "machine": info, "shape": shape}
    print(f"bench on {info['cores']} cores ({info['cpu']}), {info['memory_gib']} GiB; gunicorn {shape}", flush=True)
    wrk = Wrk(threads=args.threads, connections=args.connections, nice=args.nice)

    try:
        with tempfile.TemporaryDirectory(prefix="bench-") as tmp, BaselineService(s, shape) as baseline:
            photo = make_jpeg(400, 300)
            roots = machine.roots(s, list(parts.values())) + machine.roots(baseline.settings, baseline.parts)

            def measure(name: str, figure) -> None:
                print(machine.settle(), flush=True)
                with machine.Quietness(roots) as quiet:
                    results[name] = figure()
                results[name]["machine"] = quiet.result
                print(quiet.line(), flush=True)

            if "report" in wanted:
                measure("report", lambda: figures.report(s, db, args))
            if "during" in wanted:
                measure("during", lambda: figures.during_report(s, db, photo, args))
            if "chart" in wanted:
                measure("chart", lambda: figures.chart(s, baseline, wrk, args))
            if "png" in wanted:
                measure("png", lambda: figures.chart(s, baseline, wrk, args, "/api/chart.png"))
                measure("png_after_refresh", lambda: figures.png_after_refresh(s, args))
            if "registration" in wanted or ("latency" in wanted and not args.rate):
                measure("registration", lambda: figures.registration(s, db, baseline, wrk, photo, Path(tmp), args))
            if "latency" in wanted:
                rate = args.rate or results["registration"]["cluster"] / 2
                measure("latency", lambda: figures.latency(s, db, baseline, rate, photo, args))
    finally:
        if args.bench_names and not args.keep_registrations:
            removed = remove(s, db, args.bench_names)
            print(f"  removed the bench's {removed} registrations and their photos", flush=True)

    print("\n" + printing.header(info, shape, args))
    print(printing.table(results))
    print(printing.machine(results))
    print("BENCH_RESULT " + json.dumps(results, default=str))
    lost = any(results.get(k, {}).get(f, 0) for k in ("registration", "latency", "during") for f in ("lost", "failed"))
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())
