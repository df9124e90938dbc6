"""Load profile of the vaccination registration service.

User kinds (class weights set the mix of simulated users):

* ``Visitor`` (weight 6): looks at the chart (JSON and PNG) and the page.
* ``Registrant`` (weight 3): registers with a real JPEG photo (400x300, 1024x768 or
  2000x1500), a realistic name and a city from a skewed distribution typed in several
  spellings, as a careful client: with an Idempotency-Key, sent again with the same key
  after no answer, 502, 503 or 504 (backoff with jitter, a 60 s budget); now and then
  sends a bad request (missing photo, text named .jpg, empty name) that counts as a
  success only when it gets the contract's 4xx JSON error.
* ``Admin`` (weight 1): downloads the whole XLSX report and per-city reports.

Environment: ``ADMIN_PASSWORD`` (else read from the repository's ``.env``);
``LOADTEST_ACK_FILE``: append the id of every acknowledged (201) registration to this
file, one per line, so a failover drill can check that all of them were stored.
``LOADTEST_REQUESTS_FILE``: append one JSON line per request (start time, latency, status,
error code), for the drill's before/during latency and failure accounting.
``LOADTEST_REGISTRATIONS_FILE``: append one JSON line per registration with all its
attempts (key, statuses, final id), for the drill's failed/duplicate/ghost accounting.

Run it through ``python -m loadtests.run`` (see README.md), or directly with
``locust -f loadtests/locustfile.py --host http://127.0.0.1:8080``.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
import uuid
from pathlib import Path

from locust import HttpUser, between, events, tag, task
from locust.runners import WorkerRunner

try:
    from loadtests import workload
except ImportError:  # started from another working directory
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from loadtests import workload

XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
REGISTRATION_FIELDS = ("id", "name", "city", "photo_url", "created_at")

_open_files: dict[str, object] = {}


def _append(variable: str, line: str) -> None:
    """Append one line to the file named by $variable, if set (opened once per process)."""
    path = os.environ.get(variable)
    if not path:
        return
    if path not in _open_files:
        _open_files[path] = open(path, "a", encoding="utf-8")  # noqa: SIM115 - lives as long as the process
    _open_files[path].write(line + "\n")
    _open_files[path].flush()


def record_ack(registration_id: str) -> None:
    """Append one acknowledged id to $LOADTEST_ACK_FILE."""
    _append("LOADTEST_ACK_FILE", registration_id)


def record_registration(line: dict) -> None:
    """One JSON line per registration (all its attempts) in $LOADTEST_REGISTRATIONS_FILE: its
    key, the status of every attempt, the id it ended with; for the drill's accounting."""
    _append("LOADTEST_REGISTRATIONS_FILE", json.dumps(line))


@events.request.add_listener
def _log_request(name, response_time, response, exception, start_time=None, **_kwargs):
    """One JSON line per request in $LOADTEST_REQUESTS_FILE: when, how long, how it ended.

    The failover drill reads it to split latency into before/during the outage and to tell
    failures from refusals the system documents (e.g. 503 photo_store_unavailable).
    """
    if not os.environ.get("LOADTEST_REQUESTS_FILE"):
        return
    status = getattr(response, "status_code", 0) or 0
    code = None
    if exception is not None and status >= 400:
        body = _json(response)
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            code = body["error"].get("code")
    line = {
        "t": round(start_time or 0, 3),
        "ms": round(response_time, 1),
        "name": name,
        "status": status,
        "ok": exception is None,
        "code": code,
    }
    _append("LOADTEST_REQUESTS_FILE", json.dumps(line))


@events.init.add_listener
def _only_master_writes_json(environment, **_kwargs):
    """With --processes, every forked worker would also write --json-file at exit
    (with its own, partial numbers) and race the master; keep the master's."""
    if isinstance(environment.runner, WorkerRunner) and environment.parsed_options:
        environment.parsed_options.json_file = None


def _unexpected(response) -> str:
    """Why a non-success answer failed, naming connection errors (status 0) as such."""
    if not response.status_code:
        return f"no answer: {response.error}"
    return f"status {response.status_code}: {response.text[:200]}"


def _json(response):
    try:
        return response.json()
    except ValueError:
        return None


class Visitor(HttpUser):
    """Someone who follows the campaign: the chart, its picture, the page."""

    weight = 6
    wait_time = between(1, 4)

    @task(5)
    def chart_json(self):
        with self.client.get("/api/chart", catch_response=True) as resp:
            body = _json(resp)
            if resp.status_code != 200:
                resp.failure(_unexpected(resp))
            elif not isinstance(body, dict) or not isinstance(body.get("cities"), list):
                resp.failure("chart JSON has no 'cities' list")
            else:
                resp.success()

    @task(3)
    def chart_png(self):
        with self.client.get("/api/chart.png", catch_response=True) as resp:
            if resp.status_code != 200:
                resp.failure(_unexpected(resp))
            elif not resp.content.startswith(b"\x89PNG\r\n\x1a\n"):
                resp.failure("chart.png is not a PNG")
            else:
                resp.success()

    @task(2)
    def page(self):
        with self.client.get("/", catch_response=True) as resp:
            if resp.status_code != 200:
                resp.failure(_unexpected(resp))
            elif "text/html" not in resp.headers.get("Content-Type", ""):
                resp.failure(f"page content-type {resp.headers.get('Content-Type')!r}")
            else:
                resp.success()


class Registrant(HttpUser):
    """Someone filling in the form; sometimes gets it wrong."""

    weight = 3
    wait_time = between(3, 10)

    @task(9)
    def register(self):
        """One registration, as a careful client makes it: one Idempotency-Key, sent again
        with the same key while the answer says "try again", within a time budget."""
        size, photo = workload.random_photo()
        key = uuid.uuid4().hex
        data = {"name": workload.random_name(), "city": workload.random_city()}
        files = {"photo": ("photo.jpg", workload.tagged_photo(photo, key), "image/jpeg")}
        started, statuses, registration_id, ended = time.time(), [], None, False
        try:
            while True:
                status, retry_after, registration_id = self._attempt(data, files, key, size)
                statuses.append(status)
                if (
                    registration_id
                    or status not in workload.RETRYABLE_STATUSES
                    or time.time() - started > workload.RETRY_BUDGET_S
                ):
                    break
                time.sleep(workload.retry_delay(len(statuses) - 1, retry_after))
            ended = True
        finally:  # also when the run stops it mid-retry: the drill must know that key was in flight
            record_registration(
                {
                    "t": round(started, 3),
                    "key": key,
                    "id": registration_id,
                    "statuses": statuses,
                    "ms": round((time.time() - started) * 1000, 1),
                    "ended": ended,
                }
            )

    def _attempt(self, data, files, key, size) -> tuple[int, str | None, str | None]:
        """One POST: (status, Retry-After, the id when acknowledged)."""
        with self.client.post(
            "/api/registrations",
            data=data,
            files=files,
            headers={"Idempotency-Key": key},
            name=f"/api/registrations [{size}]",
            catch_response=True,
        ) as resp:
            body = _json(resp)
            if resp.status_code != 201:
                resp.failure(_unexpected(resp))
                return resp.status_code or 0, resp.headers.get("Retry-After"), None
            if not isinstance(body, dict) or any(k not in body for k in REGISTRATION_FIELDS):
                resp.failure(f"201 without the registration fields: {resp.text[:200]}")
                return 201, None, None
            record_ack(str(body["id"]))
            resp.success()
            return 201, None, str(body["id"])

    @tag("bad")
    @task(1)
    def bad_registration(self):
        kind = random.choice(list(workload.BAD_REQUEST_KINDS))
        with self.client.post(
            "/api/registrations",
            files=workload.bad_request(kind),
            # a careful client keys every registration, a wrong one too: nginx may then send it
            # past a hung replica (it answers the 4xx that the form deserves)
            headers={"Idempotency-Key": uuid.uuid4().hex},
            name=f"/api/registrations [bad: {kind}]",
            catch_response=True,
        ) as resp:
            body = _json(resp)
            if resp.status_code == 201 and isinstance(body, dict) and body.get("id"):
                record_ack(str(body["id"]))  # acknowledged, so stored: the drill must find it
            problem = resp.status_code == 0 and _unexpected(resp)
            problem = problem or workload.check_rejection(
                resp.status_code,
                resp.headers.get("Content-Type", ""),
                body,
                workload.BAD_REQUEST_KINDS[kind],
            )
            if problem:
                resp.failure(problem)
            else:
                resp.success()


class Admin(HttpUser):
    """The health office pulling spreadsheets."""

    weight = 1
    wait_time = between(5, 15)

    def on_start(self):
        password = workload.admin_password()
        self.client.auth = ("admin", password) if password else None

    def _report(self, params, name):
        with self.client.get("/api/reports/cities.xlsx", params=params, name=name, catch_response=True) as resp:
            ctype = resp.headers.get("Content-Type", "")
            if resp.status_code != 200:
                hint = " (is ADMIN_PASSWORD right?)" if resp.status_code == 401 else ""
                resp.failure(_unexpected(resp) + hint)
            elif not ctype.startswith(XLSX_TYPE):
                resp.failure(f"report content-type {ctype!r}")
            elif not resp.content.startswith(b"PK"):
                resp.failure("report is not a ZIP/XLSX file")
            else:
                resp.success()

    @task(3)
    def city_report(self):
        city = workload.random_report_city()
        self._report({"city": city}, "/api/reports/cities.xlsx?city=[city]")

    @task(1)
    def full_report(self):
        self._report(None, "/api/reports/cities.xlsx")
