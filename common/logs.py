"""JSON-lines logging for every Python part of the stack, with request ids and an optional push to Loki.

Every line is one JSON object: time, level, message, service, instance, request_id, logger, then
the record's own fields (an access line's method, path, status...) and a traceback as exc_info.
The request id comes from nginx (or a sanitised client value) so one request can be followed
across nginx, middleware and replica logs. Flask-free: the services hand configure() a function
that finds the current request's id (common/service.py); the mail sink and the embedded
database have none.
"""

import logging
import os
import re
import sys
import time
import uuid
from collections.abc import Callable

import orjson

REQUEST_ID_HEADER = "X-Request-ID"
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

# What every LogRecord carries; anything else on a record came from `extra=` and is written.
_RECORD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "request_id"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record, the same shape for every service."""

    def __init__(self, service: str, instance: str):
        super().__init__()
        self.service = service
        self.instance = instance
        self._second = -1
        self._second_text = ""

    def _time(self, created: float) -> str:
        # ISO 8601 in UTC with milliseconds; the part up to the second changes once a second,
        # so it is formatted once a second rather than once a line
        second = int(created)
        if second != self._second:
            self._second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        return f"{self._second_text}.{int((created - second) * 1000):03d}+00:00"

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": self._time(record.created),
            "level": record.levelname.lower(),
            "message": record.getMessage(),
            "service": self.service,
            "instance": self.instance,
            "request_id": getattr(record, "request_id", None),
            "logger": record.name,
        }
        for name, value in vars(record).items():
            if name not in _RECORD_ATTRIBUTES:
                line[name] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exc_info"] = record.exc_text
        if record.stack_info:
            line["stack_info"] = self.formatStack(record.stack_info)
        # orjson: a third of the time of json.dumps on an access line (README, "Choices worth
        # explaining"); default=str keeps an odd extra (a Path, an exception) from losing the line
        return orjson.dumps(line, default=str).decode()


class _RequestIdFilter(logging.Filter):
    """Stamps the current request's id on a record before it leaves the request's thread (the
    Loki queue formats records later, on another thread)."""

    def __init__(self, current_request_id: Callable[[], str | None]):
        super().__init__()
        self.current_request_id = current_request_id

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", None):
            record.request_id = self.current_request_id()
        return True


def configure(
    service: str,
    instance: str,
    level: str = "INFO",
    loki_url: str | None = None,
    current_request_id: Callable[[], str | None] | None = None,
) -> None:
    """Send every logger of the process to stdout as JSON (and to Loki when configured)."""
    formatter = JsonFormatter(service, instance)
    stamp = _RequestIdFilter(current_request_id) if current_request_id else None
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    stdout = logging.StreamHandler(sys.stdout)
    stdout.setFormatter(formatter)
    if stamp:
        stdout.addFilter(stamp)
    root.addHandler(stdout)
    if loki_url:
        from common.loki import loki_handler

        root.addHandler(loki_handler(loki_url, service, instance, formatter, stamp))
    root.setLevel(level.upper())
    # werkzeug and gunicorn.access would duplicate our access line
    logging.getLogger("werkzeug").setLevel(logging.WARNING)


def sanitised_request_id(value: str | None) -> str:
    if value and _SAFE_REQUEST_ID.match(value):
        return value
    return uuid.uuid4().hex


class GunicornFormatter(JsonFormatter):
    """gunicorn's own lines (boot, worker exits) in the same JSON shape as the app's."""

    def __init__(self):
        service = os.environ.get("SERVICE_NAME", "gunicorn")
        super().__init__(service, os.environ.get("INSTANCE_NAME") or service)
