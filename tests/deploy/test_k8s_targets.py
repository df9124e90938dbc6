"""k8s/components/monitoring/k8s_targets.py: the pod list becomes the file_sd files prometheus.yml reads."""

import importlib.util
import json
from pathlib import Path

import yaml
from deploytools import REPO, repo_file

spec = importlib.util.spec_from_file_location("k8s_targets", REPO / "k8s/components/monitoring/k8s_targets.py")
k8s_targets = importlib.util.module_from_spec(spec)
spec.loader.exec_module(k8s_targets)


def pod(name, app, ip="10.0.0.1", phase="Running", deleting=False):
    meta = {"name": name, "labels": {"app.kubernetes.io/name": app}}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": meta, "status": {"phase": phase, "podIP": ip}}


def test_files_are_exactly_those_prometheus_reads():
    config = yaml.safe_load(repo_file("prometheus/prometheus.yml").read_text())
    sections = config["scrape_configs"] + config.get("alerting", {}).get("alertmanagers", [])
    wanted = {Path(f).name for s in sections for sd in s.get("file_sd_configs", []) for f in sd["files"]}
    assert set(k8s_targets.FILES) == wanted


def test_each_running_replica_is_scraped_and_probed_under_its_pod_name():
    pods = [pod("instance-a", "instance", "10.0.0.1"), pod("instance-b", "instance", "10.0.0.2")]
    files = k8s_targets.build_targets(pods)
    assert files["instance.yml"] == [
        {"targets": ["10.0.0.1:8000"], "labels": {"replica": "instance-a", "target_name": "instance-a"}},
        {"targets": ["10.0.0.2:8000"], "labels": {"replica": "instance-b", "target_name": "instance-b"}},
    ]
    probes = [e for e in files["blackbox-http.yml"] if e["labels"].get("replica")]
    assert [e["targets"] for e in probes] == [["http://10.0.0.1:8000/health"], ["http://10.0.0.2:8000/health"]]
    assert all(e["labels"]["__blackbox_address__"] == "blackbox-exporter:9115" for e in probes)


def test_pending_and_terminating_pods_are_not_targets():
    files = k8s_targets.build_targets(
        [pod("instance-a", "instance", phase="Pending"), pod("instance-b", "instance", deleting=True)]
    )
    assert files["instance.yml"] == []


def test_static_probes_and_exporters():
    files = k8s_targets.build_targets([pod("nginx-x", "nginx", "10.0.0.5"), pod("mongodb-0", "mongodb", "10.0.0.6")])
    assert files["nginx.yml"][0]["targets"] == ["10.0.0.5:9113"]
    names = {e["labels"]["target_name"] for e in files["blackbox-http.yml"]}
    assert {"middleware", "nginx", "photo-store"} <= names
    tcp = {e["targets"][0]: e["labels"]["target_name"] for e in files["blackbox-tcp.yml"]}
    assert tcp == {"mongodb-0.mongodb:27017": "mongodb", "redis:6379": "redis"}


def test_files_are_written_as_valid_file_sd_yaml(tmp_path):
    files = k8s_targets.build_targets([pod("instance-a", "instance")])
    k8s_targets.write_files(tmp_path, files)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(k8s_targets.FILES)
    for name, entries in files.items():
        assert yaml.safe_load((tmp_path / name).read_text()) == json.loads(json.dumps(entries))


def test_the_monitoring_pairs_are_targets_by_stable_name_even_when_their_pods_are_gone():
    # a member that is gone must fail its scrape (PrometheusDown, AlertmanagerDown), not vanish
    files = k8s_targets.build_targets([pod("prometheus-0", "prometheus", "10.0.0.7")])
    assert files["prometheus.yml"] == [
        {"targets": ["prometheus-0.prometheus-headless:9090"], "labels": {"target_name": "prometheus-0"}},
        {"targets": ["prometheus-1.prometheus-headless:9090"], "labels": {"target_name": "prometheus-1"}},
    ]
    assert [e["targets"] for e in files["alertmanager.yml"]] == [
        ["alertmanager-0.alertmanager-headless:9093"],
        ["alertmanager-1.alertmanager-headless:9093"],
    ]
