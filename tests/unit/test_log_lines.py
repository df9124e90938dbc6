"""The one JSON log formatter: every record is one valid JSON line of the same shape."""

import json
import logging

from common.logs import GunicornFormatter, JsonFormatter


def _record(message="request", args=(), exc_info=None, **extra) -> logging.LogRecord:
    record = logging.getLogger("access").makeRecord(
        "access", logging.INFO, __file__, 1, message, args, exc_info, extra=extra
    )
    record.created = 1_800_000_000.0421  # 2027-01-15T08:00:00.042 UTC
    return record


def test_an_access_line_has_the_fixed_fields_first_then_its_own():
    line = json.loads(
        JsonFormatter("instance", "instance-2").format(
            _record(
                request_id="req-1", method="GET", path="/api/chart", status=200, duration_ms=1.5, remote_addr="10.0.0.1"
            )
        )
    )
    assert list(line) == [
        "time",
        "level",
        "message",
        "service",
        "instance",
        "request_id",
        "logger",
        "method",
        "path",
        "status",
        "duration_ms",
        "remote_addr",
    ]
    assert line["time"] == "2027-01-15T08:00:00.042+00:00"
    assert (line["level"], line["service"], line["instance"], line["request_id"], line["status"]) == (
        "info",
        "instance",
        "instance-2",
        "req-1",
        200,
    )


def test_quotes_newlines_and_non_ascii_text_stay_valid_json():
    message = 'name "=HYPERLINK()"\nsecond line: Ana María Pérez \\ ✓'
    formatted = JsonFormatter("mailsink", "mailsink").format(_record("%s", (message,)))
    assert "\n" not in formatted and "María" in formatted  # one line, UTF-8 as written
    assert json.loads(formatted)["message"] == message


def test_a_traceback_and_an_odd_extra_do_not_lose_the_line():
    try:
        raise RuntimeError('database "down"')
    except RuntimeError as error:
        record = _record("failed", exc_info=(type(error), error, error.__traceback__), path_obj=object())
    line = json.loads(JsonFormatter("middleware", "middleware").format(record))
    assert 'RuntimeError: database "down"' in line["exc_info"]
    assert line["path_obj"].startswith("<object object")


def test_gunicorn_lines_name_the_service_from_the_environment(monkeypatch):
    monkeypatch.setenv("SERVICE_NAME", "instance")
    monkeypatch.setenv("INSTANCE_NAME", "instance-3")
    line = json.loads(GunicornFormatter().format(_record("Booting worker")))
    assert (line["service"], line["instance"], line["message"]) == ("instance", "instance-3", "Booting worker")
