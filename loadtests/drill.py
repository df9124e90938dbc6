"""`./init.sh drill`: lose one machine under steady load, bring it back, measure what it cost.

    python -m loadtests.drill [--victim instance-2] [--kill | --freeze SECONDS] [--users 30]
                              [--warmup 30] [--outage 45]

Under a steady locust load: stop the victim (gracefully; with --kill by SIGKILL to its process
group, a machine that dies, which supervisord starts again by itself; with --freeze by SIGSTOP
for SECONDS, then SIGCONT, a machine that hangs), keep the load running, start (or thaw) the
victim again, stop the load. Registrants are
careful clients (an Idempotency-Key, retries with the same key). The last line printed is one
JSON object with what happened (result.json beside a picture of the run, timeline.png, and a
post-mortem draft, postmortem.md); the exit status is non-zero when a registration failed, was
lost, stored twice or stored without its client ever hearing so (a ghost), a request failed in
a way the system does not document for that victim, data was half-stored, or an alert email
was late (stop and kill only: a short freeze is meant to pass unnoticed).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from common import records
from common.stats import percentile
from loadtests import postmortem, timeline_plot
from loadtests.bench import data
from loadtests.timeline_plot import Fault, MailEvent, is_registration
from mailsink.watch import MailWatch, alert_mail
from stack import supervisor
from stack.parts import all_parts
from stack.settings import PAIR, ROOT, Settings, load

# What on-call is promised: the firing email within 60 s of the stop, resolved within 90 s;
# for a member of the monitoring's own pairs, seen by its twin, within 120 s
# (prometheus/rules/monitoring.yml has the arithmetic).
FIRING_LIMIT_S = 60
MONITORING_FIRING_LIMIT_S = 120
RESOLVED_LIMIT_S = 90
# A killed victim is back within seconds (supervisord), too soon for its *Down alert; the news
# is this one (prometheus/rules/restarts.yml), which resolves only 2 minutes after the death.
RESTART_ALERT = "PartRestarted"
BACK_LIMIT_S = 60  # the database's start, under load, on a busy machine

REGISTRATION = timeline_plot.REGISTRATION


def _chart_or_report(row: dict) -> bool:
    return row["name"].startswith(("/api/chart", "/api/reports"))


def _report_cut_short(row: dict) -> bool:
    """A report already streaming when its replica or the database went away ends early: no
    status, the transfer breaks (the README's Reports paragraph); the client asks again."""
    return row["status"] == 0 and row["name"].startswith("/api/reports")


# victim: (the alert that must name it, the refusals its loss is documented to cause)
VICTIMS = {
    **{f"instance-{n}": ("ReplicaDown", _report_cut_short) for n in (1, 2, 3)},
    # one middleware: chart and report answer nginx's JSON 503 until it is back
    "middleware": ("MiddlewareDown", lambda row: _chart_or_report(row) and row["status"] == 503),
    # a cache: the chart is served from the database meanwhile; nothing may fail
    "redis": ("RedisDown", lambda row: False),
    # registrations are refused with a clear 503 and nothing is stored; everything else works
    "photo-store": (
        "PhotoStoreDown",
        lambda row: (
            row["name"].startswith(REGISTRATION) and row["status"] == 503 and row["code"] == "photo_store_unavailable"
        ),
    ),
    # registrations answer 503 (careful clients retry); a report or a chart miss needs it too
    "mongodb": (
        "MongoDBDown",
        lambda row: (
            (row["status"] in (502, 503, 504) and (row["name"].startswith(REGISTRATION) or _chart_or_report(row)))
            or _report_cut_short(row)
        ),
    ),
    # the monitoring watches itself: nothing the clients do depends on it, so nothing may fail
    **{
        f"{pair}-{n}": (alert, lambda row: False)
        for pair, alert in (("prometheus", "PrometheusDown"), ("alertmanager", "AlertmanagerDown"))
        for n in PAIR
    },
}
# a pair's own name is its first member
ALIASES = {"prometheus": "prometheus-1", "alertmanager": "alertmanager-1"}


def firing_limit_s(victim: str) -> float:
    return MONITORING_FIRING_LIMIT_S if victim.startswith(tuple(ALIASES)) else FIRING_LIMIT_S


def p95(values: list[float]) -> float | None:
    """The nearest-rank 95th percentile (common.stats), None rather than NaN for no values: JSON."""
    return percentile(values, 95) if values else None


def json_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def start_load(s: Settings, out: Path, users: int, spawn_rate: float) -> subprocess.Popen:
    env = {
        **os.environ,
        "ADMIN_PASSWORD": s.secrets["ADMIN_PASSWORD"],
        "LOADTEST_ACK_FILE": str(out / "acknowledged.txt"),
        "LOADTEST_REQUESTS_FILE": str(out / "requests.jsonl"),
        "LOADTEST_REGISTRATIONS_FILE": str(out / "registrations.jsonl"),
    }
    command = [
        sys.executable,
        "-m",
        "loadtests.run",
        "--users",
        str(users),
        "--spawn-rate",
        str(spawn_rate),
        "--duration",
        "2h",
        "--p95-ms",
        "0",
        "--host",
        s.public_url,
        "--out",
        str(out / "locust"),
    ]
    log = open(out / "load.log", "w")  # noqa: SIM115 - the load runs in the background; closed in stop_load
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    process.log = log
    return process


def stop_load(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGINT)  # locust writes its reports on Ctrl-C
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    process.log.close()


def integrity(s: Settings, db, since: datetime) -> dict:
    """Nothing half-stored: every new record's photo exists, every new photo has its record."""
    photo_dir = s.data_dir / "photos"
    if s.get("CLOUDINARY_URL") or not photo_dir.exists():
        return {"records_without_photo": None, "orphan_photos": None}
    new_records = list(db[records.REGISTRATIONS].find({"created_at": {"$gte": since}}, {"photo_key": 1}))
    keys = {doc["photo_key"] for doc in new_records}
    without_photo = sum(1 for key in keys if not (photo_dir / key).is_file())
    cutoff = since.timestamp()
    new_photos = {
        str(p.relative_to(photo_dir)) for p in photo_dir.rglob("*") if p.is_file() and p.stat().st_mtime >= cutoff
    }
    referenced = (
        {
            doc["photo_key"]
            for doc in db[records.REGISTRATIONS].find({"photo_key": {"$in": sorted(new_photos)}}, {"photo_key": 1})
        }
        if new_photos
        else set()
    )
    return {"records_without_photo": without_photo, "orphan_photos": len(new_photos - referenced)}


def registration_outcomes(db, lines: list[dict], since: datetime) -> dict:
    """What the careful clients' registrations came to, from their log and the database.

    failed: ended without an id; first_try_failed: the first attempt was not a 201 (what a
    client without retries would have seen); duplicates: records beyond the first with the same
    request (each registration's photo is unique, so its request hash is); ghosts: records that
    no client heard of (stored, never acknowledged; a registration the run cut short mid-retry is
    not the service's ghost and is left out).
    """
    ended = [line for line in lines if line["ended"]]
    acknowledged = {line["id"] for line in lines if line["id"]}
    cut_short = {records.registration_id(line["key"]) for line in lines if not line["ended"]}
    groups: dict[str, set[str]] = {}
    for doc in db[records.REGISTRATIONS].find({"created_at": {"$gte": since}}, {"request_hash": 1}):
        if doc.get("request_hash"):
            groups.setdefault(doc["request_hash"], set()).add(doc["_id"])
    duplicates = sum(len(ids) - 1 for ids in groups.values())
    ghosts = sum(1 for ids in groups.values() if not ids & acknowledged and not ids & cut_short)
    return {
        "registrations": len(ended),
        "failed": sum(1 for line in ended if not line["id"]),
        "first_try_failed": sum(1 for line in ended if line["statuses"][:1] != [201]),
        "retried": sum(1 for line in ended if len(line["statuses"]) > 1),
        "duplicates": duplicates,
        "ghosts": ghosts,
        "worst_total_ms": max((line["ms"] for line in ended), default=None),
    }


def run(args: argparse.Namespace) -> int:
    s = load()
    if not supervisor.stack_is_up(s):
        return 2
    parts = {part.name: part for part in all_parts(s)}
    args.victim = ALIASES.get(args.victim, args.victim)
    alert, documented = VICTIMS[args.victim]
    firing_limit = firing_limit_s(args.victim)
    if args.kill:
        alert = RESTART_ALERT
    victim = parts[args.victim]
    out = args.out or s.var / "drills" / datetime.now(UTC).strftime(f"%Y%m%dT%H%M%SZ-{args.victim}")
    out.mkdir(parents=True, exist_ok=True)
    db = s.database()
    began = datetime.now(UTC)
    mail = MailWatch(s.mail_dir)

    mails: list[MailEvent] = []

    def wait_mail(status: str, timeout: float) -> float | None:
        started = time.monotonic()
        found = mail.wait(alert_mail(status, alert, args.victim), timeout=timeout)
        if found is None:
            return None
        mails.append(MailEvent(time.time(), status, f"{alert} {args.victim}"))
        return time.monotonic() - started

    def say(text: str) -> None:
        print(f"[{time.monotonic() - t0:6.1f}s] {text}", flush=True)

    t0 = time.monotonic()
    load_process = start_load(s, out, args.users, args.spawn_rate)
    alert_s = resolved_s = back_s = None
    try:
        say(f"load: {args.users} users; warming up {args.warmup:.0f}s")
        time.sleep(args.warmup)
        if load_process.poll() is not None:
            raise RuntimeError(f"the load stopped early; see {out / 'load.log'}")
        stopped_at = time.time()
        if args.freeze:
            supervisor.freeze(s, victim, True)
            say(f"froze {args.victim} (SIGSTOP) for {args.freeze:.0f}s")
            time.sleep(args.freeze)
            restarted_at = time.time()
            supervisor.freeze(s, victim, False)
            say(f"thawed {args.victim} (SIGCONT)")
        elif args.kill:
            supervisor.kill(s, victim)
            say(f"killed {args.victim} (SIGKILL to its process group); supervisord starts it again")
            deadline = time.monotonic() + BACK_LIMIT_S
            while not (supervisor.running_pid(s, victim) and supervisor.healthy(victim)):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"supervisord did not bring {args.victim} back within {BACK_LIMIT_S}s")
                time.sleep(0.1)
            restarted_at = time.time()
            back_s = restarted_at - stopped_at
            say(f"{args.victim} back after {back_s:.1f}s; waiting for the {alert} email")
            alert_s = wait_mail("FIRING", timeout=firing_limit * 1.5)
            if alert_s is not None:
                alert_s += back_s  # from the death, like the others
            say(f"firing email after {alert_s:.1f}s" if alert_s is not None else "no firing email")
        else:
            supervisor.stop(s, victim)
            say(f"stopped {args.victim}; waiting for the {alert} email")
            alert_s = wait_mail("FIRING", timeout=max(args.outage, firing_limit * 1.5))
            say(f"firing email after {alert_s:.1f}s" if alert_s is not None else "no firing email")
            remaining = args.outage - (time.time() - stopped_at)
            if remaining > 0:
                time.sleep(remaining)
            restarted_at = time.time()
            supervisor.start(s, victim)
            say(f"restarted {args.victim}; waiting for the resolved email")
            resolved_s = wait_mail("RESOLVED", timeout=RESOLVED_LIMIT_S * 1.5)
            say(f"resolved email after {resolved_s:.1f}s" if resolved_s is not None else "no resolved email")
        time.sleep(args.settle)
        ended_at = time.time()
    finally:
        stop_load(load_process)
        if args.freeze:
            supervisor.freeze(s, victim, False)
        if not supervisor.running_pid(s, victim):
            supervisor.start(s, victim)
    say("load stopped")

    rows = json_lines(out / "requests.jsonl")
    # registrations are judged as a careful client ends them (below), not attempt by attempt
    attempts, others = [], []
    for row in rows:
        (attempts if is_registration(row) else others).append(row)
    failed = [row for row in others if not row["ok"] and not documented(row)]
    refused = [row for row in others if not row["ok"] and documented(row)]
    before = [row["ms"] for row in rows if row["t"] < stopped_at]
    during = [row["ms"] for row in rows if stopped_at <= row["t"] < restarted_at]
    after = [row for row in others if restarted_at + 10 <= row["t"] <= ended_at]
    acknowledged = (
        sorted(set((out / "acknowledged.txt").read_text().split())) if (out / "acknowledged.txt").exists() else []
    )
    lines = json_lines(out / "registrations.jsonl")
    stored = len(data.stored(db, acknowledged))
    result = {
        "victim": args.victim,
        "fault": f"freeze {args.freeze:g}s" if args.freeze else "kill" if args.kill else "stop",
        **registration_outcomes(db, lines, began),
        "failed_requests": len(failed),
        "requests": len(rows),
        "acknowledged": len(acknowledged),
        "stored": stored,
        "lost": len(acknowledged) - stored,
        "worst_ms": max((row["ms"] for row in attempts), default=None),
        "back_s": None if back_s is None else round(back_s, 1),
        "alert_email_s": None if alert_s is None else round(alert_s, 1),
        "resolved_email_s": None if resolved_s is None else round(resolved_s, 1),
        "p95_ms_before": p95(before),
        "p95_ms_during": p95(during),
        "refused_as_documented": len(refused),
        "chart_served_during": sum(
            1
            for row in rows
            if stopped_at <= row["t"] < restarted_at and row["name"].startswith("/api/chart") and row["ok"]
        ),
        "recovered": bool(after) and all(row["ok"] for row in after),
        **integrity(s, db, began),
    }
    (out / "result.json").write_text(json.dumps(result, indent=2))
    faults = [Fault(f"{result['fault']} {args.victim}", stopped_at, restarted_at)]
    title = f"drill, {result['fault']} {args.victim}, {began:%Y-%m-%d %H:%M} UTC"
    timeline_plot.plot(rows, faults, mails, out / "timeline.png", title)
    (out / "postmortem.md").write_text(
        postmortem.draft(title, f"Drafted by ./init.sh drill from {out}.", rows, faults, mails, result)
    )
    problems = []
    if result["lost"]:
        problems.append(f"{result['lost']} acknowledged registrations are not stored")
    if result["failed"]:
        problems.append(f"{result['failed']} registrations failed")
    for what in ("duplicates", "ghosts"):
        if result[what]:
            problems.append(f"{result[what]} {what} stored")
    if failed:
        kinds = sorted({f"{row['name']} -> {row['status']} {row['code'] or ''}".strip() for row in failed})
        problems.append(f"{len(failed)} requests failed: {'; '.join(kinds[:5])}")
    if not args.freeze and (alert_s is None or alert_s > firing_limit):
        problems.append(f"the firing email did not arrive within {firing_limit}s")
    if not args.freeze and not args.kill and (resolved_s is None or resolved_s > RESOLVED_LIMIT_S):
        problems.append(f"the resolved email did not arrive within {RESOLVED_LIMIT_S}s")
    if result["records_without_photo"] or result["orphan_photos"]:
        problems.append("half-stored registrations (records without photo or photos without record)")
    if not result["recovered"]:
        problems.append("requests still failed after the victim was back")
    return verdict(problems, out, result)


def verdict(problems: list[str], out: Path, result: dict) -> int:
    """What a drill or a chaos run prints last: each problem, where its files are, then its one
    JSON line; the exit status."""
    for problem in problems:
        print(f"FAIL: {problem}")
    print(f"details: {out}")
    print(json.dumps(result))
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="./init.sh drill", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--victim",
        default="instance-2",
        choices=sorted([*VICTIMS, *ALIASES]),
        help="the part to stop; prometheus and alertmanager name the first of their pair (default: %(default)s)",
    )
    fault = parser.add_mutually_exclusive_group()
    fault.add_argument(
        "--kill",
        action="store_true",
        help="SIGKILL the victim's process group (a machine that dies; supervisord restarts it)",
    )
    fault.add_argument(
        "--freeze",
        type=float,
        metavar="SECONDS",
        help="SIGSTOP the victim's process group for SECONDS, then SIGCONT (a machine that hangs)",
    )
    parser.add_argument("--users", type=int, default=30, help="locust users (default: %(default)s)")
    parser.add_argument("--spawn-rate", type=float, default=10, help="users started per second (default: %(default)s)")
    parser.add_argument(
        "--warmup", type=float, default=30, help="seconds of load before the stop (default: %(default)s)"
    )
    parser.add_argument(
        "--outage",
        type=float,
        default=45,
        help="seconds the victim stays down at least, longer until its alert email (default: %(default)s)",
    )
    parser.add_argument(
        "--settle", type=float, default=15, help="seconds of load after the resolved email (default: %(default)s)"
    )
    parser.add_argument("--out", type=Path, help="folder for the drill's files (default: var/drills/<time>-<victim>)")
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
