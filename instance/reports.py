"""GET /api/reports/cities.xlsx: the admin report, whole or for one city (?city=X).

What the report counted is saved under the request's id for the middleware, which refreshes the
chart from it; a whole report also corrects the city counters that drifted."""

import logging
from datetime import UTC, datetime

import pymongo
from flask import Blueprint, Response, g, request, url_for
from pymongo.errors import PyMongoError

from common import records
from common.cities import city_key
from common.errors import ApiError
from common.metrics import track_dependency
from instance import report
from instance.auth import admin_required
from instance.db import get_db
from instance.validation import CITY_MAX, required_text

log = logging.getLogger(__name__)
bp = Blueprint("reports", __name__)

COUNTS_SECONDS = 5.0  # saving the counts and correcting the counters: a few short writes
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@bp.get("/api/reports/cities.xlsx")
@admin_required
def cities_xlsx():
    key = None
    if "city" in request.args:
        key = city_key(required_text(request.args.get("city"), "city", "City", CITY_MAX))

    # one url_for per report, not per row: 100k rows would spend seconds in routing
    placeholder = "0" * 32
    before, _, after = url_for("registrations.photo", registration_id=placeholder).partition(placeholder)
    prefix = request.host_url.rstrip("/") + before

    def photo_link(registration_id: str) -> str:
        return prefix + registration_id + after

    db, request_id = get_db(), g.request_id

    def counted(counts: report.Counted) -> None:
        names = {key: city["city"] for key, city in counts.known.items()}
        rows = records.chart_rows({key: n for key, (n, _) in counts.rows.items()}, names)
        try:
            with pymongo.timeout(COUNTS_SECONDS), track_dependency("mongodb", "report_counts"):
                records.save_report_counts(db, request_id, counts.scope, rows)
                if counts.scope == "all":
                    fixed = records.correct_totals(db, counts.known, counts.rows, counts.started_at)
                    if fixed:
                        log.warning("city totals corrected from the report's counts", extra={"cities": fixed})
        except PyMongoError as error:  # the workbook is right; the chart waits for the next report
            log.error("the report's counts were not saved: %s", error)

    try:
        body = report.stream_xlsx(db, photo_link, key, counted)
    except PyMongoError:
        raise ApiError(503, "database_unavailable", "The registration database is unavailable right now.") from None

    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    label = "".join(c if c.isascii() and c.isalnum() else "-" for c in key)[:40] if key else "all-cities"
    # streamed as it is written: no Content-Length, the server sends it chunked
    response = Response(body, mimetype=XLSX, direct_passthrough=True)
    response.headers["Content-Disposition"] = f'attachment; filename="registrations-{label}-{stamp}.xlsx"'
    response.headers["Cache-Control"] = "private, no-store"
    return response
