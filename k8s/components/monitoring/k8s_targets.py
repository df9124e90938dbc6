"""Prometheus targets for Kubernetes, written as the same file_sd files every deployment uses.

prometheus/prometheus.yml is one file for native, docker compose and Kubernetes: only the
files under targets/ differ. Natively the supervisor writes them, in compose they are static;
here this loop lists the pods of its own namespace through the API every few seconds and
rewrites them, so a replica the HPA adds is scraped (and probed) within one interval and a
deleted one disappears without a false "replica down". Standard library only: it runs in the
plain python image as a sidecar of Prometheus, with a Role that may list pods and nothing else.
"""

import json
import os
import ssl
import sys
import time
import urllib.request
from pathlib import Path

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
API = "https://kubernetes.default.svc"
NAME_LABEL = "app.kubernetes.io/name"

# Every file prometheus.yml reads from targets/ (tests/deploy checks the two lists agree).
FILES = (
    "instance.yml",
    "middleware.yml",
    "nginx.yml",
    "redis.yml",
    "node.yml",
    "blackbox-http.yml",
    "blackbox-tcp.yml",
    "prometheus.yml",
    "alertmanager.yml",
    "loki.yml",
    "alloy.yml",
    "supervisor.yml",
)

# The pods of the two-replica StatefulSets prometheus and alertmanager (tests/deploy checks
# the replica counts agree).
PAIR_MEMBERS = {app: (f"{app}-0", f"{app}-1") for app in ("prometheus", "alertmanager")}


def _running(pod: dict) -> bool:
    meta, status = pod.get("metadata", {}), pod.get("status", {})
    return status.get("phase") == "Running" and not meta.get("deletionTimestamp") and bool(status.get("podIP"))


def _pods(pods: list[dict], name: str) -> list[tuple[str, str]]:
    """(pod name, pod IP) of the running pods of one app, in a stable order."""
    found = [
        (p["metadata"]["name"], p["status"]["podIP"])
        for p in pods
        if p.get("metadata", {}).get("labels", {}).get(NAME_LABEL) == name and _running(p)
    ]
    return sorted(found)


def build_targets(pods: list[dict], blackbox: str = "blackbox-exporter:9115") -> dict[str, list[dict]]:
    """File name -> file_sd entries, from a pod list (the `items` of GET .../pods)."""
    probe = {"__blackbox_address__": blackbox}
    instances = _pods(pods, "instance")
    files: dict[str, list[dict]] = {
        # the pod name is the replica's name, as in its logs and X-Served-By
        "instance.yml": [
            {"targets": [f"{ip}:8000"], "labels": {"replica": name, "target_name": name}} for name, ip in instances
        ],
        "middleware.yml": [
            {"targets": [f"{ip}:8010"], "labels": {"target_name": "middleware", "pod": name}}
            for name, ip in _pods(pods, "middleware")
        ],
        # exporter sidecars next to nginx and Redis
        "nginx.yml": [
            {"targets": [f"{ip}:9113"], "labels": {"target_name": "nginx-exporter", "pod": name}}
            for name, ip in _pods(pods, "nginx")
        ],
        "redis.yml": [
            {"targets": [f"{ip}:9121"], "labels": {"target_name": "redis-exporter", "pod": name}}
            for name, ip in _pods(pods, "redis")
        ],
        # Node metrics belong to the cluster's own monitoring (docs/deployment.md).
        "node.yml": [],
        "blackbox-http.yml": [
            {"targets": [f"http://{ip}:8000/health"], "labels": {**probe, "replica": name, "target_name": name}}
            for name, ip in instances
        ]
        + [
            {"targets": ["http://middleware:8010/health"], "labels": {**probe, "target_name": "middleware"}},
            {"targets": ["http://nginx:8080/nginx-health"], "labels": {**probe, "target_name": "nginx"}},
            {"targets": ["http://photo-store:8090/health"], "labels": {**probe, "target_name": "photo-store"}},
        ],
        # every replica-set member by its stable name, and the Redis Service
        "blackbox-tcp.yml": [
            {"targets": [f"{name}.mongodb:27017"], "labels": {**probe, "target_name": "mongodb", "pod": name}}
            for name, _ in _pods(pods, "mongodb")
        ]
        + [{"targets": ["redis:6379"], "labels": {**probe, "target_name": "redis"}}],
        # the monitoring pairs by their stable names (a member that is gone fails its scrape):
        # each Prometheus scrapes its twin and sends every alert to both Alertmanagers
        "prometheus.yml": [
            {"targets": [f"{name}.prometheus-headless:9090"], "labels": {"target_name": name}}
            for name in PAIR_MEMBERS["prometheus"]
        ],
        "alertmanager.yml": [
            {"targets": [f"{name}.alertmanager-headless:9093"], "labels": {"target_name": name}}
            for name in PAIR_MEMBERS["alertmanager"]
        ],
        "loki.yml": [
            {"targets": [f"{ip}:3100"], "labels": {"target_name": "loki", "pod": name}}
            for name, ip in _pods(pods, "loki")
        ],
        "alloy.yml": [
            {"targets": [f"{ip}:12345"], "labels": {"target_name": "alloy", "pod": name}}
            for name, ip in _pods(pods, "alloy")
        ],
        # the kubelet restarts what dies; supervisord's restarts are the native stack's
        "supervisor.yml": [],
    }
    assert tuple(files) == FILES
    return files


def write_files(directory: Path, files: dict[str, list[dict]]) -> None:
    """Replace each file atomically (JSON is YAML), so Prometheus never reads half a file."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, entries in files.items():
        text = json.dumps(entries, indent=1, sort_keys=True) + "\n"
        path = directory / name
        if path.exists() and path.read_text() == text:
            continue
        tmp = directory / f".{name}.tmp"
        tmp.write_text(text)
        os.replace(tmp, path)


def list_pods(namespace: str) -> list[dict]:
    token = (SERVICE_ACCOUNT / "token").read_text().strip()  # re-read: projected tokens rotate
    context = ssl.create_default_context(cafile=str(SERVICE_ACCOUNT / "ca.crt"))
    request = urllib.request.Request(  # noqa: S310 (a fixed https URL)
        f"{API}/api/v1/namespaces/{namespace}/pods", headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(request, context=context, timeout=10) as response:  # noqa: S310
        return json.load(response)["items"]


def _log(level: str, message: str, **fields) -> None:
    line = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "level": level}
    line.update(service="prometheus-targets", instance="prometheus-targets", message=message, **fields)
    print(json.dumps(line), flush=True)


def main() -> int:
    directory = Path(os.environ.get("TARGETS_DIR", "/etc/prometheus/targets"))
    namespace = os.environ.get("NAMESPACE") or (SERVICE_ACCOUNT / "namespace").read_text().strip()
    interval = float(os.environ.get("INTERVAL_SECONDS", "5"))
    blackbox = os.environ.get("BLACKBOX_ADDRESS", "blackbox-exporter:9115")
    # Until the API first answers, Prometheus still gets the static part (and its own files).
    write_files(directory, build_targets([], blackbox))
    while True:
        try:
            write_files(directory, build_targets(list_pods(namespace), blackbox))
        except Exception as error:  # keep the last good files; say why once per interval
            _log("error", "listing pods failed; keeping the previous targets", error=repr(error))
        time.sleep(interval)


if __name__ == "__main__":
    sys.exit(main())
