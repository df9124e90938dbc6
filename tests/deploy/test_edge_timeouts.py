"""What sits in front of our nginx (the production Ingress, the Gateway API HTTPRoute) waits at
least as long as our nginx does, so a streamed report is never cut off at the edge."""

import re

from deploytools import find, one, render_with_component, repo_file


def _nginx_read_timeout(location: str) -> int:
    template = repo_file("nginx/templates/default.conf.template").read_text()
    block = template.split(f"location ^~ {location} {{", 1)[1].split("}", 1)[0]
    return int(re.search(r"proxy_read_timeout (\d+)s;", block)[1])


def _seconds(value: str) -> int:
    return sum(int(n) * {"h": 3600, "m": 60, "s": 1}[unit] for n, unit in re.findall(r"(\d+)([hms])", value))


def test_the_ingress_waits_longer_than_our_nginx_for_a_report(rendered):
    needed = _nginx_read_timeout("/api/reports/")
    annotations = one(rendered["production"], "Ingress", "vaccination")["metadata"]["annotations"]
    for controller in ("nginx.ingress.kubernetes.io", "nginx.org"):
        for direction in ("read", "send"):
            value = annotations.get(f"{controller}/proxy-{direction}-timeout", "60")
            assert _seconds(value if value[-1] in "hms" else f"{value}s") > needed, (controller, direction)


def test_the_httproute_lets_a_report_stream(tmp_path):
    objects = render_with_component(tmp_path, "gateway-api")
    route = one(objects, "HTTPRoute", "vaccination")
    reports = [
        rule
        for rule in route["spec"]["rules"]
        if any("/api/reports/".startswith(m["path"]["value"]) and m["path"]["value"] != "/" for m in rule["matches"])
    ]
    assert reports, "no rule of its own for /api/reports/ (the longest prefix wins)"
    assert _seconds(reports[0]["timeouts"]["request"]) > _nginx_read_timeout("/api/reports/")
    for rule in route["spec"]["rules"]:
        # an unset timeout is the implementation's default, 15 s on common Gateways
        assert _seconds(rule.get("timeouts", {}).get("request", "15s")) >= 25
        assert [h["name"] for f in rule["filters"] for h in f["responseHeaderModifier"]["set"]] == [
            "Strict-Transport-Security"
        ]
    assert not find(objects, "Ingress")
