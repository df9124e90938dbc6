"""Every request is counted once, under the names and labels of prometheus-flask-exporter's
defaults that the dashboards and rules use; /metrics itself is not counted."""

from common import metrics


def _samples(client) -> dict[tuple, float]:
    client.get("/metrics")  # served, never counted
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for metric in (metrics.HTTP_REQUESTS, metrics.HTTP_SECONDS, metrics.HTTP_EXCEPTIONS)
        for family in metric.collect()
        for s in family.samples
    }


def _value(registry_samples, name, **labels) -> float:
    return registry_samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_requests_are_counted_with_the_exporters_names_and_labels(make_middleware_app):
    app = make_middleware_app("http://127.0.0.1:9")

    @app.get("/boom")
    def boom():
        raise RuntimeError("unhandled")

    client = app.test_client()
    before = _samples(client)
    for _ in range(3):
        assert client.get("/health").status_code == 200
    assert client.get("/nowhere").status_code == 404
    assert client.get("/boom").status_code == 500
    after = _samples(client)

    def grew(name, **labels):
        return _value(after, name, **labels) - _value(before, name, **labels)

    assert grew("flask_http_request_total", method="GET", status="200", service="middleware") == 3
    assert (
        grew(
            "flask_http_request_duration_seconds_count",
            method="GET",
            status="200",
            endpoint="health.health",
            service="middleware",
        )
        == 3
    )
    assert (
        grew(
            "flask_http_request_duration_seconds_count",
            method="GET",
            status="404",
            endpoint="None",
            service="middleware",
        )
        == 1
    )
    # an exception in a view: the JSON error handler answers 500, counted once
    assert grew("flask_http_request_total", method="GET", status="500", service="middleware") == 1
    assert not any(dict(labels).get("endpoint") == "prometheus_metrics" for _, labels in after)


def test_the_exporter_does_not_count_requests_a_second_time(make_middleware_app):
    app = make_middleware_app("http://127.0.0.1:9")
    hooks = [f for funcs in app.after_request_funcs.values() for f in funcs]
    assert not any(getattr(f, "__module__", "").startswith("prometheus_flask_exporter") for f in hooks)
    assert any(getattr(f, "__module__", "") == metrics.__name__ for f in hooks)


def test_an_invented_method_and_status_are_counted_as_other():
    assert metrics.request_labels("XYZZY", 200) == ("other", "200")
    assert metrics.request_labels("PATCH", 799) == ("PATCH", "other")
    assert metrics.request_labels("get", "404") == ("other", "404")  # methods are case-sensitive
