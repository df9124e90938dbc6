"""The chart's city totals in Redis: filled when cold, refreshed by every report query.

Redis is a cache here, never the truth: when it is down every read falls back to the
database (fail open) and the failure is logged and counted, and nothing waits long for it
(sub-second socket timeouts).

A hit costs no round trip: each middleware process keeps the bytes it last read and reads them
on a connection with Redis 6+ server-assisted client-side caching (`CLIENT TRACKING` over RESP3),
so Redis pushes an invalidation on that same connection as soon as anyone changes or expires
the key. Each hit first looks (a non-blocking poll, no round trip) for such a message, or for
the connection having closed (Redis stopped or restarted); either drops the copy. Redis answers
a write before it sends the invalidations the write caused (its pending-write list is
last-in-first-out), so a read racing the writer could still find nothing on its socket: a
writer therefore follows its write with one more round trip (a PING), which Redis answers only
after a pass that sent them. So a report query's refresh, made through any process, is what
the next chart read of every process serves (of one on another host, as soon as the network
delivers the invalidation). The copy is also never kept past the key's own TTL, nor trusted for
more than `_TRUST_SECONDS` without reading it again: a Redis that vanished without closing the
connection (a host gone, a partition) cannot send invalidations, so that bounds how long it
could go unnoticed. The worker's threads share that connection under a lock, so a Redis that
stops answering (a timeout, not a refusal) is left alone for `_BACKOFF_SECONDS`, the chart
served from the database meanwhile, rather than each request waiting its turn to time out. A
server that refuses tracking (an ACL without CLIENT) is read on every request, as before.
(redis-py's own client-side cache refuses servers older than 7.4, Debian 12 ships 7.0, and its
hits still go through the connection pool and a deep copy.)

Chart reads never each ask the database: in a process, the reads that arrive while a totals
query (a read of the city counters, a document per city) runs wait for it and share its outcome
(a failure too), so a cold cache or a Redis outage does not start a query per read; with Redis
down, an answer is also reused for `_BYPASS_REUSE_SECONDS` (see SharedQuery). A report's refresh
takes the totals the report counted.

Two refills can race (two reports, or a report and a cold miss): each stores the time its
database query started beside the totals, and a compare-and-set script writes only when that
is newer than what Redis holds, so a slow older query never overwrites a newer one.
"""

import contextlib
import json
import logging
import math
import os
import threading
import time
from datetime import UTC, datetime

import pymongo
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


_TIMEOUTS = {"socket_timeout": 0.5, "socket_connect_timeout": 0.5}  # both connections: nothing waits long
_TRUST_SECONDS = 1.0  # longest a local copy is served without reading Redis (see the docstring)
_BACKOFF_SECONDS = 1.0  # after a timeout, no new attempt for this long (see the docstring)
TOTALS_SECONDS = 20.0  # reading the city counters (or a report's counts): a frozen database answers 503 by then
_BYPASS_REUSE_SECONDS = 5.0  # with Redis down, how long one process reuses a database answer
_HIT, _MISS, _ERROR = (CHART_CACHE_LOOKUPS.labels(result) for result in ("hit", "miss", "error"))


class _TrackingRefused(Exception):
    """The server answered HELLO 3 or CLIENT TRACKING with an error."""


class TrackedChart:
    """This process's copy of the chart's JSON, valid until Redis says the key changed.

    One tracking connection per process (made lazily, so a forked worker never shares its
    parent's socket), used under a lock by the worker's threads; every read of the key goes
    through it, so the key is tracked for exactly the copy it holds."""

    def __init__(self, url: str, client: redis.Redis):
        self._pool = redis.ConnectionPool.from_url(url, protocol=3, **_TIMEOUTS)
        self._client = client  # the plain client, for a server that refuses tracking
        self._tracking = True
        self._lock = threading.Lock()
        self._conn = None
        self._pid = 0
        self._data: bytes | None = None
        self._valid_until = 0.0  # monotonic: the key's expiry or the trust interval, the sooner
        self._retry_at = 0.0  # monotonic: no attempt before this, after a timeout

    def get(self) -> bytes | None:
        """The chart's JSON, None when Redis holds none; raises RedisError when unreachable."""
        with self._lock:
            if self._tracking:
                try:
                    return self._tracked()
                except _TrackingRefused as error:  # the server is not going to change its mind
                    log.warning("Redis refuses client-side caching, reading the chart on every request: %s", error)
                    self._tracking = False
        with track_dependency("redis", "get"):
            return self._client.hget(DATA_KEY, "data")

    def _tracked(self) -> bytes | None:
        if self._data is not None:
            try:
                self._drain()  # an invalidation waiting on the socket drops the copy
            except redis.RedisError:
                self._close()  # Redis closed it (stopped, or restarted empty): read afresh
            if self._data is not None and time.monotonic() < self._valid_until:
                return self._data
        if time.monotonic() < self._retry_at:
            raise redis.TimeoutError("Redis timed out a moment ago; not asking again yet")
        try:
            return self._read()
        except redis.TimeoutError:
            self._close()
            self._retry_at = time.monotonic() + _BACKOFF_SECONDS
            raise
        except redis.RedisError:
            self._close()
            raise

    def _connection(self):
        if self._conn is None or self._pid != os.getpid():
            self._conn, self._data = None, None
            conn = self._pool.connection_class(**self._pool.connection_kwargs)
            try:
                conn.connect()  # HELLO 3: invalidations arrive on this connection, between replies
                conn.send_command("CLIENT", "TRACKING", "ON")
                conn.read_response()  # an error reply raises ResponseError
            except redis.ResponseError as error:
                conn.disconnect()
                raise _TrackingRefused(str(error)) from error
            except BaseException:
                conn.disconnect()
                raise
            conn._parser.set_invalidation_push_handler(self._invalidated)
            self._conn, self._pid = conn, os.getpid()
        return self._conn

    def _invalidated(self, message):
        # only one key is ever read on this connection, so any invalidation (of it, or a
        # flush: a null key list) is about the copy
        self._data = None
        return message

    def _drain(self) -> None:
        conn = self._connection()
        while conn.can_read(0):  # raises ConnectionError if Redis closed the connection
            conn.read_response(push_request=True)

    def _read(self) -> bytes | None:
        conn = self._connection()
        self._drain()
        with track_dependency("redis", "get"):
            conn.send_packed_command(conn.pack_commands([("HGET", DATA_KEY, "data"), ("PTTL", DATA_KEY)]))
            data = conn.read_response()  # invalidations before the reply are handled first
            ttl_ms = conn.read_response()
        now = time.monotonic()
        self._data = data
        self._valid_until = now + min(_TRUST_SECONDS, ttl_ms / 1000 if ttl_ms > 0 else 0)
        return data

    def _close(self) -> None:
        self._data = None
        if self._conn is not None:
            self._conn.disconnect()
            self._conn = None


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
    # a frozen database must not hold a chart request past nginx's 30 s: a quick 503 instead
    with pymongo.timeout(TOTALS_SECONDS), track_dependency("mongodb", "city_totals"):
        cities = records.city_totals(_db())
    return {
        "cities": [{"city": c["city"], "total": c["total"]} for c in cities],
        "total": sum(c["total"] for c in cities),
        "generated_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
    }, filled


class SharedQuery:
    """One totals query at a time per process, its answer shared (see the docstring).

    A request that arrives while a query runs takes that query's outcome once it ends: the query
    started before the request did, but so does a cache hit's data. One that arrives later runs
    its own, unless the last answer is younger than `reuse_seconds`. Misses and bypasses have one
    each, and Redis answering again ends the reuse: an answer reused while Redis is down is one
    asked during that same outage."""

    def __init__(self, reuse_seconds: float = 0.0):
        self._reuse_seconds = reuse_seconds
        self._lock = threading.Lock()
        self._ended = -math.inf  # monotonic: when the last query ended
        self._outcome: tuple[dict, int] | BaseException | None = None

    def forget(self) -> None:
        self._outcome = None

    def get(self, query) -> tuple[tuple[dict, int], bool]:
        """(the query's answer, whether this request ran it); raises what the query raised."""
        asked = time.monotonic()
        with self._lock:
            shared = self._outcome is not None and (
                self._ended >= asked
                or (not isinstance(self._outcome, BaseException) and asked - self._ended < self._reuse_seconds)
            )
            if not shared:
                try:
                    self._outcome = query()
                except BaseException as error:
                    self._outcome = error
                    raise
                finally:
                    self._ended = time.monotonic()
                return self._outcome, True
            if isinstance(self._outcome, BaseException):
                raise self._outcome
            return self._outcome, False


def store(chart: dict, filled: int) -> bool:
    """Cache the chart unless Redis holds one from a later query; False when not written."""
    try:
        with track_dependency("redis", "set"):
            written = current_app.extensions["chart_store_script"](
                keys=[DATA_KEY], args=[json.dumps(chart), filled, current_app.config["CHART_CACHE_TTL_SECONDS"]]
            )
    except redis.RedisError as error:
        log.warning("chart cache not written, Redis unavailable: %s", error)
        return False
    if not written:
        log.info("chart cache kept: a newer refill got there first")
        return False
    with contextlib.suppress(redis.RedisError):  # written: the copies are dropped a moment later
        _redis().ping()  # the fence (see the docstring): every copy has had its invalidation
    return True


def _lookup() -> tuple[bytes | None, dict | None, str]:
    """(cached JSON, None) on a hit, else (None, the chart from the database); and the source:
    'hit', 'miss' (filled now) or 'bypass' (Redis down)."""
    bypass = current_app.extensions["chart_bypass_query"]
    try:
        cached = current_app.extensions["chart_local"].get()
    except redis.RedisError as error:
        _ERROR.inc()
        log.warning("chart cache unavailable, serving from the database: %s", error)
        (chart, _), _ = bypass.get(lambda: _from_database(shared_clock=False))
        return None, chart, "bypass"
    bypass.forget()
    if cached is not None:
        _HIT.inc()
        return cached, None, "hit"
    _MISS.inc()
    (chart, filled), ran = current_app.extensions["chart_miss_query"].get(_from_database)
    if ran:  # the others share its answer, and its store
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


def report_started() -> int:
    """When a report began, on the clock that orders refills (see _STORE_IF_NEWER)."""
    return _clock_us(shared=True)


def refresh_from_report(request_id: str, started: int) -> dict:
    """The chart from what the report of this request counted (the replica saved it as the last
    sheet was written), ordered as a query that began with the report: a whole report replaces
    every total, a one-city report that city's. Without saved counts (a replica that could not
    save them), the chart is read from the city counters."""
    with pymongo.timeout(TOTALS_SECONDS), track_dependency("mongodb", "report_counts"):
        counted = records.take_report_counts(_db(), request_id)
    if counted is None:
        log.warning("the report's counts were not found; the chart is refreshed from the city counters")
        return refresh("report")
    rows = [{"city": row["city"], "total": row["total"]} for row in counted["cities"]]
    if counted["scope"] != "all":
        rows = _with_city(get()[0]["cities"], rows, request_id)
    chart = {
        "cities": rows,
        "total": sum(row["total"] for row in rows),
        "generated_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
    }
    if store(chart, started):
        CHART_CACHE_REFRESHES.labels("report").inc()
    return chart


def _with_city(cities: list[dict], counted: list[dict], request_id: str) -> list[dict]:
    """The chart's rows with one city's total replaced by a one-city report's (its name as the
    chart spells it, which a display name of the same key matches)."""
    if not counted:  # the city has no rows: nothing to show or replace
        return cities
    (city,) = counted
    rows = [row for row in cities if row["city"] != city["city"]]
    rows.append(city)
    return sorted(rows, key=lambda row: row["city"].casefold())


class RenderedChart:
    """This process's last chart image and the generation of totals it shows.

    A refresh makes every page view's image a miss at once, and drawing one takes about 0.1 s
    of CPU: so the first request of a process to see a new generation takes it from Redis
    (another process drew it) or draws and stores it, while the others wait for that one
    instead of each drawing its own; later ones cost no round trip. A generation (the totals'
    `generated_at`) never changes its picture, so the copy needs no invalidation."""

    def __init__(self):
        self._lock = threading.Lock()
        self._last: tuple[str, bytes] = ("", b"")

    def get(self, chart: dict, render) -> bytes:
        generation = chart["generated_at"]
        last = self._last
        if last[0] == generation:
            return last[1]
        with self._lock:
            if self._last[0] != generation:
                self._last = (generation, _shared_png(chart, render))
            return self._last[1]


def _shared_png(chart: dict, render) -> bytes:
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


def get_png(chart: dict, render) -> bytes:
    """The rendered chart for exactly this generation of the totals (see RenderedChart)."""
    return current_app.extensions["chart_png"].get(chart, render)


def ping() -> None:
    _redis().ping()


def init_app(app: Flask) -> None:
    client = redis.Redis.from_url(
        app.config["REDIS_URL"],
        **_TIMEOUTS,
        health_check_interval=10,
    )
    app.extensions["redis"] = client
    app.extensions["chart_local"] = TrackedChart(app.config["REDIS_URL"], client)
    app.extensions["chart_png"] = RenderedChart()
    app.extensions["chart_miss_query"] = SharedQuery()
    app.extensions["chart_bypass_query"] = SharedQuery(reuse_seconds=_BYPASS_REUSE_SECONDS)
    app.extensions["chart_store_script"] = client.register_script(_STORE_IF_NEWER)  # EVALSHA, EVAL when unknown
