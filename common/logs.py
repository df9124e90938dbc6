"""JSON-lines logging with request ids, and an optional push to Loki.

Every line is one JSON object: time, level, service, instance, request_id, message, plus the
request fields on access lines. The request id comes from nginx (or a sanitised client value)
so one request can be followed across nginx, middleware and replica logs.
"""

import logging
import os
import re
import sys
import time
import uuid
from datetime import UTC, datetime

from flask import Flask, g, has_request_context, request
from pythonjsonlogger.json import JsonFormatter

REQUEST_ID_HEADER = "X-Request-ID"
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

access_log = logging.getLogger("access")


class _ContextFilter(logging.Filter):
    def __init__(self, service: str, instance: str):
        super().__init__()
        self.service = service
        self.instance = instance

    def filter(self, record: logging.LogRecord) -> bool:
        record.service = self.service
        record.instance = self.instance
        if not getattr(record, "request_id", None):
            record.request_id = g.get("request_id") if has_request_context() else None
        return True


class _Formatter(JsonFormatter):
    def add_fields(self, log_record, record, message_dict):
        super().add_fields(log_record, record, message_dict)
        fields = dict(log_record)
        log_record.clear()  # time and level first: the order a person scans a line in
        log_record["time"] = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        log_record["level"] = record.levelname.lower()
        log_record.update(fields)


def configure(service: str, instance: str, level: str = "INFO", loki_url: str | None = None) -> None:
    """Send every logger of the process to stdout as JSON (and to Loki when configured)."""
    context = _ContextFilter(service, instance)
    formatter = _Formatter(
        "%(message)s %(service)s %(instance)s %(request_id)s %(name)s",
        rename_fields={"name": "logger"},
        json_ensure_ascii=False,
    )
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    stdout = logging.StreamHandler(sys.stdout)
    stdout.setFormatter(formatter)
    stdout.addFilter(context)
    root.addHandler(stdout)
    if loki_url:
        from common.loki import loki_handler

        root.addHandler(loki_handler(loki_url, service, instance, context))
    root.setLevel(level.upper())
    # werkzeug and gunicorn.access would duplicate our access line
    logging.getLogger("werkzeug").setLevel(logging.WARNING)


def sanitised_request_id(value: str | None) -> str:
    if value and _SAFE_REQUEST_ID.match(value):
        return value
    return uuid.uuid4().hex


def init_request_logging(app: Flask) -> None:
    """Adopt or create the request id, return it, and write one access line per request."""

    @app.before_request
    def _start():
        g.request_id = sanitised_request_id(request.headers.get(REQUEST_ID_HEADER))
        g.started = time.perf_counter()

    @app.after_request
    def _finish(response):
        response.headers[REQUEST_ID_HEADER] = g.get("request_id", "")
        if request.path not in ("/metrics", "/health"):
            access_log.info(
                "request",
                extra={
                    "method": request.method,
                    "path": request.path,
                    "status": response.status_code,
                    "duration_ms": round((time.perf_counter() - g.get("started", time.perf_counter())) * 1000, 2),
                    "remote_addr": request.remote_addr,
                },
            )
        return response


class GunicornFormatter(_Formatter):
    """gunicorn's own lines (boot, worker exits) in the same JSON shape as the app's."""

    def __init__(self):
        super().__init__("%(message)s %(name)s", rename_fields={"name": "logger"}, json_ensure_ascii=False)

    def add_fields(self, log_record, record, message_dict):
        super().add_fields(log_record, record, message_dict)
        log_record["service"] = os.environ.get("SERVICE_NAME", "gunicorn")
        log_record["instance"] = os.environ.get("INSTANCE_NAME") or log_record["service"]
