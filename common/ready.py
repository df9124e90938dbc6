"""GET /ready for both services: the database and every other dependency probed, the answer
naming the ones that failed."""

from collections.abc import Callable

import pymongo
from flask import Response, current_app, jsonify

# A frozen database must make /ready answer "not ready" soon, not after the 60 s socket
# timeout; the photo store (2 s) and Redis (0.5 s) probes have their own.
PROBE_SECONDS = 2.0


def _database() -> None:
    """Both services keep their MongoDB client in app.extensions["mongo"]."""
    with pymongo.timeout(PROBE_SECONDS):
        current_app.extensions["mongo"].admin.command("ping")


def _reason(error: Exception) -> str:
    # the class and the first line of the message: a refused connection, a timeout or an HTTP
    # status tells an operator where to look; a whole topology dump does not
    lines = str(error).strip().splitlines()
    return f"{error.__class__.__name__}: {lines[0][:160]}" if lines else error.__class__.__name__


def readiness(instance: str, probes: dict[str, Callable[[], object]]) -> Response:
    checks = {}
    for name, probe in {"database": _database, **probes}.items():
        try:
            probe()
            checks[name] = "ok"
        except Exception as error:
            checks[name] = f"unreachable: {_reason(error)}"
    failed = [name for name, value in checks.items() if value != "ok"]
    response = jsonify(status="not_ready" if failed else "ready", failed=failed, checks=checks, instance=instance)
    response.status_code = 503 if failed else 200
    return response
