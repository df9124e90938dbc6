"""HTTP Basic authentication for admins (reports and personal data), and the throttle on guessing.

Password checks are counted per client address (nginx's $remote_addr, which ProxyFix makes
request.remote_addr) in Redis, so every worker of every replica sees the same count and a
restart forgets nothing. The count is taken before the password is checked, in one atomic
step: a request with credentials first reserves one of the ADMIN_AUTH_MAX_FAILURES attempts of
its address's window (ADMIN_AUTH_WINDOW_SECONDS from the first), and a right password gives
its reservation back. So concurrent guesses cannot pass the limit, by construction, and an
address out of attempts is answered 429 without its password being checked (that answer would
tell a guesser when a guess is right). Refused attempts do not extend the window, so the real
admin gets in again at most one window after a burst, even behind the attacker's NAT.

A request without credentials (a browser's first try, before it asks for the password) is a
plain 401 and counts nothing. When Redis cannot be reached each process counts on its own
(guessing stays throttled, if up to workers x replicas times more loosely) and Redis is left
alone for a few seconds, so an outage adds no wait to admin requests.
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

# KEYS[1] the address's counter; ARGV[1] the limit, ARGV[2] the window. Reserves one attempt if
# any is left: {1, attempts, ttl}; else {0, attempts, ttl} and nothing changes (so no window is
# extended). INCR and EXPIRE together, so no counter is ever left without an end.
_RESERVE_ATTEMPT = """
local attempts = tonumber(redis.call('GET', KEYS[1]) or '0')
if attempts >= tonumber(ARGV[1]) then
  return {0, attempts, redis.call('TTL', KEYS[1])}
end
attempts = redis.call('INCR', KEYS[1])
if attempts == 1 or redis.call('TTL', KEYS[1]) < 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[2])
end
return {1, attempts, redis.call('TTL', KEYS[1])}
"""
# a right password gives its attempt back, unless the window (and its counter) ended meanwhile
_RELEASE_ATTEMPT = """
if redis.call('GET', KEYS[1]) then
  return redis.call('DECR', KEYS[1])
end
return 0
"""


class LocalFailures:
    """The per-process fallback: the same reservations in fixed windows, under a lock."""

    def __init__(self):
        self._lock = threading.Lock()
        self._windows: dict[str, tuple[int, float]] = {}  # address -> (attempts, window end, monotonic)

    def reserve(self, address: str, limit: int, window: int) -> tuple[bool, int, int]:
        """(reserved, attempts counted, seconds left in the window), as _RESERVE_ATTEMPT."""
        now = time.monotonic()
        with self._lock:
            attempts, ends = self._windows.get(address, (0, 0.0))
            if ends <= now:
                attempts, ends = 0, now + window
                self._windows.pop(address, None)
                if len(self._windows) >= LOCAL_MAX_ADDRESSES:
                    self._forget_some(now)
            if attempts >= limit:
                return False, attempts, int(ends - now) + 1
            self._windows[address] = (attempts + 1, ends)
        return True, attempts + 1, int(ends - now) + 1

    def release(self, address: str) -> None:
        with self._lock:
            attempts, ends = self._windows.get(address, (0, 0.0))
            if attempts > 0 and ends > time.monotonic():
                self._windows[address] = (attempts - 1, ends)

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


def _reserve_attempt(address: str) -> tuple[bool, int, int, bool]:
    """(reserved, attempts counted, seconds left, counted in Redis) for one password check."""
    limit = current_app.config["ADMIN_AUTH_MAX_FAILURES"]
    window = current_app.config["ADMIN_AUTH_WINDOW_SECONDS"]
    shared = _redis_call(
        lambda client: current_app.extensions["auth_reserve_attempt"](
            keys=[KEY_PREFIX + address], args=[limit, window], client=client
        )
    )
    if shared is None:
        return (*_local.reserve(address, limit, window), False)
    reserved, attempts, left = (int(value) for value in shared)
    return bool(reserved), attempts, max(left, 1), True


def _release_attempt(address: str, in_redis: bool) -> None:
    if not in_redis:
        _local.release(address)
    elif (
        _redis_call(
            lambda client: current_app.extensions["auth_release_attempt"](keys=[KEY_PREFIX + address], client=client)
        )
        is None
    ):
        log.warning("admin sign-in from %s keeps its attempt counted until the window ends: Redis unavailable", address)


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
            reserved, attempts, left, in_redis = _reserve_attempt(address)
            if not reserved:
                ADMIN_AUTH_THROTTLED.inc()
                return _too_many_attempts(left)
            if _credentials_ok():
                _release_attempt(address, in_redis)
                return view(*args, **kwargs)
            ADMIN_AUTH_FAILURES.inc()
            if attempts == current_app.config["ADMIN_AUTH_MAX_FAILURES"]:
                log.warning("admin sign-in from %s blocked for %d s after %d wrong passwords", address, left, attempts)
            else:
                log.info("wrong admin credentials from %s (%d in this window)", address, attempts)
        raise ApiError(401, "unauthorized", "Admin credentials are required (HTTP Basic, user 'admin').")

    return wrapper


def init_app(app: Flask) -> None:
    # Short timeouts: a frozen Redis costs one admin request a quarter second, then it rests.
    client = redis.Redis.from_url(app.config["REDIS_URL"], socket_timeout=0.25, socket_connect_timeout=0.25)
    app.extensions["auth_redis"] = client
    app.extensions["auth_reserve_attempt"] = client.register_script(_RESERVE_ATTEMPT)
    app.extensions["auth_release_attempt"] = client.register_script(_RELEASE_ATTEMPT)

    @app.after_request
    def _challenge(response):
        if response.status_code == 401:
            response.headers["WWW-Authenticate"] = REALM
        return response
