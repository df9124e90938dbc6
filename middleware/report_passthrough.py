"""GET /api/reports/cities.xlsx: the report, built by a replica, refreshing the chart cache on the way.

The rule the system is specified with: every query of the report service refreshes the
chart cache, as the workbook's last bytes pass, from the counts the replica saved under the
request's id. Only a successful (200) report counts, so an unauthenticated caller cannot make
the middleware refresh the chart at will. The workbook is streamed, never buffered.

Which replica builds it is nginx's decision, as for every other request: the request goes to
nginx's internal port (INSTANCES_URL), whose /api/reports/ location uses the same upstream,
and builds a report again on the next replica when one refused it or dropped the connection
before answering (a GET is safe to repeat). A slow replica is not retried: this module's read
timeout answers 504 before nginx's would.
"""

import logging

import requests
from flask import Blueprint, Flask, Response, current_app, g, request, stream_with_context
from pymongo.errors import PyMongoError

from common.errors import ApiError
from common.logs import REQUEST_ID_HEADER
from common.metrics import track_dependency
from middleware import chart_cache

log = logging.getLogger(__name__)
bp = Blueprint("reports", __name__)

FORWARDED = ("Authorization", "Accept", "X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "X-Forwarded-Port")
PASSED_BACK = (
    "Content-Type",
    "Content-Disposition",
    "Content-Length",
    "Cache-Control",
    "WWW-Authenticate",
    "Retry-After",
    "X-Served-By",
)
# connect fast (nginx is local to the cluster). The first byte of a big report can take
# minutes, but must come before nginx's proxy_read_timeout for /api/reports/ (300 s public,
# 290 s internal) runs out, so a slow replica gets the middleware's own answer.
CONNECT_TIMEOUT = 2
READ_TIMEOUT = 280


def _open_upstream() -> requests.Response:
    session: requests.Session = current_app.extensions["replicas"]
    headers = {name: request.headers[name] for name in FORWARDED if name in request.headers}
    headers[REQUEST_ID_HEADER] = g.request_id
    try:
        with track_dependency("instance", "report"):
            upstream = session.get(
                current_app.config["INSTANCES_URL"] + request.full_path,
                headers=headers,
                stream=True,
                timeout=(CONNECT_TIMEOUT, READ_TIMEOUT),
            )
    except requests.ConnectionError as error:
        log.error("the replicas' balancer could not be reached for a report: %s", error)
        raise _unavailable() from None
    except requests.RequestException as error:
        log.error("the report was not answered in time: %s", error)
        raise _timed_out() from None
    # Every replica answer carries X-Served-By; an error without it is nginx's own: no replica
    # could be reached, or every one it tried failed.
    if upstream.status_code >= 500 and "X-Served-By" not in upstream.headers:
        upstream.close()
        log.error("no replica could build the report: the balancer answered %s", upstream.status_code)
        raise _timed_out() if upstream.status_code == 504 else _unavailable()
    return upstream


def _unavailable() -> ApiError:
    return ApiError(503, "replicas_unavailable", "No replica could build the report right now; please try again.")


def _timed_out() -> ApiError:
    return ApiError(504, "report_timeout", "The report took too long to build; please try again later.")


def _refresh_chart(request_id: str, started: int) -> None:
    try:
        chart_cache.refresh_from_report(request_id, started)
    except PyMongoError as error:  # the report itself succeeded; do not fail it
        log.error("chart cache not refreshed after a report: %s", error)


@bp.get("/api/reports/cities.xlsx")
def report() -> Response:
    started = chart_cache.report_started()
    upstream = _open_upstream()
    ok = upstream.status_code == 200
    request_id = g.request_id

    def body():
        # The chart is refreshed once the workbook has passed, before the response's last chunk
        # (a client holding the whole file sees the new chart), from the counts the replica
        # saved as it wrote the last sheet: no count of its own.
        try:
            yield from upstream.iter_content(64 * 1024)
        finally:
            if ok:
                _refresh_chart(request_id, started)

    headers = {name: upstream.headers[name] for name in PASSED_BACK if name in upstream.headers}
    response = Response(
        stream_with_context(body()), status=upstream.status_code, headers=headers, direct_passthrough=True
    )
    response.call_on_close(upstream.close)
    return response


def init_app(app: Flask) -> None:
    session = requests.Session()
    session.mount("http://", requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=8, max_retries=0))
    app.extensions["replicas"] = session
