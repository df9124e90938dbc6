"""Wrong admin passwords are throttled per client address, across every replica; nothing else is.

Each test speaks to the public nginx from its own loopback address (127.x.y.z: Linux routes the
whole 127/8 to lo), which nginx passes on as the client address, so the tests' guessing never
throttles the rest of the suite (127.0.0.1) and "another address" is a real second client.
"""

import http.client
import json
import random
import time
from base64 import b64encode
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

from scrape import metric_sum

UNKNOWN = "/api/registrations/000000000000000000000000"  # an admin route: 404 once signed in
REPORT = "/api/reports/cities.xlsx?city=Nowhere%20at%20all"  # the admin route through the middleware
PHOTO = UNKNOWN + "/photo"


def new_address() -> str:
    return f"127.{random.randint(1, 254)}.{random.randint(1, 254)}.{random.randint(1, 254)}"


def settings_int(stack, name: str, default: int) -> int:
    return int(stack.settings.get(name, str(default)))


def get(stack, path: str, address: str, password: str | None) -> tuple[int, dict, bytes]:
    url = urlsplit(stack.url)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=10, source_address=(address, 0))
    headers = {"Authorization": "Basic " + b64encode(f"admin:{password}".encode()).decode()} if password else {}
    try:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def throttle_counts(stack) -> tuple[float, float]:
    """(failures, throttled) summed over every replica's /metrics (every worker of each)."""
    urls = [f"http://127.0.0.1:{stack.settings.instance_port(n)}/metrics" for n in (1, 2, 3)]
    return (
        sum(metric_sum(url, "admin_auth_failures_total") for url in urls),
        sum(metric_sum(url, "admin_auth_throttled_total") for url in urls),
    )


def assert_throttled(status: int, headers: dict, body: bytes, window: int) -> int:
    assert status == 429, body
    assert json.loads(body)["error"]["code"] == "too_many_attempts"
    assert json.loads(body)["error"]["field"] is None
    assert json.loads(body)["error"]["message"]
    retry_after = int(headers["retry-after"])
    assert 1 <= retry_after <= window
    return retry_after


def test_wrong_passwords_are_counted_once_across_replicas_and_routes_then_answered_429(stack):
    limit = settings_int(stack, "ADMIN_AUTH_MAX_FAILURES", 10)
    window = settings_int(stack, "ADMIN_AUTH_WINDOW_SECONDS", 60)
    attacker, admin_elsewhere = new_address(), new_address()
    failures_before, throttled_before = throttle_counts(stack)

    served_by = set()
    for n in range(limit):
        status, headers, _ = get(stack, (UNKNOWN, REPORT)[n % 2], attacker, f"guess-{n}")
        assert status == 401
        assert headers["www-authenticate"].startswith("Basic")
        served_by.add(headers["x-served-by"])
    # one count for the whole cluster: per-process counters would still answer 401 here
    assert len(served_by) >= 2, served_by

    for path in (UNKNOWN, REPORT, PHOTO):
        assert_throttled(*get(stack, path, attacker, "one more guess"), window)
    # during the block a right password is not even checked (its answer would tell a guesser)
    assert_throttled(*get(stack, UNKNOWN, attacker, stack.admin[1]), window)
    # ...but the admin at another address is not slowed at all
    status, _, _ = get(stack, UNKNOWN, admin_elsewhere, stack.admin[1])
    assert status == 404

    failures_after, throttled_after = throttle_counts(stack)
    assert failures_after - failures_before >= limit
    assert throttled_after - throttled_before >= 4


def test_the_admin_gets_in_again_when_the_window_ends(stack):
    limit = settings_int(stack, "ADMIN_AUTH_MAX_FAILURES", 10)
    window = settings_int(stack, "ADMIN_AUTH_WINDOW_SECONDS", 60)
    address = new_address()
    for n in range(limit):
        assert get(stack, UNKNOWN, address, f"guess-{n}")[0] == 401
    retry_after = assert_throttled(*get(stack, UNKNOWN, address, stack.admin[1]), window)
    # attempts during the block do not extend it
    for _ in range(5):
        assert_throttled(*get(stack, UNKNOWN, address, "still guessing"), window)

    time.sleep(retry_after + 1)
    assert get(stack, UNKNOWN, address, stack.admin[1])[0] == 404


def test_requests_without_credentials_and_right_passwords_are_never_throttled(stack):
    limit = settings_int(stack, "ADMIN_AUTH_MAX_FAILURES", 10)
    address = new_address()
    # a browser's first try carries no credentials: a 401 that asks for them, not a failure
    for _ in range(3 * limit):
        status, headers, _ = get(stack, UNKNOWN, address, None)
        assert status == 401 and "www-authenticate" in headers
    for _ in range(3 * limit):
        assert get(stack, UNKNOWN, address, stack.admin[1])[0] == 404
    # a few typos stay under the limit
    for n in range(limit - 1):
        assert get(stack, UNKNOWN, address, f"typo-{n}")[0] == 401
    assert get(stack, UNKNOWN, address, stack.admin[1])[0] == 404


def test_honest_volume_from_one_address_is_not_throttled(stack):
    # a campus behind one NAT: many people register and read the chart from one address
    address = new_address()
    url = urlsplit(stack.url)
    for _ in range(60):
        connection = http.client.HTTPConnection(url.hostname, url.port, timeout=10, source_address=(address, 0))
        connection.request("GET", "/api/chart")
        assert connection.getresponse().status == 200
        connection.close()


def test_concurrent_guesses_get_at_most_the_limit_of_401s(stack):
    # the attempt is counted before the password is checked, in one atomic step: guesses that
    # arrive together on every worker of every replica cannot all pass a check made before counting
    limit = settings_int(stack, "ADMIN_AUTH_MAX_FAILURES", 10)
    attacker = new_address()
    with ThreadPoolExecutor(30) as pool:
        answers = list(pool.map(lambda n: get(stack, (UNKNOWN, REPORT)[n % 2], attacker, f"guess-{n}"), range(90)))
    statuses = [status for status, _, _ in answers]
    assert statuses.count(401) <= limit
    assert statuses.count(401) + statuses.count(429) == len(statuses), statuses
    assert len({headers["x-served-by"] for status, headers, _ in answers if status == 401}) >= 2


def test_without_redis_guessing_is_still_throttled_and_the_admin_still_gets_in(stack, stopped):
    limit = settings_int(stack, "ADMIN_AUTH_MAX_FAILURES", 10)
    window = settings_int(stack, "ADMIN_AUTH_WINDOW_SECONDS", 60)
    processes = 3 * settings_int(stack, "GUNICORN_WORKERS", 2)
    stopped("redis")
    attacker, admin = new_address(), new_address()

    # each worker counts on its own now: throttled, if up to `processes` times more loosely
    statuses, answer = [], None
    for n in range(limit * processes + 1):
        answer = get(stack, UNKNOWN, attacker, f"guess-{n}")
        statuses.append(answer[0])
        if answer[0] == 429:
            break
    assert_throttled(*answer, window)
    assert set(statuses[:-1]) == {401}

    started = time.monotonic()
    for _ in range(5):
        assert get(stack, UNKNOWN, admin, stack.admin[1])[0] == 404
    assert time.monotonic() - started < 2.5  # no wait on the dead Redis
