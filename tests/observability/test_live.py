"""Observability proven on the live stack: metrics after real traffic, every dashboard query,
the replica-down email end to end, request ids in the logs, and the Loki push format."""

import json
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
import requests
import yaml
from dashboards import dashboard_queries
from scrape import metric_sum

from forms import register
from polling import wait_for
from stack.prometheus_targets import native_targets

ROOT = Path(__file__).resolve().parents[2]


def _prometheus(stack) -> str:
    return f"http://127.0.0.1:{stack.settings.ports['PROMETHEUS_PORT']}"


@pytest.mark.slow
def test_stopped_replica_sends_the_firing_email_within_60_s(replica_outage):
    message = replica_outage["firing"]
    assert message is not None, f"no FIRING email within {replica_outage['firing_within_s']} s"
    body = message.get_body(("plain",)).get_content()
    assert "instance-3" in body
    assert "docs/runbooks/ReplicaDown.md" in body
    print(f"firing email after {replica_outage['firing_s']:.1f} s")


@pytest.mark.slow
def test_restarted_replica_sends_the_resolved_email_within_90_s(replica_outage):
    assert replica_outage["resolved"] is not None, f"no RESOLVED email within {replica_outage['resolved_within_s']} s"
    assert "instance-3" in replica_outage["resolved"].get_body(("plain",)).get_content()
    print(f"resolved email after {replica_outage['resolved_s']:.1f} s")


def test_every_prometheus_target_is_up(stack, traffic):
    targets = requests.get(f"{_prometheus(stack)}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
    down = [
        (t["labels"]["job"], t["labels"].get("target_name"), t["lastError"]) for t in targets if t["health"] != "up"
    ]
    assert not down
    configured = yaml.safe_load((ROOT / "prometheus" / "prometheus.yml").read_text())["scrape_configs"]
    files = native_targets(stack.settings.ports)  # natively Loki and Alloy have none: the logs are files
    natively = {
        job["job_name"]
        for job in configured
        if any(files[Path(f).name] for sd in job["file_sd_configs"] for f in sd["files"])
    }
    assert natively >= {"instance", "prometheus", "alertmanager"}
    assert {t["labels"]["job"] for t in targets} >= natively


def test_every_rule_evaluates_without_error(stack, traffic):
    groups = requests.get(f"{_prometheus(stack)}/api/v1/rules", timeout=5).json()["data"]["groups"]
    broken = [
        (rule["name"], rule.get("lastError")) for group in groups for rule in group["rules"] if rule["health"] != "ok"
    ]
    assert groups and not broken


QUERIES = dashboard_queries()


@pytest.mark.parametrize("dashboard,panel,expr", QUERIES, ids=[f"{d}:{p}" for d, p, _ in QUERIES])
def test_dashboard_query_returns_data(stack, traffic, dashboard, panel, expr):
    end = time.time()
    response = requests.get(
        f"{_prometheus(stack)}/api/v1/query_range",
        timeout=10,
        params={"query": expr, "start": end - 1800, "end": end, "step": "15s"},
    )
    body = response.json()
    assert body["status"] == "success", body
    assert body["data"]["result"], f"{dashboard} / {panel}: no data for {expr}"


def test_registrations_are_counted_across_every_worker_and_replica(stack, http):
    ports = [stack.settings.instance_port(n) for n in (1, 2, 3)]
    before = sum(metric_sum(f"http://127.0.0.1:{port}/metrics", "registrations_total") for port in ports)
    for _ in range(10):  # spread over replicas and over each replica's gunicorn workers
        assert register(http, stack).status_code == 201
    after = sum(metric_sum(f"http://127.0.0.1:{port}/metrics", "registrations_total") for port in ports)
    assert after - before == 10


def test_one_request_can_be_followed_across_nginx_middleware_and_replica(stack, http):
    rid = f"trace-{uuid.uuid4().hex}"
    assert (
        http.get(f"{stack.url}/api/reports/cities.xlsx", auth=stack.admin, headers={"X-Request-ID": rid}).status_code
        == 200
    )
    shown = ""

    def followed() -> bool:  # each part writes its line when it is done: polled, not a fixed wait
        nonlocal shown
        shown = subprocess.run(
            [sys.executable, "-m", "stack", "logs", "--request-id", rid, "-n", "20"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout
        parts = {line.split("|")[0].strip() for line in shown.splitlines() if rid in line}
        return {"nginx", "middleware"} <= parts and bool(parts & {"instance-1", "instance-2", "instance-3"})

    assert wait_for(followed, timeout=15, every=0.5), shown
    assert all(rid in line for line in shown.splitlines())


class _LokiReceiver(BaseHTTPRequestHandler):
    pushes: list = []

    def do_POST(self):  # noqa: N802 - the http.server API
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.pushes.append((self.path, self.headers["Content-Type"], json.loads(body)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_logs_are_pushed_to_loki_with_low_cardinality_labels(tmp_path):
    server = HTTPServer(("127.0.0.1", 0), _LokiReceiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    script = (
        "import logging, time\n"
        "from common import logs\n"
        f"logs.configure('instance', 'instance-9', 'INFO', 'http://127.0.0.1:{server.server_port}')\n"
        "logging.getLogger('instance.registrations').warning('photo store slow', extra={'request_id': 'req-42'})\n"
        "time.sleep(1.5)\n"
    )
    subprocess.run([sys.executable, "-c", script], cwd=ROOT, check=True, timeout=30, capture_output=True)
    server.shutdown()
    assert _LokiReceiver.pushes, "nothing was pushed"
    path, content_type, payload = _LokiReceiver.pushes[0]
    assert path == "/loki/api/v1/push" and content_type == "application/json"
    stream = payload["streams"][0]
    assert stream["stream"] == {"service": "instance", "instance": "instance-9", "level": "warning"}
    timestamp, line = stream["values"][0]
    assert timestamp.isdigit() and len(timestamp) == 19  # nanoseconds
    record = json.loads(line)
    assert record["message"] == "photo store slow" and record["request_id"] == "req-42"
