"""The failover drill against the real stack: a replica lost under load costs nothing."""

import json
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from common import records
from loadtests.drill import ALIASES, VICTIMS, firing_limit_s, p95, registration_outcomes

ROOT = Path(__file__).resolve().parents[2]


def test_p95_is_the_nearest_rank():
    assert p95([]) is None
    assert p95([5.0]) == 5.0
    assert p95(list(range(1, 101))) == 95
    assert p95(list(range(1, 21))) == 19


def test_each_victim_documents_only_its_own_refusals():
    refused_registration = {"name": "/api/registrations [400x300]", "status": 503, "code": "photo_store_unavailable"}
    refused_chart = {"name": "/api/chart", "status": 503, "code": "service_unavailable"}
    assert VICTIMS["photo-store"][1](refused_registration)
    assert not VICTIMS["photo-store"][1](refused_chart)
    assert VICTIMS["middleware"][1](refused_chart)
    assert not VICTIMS["middleware"][1](refused_registration)
    broken_report = {"name": "/api/reports/cities.xlsx", "status": 0, "code": None}  # cut short mid-stream
    for victim in ("mongodb", "instance-1"):
        assert VICTIMS[victim][1](broken_report)
        assert not VICTIMS[victim][1]({**broken_report, "name": "/api/chart"})
    assert not VICTIMS["redis"][1](broken_report) and not VICTIMS["photo-store"][1](broken_report)
    for victim in ("instance-1", "redis", "prometheus-1", "alertmanager-2"):
        assert not VICTIMS[victim][1](refused_registration) and not VICTIMS[victim][1](refused_chart)


def test_every_member_of_the_monitoring_pairs_is_a_victim_its_twin_reports(stack):
    members = [name for name in stack.parts if name.startswith(("prometheus-", "alertmanager-"))]
    assert len(members) == 4 and set(members) <= set(VICTIMS)
    assert {VICTIMS[name][0] for name in members} == {"PrometheusDown", "AlertmanagerDown"}
    assert all(ALIASES[pair] in members for pair in ("prometheus", "alertmanager"))
    assert firing_limit_s("alertmanager-2") == 120 and firing_limit_s("instance-2") == 60


def test_registration_outcomes_count_failures_duplicates_and_ghosts(stack):
    """Against the real database: what the clients logged, held against what was stored."""
    since = datetime.now(UTC) - timedelta(seconds=1)
    keys = {name: uuid.uuid4().hex for name in ("ok", "twice", "failed", "ghost", "cut")}
    ids = {name: records.registration_id(key) for name, key in keys.items()}

    def store(name, registration_id=None):
        stack.db.registrations.insert_one(
            records.new_registration(
                f"Drill {name}",
                "Quito",
                "00/none.jpg",
                registration_id=registration_id or ids[name],
                request_hash=f"hash-{keys[name]}",
            )
        )

    store("ok")
    store("twice")
    store("twice", uuid.uuid4().hex)  # an unkeyed resend: the same request stored again
    store("ghost")  # stored while its client was told it failed
    store("cut")  # stored while the run stopped its client mid-retry
    lines = [
        {"key": keys["ok"], "id": ids["ok"], "statuses": [201], "ms": 40.0, "ended": True},
        {"key": keys["twice"], "id": ids["twice"], "statuses": [504, 201], "ms": 4100.0, "ended": True},
        {"key": keys["failed"], "id": None, "statuses": [503] * 9, "ms": 61000.0, "ended": True},
        {"key": keys["ghost"], "id": None, "statuses": [400], "ms": 20.0, "ended": True},
        {"key": keys["cut"], "id": None, "statuses": [503], "ms": 900.0, "ended": False},
    ]
    try:
        outcome = registration_outcomes(stack.db, lines, since)
    finally:
        stack.db.registrations.delete_many({"name": {"$regex": "^Drill "}})

    assert outcome == {
        "registrations": 4,
        "failed": 2,
        "first_try_failed": 3,
        "retried": 2,
        "duplicates": 1,
        "ghosts": 1,
        "worst_total_ms": 61000.0,
    }


def _drill(tmp_path, *args: str) -> dict:
    result = subprocess.run(
        [sys.executable, "-m", "loadtests.drill", "--users", "12", "--warmup", "10", "--out", str(tmp_path), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["failed"] == outcome["duplicates"] == outcome["ghosts"] == outcome["lost"] == 0
    assert outcome["registrations"] > 0
    # the picture and the post-mortem draft beside the JSON, with this run's facts in the draft
    assert (tmp_path / "timeline.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    draft = (tmp_path / "postmortem.md").read_text()
    assert "${" not in draft
    assert f"registrations finished by clients: {outcome['registrations']}" in draft
    assert "failed at the first try (a client without retries would have seen an error): " in draft
    assert f"other requests refused as documented for this fault: {outcome['refused_as_documented']}" in draft
    assert f"fault: {outcome['fault']} {outcome['victim']}" in draft
    if outcome["alert_email_s"] is not None:
        assert "FIRING mail:" in draft and "alert mail (firing) arrived" in draft
    if outcome["resolved_email_s"] is not None:  # a kill's PartRestarted resolves after the drill
        assert "RESOLVED mail:" in draft
    return outcome


@pytest.mark.slow
def test_a_frozen_database_drill_stores_every_registration_once(stack, tmp_path):
    outcome = _drill(tmp_path, "--victim", "mongodb", "--freeze", "8", "--settle", "15")
    assert outcome["fault"] == "freeze 8s" and outcome["failed_requests"] == 0


@pytest.mark.slow
def test_replica_drill_loses_nothing_and_alerts_in_time(stack, tmp_path):
    outcome = _drill(tmp_path, "--victim", "instance-1", "--kill", "--settle", "5")
    assert outcome["fault"] == "kill"
    assert outcome["failed_requests"] == 0 and outcome["lost"] == 0
    assert outcome["acknowledged"] > 0 and outcome["stored"] == outcome["acknowledged"]
    assert outcome["back_s"] is not None  # supervisord brought it back, nobody else
    assert outcome["alert_email_s"] <= 60  # PartRestarted; it resolves 2 minutes after the death
    assert outcome["p95_ms_before"] is not None and outcome["p95_ms_during"] is not None
