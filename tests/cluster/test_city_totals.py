"""City totals kept on insert: a retried registration counts once, the chart on a cold cache reads
the counters (no count of every row), and a whole report corrects a counter that drifted."""

import uuid
from datetime import UTC, datetime, timedelta

import redis

from common import records
from common.cities import city_key
from forms import register


def _counter(stack, city: str) -> int | None:
    doc = stack.db[records.CITIES].find_one({"_id": city_key(city)})
    return None if doc is None else doc.get("total")


def _report(http, stack, **params):
    response = http.get(f"{stack.url}/api/reports/cities.xlsx", params=params, auth=stack.admin, timeout=120)
    assert response.status_code == 200, response.text[:300]


def test_a_registration_and_its_retries_count_once(http, stack):
    city = f"Counted {uuid.uuid4().hex[:8]}"
    key = str(uuid.uuid4())
    first = register(http, stack, city=city, headers={"Idempotency-Key": key})
    again = register(http, stack, city=city, headers={"Idempotency-Key": key})
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.headers.get("Idempotent-Replayed") == "true"
    register(http, stack, city=city.upper())  # another spelling, the same city
    assert _counter(stack, city) == 2


def test_a_cold_chart_reads_the_counters(http, stack):
    city = f"Cold {uuid.uuid4().hex[:8]}"
    register(http, stack, city=city)
    direct = redis.Redis.from_url(stack.settings.redis_url)
    direct.flushdb()
    direct.ping()  # the fence a writer owes the middleware's copies (see chart_cache.store)
    chart = http.get(f"{stack.url}/api/chart", timeout=30).json()
    assert chart["cache"] == "miss"
    assert {row["city"]: row["total"] for row in chart["cities"]}[city] == 1


def test_a_whole_report_corrects_a_counter_that_drifted_and_refreshes_the_chart_from_its_counts(http, stack):
    city = f"Drifted {uuid.uuid4().hex[:8]}"
    key = city_key(city)
    old = datetime.now(UTC) - timedelta(hours=1)  # settled rows: no increment can still be on its way
    docs = [
        records.new_registration(f"Person {n}", city, "00/none.jpg", created_at=old + timedelta(seconds=n))
        for n in range(3)
    ]
    stack.db[records.CITIES].insert_one({"_id": key, "city": city, "total": 1})  # two rows not counted
    stack.db[records.REGISTRATIONS].insert_many(docs)
    try:
        _report(http, stack)
        assert _counter(stack, city) == 3
        chart = http.get(f"{stack.url}/api/chart", timeout=30).json()
        assert {row["city"]: row["total"] for row in chart["cities"]}[city] == 3

        stack.db[records.REGISTRATIONS].insert_one(
            records.new_registration("Late", city, "00/none.jpg", created_at=old + timedelta(seconds=9))
        )
        _report(http, stack, city=city)  # one city: its total in the chart, the counter left alone
        chart = http.get(f"{stack.url}/api/chart", timeout=30).json()
        assert {row["city"]: row["total"] for row in chart["cities"]}[city] == 4
        assert _counter(stack, city) == 3
    finally:
        stack.db[records.REGISTRATIONS].delete_many({"city_key": key})
        stack.db[records.CITIES].delete_one({"_id": key})


def test_a_report_leaves_recent_rows_to_their_own_increment(http, stack):
    city = f"Recent {uuid.uuid4().hex[:8]}"
    key = city_key(city)
    stack.db[records.CITIES].insert_one({"_id": key, "city": city, "total": 0})
    stack.db[records.REGISTRATIONS].insert_one(records.new_registration("Just now", city, "00/none.jpg"))
    try:
        _report(http, stack)
        assert _counter(stack, city) == 0  # its increment could still be on its way
    finally:
        stack.db[records.REGISTRATIONS].delete_many({"city_key": key})
        stack.db[records.CITIES].delete_one({"_id": key})
