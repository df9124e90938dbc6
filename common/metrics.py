"""Prometheus metrics: the HTTP metrics of prometheus-flask-exporter and our business metrics.

Under gunicorn each worker is a process, so counts live in PROMETHEUS_MULTIPROC_DIR and /metrics
aggregates them (multiprocess mode); otherwise every scrape would see one worker's share.
No label ever carries user input (a city, or a method a client invents, as a label is a
cardinality attack).
"""

import os
import time
from contextlib import contextmanager
from http import HTTPStatus

from flask import Flask, g, request
from prometheus_client import Counter, Histogram

REGISTRATIONS = Counter("registrations_total", "Registrations stored")
REJECTED = Counter("registrations_rejected_total", "Registrations refused for bad input", ["reason"])
PHOTO_UPLOAD_SECONDS = Histogram(
    "photo_upload_duration_seconds",
    "Time to store one photo",
    ["backend"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
PHOTO_UPLOAD_BYTES = Histogram(
    "photo_upload_bytes",
    "Size of stored (re-encoded) photos",
    buckets=(16e3, 64e3, 128e3, 256e3, 512e3, 1e6, 2e6, 5e6),
)
REPORT_SECONDS = Histogram(
    "report_generation_duration_seconds",
    "Time to build an XLSX report",
    ["scope"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
REPORT_ROWS = Histogram(
    "report_rows",
    "Registrations written into one report",
    ["scope"],
    buckets=(0, 10, 100, 1e3, 1e4, 5e4, 1e5, 5e5, 1e6),
)
REPORT_SKIPPED = Counter("report_records_skipped_total", "Registrations a report could not write (left out, noted)")
CHART_CACHE_LOOKUPS = Counter("chart_cache_lookups_total", "Chart cache lookups", ["result"])
CHART_CACHE_REFRESHES = Counter("chart_cache_refreshes_total", "Chart cache refills", ["trigger"])
DEPENDENCY_SECONDS = Histogram(
    "dependency_duration_seconds",
    "Calls to MongoDB, the photo store, Redis and replicas",
    ["dependency", "operation"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
)
DEPENDENCY_ERRORS = Counter("dependency_errors_total", "Failed dependency calls", ["dependency", "operation"])
# Per replica, never per client address: the address of a wrong password is in the instance's log.
ADMIN_AUTH_FAILURES = Counter("admin_auth_failures_total", "Admin requests with wrong credentials (answered 401)")
ADMIN_AUTH_THROTTLED = Counter(
    "admin_auth_throttled_total",
    "Admin requests refused unchecked (429): their address had too many failures",
)
LOG_RECORDS_DROPPED = Counter("log_records_dropped_total", "Log records not sent to Loki: its queue was full")
# The per-request metrics, named and labelled exactly as prometheus-flask-exporter's defaults
# (group_by="endpoint", default label "service"), which dashboards and rules use. Recorded here
# rather than by the exporter's own hooks: those rebuilt the label set through several
# callbacks on every request, half the metrics' cost on a cached chart answer (the middleware
# spent 8 % of its CPU on metrics at saturation).
HTTP_SECONDS = Histogram(
    "flask_http_request_duration_seconds",
    "Flask HTTP request duration in seconds",
    ["method", "endpoint", "status", "service"],
)
HTTP_REQUESTS = Counter("flask_http_request_total", "Total number of HTTP requests", ["method", "status", "service"])
HTTP_EXCEPTIONS = Counter(
    "flask_http_request_exceptions_total",
    "Total number of HTTP requests which resulted in an exception",
    ["method", "status", "service"],
)


# Request labels come from closed sets, whatever a client sends: nginx passes on any method
# token, so 500 invented methods once made 9,000 series. Endpoints are the app's own routes
# ("None" when none matched).
METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"))
STATUSES = frozenset(str(status.value) for status in HTTPStatus)
OTHER = "other"


def request_labels(method: str, status: int | str) -> tuple[str, str]:
    status = str(status)
    return (method if method in METHODS else OTHER, status if status in STATUSES else OTHER)


@contextmanager
def track_dependency(dependency: str, operation: str):
    started = time.perf_counter()
    try:
        yield
    except Exception:
        DEPENDENCY_ERRORS.labels(dependency, operation).inc()
        raise
    finally:
        DEPENDENCY_SECONDS.labels(dependency, operation).observe(time.perf_counter() - started)


# Every label set a service can produce, created at zero on start: a counter that appears only
# on its first error makes "0 errors" look like "no data" on a dashboard and in rate() alerts.
KNOWN_SERIES = {
    "instance": {
        REJECTED: [
            (reason,)
            for reason in ("missing_field", "invalid_name", "invalid_city", "invalid_photo", "photo_too_large")
        ],
        DEPENDENCY_ERRORS: [("mongodb", op) for op in ("insert", "count", "find_one", "report_scan", "report_counts")]
        + [("photo_store", op) for op in ("put", "delete", "get", "health")]
        + [("redis", "admin_throttle")],
    },
    "middleware": {
        CHART_CACHE_LOOKUPS: [("hit",), ("miss",), ("error",)],
        CHART_CACHE_REFRESHES: [("report",), ("miss",)],
        DEPENDENCY_ERRORS: [
            ("mongodb", "city_totals"),
            ("mongodb", "report_counts"),
            ("redis", "get"),
            ("redis", "set"),
            ("instance", "report"),
        ],
    },
}


_exporter = None  # one per process; each app built by the factory is attached to it


def init_app(app: Flask, service: str) -> None:
    """Expose /metrics with per-endpoint request count and latency."""
    global _exporter
    for metric, label_sets in KNOWN_SERIES.get(service, {}).items():
        for labels in label_sets:
            metric.labels(*labels)
    if _exporter is None:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_flask_exporter.multiprocess import GunicornInternalPrometheusMetrics as Exporter
        else:
            from prometheus_flask_exporter import PrometheusMetrics as Exporter
        # the exporter serves /metrics (aggregating the workers' files); requests are counted below
        _exporter = Exporter.for_app_factory(export_defaults=False)
        _exporter.info("app_info", "Service identity", service=service, instance=app.config["INSTANCE_NAME"])
        _exporter.info(
            "flask_exporter_info", "Information about the Prometheus Flask exporter", version=_exporter.version
        )  # as its own defaults did
    _exporter.init_app(app)
    _count_requests(app, service)


def _count_requests(app: Flask, service: str) -> None:
    """Every request once, timed from the start the access log's hook set (g.started)."""
    children: dict[tuple, tuple] = {}  # (method, endpoint, status) -> the label sets' own metric objects
    done_key = "metrics.counted"

    def record_once(status: int) -> None:
        started = g.get("started")
        # /metrics itself is not counted (the exporter marks it), and nothing is counted twice
        if started is None or done_key in request.environ or hasattr(request, "prom_do_not_track"):
            return
        request.environ[done_key] = True
        method, status = request_labels(request.method, status)
        key = (method, request.endpoint, status)
        pair = children.get(key)
        if pair is None:  # labels() validates and locks on every call; do it once per label set
            pair = children[key] = (
                HTTP_SECONDS.labels(method, str(request.endpoint), status, service),
                HTTP_REQUESTS.labels(method, status, service),
            )
        pair[0].observe(max(time.perf_counter() - started, 0))
        pair[1].inc()

    @app.after_request
    def _finish(response):
        record_once(response.status_code)
        return response

    @app.teardown_request
    def _failed(exception=None):
        if exception is None or hasattr(request, "prom_do_not_track"):
            return
        HTTP_EXCEPTIONS.labels(request_labels(request.method, 500)[0], "500", service).inc()
        record_once(500)
