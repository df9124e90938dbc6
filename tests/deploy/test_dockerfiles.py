"""The service images (one Dockerfile, SERVICE build argument): what they copy exists and is
sent, and they run as the contract says."""

import fnmatch
import importlib.metadata
import re

import pytest
from deploytools import REPO, repo_file
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

SERVICES = {"instance": 8000, "middleware": 8010}


def _instructions(service: str) -> list[tuple[str, str]]:
    """The Dockerfile's instructions as built for one service (its build arguments filled in)."""
    text = repo_file("Dockerfile").read_text()
    text = text.replace("${SERVICE}", service).replace("${PORT}", str(SERVICES[service]))
    text = re.sub(r"\\\n", " ", text)  # join continued lines
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def _copy_sources(service: str) -> list[str]:
    sources = []
    for keyword, rest in _instructions(service):
        if keyword == "COPY" and "--from=" not in rest:
            parts = [p for p in rest.split() if not p.startswith("--")]
            sources.extend(parts[:-1])
    return sources


def _sent_to_docker(relative: str) -> bool:
    """Whether .dockerignore lets a path into the build context (last matching rule wins)."""
    included = True
    for rule in repo_file(".dockerignore").read_text().splitlines():
        rule = rule.strip()
        if not rule or rule.startswith("#"):
            continue
        negate = rule.startswith("!")
        pattern = rule.lstrip("!").rstrip("/")
        candidates = [relative.rstrip("/")]
        parts = relative.rstrip("/").split("/")
        candidates += ["/".join(parts[:i]) for i in range(1, len(parts))]
        if any(fnmatch.fnmatch(c, pattern) or fnmatch.fnmatch(c, pattern.replace("**/", "")) for c in candidates):
            included = negate
    return included


@pytest.mark.parametrize("service", SERVICES)
def test_copy_sources_exist(service):
    sources = _copy_sources(service)
    assert f"{service}/" in sources and "common/" in sources
    for source in sources:
        assert (REPO / source).exists(), f"{service}/Dockerfile copies {source}, which is not in the repository"


@pytest.mark.parametrize("service", SERVICES)
def test_copy_sources_are_not_excluded_by_dockerignore(service):
    for source in _copy_sources(service):
        assert _sent_to_docker(source), f".dockerignore keeps {source} out of the build context"


@pytest.mark.parametrize("path", [".env", ".git", "var", "k8s", "tests", "instance/__pycache__"])
def test_dockerignore_keeps_secrets_and_clutter_out(path):
    assert not _sent_to_docker(path)


@pytest.mark.parametrize("service", SERVICES)
def test_image_is_pinned_slim_python_311(service):
    args = dict(re.findall(r"^ARG (\w+)=(\S+)", repo_file("Dockerfile").read_text(), re.M))
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+", args["PYTHON_IMAGE"])
    froms = [rest for keyword, rest in _instructions(service) if keyword == "FROM"]
    assert len(froms) == 2 and all(f.startswith("${PYTHON_IMAGE}") for f in froms)


@pytest.mark.parametrize("service", SERVICES)
def test_runs_as_a_numeric_non_root_user(service):
    users = [rest for keyword, rest in _instructions(service) if keyword == "USER"]
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0


@pytest.mark.parametrize("service", SERVICES)
def test_environment_and_entrypoint(service):
    instructions = _instructions(service)
    env = " ".join(rest for keyword, rest in instructions if keyword == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    assert f"BIND=0.0.0.0:{SERVICES[service]}" in env
    assert f"SERVICE_NAME={service}" in env
    # gunicorn as PID 1 (exec), loading the package SERVICE_NAME names
    cmd = [rest for keyword, rest in instructions if keyword == "CMD"][-1]
    assert "exec gunicorn -c python:common.gunicorn_conf" in cmd and "${SERVICE_NAME}:create_app()" in cmd


def test_one_dockerfile_serves_both_services():
    assert not (REPO / "instance/Dockerfile").exists() and not (REPO / "middleware/Dockerfile").exists()
    args = dict(re.findall(r"^ARG (\w+)=(\S+)", repo_file("Dockerfile").read_text(), re.M))
    assert args["SERVICE"] == "instance" and args["PORT"] == "8000"


@pytest.mark.parametrize("service", SERVICES)
def test_healthcheck_uses_python_on_health(service):
    healthcheck = [rest for keyword, rest in _instructions(service) if keyword == "HEALTHCHECK"]
    assert len(healthcheck) == 1
    assert '"python"' in healthcheck[0] and "/health" in healthcheck[0]
    assert "curl" not in healthcheck[0]


@pytest.mark.parametrize("service", SERVICES)
def test_requirements_are_pinned(service):
    for line in repo_file(f"{service}/requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            assert "==" in line, f"{service}/requirements.txt: {line} is not pinned"


def _lock(service: str) -> dict[str, tuple[str, list[str]]]:
    """name -> (version, hashes) of <service>/requirements.lock"""
    text = repo_file(f"{service}/requirements.lock").read_text().replace("\\\n", " ")
    entries = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            pin, *options = line.split()
            name, version = pin.split("==")
            entries[canonicalize_name(name)] = (version, [o.removeprefix("--hash=") for o in options])
    return entries


@pytest.mark.parametrize("service", SERVICES)
def test_the_image_installs_only_hashed_packages(service):
    runs = [rest for keyword, rest in _instructions(service) if keyword == "RUN" and "pip install" in rest]
    assert len(runs) == 1 and "--require-hashes" in runs[0] and "--no-deps" in runs[0]
    assert "requirements.lock" in runs[0]
    for name, (_, hashes) in _lock(service).items():
        assert hashes and all(re.fullmatch(r"sha256:[0-9a-f]{64}", h) for h in hashes), name


@pytest.mark.parametrize("service", SERVICES)
def test_the_lock_holds_every_requirement_and_all_they_pull_in(service):
    # The dependency closure from the metadata of the repository's own environment, which has
    # the very versions of requirements.txt (the lock of everything): no more, no fewer.
    lock = _lock(service)
    repository = {}
    for line in repo_file("requirements.txt").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==")
            repository[canonicalize_name(name)] = version.strip()
    wanted = [
        Requirement(line.split("#", 1)[0])
        for line in repo_file(f"{service}/requirements.txt").read_text().splitlines()
        if line.split("#", 1)[0].strip()
    ]
    closure, queue = set(), [r.name for r in wanted]
    while queue:
        name = canonicalize_name(queue.pop())
        if name in closure:
            continue
        closure.add(name)
        try:
            requires = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:  # needed only on the image's Python
            assert name in {canonicalize_name(r.name) for r in wanted}, name
            requires = []
        for requirement in map(Requirement, requires):
            if not requirement.marker or requirement.marker.evaluate({"extra": ""}):
                queue.append(requirement.name)
    assert set(lock) == closure
    for requirement in wanted:
        assert requirement.specifier.contains(lock[canonicalize_name(requirement.name)][0])
    in_repository = {name: version for name, (version, _) in lock.items() if name in repository}
    assert in_repository == {n: repository[n] for n in in_repository}
