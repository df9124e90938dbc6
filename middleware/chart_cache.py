"""The chart's city totals in Redis: filled when cold, refreshed by every report query.

Redis is a cache here, never the truth: when it is down every read falls back to the
database (fail open) and the failure is logged and counted, and nothing waits long for it
(sub-second socket timeouts).
"""

import json
import logging
from datetime import UTC, datetime

import redis
from flask import Flask, current_app

from common import records
from common.metrics import CHART_CACHE_LOOKUPS, CHART_CACHE_REFRESHES, track_dependency

log = logging.getLogger(__name__)

DATA_KEY = "chart:v1:data"
PNG_KEY = "chart:v1:png:{generated_at}"


def _redis() -> redis.Redis:
    return current_app.extensions["redis"]


def _db():
    return current_app.extensions["mongo"][current_app.config["MONGO_DB"]]


def _from_database() -> dict:
    with track_dependency("mongodb", "city_totals"):
        cities = records.city_totals(_db())
    return {
        "cities": [{"city": c["city"], "total": c["total"]} for c in cities],
        "total": sum(c["total"] for c in cities),
        "generated_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
    }


def _store(chart: dict) -> bool:
    try:
        with track_dependency("redis", "set"):
            _redis().set(DATA_KEY, json.dumps(chart), ex=current_app.config["CHART_CACHE_TTL_SECONDS"])
        return True
    except redis.RedisError as error:
        log.warning("chart cache not written, Redis unavailable: %s", error)
        return False


def get() -> tuple[dict, str]:
    """The chart and where it came from: 'hit', 'miss' (filled now) or 'bypass' (Redis down)."""
    try:
        with track_dependency("redis", "get"):
            cached = _redis().get(DATA_KEY)
    except redis.RedisError as error:
        CHART_CACHE_LOOKUPS.labels("error").inc()
        log.warning("chart cache unavailable, serving from the database: %s", error)
        return _from_database(), "bypass"
    if cached is not None:
        CHART_CACHE_LOOKUPS.labels("hit").inc()
        return json.loads(cached), "hit"
    CHART_CACHE_LOOKUPS.labels("miss").inc()
    chart = _from_database()
    CHART_CACHE_REFRESHES.labels("miss").inc()
    _store(chart)
    return chart, "miss"


def refresh(trigger: str) -> dict:
    chart = _from_database()
    if _store(chart):
        CHART_CACHE_REFRESHES.labels(trigger).inc()
    return chart


def get_png(chart: dict, render) -> bytes:
    """The rendered chart for exactly this generation of the totals, cached beside them."""
    key = PNG_KEY.format(generated_at=chart["generated_at"])
    try:
        with track_dependency("redis", "get"):
            png = _redis().get(key)
        if png is not None:
            return png
    except redis.RedisError as error:
        log.warning("chart image cache unavailable: %s", error)
        return render(chart)
    png = render(chart)
    try:
        with track_dependency("redis", "set"):
            _redis().set(key, png, ex=current_app.config["CHART_CACHE_TTL_SECONDS"])
    except redis.RedisError as error:
        log.warning("chart image not cached: %s", error)
    return png


def ping() -> None:
    _redis().ping()


def init_app(app: Flask) -> None:
    app.extensions["redis"] = redis.Redis.from_url(
        app.config["REDIS_URL"], socket_timeout=0.5, socket_connect_timeout=0.5, health_check_interval=10,
    )
