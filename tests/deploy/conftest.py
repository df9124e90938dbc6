"""Session fixtures for the deployment checks: the resolved compose file, the rendered overlays.

These fixtures start no container and talk to no cluster: they read, render and validate the
deployment files offline (test_podman.py alone builds and runs images, with podman). A missing
tool or file fails the test with how to get it.
"""

from pathlib import Path

import pytest
import yaml
from deploytools import (
    COMPOSE_SECRETS,
    DUMMY_SECRETS,
    OPTIONAL_SETTINGS,
    OVERLAYS,
    render_overlay,
    repo_file,
    run_compose_config,
    shadow_repo,
)


@pytest.fixture(scope="session")
def compose(tmp_path_factory) -> dict:
    """The compose file as docker-compose resolves it (interpolated, paths made absolute)."""
    result = run_compose_config(COMPOSE_SECRETS, tmp_path_factory.mktemp("compose"))
    assert result.returncode == 0, f"docker-compose config failed:\n{result.stderr}"
    return yaml.safe_load(result.stdout)


@pytest.fixture(scope="session")
def compose_source() -> dict:
    """The compose file as written (before interpolation)."""
    return yaml.safe_load(repo_file("docker-compose.yml").read_text())


@pytest.fixture(scope="session")
def k8s_repo(tmp_path_factory) -> Path:
    return shadow_repo(tmp_path_factory.mktemp("k8s"), {**DUMMY_SECRETS, **OPTIONAL_SETTINGS})


@pytest.fixture(scope="session")
def rendered(k8s_repo) -> dict[str, list[dict]]:
    """Overlay name -> the objects it renders to."""
    out = {}
    for overlay in OVERLAYS:
        result = render_overlay(k8s_repo, overlay)
        assert result.returncode == 0, f"k8s/overlays/{overlay} does not render:\n{result.stderr}"
        out[overlay] = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    return out
