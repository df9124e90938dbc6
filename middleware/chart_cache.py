"""The chart's city totals in Redis: filled when cold, refreshed by every report query.

Redis is a cache here, never the truth: when it is down every read falls back to the
database (fail open) and the failure is logged and counted, and nothing waits long for it
(sub-second socket timeouts).

Two refills can race (two reports, or a report and a cold miss): each stores the time its
database query started beside the totals, and a compare-and-set script writes only when that
is newer than what Redis holds, so a slow older query never overwrites a newer one.
"""

import json
import logging
import time
from datetime import UTC, datetime

import redis
from flask import Flask, current_app

from common import records
from common.metrics import CHART_CACHE_LOOKUPS, CHART_CACHE_REFRESHES, track_dependency

log = logging.getLogger(__name__)

DATA_KEY = "chart:v2"  # a hash: data (the chart's JSON), filled (microseconds since the epoch its query started)
PNG_KEY = "chart:v1:png:{generated_at}"
# KEYS[1] the hash; ARGV: data, filled, ttl. Atomic in Redis, so no refill slips in between.
_STORE_IF_NEWER = """
local filled = redis.call('HGET', KEYS[1], 'filled')
if filled and tonumber(filled) >= tonumber(ARGV[2]) then
  return 0
end
redis.call('HSET', KEYS[1], 'data', ARGV[1], 'filled', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"""


def _redis() -> redis.Redis:
    return current_app.extensions["redis"]


def _db():
    return current_app.extensions["mongo"][current_app.config["MONGO_DB"]]


def _clock_us(shared: bool) -> int:
    """Now in microseconds (exact in Lua's doubles, nanoseconds are not), on Redis's clock when
    `shared`: the one clock all middleware processes and hosts agree on, whatever their own say."""
    if shared:
        try:
            seconds, micros = _redis().time()
            return seconds * 1_000_000 + micros
        except redis.RedisError:
            pass  # the write that needs it will fail too
    return time.time_ns() // 1000


def _from_database(shared_clock: bool = True) -> tuple[dict, int]:
    """The chart from the database, and when its query started (what orders racing refills)."""
    filled = _clock_us(shared_clock)
    with track_dependency("mongodb", "city_totals"):
        cities = records.city_totals(_db())
    return {
        "cities": [{"city": c["city"], "total": c["total"]} for c in cities],
        "total": sum(c["total"] for c in cities),
        "generated_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
    }, filled


def store(chart: dict, filled: int) -> bool:
    """Cache the chart unless Redis holds one from a later query; False when not written."""
    try:
        with track_dependency("redis", "set"):
            written = current_app.extensions["chart_store_script"](
                keys=[DATA_KEY], args=[json.dumps(chart), filled, current_app.config["CHART_CACHE_TTL_SECONDS"]])
    except redis.RedisError as error:
        log.warning("chart cache not written, Redis unavailable: %s", error)
        return False
    if not written:
        log.info("chart cache kept: a newer refill got there first")
    return bool(written)


def _lookup() -> tuple[bytes | None, dict | None, str]:
    """(cached JSON, None) on a hit, else (None, the chart from the database); and the source:
    'hit', 'miss' (filled now) or 'bypass' (Redis down)."""
    try:
        with track_dependency("redis", "get"):
            cached = _redis().hget(DATA_KEY, "data")
    except redis.RedisError as error:
        CHART_CACHE_LOOKUPS.labels("error").inc()
        log.warning("chart cache unavailable, serving from the database: %s", error)
        return None, _from_database(shared_clock=False)[0], "bypass"
    if cached is not None:
        CHART_CACHE_LOOKUPS.labels("hit").inc()
        return cached, None, "hit"
    CHART_CACHE_LOOKUPS.labels("miss").inc()
    chart, filled = _from_database()
    CHART_CACHE_REFRESHES.labels("miss").inc()
    store(chart, filled)
    return None, chart, "miss"


def get() -> tuple[dict, str]:
    """The chart and where it came from (see _lookup)."""
    cached, chart, source = _lookup()
    return (json.loads(cached) if cached is not None else chart), source


def get_encoded() -> tuple[bytes, str]:
    """The chart as a JSON object, and where it came from: a hit is passed on as Redis holds it,
    never decoded and encoded again (that round trip was a tenth of a cached answer's cost)."""
    cached, chart, source = _lookup()
    return (cached if cached is not None else json.dumps(chart).encode()), source


def refresh(trigger: str) -> dict:
    chart, filled = _from_database()
    if store(chart, filled):
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
    client = redis.Redis.from_url(
        app.config["REDIS_URL"], socket_timeout=0.5, socket_connect_timeout=0.5, health_check_interval=10,
    )
    app.extensions["redis"] = client
    app.extensions["chart_store_script"] = client.register_script(_STORE_IF_NEWER)  # EVALSHA, EVAL when unknown
