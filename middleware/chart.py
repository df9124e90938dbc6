"""GET /api/chart and /api/chart.png: the city totals from the Redis cache (or the database)."""

from flask import Blueprint, Response
from pymongo.errors import PyMongoError

from common.errors import ApiError
from middleware import chart_cache, chart_image

bp = Blueprint("chart", __name__)


def _cached_chart(lookup=chart_cache.get):
    try:
        return lookup()
    except PyMongoError:
        raise ApiError(
            503, "database_unavailable", "The totals are not cached and the database is unavailable right now."
        ) from None


@bp.get("/api/chart")
def chart():
    body, source = _cached_chart(chart_cache.get_encoded)
    # the cached object with one more member: where it came from
    response = Response(body[:-1] + b',"cache":"' + source.encode() + b'"}', mimetype="application/json")
    response.headers["X-Cache"] = source.upper()
    return response


@bp.get("/api/chart.png")
def chart_png():
    data, source = _cached_chart()
    response = Response(chart_cache.get_png(data, chart_image.render), mimetype="image/png")
    response.headers["X-Cache"] = source.upper()
    response.headers["Cache-Control"] = "no-cache"
    return response
