"""The load kit against the real stack: a short headless locust run must pass with zero failures."""

import csv
import os
import subprocess
import sys
from pathlib import Path

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
