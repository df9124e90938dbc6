"""Prometheus's lifecycle API is off: nobody who reaches its port can reload or stop it; the
machine's user reloads it with SIGHUP to its process group (`./init.sh reload prometheus`)."""

import time

import pytest
import requests
from scrape import metric_sum

from polling import wait_for
from stack import supervisor


def _prometheus(stack) -> str:
    return f"http://127.0.0.1:{stack.settings.ports['PROMETHEUS_PORT']}"


def _last_reload(stack) -> float:
    return metric_sum(f"{_prometheus(stack)}/metrics", "prometheus_config_last_reload_success_timestamp_seconds")


def test_prometheus_refuses_reload_and_quit_over_http(stack):
    for action in ("reload", "quit"):
        response = requests.post(f"{_prometheus(stack)}/-/{action}", timeout=5)
        assert response.status_code == 403, (action, response.status_code, response.text)
        assert "lifecycle" in response.text.lower()
    assert requests.get(f"{_prometheus(stack)}/-/ready", timeout=5).status_code == 200


def test_sighup_through_the_supervisor_reloads_prometheus(stack):
    before = _last_reload(stack)
    time.sleep(1.1)  # the timestamp has whole seconds
    supervisor.reload(stack.settings, stack.parts["prometheus-1"])
    assert wait_for(lambda: _last_reload(stack) > before, timeout=10, every=0.2)
    assert requests.get(f"{_prometheus(stack)}/-/ready", timeout=5).status_code == 200


def test_a_part_that_sighup_would_kill_is_not_reloaded(stack):
    # a gunicorn group: its workers die of SIGHUP
    with pytest.raises(ValueError, match="cannot be reloaded"):
        supervisor.reload(stack.settings, stack.parts["instance-1"])
    assert stack.is_up("instance-1")
