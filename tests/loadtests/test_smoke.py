"""The load kit against the real stack: a short headless locust run must pass with zero failures."""

import csv
import os
import signal
import subprocess
import sys
from pathlib import Path

from polling import wait_for

ROOT = Path(__file__).resolve().parents[2]


def test_short_load_run_passes_with_no_failed_request(stack, tmp_path):
    out = tmp_path / "run"
    acks = tmp_path / "acks.txt"
    env = {**os.environ, "ADMIN_PASSWORD": stack.admin[1], "LOADTEST_ACK_FILE": str(acks)}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "loadtests.run",
            "--users",
            "12",
            "--spawn-rate",
            "12",
            "--duration",
            "15s",
            "--host",
            stack.url,
            "--p95-ms",
            "0",
            "--out",
            str(out),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (out / "report.html").stat().st_size > 0
    with open(out / "locust_stats.csv") as handle:
        rows = {row["Name"]: row for row in csv.DictReader(handle)}
    assert int(rows["Aggregated"]["Request Count"]) > 20
    assert int(rows["Aggregated"]["Failure Count"]) == 0
    acknowledged = acks.read_text().split()
    assert acknowledged, "no registration was acknowledged during the run"
    assert stack.db.registrations.count_documents({"_id": {"$in": acknowledged}}) == len(acknowledged)


def test_a_run_started_with_ctrl_c_ignored_still_stops_on_it_and_writes_its_reports(stack, tmp_path):
    """The drill, the chaos run and the power cut stop their load with SIGINT. A suite started
    as a background job of a shell without job control runs with SIGINT ignored, and locust
    inherited that: each stop then waited 60 s and ended in SIGKILL, without the reports."""
    out = tmp_path / "run"
    env = {**os.environ, "ADMIN_PASSWORD": stack.admin[1]}
    run_ = [sys.executable, "-m", "loadtests.run", "--users", "2", "--duration", "2h", "--host", stack.url]
    run_ += ["--p95-ms", "0", "--out", str(out)]
    # `trap "" INT` ignores SIGINT and exec keeps it ignored, as that shell does
    shell = ["sh", "-c", 'trap "" INT; exec "$@"', "sh", *run_]
    run = subprocess.Popen(
        shell, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        assert wait_for(lambda: (out / "locust_stats.csv").exists(), timeout=60), "the load did not start"
        os.killpg(run.pid, signal.SIGINT)
        run.wait(timeout=45)  # stop-timeout 10 s, then the reports: far less than the drill's 60 s
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
    assert (out / "stats.json").exists() and (out / "report.html").stat().st_size > 0
