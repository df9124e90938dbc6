"""The monitoring configuration, checked by the tools that will run it.

Prometheus's, Alertmanager's and the rules' own checkers read the files exactly as the
deployments lay them out; the mail sink and Alertmanager run for real and exchange real SMTP.
What needs the whole live stack (dashboard queries returning data, the replica-down email)
lives with the live tests.
"""

import json
import re
import shutil
import smtplib
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest
import requests
import yaml
from dashboards import dashboard_queries, load_dashboards, panels
from servers import free_port, running

from mailsink.watch import MailWatch
from stack.prometheus_targets import native_targets, write_targets
from stack.render import MissingValues, render
from stack.settings import DEFAULT_PORTS

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "prometheus"
RULE_FILES = sorted((PROMETHEUS / "rules").glob("*.yml"))
RULE_TESTS = sorted((PROMETHEUS / "tests").glob("*.yml"))
COMPOSE_TARGETS = PROMETHEUS / "targets" / "compose"
ALERTMANAGER = ROOT / "alertmanager"
RUNBOOK_BASE_URL = "https://forge.example/vaccination/blob/main"
ALERTMANAGER_VALUES = {
    "SMTP_SMARTHOST": "127.0.0.1:2525",
    "SMTP_FROM": "alertmanager@vaccination.local",
    "ALERT_EMAIL_TO": "oncall@vaccination.local",
    "SMTP_AUTH_USERNAME": "",
    "SMTP_AUTH_PASSWORD": "",
    "SMTP_REQUIRE_TLS": "false",
    "RUNBOOK_BASE_URL": RUNBOOK_BASE_URL,
}
# Exporters' metrics are checked by family here; the live test checks each returns data.
EXPORTER_PREFIXES = ("node_", "redis_", "nginx_", "probe_", "prometheus_", "alertmanager_", "supervisor_")
SERIES_OF_PROMETHEUS = {"up", "ALERTS", "ALERTS_FOR_STATE"}


def tool(*names: str) -> str:
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    pytest.fail(f"none of {names} is installed (./init.sh installs them)")


def run(*argv: str | Path, cwd: Path = ROOT) -> str:
    done = subprocess.run([str(arg) for arg in argv], cwd=cwd, capture_output=True, text=True, check=False)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    return output


def alert_rules() -> list[dict]:
    return [
        rule
        for path in RULE_FILES
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    ]


def prometheus_dir(tmp_path: Path, targets: Path | None = None, ports=DEFAULT_PORTS) -> Path:
    """The layout the supervisor builds: the repo's config and rules linked, targets beside."""
    directory = tmp_path / "prometheus"
    directory.mkdir()
    (directory / "prometheus.yml").symlink_to(PROMETHEUS / "prometheus.yml")
    (directory / "rules").symlink_to(PROMETHEUS / "rules")
    if targets:
        (directory / "targets").symlink_to(targets)
    else:
        write_targets(directory / "targets", ports)
    return directory


# ---------------------------------------------------------------- Prometheus configuration


def test_prometheus_config_is_valid_with_the_native_targets(tmp_path):
    output = run(tool("promtool"), "check", "config", prometheus_dir(tmp_path) / "prometheus.yml")
    assert "WARNING" not in output  # promtool only warns about a target file it cannot find


def test_prometheus_config_is_valid_with_the_compose_targets(tmp_path):
    directory = prometheus_dir(tmp_path, targets=COMPOSE_TARGETS)
    output = run(tool("promtool"), "check", "config", directory / "prometheus.yml")
    assert "WARNING" not in output


def test_prometheus_config_gives_every_contract_job_a_target_file():
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job["file_sd_configs"][0]["files"] for job in config["scrape_configs"]}
    assert set(jobs) == {
        "instance",
        "middleware",
        "nginx",
        "redis",
        "node",
        "blackbox-http",
        "blackbox-tcp",
        "prometheus",
        "alertmanager",
        "loki",
        "alloy",
        "supervisor",
    }
    assert jobs == {name: [f"targets/{name}.yml"] for name in jobs}
    assert config["alerting"]["alertmanagers"][0]["file_sd_configs"][0]["files"] == ["targets/alertmanager.yml"]


def test_native_targets_put_each_replica_on_its_port(tmp_path):
    ports = {name: port + 10000 for name, port in DEFAULT_PORTS.items()}
    write_targets(tmp_path, ports)
    replicas = yaml.safe_load((tmp_path / "instance.yml").read_text())
    assert [(group["targets"], group["labels"]["replica"]) for group in replicas] == [
        (["127.0.0.1:18001"], "instance-1"),
        (["127.0.0.1:18002"], "instance-2"),
        (["127.0.0.1:18003"], "instance-3"),
    ]
    probes = yaml.safe_load((tmp_path / "blackbox-http.yml").read_text())
    assert {group["targets"][0]: group["labels"]["__blackbox_address__"] for group in probes} == {
        "http://127.0.0.1:18001/health": "127.0.0.1:19115",
        "http://127.0.0.1:18002/health": "127.0.0.1:19115",
        "http://127.0.0.1:18003/health": "127.0.0.1:19115",
        "http://127.0.0.1:18010/health": "127.0.0.1:19115",
        "http://127.0.0.1:18080/nginx-health": "127.0.0.1:19115",
        "http://127.0.0.1:18090/health": "127.0.0.1:19115",
    }
    assert not list(tmp_path.glob(".*.tmp"))  # no partial file left behind


def _parts(groups: list[dict]) -> list[tuple]:
    return sorted(
        (group["labels"].get("target_name"), group["labels"].get("replica"), sorted(group["labels"]))
        for group in groups
    )


@pytest.mark.parametrize("name", sorted(native_targets(DEFAULT_PORTS)))
def test_compose_targets_name_the_same_parts_as_the_native_ones(name):
    native = native_targets(DEFAULT_PORTS)[name]
    compose = yaml.safe_load((COMPOSE_TARGETS / name).read_text())
    if name == "node.yml":  # natively the node is named after the machine
        assert [sorted(group["labels"]) for group in compose] == [sorted(group["labels"]) for group in native]
    elif name in ("loki.yml", "alloy.yml"):  # natively the logs are files: no Loki, no Alloy
        assert native == [] and _parts(compose) == [(name.removesuffix(".yml"), None, ["target_name"])]
    elif name == "supervisor.yml":  # natively only: Docker restarts what dies in compose
        assert compose == []
    else:
        assert _parts(compose) == _parts(native)


def wait_for_json(url: str, ready, deadline_seconds: float = 30):
    deadline = time.monotonic() + deadline_seconds
    while True:
        try:
            body = requests.get(url, timeout=5).json()
            if ready(body):
                return body
        except (requests.ConnectionError, ValueError):
            pass
        assert time.monotonic() < deadline, f"{url} never became ready"
        time.sleep(0.2)


def test_prometheus_discovers_the_native_targets_and_sends_probes_through_the_blackbox_exporter(tmp_path):
    port = free_port()
    ports = {**{name: value + 20000 for name, value in DEFAULT_PORTS.items()}, "PROMETHEUS_PORT": port}
    directory = prometheus_dir(tmp_path, ports=ports)
    expected = sum(len(groups) for groups in native_targets(ports).values())
    prometheus = [
        tool("prometheus"),
        f"--config.file={directory / 'prometheus.yml'}",
        f"--storage.tsdb.path={tmp_path / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    with running(prometheus, port, tmp_path / "prometheus.log"):
        api = f"http://127.0.0.1:{port}/api/v1"
        targets = wait_for_json(f"{api}/targets", lambda body: len(body["data"]["activeTargets"]) == expected)
        rules = wait_for_json(f"{api}/rules?type=alert", lambda body: body["data"]["groups"])
    scraped = {(t["labels"]["job"], t["labels"]["instance"]): t["scrapeUrl"] for t in targets["data"]["activeTargets"]}
    assert (
        scraped[("blackbox-http", "http://127.0.0.1:28002/health")]
        == "http://127.0.0.1:29115/probe?module=http_2xx&target=http%3A%2F%2F127.0.0.1%3A28002%2Fhealth"
    )
    assert (
        scraped[("blackbox-tcp", "127.0.0.1:47027")]
        == "http://127.0.0.1:29115/probe?module=tcp_connect&target=127.0.0.1%3A47027"
    )
    assert scraped[("instance", "127.0.0.1:28003")] == "http://127.0.0.1:28003/metrics"
    replica_probe = next(t for t in targets["data"]["activeTargets"] if t["scrapeUrl"].endswith("28002%2Fhealth"))
    assert replica_probe["labels"] == {
        "job": "blackbox-http",
        "instance": "http://127.0.0.1:28002/health",
        "replica": "instance-2",
        "target_name": "instance-2",
    }
    loaded = {rule["name"] for group in rules["data"]["groups"] for rule in group["rules"]}
    assert loaded == {rule["alert"] for rule in alert_rules()}


# ---------------------------------------------------------------- alert rules


def test_alert_rules_are_valid():
    run(tool("promtool"), "check", "rules", *RULE_FILES)


@pytest.mark.parametrize("test_file", RULE_TESTS, ids=lambda path: path.name)
def test_alert_rule_unit_tests_pass(test_file):
    run(tool("promtool"), "test", "rules", test_file)


def test_every_alert_has_a_firing_and_a_silent_unit_test():
    fires, silent = set(), set()
    for path in RULE_TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (fires if check.get("exp_alerts") else silent).add(check["alertname"])
    alerts = {rule["alert"] for rule in alert_rules()}
    assert alerts - fires == set(), "alerts never shown firing"
    assert alerts - silent == set(), "alerts never shown staying silent"


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda rule: rule["alert"])
def test_every_alert_names_the_machine_and_links_its_runbook(rule):
    annotations = rule["annotations"]
    assert rule["labels"]["severity"] in {"page", "ticket"}
    assert annotations["summary"] and annotations["description"]
    assert re.search(r"\{\{ \$labels\.(replica|target_name|instance) \}\}", annotations["description"])
    assert annotations["runbook_url"] == f"docs/runbooks/{rule['alert']}.md"
    assert (ROOT / annotations["runbook_url"]).is_file()


# ---------------------------------------------------------------- metric names


def contract_metrics() -> set[str]:
    section = (ROOT / "docs" / "architecture.md").read_text().split("## Metrics")[1].split("\n## ")[0]
    names = set(re.findall(r"^\| `(\w+)` \| (?:counter|gauge|histogram|summary) \|", section, re.M))
    names |= set(re.findall(r"`(flask_\w+?)[{`]", section))
    return names | {f"{name}_{suffix}" for name in names for suffix in ("bucket", "sum", "count")}


PROMQL_WORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "inf",
    "nan",
    "Inf",
    "NaN",
}


def metric_names(expr: str) -> set[str]:
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # range selectors
    # identifiers not followed by "(" (functions, aggregations) nor preceded by a digit (1e3, 5m)
    return set(re.findall(r"(?<![\w.])([A-Za-z_:][\w:]*)(?![\w:])(?!\s*\()", expr)) - PROMQL_WORDS


def unknown_metrics(expr: str) -> set[str]:
    known = contract_metrics() | SERIES_OF_PROMETHEUS
    return {name for name in metric_names(expr) if name not in known and not name.startswith(EXPORTER_PREFIXES)}


def test_metric_name_check_catches_a_misspelt_metric():
    assert unknown_metrics('sum(rate(flask_http_requests_total{status=~"5.."}[1m]))') == {"flask_http_requests_total"}
    assert unknown_metrics("histogram_quantile(0.95, sum by (le) (rate(report_rows_bucket[5m])))") == set()


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda rule: rule["alert"])
def test_alert_rules_use_contract_or_exporter_metrics(rule):
    assert unknown_metrics(rule["expr"]) == set()


def test_dashboard_queries_use_contract_or_exporter_metrics():
    unknown = {(board, title): unknown_metrics(expr) for board, title, expr in dashboard_queries()}
    assert {key: names for key, names in unknown.items() if names} == {}


def sample_names(exposition: str) -> set[str]:
    return {
        re.match(r"[A-Za-z_:][\w:]*", line).group(0)
        for line in exposition.splitlines()
        if line and not line.startswith("#")
    }


def test_node_and_probe_metrics_in_rules_and_dashboards_exist_on_the_real_exporters(tmp_path):
    node, blackbox = free_port(), free_port()
    node_exporter = [tool("prometheus-node-exporter", "node_exporter"), f"--web.listen-address=127.0.0.1:{node}"]
    blackbox_exporter = [
        tool("prometheus-blackbox-exporter", "blackbox_exporter"),
        f"--config.file={PROMETHEUS / 'blackbox.yml'}",
        f"--web.listen-address=127.0.0.1:{blackbox}",
    ]
    with running(node_exporter, node, tmp_path / "node.log"), running(blackbox_exporter, blackbox, tmp_path / "bb.log"):
        available = sample_names(requests.get(f"http://127.0.0.1:{node}/metrics", timeout=10).text)
        # each module probes the exporter itself: a target that is certainly there
        for module, target in (
            ("http_2xx", f"http://127.0.0.1:{blackbox}/metrics"),
            ("tcp_connect", f"127.0.0.1:{blackbox}"),
        ):
            probe = requests.get(
                f"http://127.0.0.1:{blackbox}/probe", timeout=10, params={"module": module, "target": target}
            )
            assert "probe_success 1" in probe.text, probe.text
            available |= sample_names(probe.text)
    expressions = [rule["expr"] for rule in alert_rules()] + [expr for _, _, expr in dashboard_queries()]
    used = {name for expr in expressions for name in metric_names(expr) if name.startswith(("node_", "probe_"))}
    assert used - available == set()


# ---------------------------------------------------------------- dashboards


def provisioned_datasource_uids() -> set[str]:
    provisioning = yaml.safe_load((ROOT / "grafana/provisioning/datasources/datasources.yml").read_text())
    return {source["uid"] for source in provisioning["datasources"]}


def datasource_uids(node) -> set[str]:
    """Every `datasource` uid anywhere in a dashboard (panels, targets, variables)."""
    found = set()
    if isinstance(node, dict):
        source = node.get("datasource")
        if source is not None:
            found.add(source.get("uid") if isinstance(source, dict) else source)
        for value in node.values():
            found |= datasource_uids(value)
    elif isinstance(node, list):
        for value in node:
            found |= datasource_uids(value)
    return found


def test_provisioning_defines_the_prometheus_and_loki_uids():
    assert provisioned_datasource_uids() == {"prometheus", "loki"}


@pytest.mark.parametrize("name", sorted(load_dashboards()))
def test_dashboard_panels_use_provisioned_datasources_by_uid(name):
    dashboard = load_dashboards()[name]
    assert dashboard["uid"] == name.removesuffix(".json") and dashboard["title"]
    assert datasource_uids(dashboard) <= provisioned_datasource_uids()
    for panel in panels(dashboard):
        if panel["type"] != "row":
            assert isinstance(panel.get("datasource"), dict), panel["title"]
            assert panel["targets"], panel["title"]


def test_dashboard_queries_are_valid_promql(tmp_path):
    queries = dashboard_queries()
    assert len({board for board, _, _ in queries}) == 4  # every dashboard but logs.json
    # promtool parses expressions only inside rule files: give each query a recording rule
    rules = [{"record": f"dashboard:query_{n}", "expr": expr} for n, (_, _, expr) in enumerate(queries)]
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    run(tool("promtool"), "check", "rules", path)


def test_dashboard_query_extraction_refuses_unknown_variables():
    from stack.consoles import substitute

    assert (
        substitute('rate(x{replica=~"$replica"}[$__rate_interval])', {"replica": ".*", "__rate_interval": "1m"})
        == 'rate(x{replica=~".*"}[1m])'
    )
    with pytest.raises(KeyError, match=r"\$typo"):
        substitute('up{replica=~"$typo"}', {"replica": ".*"})


# ---------------------------------------------------------------- render


def test_render_fills_placeholders():
    assert (
        render("smarthost: ${SMTP_SMARTHOST}\nport: ${PORT_2}", {"SMTP_SMARTHOST": "mail:25", "PORT_2": "8"})
        == "smarthost: mail:25\nport: 8"
    )


def test_render_refuses_a_placeholder_without_value_and_names_every_one():
    with pytest.raises(MissingValues) as error:
        render("${SMTP_FROM} ${ALERT_EMAIL_TO} ${SMTP_FROM}", {})
    assert error.value.names == ["ALERT_EMAIL_TO", "SMTP_FROM"]
    assert "${ALERT_EMAIL_TO}" in str(error.value) and "${SMTP_FROM}" in str(error.value)


def test_render_leaves_nginx_variables_and_go_templates_alone():
    text = "proxy_set_header Host $host; set $id ${request_id}; {{ .Status | toUpper }} $Upper"
    assert render(text, {}) == text


# ---------------------------------------------------------------- Alertmanager


def test_alertmanager_template_has_exactly_the_documented_placeholders():
    text = (ALERTMANAGER / "alertmanager.yml").read_text()
    assert set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)\}", text)) == set(ALERTMANAGER_VALUES)


def rendered_alertmanager(directory: Path, values: dict[str, str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "alertmanager.yml"
    config.write_text(render((ALERTMANAGER / "alertmanager.yml").read_text(), values))
    (directory / "templates").symlink_to(ALERTMANAGER / "templates")
    return config


def test_rendered_alertmanager_config_is_valid(tmp_path):
    output = run(tool("amtool"), "check-config", rendered_alertmanager(tmp_path, ALERTMANAGER_VALUES))
    assert "1 templates" in output


def test_alertmanager_emails_firing_and_resolved_and_groups_by_alert_and_machine():
    config = yaml.safe_load(render((ALERTMANAGER / "alertmanager.yml").read_text(), ALERTMANAGER_VALUES))
    assert config["route"]["group_by"] == ["alertname", "target_name"]
    assert all(receiver["send_resolved"] for receiver in config["receivers"][0]["email_configs"])


# ---------------------------------------------------------------- mail sink and a real alert email


def mailsink(port: int, maildir: Path, log: Path):
    return running(
        [sys.executable, "-m", "mailsink", "--host", "127.0.0.1", "--port", port, "--maildir", maildir], port, log
    )


def next_mail(watch: MailWatch) -> EmailMessage:
    message = watch.wait(timeout=60)
    assert message is not None, "no message arrived within 60 s"
    return message


def test_mailsink_stores_a_received_message_as_one_eml_file_and_logs_it(tmp_path):
    port, maildir, log = free_port(), tmp_path / "mail", tmp_path / "mailsink.log"
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "a@example.org", "b@example.org", "[FIRING:1] Test"
    message.set_content("hello")
    watch = MailWatch(maildir)
    with mailsink(port, maildir, log) as process, smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.send_message(message)
    assert process.returncode == 0  # SIGTERM is a clean stop
    stored = next_mail(watch)
    assert stored["Subject"] == "[FIRING:1] Test" and stored.get_content().strip() == "hello"
    assert [path.suffix for path in maildir.iterdir() if path.is_file()] == [".eml"]
    assert not any((maildir / ".tmp").iterdir())  # the partial file was renamed, not copied
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    received = [line for line in lines if line["message"] == "message received"]
    assert [(line["service"], line["level"], line["subject"], line["recipients"]) for line in received] == [
        ("mailsink", "info", "[FIRING:1] Test", ["b@example.org"])
    ]
    assert all({"time", "level", "service", "message"} <= set(line) for line in lines)


def test_mailsink_names_files_in_arrival_order(tmp_path):
    port, maildir = free_port(), tmp_path / "mail"
    watch = MailWatch(maildir)
    with mailsink(port, maildir, tmp_path / "mailsink.log"), smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        for n in range(5):
            client.sendmail("a@example.org", ["b@example.org"], f"Subject: message {n}\r\n\r\nbody\r\n")
    subjects = [next_mail(watch)["Subject"] for _ in range(5)]
    assert subjects == [f"message {n}" for n in range(5)]


def post_alert(port: int, starts_at: datetime, ends_at: datetime | None = None) -> None:
    alert = {
        "labels": {
            "alertname": "ReplicaDown",
            "replica": "instance-2",
            "target_name": "instance-2",
            "severity": "page",
        },
        "annotations": {
            "summary": "Replica instance-2 is down",
            "description": "Replica instance-2 stopped answering.",
            "runbook_url": "docs/runbooks/ReplicaDown.md",
        },
        "startsAt": starts_at.isoformat(),
        "generatorURL": "http://prometheus.example/graph",
    }
    if ends_at:
        alert["endsAt"] = ends_at.isoformat()
    requests.post(f"http://127.0.0.1:{port}/api/v2/alerts", json=[alert], timeout=10).raise_for_status()


def test_alert_email_says_firing_then_resolved_and_names_machine_and_runbook(tmp_path):
    smtp_port, port, maildir = free_port(), free_port(), tmp_path / "mail"
    values = {**ALERTMANAGER_VALUES, "SMTP_SMARTHOST": f"127.0.0.1:{smtp_port}"}
    config = rendered_alertmanager(tmp_path / "alertmanager", values)
    alertmanager = [
        tool("prometheus-alertmanager", "alertmanager"),
        f"--config.file={config}",
        f"--storage.path={tmp_path / 'alertmanager-data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
    ]
    started = datetime.now(UTC) - timedelta(seconds=30)
    watch = MailWatch(maildir)
    with mailsink(smtp_port, maildir, tmp_path / "mailsink.log"), running(alertmanager, port, tmp_path / "am.log"):
        post_alert(port, started)
        firing = next_mail(watch)
        post_alert(port, started, ends_at=datetime.now(UTC))
        resolved = next_mail(watch)
    runbook = f"{RUNBOOK_BASE_URL}/docs/runbooks/ReplicaDown.md"
    assert firing["Subject"] == "[FIRING:1] ReplicaDown on instance-2: Replica instance-2 is down"
    assert firing["To"] == "oncall@vaccination.local"
    body = firing.get_body(("plain",)).get_content()
    assert "Replica instance-2 stopped answering." in body and f"Runbook:  {runbook}" in body
    assert resolved["Subject"] == "[RESOLVED] ReplicaDown on instance-2: Replica instance-2 is down"
    assert f"Runbook:  {runbook}" in resolved.get_body(("plain",)).get_content()
