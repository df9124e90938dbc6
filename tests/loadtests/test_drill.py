"""The failover drill against the real stack: a replica lost under load costs nothing."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from loadtests.drill import VICTIMS, p95

ROOT = Path(__file__).resolve().parents[2]


def test_p95_is_the_nearest_rank():
    assert p95([]) is None
    assert p95([5.0]) == 5.0
    assert p95(list(range(1, 101))) == 95
    assert p95(list(range(1, 21))) == 19


def test_only_the_photo_store_and_middleware_have_documented_refusals():
    refused_registration = {"name": "/api/registrations [400x300]", "status": 503, "code": "photo_store_unavailable"}
    refused_chart = {"name": "/api/chart", "status": 503, "code": "service_unavailable"}
    assert VICTIMS["photo-store"][1](refused_registration)
    assert not VICTIMS["photo-store"][1](refused_chart)
    assert VICTIMS["middleware"][1](refused_chart)
    assert not VICTIMS["middleware"][1](refused_registration)
    for victim in ("instance-1", "redis"):
        assert not VICTIMS[victim][1](refused_registration) and not VICTIMS[victim][1](refused_chart)


@pytest.mark.slow
def test_replica_drill_loses_nothing_and_alerts_in_time(stack, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "loadtests.drill", "--victim", "instance-1", "--users", "12", "--warmup", "10",
         "--outage", "25", "--settle", "5", "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=400,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["failed_requests"] == 0 and outcome["lost"] == 0
    assert outcome["acknowledged"] > 0 and outcome["stored"] == outcome["acknowledged"]
    assert outcome["alert_email_s"] <= 60 and outcome["resolved_email_s"] <= 90
    assert outcome["p95_ms_before"] is not None and outcome["p95_ms_during"] is not None
