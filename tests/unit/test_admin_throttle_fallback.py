"""The per-process count of admin password checks that stands in while Redis is unreachable:
an attempt is reserved before its check, windows end by themselves, and a spray of addresses
cannot grow it without bound."""

from concurrent.futures import ThreadPoolExecutor

from instance import auth


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_attempts_are_reserved_within_a_window_and_end_with_it(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(auth.time, "monotonic", clock)
    local = auth.LocalFailures()
    assert local.reserve("198.51.100.7", 2, 60) == (True, 1, 61)
    clock.now += 30
    assert local.reserve("198.51.100.7", 2, 60) == (True, 2, 31)  # the window runs from the first attempt
    assert local.reserve("198.51.100.7", 2, 60) == (False, 2, 31)  # out of attempts: nothing changes
    assert local.reserve("198.51.100.8", 2, 60) == (True, 1, 61)  # per address
    local.release("198.51.100.7")  # a right password gives its attempt back
    assert local.reserve("198.51.100.7", 2, 60) == (True, 2, 31)
    clock.now += 31
    local.release("198.51.100.7")  # the window ended: nothing to give back, no negative count
    assert local.reserve("198.51.100.7", 2, 60) == (True, 1, 61)  # a new window


def test_concurrent_reservations_never_pass_the_limit():
    local = auth.LocalFailures()
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda _: local.reserve("198.51.100.9", 10, 60)[0], range(200)))
    assert results.count(True) == 10


def test_a_spray_of_addresses_keeps_the_count_bounded(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(auth.time, "monotonic", clock)
    monkeypatch.setattr(auth, "LOCAL_MAX_ADDRESSES", 100)
    local = auth.LocalFailures()
    for n in range(250):
        local.reserve(f"203.0.113.{n}", 10, 60)
    assert len(local._windows) <= 100
    assert local._windows["203.0.113.249"][0] == 1  # the newest are kept, the oldest forgotten first
    assert "203.0.113.0" not in local._windows
    clock.now += 61  # expired windows are dropped before any current one
    local.reserve("192.0.2.1", 10, 60)
    assert len(local._windows) == 1
