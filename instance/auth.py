"""HTTP Basic authentication for admins (reports and personal data), and the throttle on guessing.

Wrong credentials are counted per client address (nginx's $remote_addr, which ProxyFix makes
request.remote_addr) in Redis, so every worker of every replica sees the same count and a
restart forgets nothing. After ADMIN_AUTH_MAX_FAILURES failures in ADMIN_AUTH_WINDOW_SECONDS
(counted from that address's first failure), its admin requests are answered 429 without the
password being checked, until the window ends: checking it would tell a guesser when a guess
is right. Attempts refused with 429 do not extend the window, so the real admin gets in again
at most one window after a burst, even behind the attacker's NAT.

Only failures are counted and only failures are throttled: a request without credentials (a
browser's first try, before it asks for the password) is a plain 401, and a successful one
costs one Redis read. When Redis cannot be reached each process counts on its own (guessing
stays throttled, if up to workers x replicas times more loosely) and Redis is left alone for a
few seconds, so an outage adds no wait to admin requests.
"""

import base64
import binascii
import hmac
import logging
import threading
import time
from functools import wraps

import redis
from flask import Flask, current_app, request

from common.errors import ApiError, error_response
from common.metrics import ADMIN_AUTH_FAILURES, ADMIN_AUTH_THROTTLED, track_dependency

log = logging.getLogger(__name__)

ADMIN_USER = "admin"
REALM = 'Basic realm="Vaccination admin", charset="UTF-8"'
KEY_PREFIX = "admin-auth-failures:"
REDIS_REST_SECONDS = 5  # after a Redis error, count in this process for that long before asking again
LOCAL_MAX_ADDRESSES = 10_000  # the fallback's memory stays bounded under a spray of addresses

# KEYS[1] the address's counter; ARGV[1] the window. The window starts with the first failure;
# INCR and EXPIRE together, so no counter is ever left without an end.
_COUNT_FAILURE = """
local failures = redis.call('INCR', KEYS[1])
if failures == 1 or redis.call('TTL', KEYS[1]) < 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[1])
end
return {failures, redis.call('TTL', KEYS[1])}
"""


class LocalFailures:
    """The per-process fallback: failures per address in fixed windows, like the Redis counters."""

    def __init__(self):
        self._lock = threading.Lock()
        self._windows: dict[str, tuple[int, float]] = {}  # address -> (failures, window end, monotonic)

    def get(self, address: str) -> tuple[int, int]:
        """(failures, seconds left in the window) of an address."""
        with self._lock:
            failures, ends = self._windows.get(address, (0, 0.0))
        left = ends - time.monotonic()
        return (failures, int(left) + 1) if left > 0 else (0, 0)

    def add(self, address: str, window: int) -> tuple[int, int]:
        now = time.monotonic()
        with self._lock:
            failures, ends = self._windows.get(address, (0, 0.0))
            if ends <= now:
                failures, ends = 0, now + window
                self._windows.pop(address, None)
                if len(self._windows) >= LOCAL_MAX_ADDRESSES:
                    self._forget_some(now)
            self._windows[address] = (failures + 1, ends)
        return failures + 1, int(ends - now) + 1

    def _forget_some(self, now: float) -> None:
        for address in [a for a, (_, ends) in self._windows.items() if ends <= now]:
            del self._windows[address]
        while len(self._windows) >= LOCAL_MAX_ADDRESSES:  # all current: the oldest go first
            del self._windows[next(iter(self._windows))]


_local = LocalFailures()
_redis_rests_until = 0.0


def _redis_call(call):
    """call(client) on Redis, or None when Redis is resting or fails (then it rests)."""
    global _redis_rests_until
    if time.monotonic() < _redis_rests_until:
        return None
    try:
        with track_dependency("redis", "admin_throttle"):
            return call(current_app.extensions["auth_redis"])
    except redis.RedisError as error:
        _redis_rests_until = time.monotonic() + REDIS_REST_SECONDS
        log.warning(
            "admin sign-in throttle counts per process for %d s, Redis unavailable: %s", REDIS_REST_SECONDS, error
        )
        return None


def _seconds_blocked(address: str) -> int:
    """How long the address must wait before its credentials are checked again; 0: not blocked."""
    limit = current_app.config["ADMIN_AUTH_MAX_FAILURES"]
    failures, left = _local.get(address)
    if failures >= limit:
        return left

    def read(client):
        pipe = client.pipeline(transaction=False)
        pipe.get(KEY_PREFIX + address)
        pipe.ttl(KEY_PREFIX + address)
        return pipe.execute()

    shared = _redis_call(read)
    if shared and shared[0] is not None and int(shared[0]) >= limit:
        ttl = int(shared[1])
        return ttl if ttl > 0 else 1
    return 0


def _count_failure(address: str) -> None:
    window = current_app.config["ADMIN_AUTH_WINDOW_SECONDS"]
    shared = _redis_call(
        lambda client: current_app.extensions["auth_count_failure"](
            keys=[KEY_PREFIX + address], args=[window], client=client
        )
    )
    failures, left = (int(shared[0]), int(shared[1])) if shared else _local.add(address, window)
    if failures == current_app.config["ADMIN_AUTH_MAX_FAILURES"]:
        log.warning("admin sign-in from %s blocked for %d s after %d wrong passwords", address, left, failures)
    else:
        log.info("wrong admin credentials from %s (%d in this window)", address, failures)


def _too_many_attempts(seconds: int):
    response = error_response(
        429, "too_many_attempts", f"Too many wrong admin passwords from your address; try again in {seconds} seconds."
    )
    response.headers["Retry-After"] = str(seconds)
    return response


def _credentials_ok() -> bool:
    header = request.headers.get("Authorization", "")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return False
    try:
        user, _, password = base64.b64decode(encoded, validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return False
    # compare both in constant time, and always both, so timing tells nothing about either
    user_ok = hmac.compare_digest(user.encode(), ADMIN_USER.encode())
    password_ok = hmac.compare_digest(password.encode(), current_app.config["ADMIN_PASSWORD"].encode())
    return user_ok & password_ok


def admin_required(view):
    @wraps(view)
    def wrapper(*args, **kwargs):
        if "Authorization" in request.headers:
            address = request.remote_addr or "unknown"
            seconds = _seconds_blocked(address)
            if seconds:
                ADMIN_AUTH_THROTTLED.inc()
                return _too_many_attempts(seconds)
            if _credentials_ok():
                return view(*args, **kwargs)
            ADMIN_AUTH_FAILURES.inc()
            _count_failure(address)
        raise ApiError(401, "unauthorized", "Admin credentials are required (HTTP Basic, user 'admin').")

    return wrapper


def init_app(app: Flask) -> None:
    # Short timeouts: a frozen Redis costs one admin request a quarter second, then it rests.
    client = redis.Redis.from_url(app.config["REDIS_URL"], socket_timeout=0.25, socket_connect_timeout=0.25)
    app.extensions["auth_redis"] = client
    app.extensions["auth_count_failure"] = client.register_script(_COUNT_FAILURE)

    @app.after_request
    def _challenge(response):
        if response.status_code == 401:
            response.headers["WWW-Authenticate"] = REALM
        return response
