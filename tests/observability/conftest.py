"""The observability tests' shared live-stack facts: one replica outage (its alert mails) and
one round of every kind of traffic, made once per run for every module that needs them."""

import time

import pytest
import requests

from forms import register
from mailsink.watch import MailWatch, alert_mail

# The time-to-detect the on-call is promised (a requirement, not a benchmark): firing email
# within 60 s of a replica stopping, resolved email within 90 s of its return.
FIRING_WITHIN_S = 60
RESOLVED_WITHIN_S = 90


@pytest.fixture(scope="session")
def replica_outage(stack):
    """Stop instance-3 until its alert email arrives, restart it until the resolved one does."""
    mail = MailWatch(stack.settings.mail_dir)
    victim = "instance-3"
    stopped_at = time.monotonic()
    stack.stop(victim)
    try:
        firing = mail.wait(alert_mail("FIRING", "ReplicaDown", victim), FIRING_WITHIN_S)
        firing_s = time.monotonic() - stopped_at
    finally:
        stack.start(victim)
    started_at = time.monotonic()
    resolved = mail.wait(alert_mail("RESOLVED", "ReplicaDown", victim), RESOLVED_WITHIN_S) if firing else None
    return {
        "firing": firing,
        "firing_s": firing_s,
        "resolved": resolved,
        "resolved_s": time.monotonic() - started_at,
        "victim": victim,
        "firing_within_s": FIRING_WITHIN_S,
        "resolved_within_s": RESOLVED_WITHIN_S,
    }


@pytest.fixture(scope="session")
def traffic(stack, replica_outage):
    """Some of every kind of request, in two rounds a scrape apart (a labelled histogram's first
    observation creates its series, so only a second one gives its rate a value), then long
    enough for two scrapes to see it."""
    with requests.Session() as http:
        for round_ in range(2):
            if round_:
                time.sleep(6)
            for n in range(3):
                assert register(http, stack, city=f"Dashboards {n % 2}").status_code == 201
            assert register(http, stack, name="").status_code == 400
            for _ in range(2):
                assert http.get(f"{stack.url}/api/chart").status_code == 200
                assert http.get(f"{stack.url}/api/chart.png").status_code == 200
                assert http.get(f"{stack.url}/api/reports/cities.xlsx", auth=stack.admin).status_code == 200
                assert http.get(f"{stack.url}/").status_code == 200
    time.sleep(12)
