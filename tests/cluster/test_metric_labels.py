"""Clients cannot make metric series: methods and paths they invent, sent through the public
port, end up under closed label sets ("other" methods, the "None" endpoint), so the number of
series on the replicas stays what it was."""

import random
import string

import requests
from prometheus_client.parser import text_string_to_metric_families

REQUEST_METRICS = "flask_http_request_"  # total, duration_seconds_*, exceptions_total


def _series(stack) -> set[tuple]:
    """Every request-metric series of every replica (each of its workers' samples merged)."""
    series = set()
    for n in (1, 2, 3):
        text = requests.get(f"http://127.0.0.1:{stack.settings.instance_port(n)}/metrics", timeout=10).text
        for family in text_string_to_metric_families(text):
            series.update(
                (n, sample.name, tuple(sorted(sample.labels.items())))
                for sample in family.samples
                if sample.name.startswith(REQUEST_METRICS)
            )
    return series


def _invent(http, stack, count: int) -> None:
    for _ in range(count):
        token = "".join(random.choices(string.ascii_uppercase, k=12))  # nginx takes letters and _ as a method
        assert http.request(token, f"{stack.url}/api/registrations", timeout=10).status_code == 405
        assert http.request(token, f"{stack.url}/api/{token}", timeout=10).status_code == 404
        assert http.get(f"{stack.url}/api/{token.lower()}/photo", timeout=10).status_code == 404  # no such route


def test_invented_methods_and_paths_add_no_series(http, stack):
    _invent(http, stack, 6)  # every replica has now seen each kind of request once
    before = _series(stack)
    _invent(http, stack, 60)
    after = _series(stack)
    assert after == before, sorted(after - before)[:5]
    methods = {dict(labels).get("method") for _, _, labels in before}
    assert "other" in methods, methods
