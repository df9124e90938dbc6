"""GET /api/reports/cities.xlsx: the admin report, whole or for one city (?city=X)."""

from datetime import UTC, datetime

from flask import Blueprint, Response, request, url_for
from pymongo.errors import PyMongoError

from common.cities import city_key
from common.errors import ApiError
from instance import report
from instance.auth import admin_required
from instance.db import get_db
from instance.validation import CITY_MAX, required_text

bp = Blueprint("reports", __name__)

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

    try:
        body = report.stream_xlsx(get_db(), photo_link, key)
    except PyMongoError:
        raise ApiError(503, "database_unavailable", "The registration database is unavailable right now.") from None

    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    label = "".join(c if c.isascii() and c.isalnum() else "-" for c in key)[:40] if key else "all-cities"
    # streamed as it is written: no Content-Length, the server sends it chunked
    response = Response(body, mimetype=XLSX, direct_passthrough=True)
    response.headers["Content-Disposition"] = f'attachment; filename="registrations-{label}-{stamp}.xlsx"'
    response.headers["Cache-Control"] = "private, no-store"
    return response
