"""A part that dies is back by itself (supervisord) and the admin still hears of it, once."""

import requests
from prometheus_client.parser import text_string_to_metric_families

from mailsink.watch import MailWatch, alert_mail
from polling import wait_for
from stack import supervisor

# firing: a scrape (5 s), an evaluation (5 s), Alertmanager's group_wait (10 s), with room for a busy machine
MAIL_WITHIN_S = 120
# Alertmanager's group_interval (15 s) and a scrape and an evaluation: time enough for a second mail
NO_SECOND_MAIL_S = 30


def _query(stack, expr: str) -> list[dict]:
    url = f"http://127.0.0.1:{stack.settings.ports['PROMETHEUS_PORT']}/api/v1/query"
    return requests.get(url, params={"query": expr}, timeout=10).json()["data"]["result"]


def _calm_replica(stack) -> str:
    """A replica that did not die in the last 10 minutes (other tests kill replicas too): two
    more deaths stay below PartCrashLooping's 3, whose page would hold PartRestarted back.
    Its death counter must be in Prometheus already, so that the first death is an increase."""
    assert wait_for(lambda: _query(stack, "supervisor_process_exits_total"), timeout=30)
    recent = _query(stack, "sum by (part) (increase(supervisor_process_exits_total[10m])) > 0")
    died = {row["metric"]["part"] for row in recent}
    calm = sorted(name for name in stack.parts if name.startswith("instance-") and name not in died)
    assert calm, f"every replica died in the last 10 minutes: {sorted(died)}"
    return calm[-1]


def test_a_killed_replica_is_back_by_itself_and_one_mail_tells_of_its_restarts(stack):
    victim = _calm_replica(stack)
    mail = MailWatch(stack.settings.mail_dir)

    def pid():
        return supervisor.running_pid(stack.settings, stack.parts[victim])

    for _ in range(2):  # a burst of deaths
        dead = pid()
        stack.kill(victim)  # SIGKILL to its process group, and nobody starts it
        assert wait_for(lambda dead=dead: stack.is_up(victim) and pid() != dead, timeout=60, every=0.2)
    stack.wait_until_routed()

    message = mail.wait(alert_mail("FIRING", "PartRestarted", victim), MAIL_WITHIN_S)
    assert message is not None, f"no PartRestarted mail for {victim} within {MAIL_WITHIN_S}s"
    assert f"{victim} died and was restarted" in message["Subject"]
    assert mail.wait(alert_mail("FIRING", "PartRestarted", victim), NO_SECOND_MAIL_S) is None


def test_every_part_has_a_death_counter_from_zero_before_it_dies(stack):
    """Parts started after the exporter too (the monitoring pairs): a counter first seen at 1
    is no increase to Prometheus, and the first death of such a part would send no mail."""
    url = f"http://127.0.0.1:{stack.settings.ports['RESTART_EXPORTER_PORT']}/metrics"
    families = text_string_to_metric_families(requests.get(url, timeout=5).text)
    counted = {s.labels["part"] for f in families for s in f.samples if s.name == "supervisor_process_exits_total"}
    assert set(stack.parts) - {"restart-exporter"} <= counted
