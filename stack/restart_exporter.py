"""supervisord's view of the parts for Prometheus: every death it saw (then it restarted the part)
and which parts it gave up on (FATAL, crash-looping).

A part that dies and is back in 3 s never misses a scrape, so `up` and the probes cannot tell;
supervisord can. This runs as its event listener (stdout speaks supervisord's event protocol,
stderr is the log) and serves /metrics. Events that happen while it is down itself, its own
death included, wait in supervisord's event buffer and are counted when it is back.
"""

import argparse
import logging
import os
import sys
import xmlrpc.client

from prometheus_client import REGISTRY, Counter, start_http_server
from prometheus_client.core import GaugeMetricFamily
from supervisor import childutils

from common import logs

log = logging.getLogger("restart-exporter")

# A part that died while running (EXITED) or while starting (BACKOFF); stopping it is not a death.
DEATHS = ("PROCESS_STATE_EXITED", "PROCESS_STATE_BACKOFF")

EXITS = Counter(
    "supervisor_process_exits",
    "Deaths of a part that supervisord did not cause (it starts the part again, or gives up: FATAL)",
    ["part"],
)


class StateCollector:
    """Each part's state, asked of supervisord at every scrape."""

    def collect(self):
        running = GaugeMetricFamily(
            "supervisor_process_running", "1 while supervisord has the part running", labels=["part"]
        )
        fatal = GaugeMetricFamily(
            "supervisor_process_fatal", "1 when supervisord gave up restarting the part (crash loop)", labels=["part"]
        )
        for info in _all_process_info():
            running.add_metric([info["name"]], float(info["statename"] == "RUNNING"))
            fatal.add_metric([info["name"]], float(info["statename"] == "FATAL"))
        yield running
        yield fatal


def _all_process_info() -> list[dict]:
    try:
        return childutils.getRPCInterface(os.environ).supervisor.getAllProcessInfo()
    except (OSError, xmlrpc.client.Fault) as error:
        log.warning("supervisord did not answer: %s", error)
        return []


def listen() -> None:
    for info in _all_process_info():  # every part's series exists from 0, so its first death counts
        EXITS.labels(info["name"])
    while True:
        headers, payload = childutils.listener.wait(sys.stdin, sys.stdout)
        event, _ = childutils.eventdata(payload + "\n")
        # a part started after this one gets its series at its first state, long before a
        # death: a series born at 1 would be no increase to Prometheus, and no alert
        deaths = EXITS.labels(event["processname"])
        if headers["eventname"] in DEATHS:
            deaths.inc()
            log.warning("%s died (%s, was %s)", event["processname"], headers["eventname"], event["from_state"])
        childutils.listener.ok(sys.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listen", required=True, help="host:port of /metrics")
    args = parser.parse_args()
    logs.configure("restart-exporter", "restart-exporter", os.environ.get("LOG_LEVEL", "INFO"))
    logging.getLogger().handlers[0].setStream(sys.stderr)  # stdout belongs to supervisord's protocol
    host, port = args.listen.rsplit(":", 1)
    REGISTRY.register(StateCollector())
    start_http_server(int(port), addr=host)
    listen()


if __name__ == "__main__":
    main()
