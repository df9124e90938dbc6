"""Log shipping: Alloy sets only low-cardinality labels; Loki keeps a bounded, retained store."""

import re

import pytest
import yaml
from deploytools import repo_file

ALLOWED_LABELS = {"service", "instance", "level"}


def _labels_set(config: str) -> set[str]:
    """Every label an Alloy config can attach to a stream."""
    labels = set(re.findall(r'target_label\s*=\s*"([^"]+)"', config))
    for block in re.findall(r"stage\.labels\s*\{\s*values\s*=\s*\{(.*?)\}", config, re.S):
        labels |= set(re.findall(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=", block, re.M))
    return labels


@pytest.mark.parametrize("path", ["alloy/config.alloy", "alloy/config.k8s.alloy"])
def test_alloy_sets_only_service_instance_and_level(path):
    labels = _labels_set(repo_file(path).read_text())
    assert labels == ALLOWED_LABELS, f"{path} sets {sorted(labels)}"


@pytest.mark.parametrize("path", ["alloy/config.alloy", "alloy/config.k8s.alloy"])
def test_level_label_comes_from_a_closed_set(path):
    config = repo_file(path).read_text()
    assert re.search(r"level\s*=\s*\"level_label\"", config)
    assert "(?P<level_label>debug|info|warn|warning|error|critical|fatal)$" in config


@pytest.mark.parametrize("path", ["alloy/config.alloy", "alloy/config.k8s.alloy"])
def test_request_id_is_metadata_not_a_label(path):
    config = repo_file(path).read_text()
    assert "request_id" not in _labels_set(config)
    assert re.search(r"stage\.structured_metadata\s*\{\s*values\s*=\s*\{\s*request_id", config)


def test_compose_alloy_reads_only_labelled_containers():
    config = repo_file("alloy/config.alloy").read_text()
    assert 'values = ["vaccination.service"]' in config
    assert "__meta_docker_container_label_vaccination_service" in config


def test_loki_is_single_binary_on_the_filesystem_with_retention():
    config = yaml.safe_load(repo_file("loki/loki.yml").read_text())
    assert config["auth_enabled"] is False
    assert config["common"]["storage"]["filesystem"]
    assert config["schema_config"]["configs"][-1]["store"] == "tsdb"
    assert config["compactor"]["retention_enabled"] is True
    assert config["compactor"]["delete_request_store"] == "filesystem"
    assert config["limits_config"]["retention_period"]
