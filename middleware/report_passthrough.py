"""The report request passed through to a replica, refreshing the chart cache on the way.

The rule the system is specified with: every query of the report service refreshes the
chart cache. Only a successful (200) report counts, so an unauthenticated caller cannot make
the middleware run the totals query at will. The workbook is streamed, never buffered.
"""

import itertools
import logging

import requests
from flask import Blueprint, Flask, Response, current_app, g, request
from pymongo.errors import PyMongoError

from common.errors import ApiError
from common.logs import REQUEST_ID_HEADER
from common.metrics import track_dependency
from middleware import chart_cache

log = logging.getLogger(__name__)
bp = Blueprint("reports", __name__)

FORWARDED = ("Authorization", "Accept", "X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host",
             "X-Forwarded-Port")
PASSED_BACK = ("Content-Type", "Content-Disposition", "Content-Length", "Cache-Control", "WWW-Authenticate",
               "X-Served-By")
_turn = itertools.count()
# connect fast (a stopped replica refuses at once). The first byte of a big report can take
# minutes, but must come before nginx's proxy_read_timeout for /api/reports/ (300 s) runs out,
# so a slow replica gets the middleware's own answer rather than nginx cutting the connection.
CONNECT_TIMEOUT = 1
READ_TIMEOUT = 280


def _replicas_in_turn() -> list[str]:
    urls = current_app.config["INSTANCE_URLS"]
    start = next(_turn) % len(urls)
    return urls[start:] + urls[:start]


def _open_upstream() -> requests.Response:
    session: requests.Session = current_app.extensions["replicas"]
    headers = {name: request.headers[name] for name in FORWARDED if name in request.headers}
    headers[REQUEST_ID_HEADER] = g.request_id
    for base in _replicas_in_turn():
        try:
            with track_dependency("instance", "report"):
                return session.get(base + request.full_path, headers=headers, stream=True,
                                   timeout=(CONNECT_TIMEOUT, READ_TIMEOUT))
        except requests.ConnectionError as error:  # refused, reset or dropped; connect timeouts included
            # A report is a GET: building it again elsewhere is safe, and a replica stopped or
            # crashed mid-report (its memory stays flat, so not because of the report) costs nothing.
            log.warning("replica %s could not give the report, trying the next: %s", base, error)
        except requests.RequestException as error:
            # Read timeout: the replica is alive and slow; another would build the same slow
            # report all over again.
            log.error("replica %s did not answer the report request in time: %s", base, error)
            raise ApiError(504, "report_timeout",
                           "The report took too long to build; please try again later.") from None
    raise ApiError(503, "replicas_unavailable", "No replica could build the report right now; please try again.")


@bp.get("/api/reports/cities.xlsx")
def report() -> Response:
    upstream = _open_upstream()
    if upstream.status_code == 200:
        try:
            chart_cache.refresh("report")
        except PyMongoError as error:  # the report itself succeeded; do not fail it
            log.error("chart cache not refreshed after a report: %s", error)
    headers = {name: upstream.headers[name] for name in PASSED_BACK if name in upstream.headers}
    response = Response(upstream.iter_content(64 * 1024), status=upstream.status_code, headers=headers,
                        direct_passthrough=True)
    response.call_on_close(upstream.close)
    return response


def init_app(app: Flask) -> None:
    session = requests.Session()
    session.mount("http://", requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=8, max_retries=0))
    app.extensions["replicas"] = session
