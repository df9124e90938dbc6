"""Run the locust load test headless, write CSV/HTML reports, judge the result.

    python -m loadtests.run [--users N] [--spawn-rate R] [--duration 1m] [--host URL]
                            [--p95-ms MS] [--processes P] [--out DIR] [--ui]
                            [-- <extra locust arguments>]

Exit status: 0 when every request succeeded and the aggregated p95 is within the
threshold; 1 otherwise (or when locust itself failed); 130 when interrupted (Ctrl-C)
before the end without a failure. With --ui, locust's own status.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from loadtests.workload import REPO_ROOT, admin_password

LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"
CSV_PREFIX = "locust"  # -> locust_stats.csv, locust_failures.csv, ...
HTML_NAME = "report.html"
STATS_JSON = "stats.json"  # locust adds ".json" to --json-file
PERCENTILES = {"p50": 0.5, "p95": 0.95, "p99": 0.99}
TIMESPAN = re.compile(r"^\d+$|^(?=\d)(\d+h)?(\d+m)?(\d+s)?$")


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    default_host = f"http://127.0.0.1:{os.environ.get('PUBLIC_PORT', '8080')}"
    parser = argparse.ArgumentParser(
        prog="python -m loadtests.run",
        usage="%(prog)s [options] [-- <extra locust arguments>]",
        description="Load-test the public entrypoint with locust (headless by default).",
        epilog=(
            "Arguments after '--' go to locust unchanged (e.g. '-- --exclude-tags bad'). "
            "Admin report calls authenticate with ADMIN_PASSWORD from the environment, "
            "else from the repository's .env. Set LOADTEST_ACK_FILE to collect the id of "
            "every acknowledged registration. Exit status: 0 pass, 1 fail, 130 interrupted."
        ),
        allow_abbrev=False,
    )
    add = parser.add_argument
    add(
        "--users",
        "-u",
        type=int,
        default=50,
        help="peak number of simulated users, mixed 6 visitors : 3 registrants : 1 admin (default: %(default)s)",
    )
    add(
        "--spawn-rate",
        "-r",
        type=float,
        default=5,
        help="users started per second until --users is reached (default: %(default)s)",
    )
    add(
        "--duration",
        "-t",
        default="1m",
        help="headless run time in locust's format: 90, 90s, 5m, 1h30m (default: %(default)s)",
    )
    add(
        "--host",
        default=default_host,
        help="base URL of the public nginx; the port comes from $PUBLIC_PORT, else 8080 (default: %(default)s)",
    )
    add(
        "--p95-ms",
        type=float,
        default=1000,
        help="fail when the aggregated 95th percentile response time exceeds this many "
        "milliseconds; 0 disables the check (default: %(default)g)",
    )
    add(
        "--processes",
        type=int,
        default=1,
        help="locust processes generating load, -1 for one per CPU; one process "
        "drives a few hundred users (default: %(default)s)",
    )
    add(
        "--out",
        type=Path,
        default=None,
        help="report directory (default: var/loadtests/<UTC timestamp>/ in the repository)",
    )
    add(
        "--ui",
        action="store_true",
        help="start locust's web UI on 127.0.0.1:WEB_PORT instead of running headless; "
        "--users/--spawn-rate prefill its form; no pass/fail verdict",
    )
    add("--web-port", type=int, default=8089, help="web UI port (default: %(default)s)")
    argv = sys.argv[1:] if argv is None else argv
    extra: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1 :]
    args = parser.parse_args(argv)
    if args.users < 1 or args.spawn_rate <= 0 or not (args.processes == -1 or args.processes >= 1):
        parser.error("--users must be >= 1, --spawn-rate > 0, --processes -1 or >= 1")
    if not TIMESPAN.match(args.duration):
        parser.error(f"--duration {args.duration!r}: use e.g. 90, 90s, 5m or 1h30m")
    if args.out is None:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        args.out = REPO_ROOT / "var" / "loadtests" / stamp
    return args, extra


def locust_command(args: argparse.Namespace, extra: list[str]) -> list[str]:
    locust = Path(sys.executable).with_name("locust")  # the venv's own locust
    cmd = [
        str(locust),
        "-f",
        str(LOCUSTFILE),
        "--host",
        args.host,
        "-u",
        str(args.users),
        "-r",
        str(args.spawn_rate),
        "--csv",
        str(args.out / CSV_PREFIX),
        "--html",
        str(args.out / HTML_NAME),
        "--json-file",
        str(args.out / Path(STATS_JSON).stem),
        "--logfile",
        str(args.out / "locust.log"),
    ]
    if args.processes != 1:
        cmd += ["--processes", str(args.processes)]
    if args.ui:
        cmd += ["--web-host", "127.0.0.1", "--web-port", str(args.web_port)]
    else:
        cmd += [
            "--headless",
            "--only-summary",
            "-t",
            args.duration,
            "--stop-timeout",
            "10",
        ]
    return cmd + extra


def read_stats(out: Path) -> list[dict]:
    """Locust's final per-request statistics (stats.json); empty when missing.

    The CSV files are snapshots written every second and can miss the last requests;
    the JSON is written once at shutdown, so the verdict is computed from it.
    """
    try:
        return json.loads((out / STATS_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []


def percentile(response_times: dict[int, int], count: int, fraction: float) -> int:
    """Locust's own percentile over its rounded response-time histogram (ms)."""
    below = int(count * fraction)
    seen = 0
    for ms in sorted(response_times, reverse=True):
        seen += response_times[ms]
        if count - seen <= below:
            return ms
    return 0


def summarize(entries: list[dict]) -> tuple[list[dict], dict]:
    """One row per request name and the aggregated row: count, fail, p50/p95/p99."""

    def row(name: str, items: list[dict]) -> dict:
        times: dict[int, int] = {}
        for e in items:
            for ms, n in e["response_times"].items():  # JSON made the keys strings
                times[int(ms)] = times.get(int(ms), 0) + n
        count = sum(e["num_requests"] for e in items)
        start = min((e["start_time"] for e in items), default=0)
        end = max((e["last_request_timestamp"] or 0 for e in items), default=0)
        return {
            "name": name,
            "count": count,
            "fail": sum(e["num_failures"] for e in items),
            **{p: percentile(times, count, f) for p, f in PERCENTILES.items()},
            "rps": count / (end - start) if end > start else 0.0,
        }

    rows = [row(f"{e['method']} {e['name']}", [e]) for e in entries]
    return sorted(rows, key=lambda r: r["name"]), row("Aggregated", entries)


def judge(total: dict | None, p95_ms: float) -> list[str]:
    """Reasons the run failed; empty when it passed."""
    if total is None:
        return ["locust wrote no statistics (did it start? see locust.log)"]
    reasons = []
    if total["count"] == 0:
        reasons.append("no request was made")
    if total["fail"]:
        reasons.append(f"{total['fail']} of {total['count']} requests failed")
    if p95_ms > 0 and total["p95"] > p95_ms:
        reasons.append(f"aggregated p95 {total['p95']} ms exceeds {p95_ms:g} ms")
    return reasons


def print_summary(rows: list[dict], total: dict, out: Path) -> None:
    print(f"\n{'request':<50} {'count':>6} {'fail':>5} {'p50':>6} {'p95':>6} {'p99':>6}")
    for r in [*rows, total]:
        print(f"{r['name'][:50]:<50} {r['count']:>6} {r['fail']:>5} {r['p50']:>6} {r['p95']:>6} {r['p99']:>6}")
    print(f"{'':<50} {total['rps']:>6.1f} requests/s; times in ms")
    try:
        with open(out / f"{CSV_PREFIX}_failures.csv", newline="", encoding="utf-8") as f:
            failures = list(csv.DictReader(f))
    except OSError:
        failures = []
    if failures:
        print("\nfailures, most frequent first (full list in locust.log):")
        for f in sorted(failures, key=lambda f: -int(f["Occurrences"]))[:10]:
            print(f"  {f['Occurrences']:>5} x {f['Method']} {f['Name']}: {f['Error'][:160]}")


def main(argv: list[str] | None = None) -> int:
    # Ctrl-C (SIGINT) is how a run is stopped with its reports written (the drill does it too).
    # A process started with SIGINT ignored (a background job of a shell without job control,
    # as some CI runners start scripts) would hand that on to locust, which would then run until
    # killed: with Python's own handler here, locust starts with the default again.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    args, extra = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    password = admin_password()
    if password:
        env["ADMIN_PASSWORD"] = password
    else:
        print(
            "warning: ADMIN_PASSWORD not set and not in .env; admin reports will fail",
            file=sys.stderr,
        )
    cmd = locust_command(args, extra)
    mode = f"web UI on http://127.0.0.1:{args.web_port}" if args.ui else args.duration
    print(f"locust: {args.users} users, +{args.spawn_rate:g}/s, {mode} -> {args.host}")
    print(f"reports: {args.out}")
    proc = subprocess.Popen(cmd, env=env)
    interrupted = False
    try:
        rc = proc.wait()
    except KeyboardInterrupt:  # locust got the SIGINT too: let it write its reports
        interrupted = True
        rc = proc.wait()
    if args.ui:
        return rc
    entries = read_stats(args.out)
    total = None
    if entries:
        rows, total = summarize(entries)
        print_summary(rows, total, args.out)
    reasons = judge(total, args.p95_ms)
    if rc != 0 and not reasons:
        reasons.append(f"locust exited with status {rc} (see {args.out / 'locust.log'})")
    print(f"\nreport: {args.out / HTML_NAME}")
    if reasons:
        print("FAIL: " + "; ".join(reasons))
        return 1
    if interrupted:
        print("INTERRUPTED: no failure so far, but the run did not last --duration")
        return 130
    print(f"PASS: no failed request, aggregated p95 {total['p95']} ms", end="")
    print(f" (limit {args.p95_ms:g} ms)" if args.p95_ms > 0 else " (no limit)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
