"""The per-process count of wrong admin passwords that stands in while Redis is unreachable:
windows end by themselves, and a spray of addresses cannot grow it without bound."""

from instance import auth


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_failures_count_within_a_window_and_end_with_it(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(auth.time, "monotonic", clock)
    local = auth.LocalFailures()
    assert local.get("198.51.100.7") == (0, 0)
    assert local.add("198.51.100.7", 60) == (1, 61)
    clock.now += 30
    assert local.add("198.51.100.7", 60) == (2, 31)  # the window runs from the first failure
    assert local.get("198.51.100.7") == (2, 31)
    assert local.get("198.51.100.8") == (0, 0)  # per address
    clock.now += 31
    assert local.get("198.51.100.7") == (0, 0)
    assert local.add("198.51.100.7", 60) == (1, 61)  # a new window


def test_a_spray_of_addresses_keeps_the_count_bounded(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(auth.time, "monotonic", clock)
    monkeypatch.setattr(auth, "LOCAL_MAX_ADDRESSES", 100)
    local = auth.LocalFailures()
    for n in range(250):
        local.add(f"203.0.113.{n}", 60)
    assert len(local._windows) <= 100
    assert local.get("203.0.113.249")[0] == 1  # the newest are kept, the oldest forgotten first
    assert local.get("203.0.113.0") == (0, 0)
    clock.now += 61  # expired windows are dropped before any current one
    local.add("192.0.2.1", 60)
    assert len(local._windows) == 1
