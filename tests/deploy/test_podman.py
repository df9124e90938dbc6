"""The project's own images, built from the Dockerfile and run with podman as docker-compose.yml
runs them (read-only root filesystem, tmpfs, the image's non-root user, the same environment),
against the native test stack's MongoDB, photo store and Redis.

Skipped, with the reason, where podman cannot run containers (podman_tools.unavailable()).
The first run on a machine bootstraps the stand-in base image (~1 min) and builds both images
(pip install from PyPI, ~1 min each); later runs reuse podman's layer cache.
"""

import os
import time

import pytest
import requests
from podman_tools import SERVICES, build, ensure_base, image, podman, run, standin, unavailable
from servers import free_port

from common import records
from forms import jpeg

UID = "10001"


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
    instance_port, middleware_port = free_port(), free_port()
    common = {
        "MONGO_URL": s.mongo_url,
        "MONGO_DB": s.get("MONGO_DB", records.DATABASE),
        "LOG_LEVEL": "INFO",
        "GUNICORN_WORKERS": "2",
        "GUNICORN_THREADS": "4",
        "LOKI_URL": "",
    }
    names = {"instance": f"test-instance-{tag}", "middleware": f"test-middleware-{tag}"}
    try:
        run(
            names["instance"],
            "instance",
            {
                **common,
                "INSTANCE_NAME": "podman-instance",
                "BIND": f"127.0.0.1:{instance_port}",
                "PHOTO_STORE_URL": f"http://127.0.0.1:{s.ports['PHOTO_STORE_PORT']}",
                "PHOTO_STORE_TOKEN": s.secrets["PHOTO_STORE_TOKEN"],
                "PHOTO_LINK_SECRET": s.secrets["PHOTO_LINK_SECRET"],
                "ADMIN_PASSWORD": s.secrets["ADMIN_PASSWORD"],
            },
        )
        instance_url = f"http://127.0.0.1:{instance_port}"
        run(
            names["middleware"],
            "middleware",
            {
                **common,
                "BIND": f"127.0.0.1:{middleware_port}",
                "REDIS_URL": s.redis_url,
                "INSTANCES_URL": instance_url,
            },
        )
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


# ---------------------------------------------------------------- docker-compose.yml itself
# Debian's docker-compose 1.29 talks to `podman system service` as if it were Docker. The
# images no registry gives us here are replaced by stand-ins named as such (podman/standins/):
# MongoDB by the native stack's wire-protocol server, Redis and the photo store by Debian's
# redis-server and nginx-light. What has no stand-in is not started: the public nginx (its
# upstreams use `resolve`, which Debian's nginx 1.22 lacks) and the monitoring images. `up`
# names only the services below, which run with their real compose settings.
COMPOSE_SERVICES = ("mongodb", "redis", "photo-store", "middleware", "instance-1")


def _override(path) -> None:
    path.write_text(
        "services:\n"
        "  mongodb:\n"
        f"    image: {standin('mongodb')}\n"
        "    healthcheck:\n"
        '      test: ["CMD-SHELL", "/opt/nx/bin/python -c \\"import socket;'
        " socket.create_connection(('127.0.0.1', 27017), 2)\\\"\"]\n"
        "  redis:\n"
        f"    image: {standin('redis')}\n"
        "  photo-store:\n"
        f"    image: {standin('photo-store')}\n"
        # the stand-in (nx-27017) has no authentication: the services get a URL without a user
        "  instance-1:\n"
        f"    image: {image('instance')}\n"
        "    environment:\n"
        "      MONGO_URL: mongodb://mongodb:27017\n"
        "  middleware:\n"
        f"    image: {image('middleware')}\n"
        "    environment:\n"
        "      MONGO_URL: mongodb://mongodb:27017\n"
    )


@pytest.fixture(scope="module")
def compose_project(images, tmp_path_factory):
    import shutil
    import signal
    import subprocess
    import threading

    from deploytools import COMPOSE_SECRETS, REPO
    from podman_tools import build_standins, env

    compose = shutil.which("docker-compose")
    if not compose:
        pytest.skip("docker-compose is not installed (./init.sh installs it)")
    build_standins()
    tmp = tmp_path_factory.mktemp("compose")
    socket_path = tmp / "podman.sock"
    service = subprocess.Popen(
        ["podman", "system", "service", "--time=0", f"unix://{socket_path}"],
        env=env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    project = f"vaxtest{os.getpid()}"
    (tmp / "compose.env").write_text("".join(f"{k}={v}\n" for k, v in COMPOSE_SECRETS.items()))
    _override(tmp / "standins.yml")
    command = [
        compose,
        "-p",
        project,
        "--project-directory",
        str(REPO),
        "--env-file",
        str(tmp / "compose.env"),
        "-f",
        str(REPO / "docker-compose.yml"),
        "-f",
        str(tmp / "standins.yml"),
    ]
    compose_env = {**env(), "DOCKER_HOST": f"unix://{socket_path}", "COMPOSE_HTTP_TIMEOUT": "300"}

    def run(*args, timeout=600):
        return subprocess.run([*command, *args], env=compose_env, capture_output=True, text=True, timeout=timeout)

    # podman runs healthchecks from systemd timers, and there is no systemd here: run them
    stop = threading.Event()

    def drive_healthchecks():
        while not stop.wait(2):
            names = podman(
                "ps", "--filter", f"label=com.docker.compose.project={project}", "--format", "{{.Names}}", check=False
            ).stdout.split()
            for name in names:
                podman("healthcheck", "run", name, check=False, timeout=30)

    driver = threading.Thread(target=drive_healthchecks, daemon=True)
    try:
        deadline = time.monotonic() + 30
        while not socket_path.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        driver.start()
        # each waits (depends_on: service_healthy) for MongoDB, Redis and the photo store
        up = run("up", "-d", "middleware", "instance-1")
        assert up.returncode == 0, up.stderr[-3000:]
        names = {s: f"{project}_{s}_1" for s in COMPOSE_SERVICES}
        yield {"project": project, "names": names}
    finally:
        stop.set()
        down = run("down", "-v", "--timeout", "5", timeout=300)
        if down.returncode != 0:
            podman("pod", "prune", "-f", check=False)
        if os.getpgid(service.pid) == service.pid:  # it leads the group we started
            os.killpg(service.pid, signal.SIGTERM)
        service.wait(timeout=30)


def _get(container: str, port: int, path: str) -> tuple[int, str]:
    """An HTTP GET from inside a container (the backend network is internal)."""
    script = (
        "import sys, urllib.request, urllib.error\n"
        f"try:\n r = urllib.request.urlopen('http://127.0.0.1:{port}{path}', timeout=20)\n"
        " print(r.status); print(r.read()[:300].decode('latin-1'))\n"
        "except urllib.error.HTTPError as e:\n print(e.code); print(e.read()[:300].decode('latin-1'))\n"
    )
    out = podman("exec", container, "python", "-c", script, timeout=60).stdout
    status, _, body = out.partition("\n")
    return int(status), body


def _wait_health(container: str, port: int) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if _get(container, port, "/health")[0] == 200:
                return
        except (RuntimeError, ValueError):
            pass
        time.sleep(1)
    raise AssertionError(f"{container} did not answer /health: {podman('logs', container, check=False).stdout[-2000:]}")


def test_compose_runs_the_services_with_their_settings(compose_project):
    names = compose_project["names"]
    for service, port in (("middleware", 8010), ("instance-1", 8000)):
        container = names[service]
        _wait_health(container, port)
        inspect = podman(
            "inspect", "--format", "{{.HostConfig.ReadonlyRootfs}} {{.HostConfig.Memory}} {{.Config.User}}", container
        ).stdout
        read_only, memory, user = inspect.split()
        assert read_only == "true" and int(memory) == 512 * 2**20 and user.split(":")[0] == UID, inspect
        assert podman("healthcheck", "run", container, check=False).returncode == 0


def test_compose_middleware_reaches_mongodb_and_redis_by_name(compose_project):
    names = compose_project["names"]
    status, body = _get(names["middleware"], 8010, "/ready")
    assert status == 200, body
    status, body = _get(names["middleware"], 8010, "/api/chart")
    assert status == 200, body


def test_compose_replica_registers_through_mongodb_and_the_photo_store_by_name(compose_project):
    names = compose_project["names"]
    status, body = _get(names["instance-1"], 8000, "/ready")
    assert status == 200, body
    # a registration with a photo, sent from inside the replica's container (no published port)
    script = (
        "import io, requests\n"
        "from PIL import Image\n"
        "photo = io.BytesIO(); Image.new('RGB', (64, 48), (200, 30, 30)).save(photo, 'JPEG')\n"
        "r = requests.post('http://127.0.0.1:8000/api/registrations', data={'name': 'Ana Compose', 'city': 'Cuenca'},\n"
        "                  files={'photo': ('id.jpg', photo.getvalue(), 'image/jpeg')}, timeout=30)\n"
        "print(r.status_code)\n"
    )
    out = podman("exec", names["instance-1"], "python", "-c", script, timeout=60).stdout.strip()
    assert out == "201", out
    # the photo landed in the photo store's volume, written by nginx's WebDAV as `nginx`
    stored = podman("exec", names["photo-store"], "find", "/var/lib/photos", "-type", "f", timeout=30).stdout.split()
    assert stored, "no photo in the photo store"
