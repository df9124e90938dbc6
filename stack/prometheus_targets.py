"""Prometheus file_sd target files for the native stack.

prometheus/prometheus.yml is the same in every deployment and reads its targets from
targets/<job>.yml; the native supervisor writes those files here, docker-compose mounts
prometheus/targets/compose/. Every target carries `target_name`, the part an alert names
(and groups by) when that part stops answering; replicas also carry `replica`.
"""

import os
import socket
from collections.abc import Mapping
from pathlib import Path

import yaml

from stack.settings import INSTANCES, PAIR, member_port


def _group(address: str, **labels: str) -> dict:
    return {"targets": [address], "labels": labels}


def native_targets(ports: Mapping[str, int], host: str = "127.0.0.1") -> dict[str, list[dict]]:
    """{file name: file_sd groups} for every job of prometheus.yml."""

    def at(name: str, offset: int = 0) -> str:
        return f"{host}:{ports[name] + offset}"

    replicas = [(f"instance-{n}", at("INSTANCE_BASE_PORT", n - 1)) for n in range(1, INSTANCES + 1)]
    blackbox = at("BLACKBOX_EXPORTER_PORT")
    return {
        "instance.yml": [_group(address, replica=name, target_name=name) for name, address in replicas],
        "middleware.yml": [_group(at("MIDDLEWARE_PORT"), target_name="middleware")],
        "nginx.yml": [_group(at("NGINX_EXPORTER_PORT"), target_name="nginx-exporter")],
        "redis.yml": [_group(at("REDIS_EXPORTER_PORT"), target_name="redis-exporter")],
        # the node exporter reports on the machine itself, so the alert names the machine
        "node.yml": [_group(at("NODE_EXPORTER_PORT"), target_name=socket.gethostname())],
        "blackbox-http.yml": [
            *(
                _group(f"http://{address}/health", __blackbox_address__=blackbox, replica=name, target_name=name)
                for name, address in replicas
            ),
            _group(f"http://{at('MIDDLEWARE_PORT')}/health", __blackbox_address__=blackbox, target_name="middleware"),
            _group(f"http://{at('PUBLIC_PORT')}/nginx-health", __blackbox_address__=blackbox, target_name="nginx"),
            _group(f"http://{at('PHOTO_STORE_PORT')}/health", __blackbox_address__=blackbox, target_name="photo-store"),
        ],
        "blackbox-tcp.yml": [
            _group(at("MONGO_PORT"), __blackbox_address__=blackbox, target_name="mongodb"),
            _group(at("REDIS_PORT"), __blackbox_address__=blackbox, target_name="redis"),
        ],
        # each Prometheus scrapes both (its twin's `up` is what tells of a dead one), and sends
        # every alert to both Alertmanagers, which agree among themselves who mails it
        "prometheus.yml": [
            _group(f"{host}:{member_port(ports, 'PROMETHEUS', n)}", target_name=f"prometheus-{n}") for n in PAIR
        ],
        "alertmanager.yml": [
            _group(f"{host}:{member_port(ports, 'ALERTMANAGER', n)}", target_name=f"alertmanager-{n}") for n in PAIR
        ],
        # natively the logs are files: no Loki, no Alloy
        "loki.yml": [],
        "alloy.yml": [],
        # natively only: in compose and Kubernetes, Docker and the kubelet restart what dies
        "supervisor.yml": [_group(at("RESTART_EXPORTER_PORT"), target_name="restart-exporter")],
    }


def write_targets(directory: Path, ports: Mapping[str, int], host: str = "127.0.0.1") -> None:
    """Write the native target files into `directory` (created if needed)."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, groups in native_targets(ports, host).items():
        # Prometheus watches these files: it must never read one half written
        partial = directory / f".{name}.tmp"
        partial.write_text(yaml.safe_dump(groups, sort_keys=False))
        os.replace(partial, directory / name)
