"""The chart: served from the Redis cache, refreshed by every report query, open when Redis fails."""

import io
import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from flask import Flask
from PIL import Image
from scrape import metric_sum

from forms import register
from middleware import chart_cache


def _chart(http, stack):
    response = http.get(f"{stack.url}/api/chart")
    assert response.status_code == 200
    assert response.headers["X-Served-By"] == "middleware"
    return response.json()


def _total(chart, city):
    return next((row["total"] for row in chart["cities"] if row["city"] == city), 0)


def _report(http, stack):
    response = http.get(f"{stack.url}/api/reports/cities.xlsx", auth=stack.admin, timeout=120)
    assert response.status_code == 200


def test_chart_is_served_from_the_cache_and_refreshed_by_a_report(http, stack):
    city = f"Cache {uuid.uuid4().hex[:8]}"
    _report(http, stack)  # warm: the cache now holds the current totals
    assert _chart(http, stack)["cache"] == "hit"

    register(http, stack, city=city)
    stale = _chart(http, stack)
    assert stale["cache"] == "hit"
    assert _total(stale, city) == 0  # the rule: only a report query refreshes the cache

    _report(http, stack)
    fresh = _chart(http, stack)
    assert fresh["cache"] == "hit"
    assert _total(fresh, city) == 1
    assert fresh["generated_at"] > stale["generated_at"]


def test_a_refused_report_does_not_refresh_the_cache(http, stack):
    _report(http, stack)
    before = _chart(http, stack)["generated_at"]
    assert http.get(f"{stack.url}/api/reports/cities.xlsx", auth=("admin", "wrong")).status_code == 401
    assert _chart(http, stack)["generated_at"] == before


def test_cold_cache_is_filled_from_the_database(http, stack):
    import redis

    direct = redis.Redis.from_url(stack.settings.redis_url)
    direct.flushdb()
    direct.ping()  # the fence a writer owes the middleware's copies (see chart_cache.store)
    first = _chart(http, stack)
    assert first["cache"] == "miss"
    assert first["total"] == stack.registration_count()
    assert _chart(http, stack)["cache"] == "hit"


def test_chart_totals_match_the_database(http, stack):
    _report(http, stack)
    chart = _chart(http, stack)
    assert chart["total"] == sum(row["total"] for row in chart["cities"]) == stack.registration_count()


def test_chart_png_is_a_bar_chart_image(http, stack):
    response = http.get(f"{stack.url}/api/chart.png")
    assert response.status_code == 200 and response.headers["Content-Type"] == "image/png"
    image = Image.open(io.BytesIO(response.content))
    assert image.format == "PNG" and image.width >= 600
    colors = {color for _, color in image.convert("RGB").getcolors(1_000_000)}
    assert (0x2F, 0x6D, 0xB5) in colors  # the bars are drawn


def test_a_change_in_redis_is_served_by_every_middleware_process_at_once(http, stack):
    """Each middleware process keeps a local copy of the chart; Redis's invalidation reaches
    all of them, so no read after a change (here written to Redis directly) is stale."""
    import redis

    _report(http, stack)
    for _ in range(30):  # every worker and thread has served, and now holds, the current chart
        assert _chart(http, stack)["cache"] == "hit"
    marker = f"direct-{uuid.uuid4().hex[:8]}"
    direct = redis.Redis.from_url(stack.settings.redis_url)
    direct.hset(chart_cache.DATA_KEY, "data", json.dumps({"cities": [], "total": -1, "generated_at": marker}))
    direct.ping()  # the fence a writer owes the copies (see chart_cache.store)
    try:
        assert {_chart(http, stack)["generated_at"] for _ in range(30)} == {marker}
    finally:
        _report(http, stack)  # the real totals again (a newer query than the cached one)
    assert {_chart(http, stack)["generated_at"] for _ in range(30)} != {marker}


def test_chart_fails_open_when_redis_is_down(http, stack, stopped):
    register(http, stack, city=f"Open {uuid.uuid4().hex[:8]}")
    for _ in range(10):  # local copies in the middleware processes: they must not outlive Redis
        _chart(http, stack)
    stopped("redis")
    chart = _chart(http, stack)
    assert chart["cache"] == "bypass"
    assert chart["total"] == stack.registration_count()  # straight from the database
    assert http.get(f"{stack.url}/api/chart.png").status_code == 200
    _report(http, stack)  # a report still works; only its cache refresh is skipped
    log = (stack.settings.log_dir / "middleware.log").read_text()
    assert "chart cache unavailable, serving from the database" in log
    ready = http.get(f"http://127.0.0.1:{stack.settings.ports['MIDDLEWARE_PORT']}/ready")
    assert ready.status_code == 503 and ready.json()["checks"]["redis"].startswith("unreachable")


def _totals_queries(stack) -> float:
    """The middleware's whole-collection totals queries so far (every worker's, from /metrics)."""
    url = f"http://127.0.0.1:{stack.settings.ports['MIDDLEWARE_PORT']}/metrics"
    return metric_sum(url, "dependency_duration_seconds_count", dependency="mongodb", operation="city_totals")


def test_with_redis_down_chart_reads_do_not_each_scan_the_database(stack, stopped):
    stopped("redis")
    before = _totals_queries(stack)
    with ThreadPoolExecutor(24) as pool:
        charts = list(pool.map(lambda _: requests.get(f"{stack.url}/api/chart", timeout=30).json(), range(24)))
    assert {chart["cache"] for chart in charts} == {"bypass"}
    assert {chart["total"] for chart in charts} == {stack.registration_count()}
    # a process's reads share one query and reuse its answer for a moment: one query per worker
    # (two should the burst outlast that moment), not one per read
    workers = int(stack.settings.get("GUNICORN_WORKERS", "2"))
    assert _totals_queries(stack) - before <= 2 * workers


def test_chart_recovers_the_cache_when_redis_returns(http, stack, stopped):
    _report(http, stack)
    before = _chart(http, stack)
    stopped("redis")
    assert _chart(http, stack)["cache"] == "bypass"
    stack.start("redis")
    deadline = time.monotonic() + 10
    sources = []
    while time.monotonic() < deadline and "hit" not in sources:
        sources.append(_chart(http, stack)["cache"])
    assert "hit" in sources  # refilled on the first miss, then served from Redis again
    # Redis came back empty: the chart is a new one from the database, no copy of the old one
    assert all(chart["generated_at"] > before["generated_at"] for chart in (_chart(http, stack) for _ in range(10)))


@pytest.fixture
def cache_app(stack):
    """chart_cache on the test stack's Redis, in a database of its own (15), emptied afterwards."""
    app = Flask(__name__)
    app.config.update(REDIS_URL=stack.settings.redis_url.removesuffix("/0") + "/15", CHART_CACHE_TTL_SECONDS=60)
    chart_cache.init_app(app)
    with app.app_context():
        app.extensions["redis"].flushdb()
        yield app
        app.extensions["redis"].flushdb()


def test_a_slow_older_refill_never_overwrites_a_newer_one(cache_app):
    newer = {"cities": [{"city": "Quito", "total": 2}], "total": 2, "generated_at": "2026-01-01T00:00:02.000+00:00"}
    older = {"cities": [{"city": "Quito", "total": 1}], "total": 1, "generated_at": "2026-01-01T00:00:03.000+00:00"}
    assert chart_cache.store(newer, filled=2_000_000)
    # the older query started first but finished last
    assert not chart_cache.store(older, filled=1_000_000)
    assert chart_cache.get() == (newer, "hit")
    assert 50 < cache_app.extensions["redis"].ttl(chart_cache.DATA_KEY) <= 60
    newest = {**newer, "total": 3}
    assert chart_cache.store(newest, filled=3_000_000)
    assert json.loads(cache_app.extensions["redis"].hget(chart_cache.DATA_KEY, "data")) == newest
