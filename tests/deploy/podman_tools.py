"""Build and run the project's images with podman, here, with no registry in reach.

No image registry can be reached from the test machines, so the base image is a stand-in,
named as one: `localhost/python-standin:bookworm`, a Debian bookworm root filesystem
(`debootstrap --variant=minbase`, python3, venv, CA certificates) imported into podman. The
Dockerfile takes it as PYTHON_IMAGE; everything after FROM is the real build, including
`pip install` from PyPI. The host's CA bundle goes into the stand-in so that pip trusts what
the host trusts (a proxy's CA, say). The root filesystem is cached as a tarball under
var/cache/ (CI may keep that folder between runs): a rebuild of the stand-in costs ~1 min.

    python3 tests/deploy/podman_tools.py build   # the stand-in base and both images, by hand
"""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
CONF = Path(__file__).resolve().parent / "podman" / "containers.conf"
CACHE = REPO / "var" / "cache" / "podman"
BASE = "localhost/python-standin:bookworm"
BASE_PACKAGES = "python3,python3-venv,python-is-python3,ca-certificates"
SERVICES = {"instance": 8000, "middleware": 8010}
TOOLS = ("podman", "runc", "debootstrap")


def image(service: str) -> str:
    return f"localhost/vaccination-{service}:local"


def env() -> dict[str, str]:
    return {**os.environ, "CONTAINERS_CONF": str(CONF)}


def podman(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(["podman", *args], env=env(), capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise RuntimeError(f"podman {' '.join(args[:3])} ... failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return result


def unavailable() -> str | None:
    """Why podman cannot run containers here, or None when it can."""
    missing = [tool for tool in TOOLS if not shutil.which(tool)]
    if missing:
        return f"{', '.join(missing)} not installed (./init.sh installs podman, runc, debootstrap as root)"
    if os.geteuid() != 0:
        return "the image tests run podman as root (rootless podman needs subuid ranges and user namespaces)"
    try:
        probe = podman("info", "--format", "{{.Host.OCIRuntime.Name}}", timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"podman does not answer: {error}"
    if probe.returncode != 0:
        return f"podman cannot run here: {probe.stderr.strip()[-500:]}"
    return None


def ensure_base() -> None:
    """The stand-in base image: present, or imported from the cached tarball, or bootstrapped."""
    if podman("image", "exists", BASE, check=False).returncode == 0:
        return
    CACHE.mkdir(parents=True, exist_ok=True)
    tarball = CACHE / "python-standin-bookworm.tar"
    if not tarball.exists():
        with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
            root = Path(tmp) / "rootfs"
            subprocess.run(
                [
                    "debootstrap",
                    "--variant=minbase",
                    f"--include={BASE_PACKAGES}",
                    "bookworm",
                    str(root),
                    "http://deb.debian.org/debian",
                ],
                check=True,
                capture_output=True,
                timeout=900,
            )
            shutil.copyfile("/etc/ssl/certs/ca-certificates.crt", root / "etc/ssl/certs/ca-certificates.crt")
            shutil.rmtree(root / "var/cache/apt/archives", ignore_errors=True)
            partial = tarball.with_suffix(".partial")
            subprocess.run(["tar", "-C", str(root), "-cf", str(partial), "."], check=True, timeout=300)
            partial.rename(tarball)
    podman(
        "import",
        "--change",
        "ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt",
        "--change",
        "ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt",
        str(tarball),
        BASE,
        timeout=300,
    )


def build(service: str) -> None:
    # --format docker: the OCI format has no HEALTHCHECK, and the image's own is under test
    podman(
        "build",
        "--network",
        "host",
        "--format",
        "docker",
        "--build-arg",
        f"PYTHON_IMAGE={BASE}",
        "--build-arg",
        f"SERVICE={service}",
        "--build-arg",
        f"PORT={SERVICES[service]}",
        "-t",
        image(service),
        "-f",
        str(REPO / "Dockerfile"),
        str(REPO),
        timeout=900,
    )


def compose_service(service: str) -> dict:
    """The service as docker-compose.yml writes it (instance-1 stands for the replicas)."""
    services = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    return services["instance-1" if service == "instance" else service]


def run(name: str, service: str, environment: dict[str, str]) -> None:
    """Start a container as docker-compose.yml runs it: its read_only and tmpfs settings, the
    image's user and HEALTHCHECK. Host networking: it talks to the test stack on 127.0.0.1.
    """
    podman("rm", "-f", name, check=False)
    spec = compose_service(service)
    flags = ["--read-only"] if spec.get("read_only") else []
    flags += [arg for mount in spec.get("tmpfs", []) for arg in ("--tmpfs", mount)]
    flags += ["--network", "host"]
    # where compose puts the metrics folder (on the /tmp tmpfs), whatever the image's default
    environment = {"PROMETHEUS_MULTIPROC_DIR": spec["environment"]["PROMETHEUS_MULTIPROC_DIR"], **environment}
    env_flags = [arg for key, value in environment.items() for arg in ("-e", f"{key}={value}")]
    podman("run", "-d", "--name", name, *flags, *env_flags, image(service), timeout=120)


STANDINS = Path(__file__).resolve().parent / "podman" / "standins"


def standin(name: str) -> str:
    return f"localhost/{name}-standin:bookworm"


def build_standins() -> None:
    """Stand-ins for images no registry can give us here, named as stand-ins (see each file)."""
    nx = next(
        line.split("==", 1)[1].strip()
        for line in (REPO / "requirements.txt").read_text().splitlines()
        if line.startswith("nx-27017==")
    )
    # --network host for the builds: apt and pip need the host's resolver
    common = ["build", "--network", "host", "--format", "docker", "--build-arg", f"BASE={BASE}"]
    podman(
        *common,
        "--build-arg",
        f"NX_27017={nx}",
        "-t",
        standin("mongodb"),
        "-f",
        str(STANDINS / "mongodb.Containerfile"),
        str(STANDINS),
        timeout=900,
    )
    for name in ("redis", "photo-store"):
        podman(*common, "-t", standin(name), "-f", str(STANDINS / f"{name}.Containerfile"), str(STANDINS), timeout=900)


def main(argv: list[str]) -> int:
    if argv[:1] != ["build"]:
        print(__doc__)
        return 2
    reason = unavailable()
    if reason:
        print(f"podman unavailable: {reason}", file=sys.stderr)
        return 1
    ensure_base()
    for service in SERVICES:
        build(service)
        print(f"built {image(service)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
