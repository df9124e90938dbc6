"""The skeleton both Flask services are built on: settings, JSON logs with request ids, JSON
errors, request metrics, /health, /ready and the X-Served-By header. Each factory adds its own
parts and blueprints to what create_app() returns."""

import logging
import time
from collections.abc import Callable

from flask import Blueprint, Flask, current_app, g, has_request_context, jsonify, request

from common import errors, logs, metrics
from common.ready import readiness

access_log = logging.getLogger("access")
QUIET_PATHS = frozenset(("/metrics", "/health"))  # scraped and probed every few seconds


def _current_request_id() -> str | None:
    return g.get("request_id") if has_request_context() else None


def init_request_logging(app: Flask) -> None:
    """Adopt or create the request id, return it, and write one access line per request."""

    @app.before_request
    def _start():
        g.request_id = logs.sanitised_request_id(request.headers.get(logs.REQUEST_ID_HEADER))
        g.started = time.perf_counter()

    @app.after_request
    def _finish(response):
        response.headers[logs.REQUEST_ID_HEADER] = g.get("request_id", "")
        if request.path not in QUIET_PATHS and access_log.isEnabledFor(logging.INFO):
            started = g.get("started")
            access_log.info(
                "request",
                extra={
                    "method": request.method,
                    "path": request.path,
                    "status": response.status_code,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2) if started else None,
                    "remote_addr": request.remote_addr,
                },
            )
        return response


def _probes_blueprint(probes: dict[str, Callable[[], object]]) -> Blueprint:
    bp = Blueprint("health", __name__)

    @bp.get("/health")
    def health():
        return jsonify(status="ok", instance=current_app.config["INSTANCE_NAME"])

    @bp.get("/ready")
    def ready():
        return readiness(current_app.config["INSTANCE_NAME"], probes)

    return bp


def create_app(
    import_name: str,
    service: str,
    settings: dict,
    test_config: dict | None,
    probes: dict[str, Callable[[], object]],
) -> Flask:
    """A Flask app with the shared skeleton. `settings` comes from the service's config.py (its
    INSTANCE_NAME, LOG_LEVEL and LOKI_URL are used here); `probes` names the dependencies /ready
    checks besides the database, each a function that raises when that dependency does not answer."""
    app = Flask(import_name)
    app.config.update(settings)
    if test_config:
        app.config.update(test_config)
    logs.configure(
        service,
        app.config["INSTANCE_NAME"],
        app.config["LOG_LEVEL"],
        app.config["LOKI_URL"],
        current_request_id=_current_request_id,
    )
    errors.init_app(app)
    init_request_logging(app)
    metrics.init_app(app, service)
    app.register_blueprint(_probes_blueprint(probes))

    @app.after_request
    def _served_by(response):
        # a response passed through from a replica keeps the replica's name
        response.headers.setdefault("X-Served-By", app.config["INSTANCE_NAME"])
        return response

    return app
