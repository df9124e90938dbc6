"""The project's own images, built from the Dockerfile and run with podman as docker-compose.yml
runs them (read-only root filesystem, tmpfs, the image's non-root user, the same environment),
against the native test stack's MongoDB, photo store and Redis.

Skipped, with the reason, where podman cannot run containers (podman_tools.unavailable()).
The first run on a machine bootstraps the stand-in base image (~1 min) and builds both images
(pip install from PyPI, ~1 min each); later runs reuse podman's layer cache.
"""

import os
import socket
import time

import pytest
import requests
from podman_tools import SERVICES, build, ensure_base, image, podman, run, unavailable

from forms import jpeg

UID = "10001"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def images():
    reason = unavailable()
    if reason:
        pytest.skip(f"podman cannot run containers here: {reason}")
    ensure_base()
    for service in SERVICES:
        build(service)
    return {service: image(service) for service in SERVICES}


def _wait_healthy(url: str, name: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    logs = podman("logs", name, check=False)
    output = logs.stdout[-2000:] + logs.stderr[-2000:]
    raise AssertionError(f"{name} did not answer /health within {timeout:.0f}s:\n{output}")


@pytest.fixture(scope="module")
def containers(images, stack):
    """An instance and a middleware container; names carry the pid so parallel runs never meet."""
    s = stack.settings
    tag = f"{os.getpid()}"
    instance_port, middleware_port = _free_port(), _free_port()
    common = {
        "MONGO_URL": s.mongo_url,
        "MONGO_DB": s.get("MONGO_DB", "vaccination"),
        "LOG_LEVEL": "INFO",
        "GUNICORN_WORKERS": "2",
        "GUNICORN_THREADS": "4",
        "LOKI_URL": "",
    }
    names = {"instance": f"test-instance-{tag}", "middleware": f"test-middleware-{tag}"}
    try:
        run(names["instance"], "instance", {
            **common,
            "INSTANCE_NAME": "podman-instance",
            "BIND": f"127.0.0.1:{instance_port}",
            "PHOTO_STORE_URL": f"http://127.0.0.1:{s.ports['PHOTO_STORE_PORT']}",
            "PHOTO_STORE_TOKEN": s.secrets["PHOTO_STORE_TOKEN"],
            "PHOTO_LINK_SECRET": s.secrets["PHOTO_LINK_SECRET"],
            "ADMIN_PASSWORD": s.secrets["ADMIN_PASSWORD"],
        })
        instance_url = f"http://127.0.0.1:{instance_port}"
        run(names["middleware"], "middleware", {
            **common,
            "BIND": f"127.0.0.1:{middleware_port}",
            "REDIS_URL": f"redis://127.0.0.1:{s.ports['REDIS_PORT']}/0",
            "INSTANCE_URLS": instance_url,
        })
        middleware_url = f"http://127.0.0.1:{middleware_port}"
        _wait_healthy(instance_url, names["instance"])
        _wait_healthy(middleware_url, names["middleware"])
        yield {"names": names, "instance": instance_url, "middleware": middleware_url}
    finally:
        for name in names.values():
            podman("rm", "-f", "-t", "5", name, check=False)


@pytest.mark.parametrize("service", SERVICES)
def test_image_runs_as_the_non_root_user(containers, service):
    name = containers["names"][service]
    assert podman("exec", name, "id", "-u").stdout.strip() == UID
    config = podman("image", "inspect", "--format", "{{.Config.User}}", image(service)).stdout.strip()
    assert config.split(":")[0] == UID
    # the root filesystem is read-only, as in docker-compose.yml; only the tmpfs folders take writes
    assert podman("exec", name, "touch", "/app/x", check=False).returncode != 0
    assert podman("exec", name, "touch", "/tmp/x", check=False).returncode == 0  # noqa: S108 (the tmpfs)


@pytest.mark.parametrize("service", SERVICES)
def test_health_and_ready_answer(containers, service):
    url = containers[service]
    assert requests.get(f"{url}/health", timeout=5).json()["status"] == "ok"
    ready = requests.get(f"{url}/ready", timeout=10)
    assert ready.status_code == 200, ready.text
    assert ready.json()["status"] == "ready"


@pytest.mark.parametrize("service", SERVICES)
def test_the_images_own_healthcheck_passes(containers, service):
    name = containers["names"][service]
    healthcheck = podman("image", "inspect", "--format", "{{json .Config.Healthcheck}}", image(service)).stdout
    assert "/health" in healthcheck, "the image lost its HEALTHCHECK (built in OCI format?)"
    result = podman("healthcheck", "run", name, check=False)
    assert result.returncode == 0, f"HEALTHCHECK failed: {result.stdout}{result.stderr}"


def test_registration_chart_and_report_through_the_images(containers, stack):
    city = f"Podman-{os.getpid()}"
    created = requests.post(
        f"{containers['instance']}/api/registrations",
        data={"name": "Lucía Contenedor", "city": city},
        files={"photo": ("id.jpg", jpeg(), "image/jpeg")},
        timeout=30,
    )
    assert created.status_code == 201, created.text
    assert created.headers["X-Served-By"] == "podman-instance"
    assert stack.db["registrations"].count_documents({"name": "Lucía Contenedor"}) >= 1

    chart = requests.get(f"{containers['middleware']}/api/chart", timeout=30)
    assert chart.status_code == 200, chart.text
    assert chart.headers["X-Served-By"] == "middleware"

    # the report goes middleware -> instance container -> MongoDB, streamed back as XLSX
    report = requests.get(f"{containers['middleware']}/api/reports/cities.xlsx", auth=stack.admin, timeout=60)
    assert report.status_code == 200, report.text[:500]
    assert report.content[:2] == b"PK"  # an XLSX is a zip archive
