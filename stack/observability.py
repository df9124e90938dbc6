"""The monitoring parts of the native stack: exporters, Prometheus, Alertmanager, the mail sink.

They read the same prometheus/ and alertmanager/ files as docker-compose and Kubernetes;
natively, Prometheus's config is linked beside generated target files, and Alertmanager's
template is rendered with this machine's values. Prometheus and Alertmanager run as pairs
(docs/architecture.md): two identical Prometheus servers told apart by PROMETHEUS_REPLICA, two
Alertmanagers gossiping on 127.0.0.1 so that one incident is one mail.
"""

import shutil
import socket
import sys
from pathlib import Path

from stack.consoles import LIBRARY_DIR, write_consoles
from stack.part import Part
from stack.prometheus_targets import write_targets
from stack.render import render
from stack.settings import PAIR, ROOT, Settings


def _link(link: Path, target: Path) -> None:
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(target)


def _bin(name: str) -> str:
    return shutil.which(name) or f"/usr/bin/{name}"


def observability(s: Settings) -> list[Part]:
    p = s.ports

    def listen(name: str) -> str:
        return f"127.0.0.1:{p[name]}"

    prometheus_dir = s.run_dir / "prometheus"  # one config and target folder for both members

    def prepare_prometheus(n: int):
        prometheus_dir.mkdir(parents=True, exist_ok=True)
        (s.data_dir / f"prometheus-{n}").mkdir(parents=True, exist_ok=True)
        _link(prometheus_dir / "prometheus.yml", ROOT / "prometheus/prometheus.yml")
        _link(prometheus_dir / "rules", ROOT / "prometheus/rules")
        write_targets(prometheus_dir / "targets", p)
        write_consoles(prometheus_dir / "consoles")

    alertmanager_dir = s.run_dir / "alertmanager"

    def prepare_alertmanager(n: int):
        alertmanager_dir.mkdir(parents=True, exist_ok=True)
        (s.data_dir / f"alertmanager-{n}").mkdir(parents=True, exist_ok=True)
        _link(alertmanager_dir / "templates", ROOT / "alertmanager/templates")
        (alertmanager_dir / "alertmanager.yml").write_text(
            render((ROOT / "alertmanager/alertmanager.yml").read_text(), alerting_values(s))
        )

    def prometheus(n: int) -> Part:
        address = f"127.0.0.1:{s.member_port('PROMETHEUS', n)}"
        return Part(
            f"prometheus-{n}",
            [
                _bin("prometheus"),
                f"--config.file={prometheus_dir / 'prometheus.yml'}",
                f"--storage.tsdb.path={s.data_dir / f'prometheus-{n}'}",
                "--storage.tsdb.retention.time=15d",
                f"--web.listen-address={address}",
                f"--web.external-url=http://{address}",
                # Prometheus 2 reads ${PROMETHEUS_REPLICA} in external_labels only when asked
                "--enable-feature=expand-external-labels",
                # every member serves the dashboards' console pages (stack/consoles.py)
                f"--web.console.templates={prometheus_dir / 'consoles'}",
                f"--web.console.libraries={LIBRARY_DIR}",
            ],
            f"http://{address}/-/ready",
            s.member_port("PROMETHEUS", n),
            env={"PROMETHEUS_REPLICA": f"prometheus-{n}"},
            prepare=lambda: prepare_prometheus(n),
        )

    def alertmanager(n: int) -> Part:
        address = f"127.0.0.1:{s.member_port('ALERTMANAGER', n)}"
        twin = PAIR[-n]  # the other member: 1 -> 2, 2 -> 1
        return Part(
            f"alertmanager-{n}",
            [
                _bin("prometheus-alertmanager"),
                f"--config.file={alertmanager_dir / 'alertmanager.yml'}",
                f"--storage.path={s.data_dir / f'alertmanager-{n}'}",
                f"--web.listen-address={address}",
                f"--web.external-url=http://{address}",
                # the gossip (TCP and UDP) stays on this machine, like every other port
                f"--cluster.listen-address=127.0.0.1:{s.member_port('ALERTMANAGER_CLUSTER', n)}",
                f"--cluster.peer=127.0.0.1:{s.member_port('ALERTMANAGER_CLUSTER', twin)}",
            ],
            f"http://{address}/-/ready",
            s.member_port("ALERTMANAGER", n),
            prepare=lambda: prepare_alertmanager(n),
        )

    def exporter(name: str, binary: str, port_key: str, *flags: str, env: dict | None = None) -> Part:
        address = listen(port_key)
        return Part(
            name,
            [_bin(binary), *flags, f"--web.listen-address={address}"],
            f"http://{address}/metrics",
            p[port_key],
            env=env or {},
        )

    return [
        Part(
            "mail-sink",
            [
                sys.executable,
                "-m",
                "mailsink",
                "--host",
                "127.0.0.1",
                "--port",
                str(p["MAIL_SINK_PORT"]),
                "--maildir",
                str(s.mail_dir),
            ],
            f"tcp://{listen('MAIL_SINK_PORT')}",
            p["MAIL_SINK_PORT"],
        ),
        exporter("node-exporter", "prometheus-node-exporter", "NODE_EXPORTER_PORT"),
        exporter(
            "nginx-exporter",
            "prometheus-nginx-exporter",
            "NGINX_EXPORTER_PORT",
            f"--nginx.scrape-uri=http://{listen('NGINX_STATUS_PORT')}/stub_status",
        ),
        exporter(
            "redis-exporter",
            "prometheus-redis-exporter",
            "REDIS_EXPORTER_PORT",
            f"--redis.addr=redis://{listen('REDIS_PORT')}",
            env={"REDIS_PASSWORD": s.secrets["REDIS_PASSWORD"]},  # read by the exporter; not on its command line
        ),
        exporter(
            "blackbox-exporter",
            "prometheus-blackbox-exporter",
            "BLACKBOX_EXPORTER_PORT",
            f"--config.file={ROOT / 'prometheus/blackbox.yml'}",
        ),
        # supervisord's event listener: the deaths (and restarts) of every part, itself included
        Part(
            "restart-exporter",
            [sys.executable, "-m", "stack.restart_exporter", f"--listen={listen('RESTART_EXPORTER_PORT')}"],
            f"http://{listen('RESTART_EXPORTER_PORT')}/metrics",
            p["RESTART_EXPORTER_PORT"],
            env={"PYTHONPATH": str(ROOT), **{name: s.get(name) or None for name in ("LOG_LEVEL",)}},
            listens_to="PROCESS_STATE",
        ),
        *(prometheus(n) for n in PAIR),
        *(alertmanager(n) for n in PAIR),
    ]


def alerting_values(s: Settings) -> dict[str, str]:
    """Email settings: a real relay when SMTP_SMARTHOST is set, else the local mail sink."""
    relay = s.get("SMTP_SMARTHOST")
    return {
        "SMTP_SMARTHOST": relay or f"127.0.0.1:{s.ports['MAIL_SINK_PORT']}",
        "SMTP_FROM": s.get("SMTP_FROM", f"alertmanager@{socket.gethostname()}"),
        "ALERT_EMAIL_TO": s.get("ALERT_EMAIL_TO", "admin@localhost"),
        "SMTP_AUTH_USERNAME": s.get("SMTP_AUTH_USERNAME"),
        "SMTP_AUTH_PASSWORD": s.get("SMTP_AUTH_PASSWORD").replace("'", "''"),
        "SMTP_REQUIRE_TLS": s.get("SMTP_REQUIRE_TLS", "true" if relay else "false"),
        "RUNBOOK_BASE_URL": s.get("RUNBOOK_BASE_URL", f"file://{ROOT}"),
    }
