"""docker-compose.yml: valid, wired to the repository's own config files, closed by default."""

import re
from pathlib import Path

import pytest
import yaml
from deploytools import (
    COMPOSE_REQUIRED_SECRETS,
    COMPOSE_SECRETS,
    DUMMY_SECRETS,
    REPO,
    placeholders,
    repo_file,
    run_compose_config,
)

from stack.render import render

# Host file or folder -> where the container must see it: the very files the native stack uses.
SHARED_CONFIG_MOUNTS = {
    "nginx": {"nginx/templates/default.conf.template": "/etc/nginx/templates/default.conf.template"},
    "photo-store": {"photo-store/templates/default.conf.template": "/etc/nginx/templates/default.conf.template"},
    **{
        f"prometheus-{n}": {
            "prometheus/prometheus.yml": "/etc/prometheus/prometheus.yml",
            "prometheus/rules": "/etc/prometheus/rules",
            "prometheus/targets/compose": "/etc/prometheus/targets",
        }
        for n in (1, 2)
    },
    "blackbox-exporter": {"prometheus/blackbox.yml": "/etc/blackbox_exporter/config.yml"},
    "alertmanager-config": {"alertmanager": "/source"},
    "grafana": {
        "grafana/provisioning": "/etc/grafana/provisioning",
        "grafana/dashboards": "/var/lib/grafana/dashboards",
    },
    "loki": {"loki/loki.yml": "/etc/loki/loki.yml"},
    "alloy": {"alloy/config.alloy": "/etc/alloy/config.alloy"},
}

PUBLISHED = {
    "nginx": 8080,
    "grafana": 3000,
    "prometheus-1": 9090,
    "prometheus-2": 9090,
    "alertmanager-1": 9093,
    "alertmanager-2": 9093,
    "mailpit": 8025,
}

STATE_VOLUMES = {
    "mongodb": "/data/db",
    "redis": "/data",
    "photo-store": "/var/lib/photos",
    "prometheus-1": "/prometheus",
    "prometheus-2": "/prometheus",
    "alertmanager-1": "/alertmanager",
    "alertmanager-2": "/alertmanager",
    "loki": "/loki",
    "grafana": "/var/lib/grafana",
}

BACKENDS = ("instance-1", "instance-2", "instance-3", "middleware", "mongodb", "redis", "photo-store")


def _mounts(service: dict) -> list[tuple[str, str, str]]:
    """(source, target, mode) of each volume entry of a resolved service."""
    out = []
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            out.append((volume.get("source", ""), volume["target"], "ro" if volume.get("read_only") else "rw"))
        else:
            parts = volume.split(":")
            out.append((parts[0], parts[1], parts[2] if len(parts) > 2 else "rw"))
    return out


def _bind_mounts(service: dict) -> list[tuple[str, str, str]]:
    return [m for m in _mounts(service) if m[0].startswith("/")]


def test_compose_config_validates(compose):
    assert set(compose["services"]) >= {
        "nginx",
        "middleware",
        "instance-1",
        "instance-2",
        "instance-3",
        "mongodb",
        "redis",
        "photo-store",
        "prometheus-1",
        "prometheus-2",
        "alertmanager-1",
        "alertmanager-2",
        "node-exporter",
        "nginx-exporter",
        "redis-exporter",
        "blackbox-exporter",
        "loki",
        "alloy",
        "grafana",
        "mailpit",
    }


@pytest.mark.parametrize("missing", COMPOSE_REQUIRED_SECRETS)
def test_compose_refuses_to_run_without_a_required_secret(missing, tmp_path):
    values = {k: v for k, v in COMPOSE_SECRETS.items() if k != missing}
    result = run_compose_config(values, tmp_path)
    assert result.returncode != 0
    assert missing in result.stderr


def test_every_mounted_path_exists_in_the_repository(compose):
    for name, service in compose["services"].items():
        for source, _target, _mode in _bind_mounts(service):
            if not source.startswith(str(REPO)):
                continue  # host paths: the Docker socket, the host root for node-exporter
            relative = Path(source).relative_to(REPO)
            assert Path(source).exists(), f"service {name} mounts {relative}, which is not in the repository"


def test_every_build_context_and_dockerfile_exists(compose):
    builds = {name: s["build"] for name, s in compose["services"].items() if "build" in s}
    assert set(builds) == {"instance-1", "instance-2", "instance-3", "middleware"}
    for name, build in builds.items():
        context = Path(build["context"])
        assert context == REPO, f"{name} must build from the repository root"
        assert (context / build.get("dockerfile", "Dockerfile")).is_file(), f"{name}: its Dockerfile is missing"
        assert build["args"]["SERVICE"] == name.split("-")[0], f"{name} builds the wrong service"


def test_configs_are_mounted_read_only(compose):
    for name, service in compose["services"].items():
        for source, target, mode in _bind_mounts(service):
            assert "ro" in mode.split(","), f"{name} mounts {source} at {target} writable"


@pytest.mark.parametrize("service", sorted(SHARED_CONFIG_MOUNTS))
def test_configs_are_the_files_the_native_stack_uses(compose, service):
    mounts = {Path(source): target for source, target, _ in _bind_mounts(compose["services"][service])}
    for relative, target in SHARED_CONFIG_MOUNTS[service].items():
        repo_file(relative)
        assert mounts.get(REPO / relative) == target, f"{service} must mount {relative} at {target}"


def test_only_the_user_interfaces_are_published_and_on_localhost(compose):
    published = {name: s["ports"] for name, s in compose["services"].items() if s.get("ports")}
    assert set(published) == set(PUBLISHED)
    for name, ports in published.items():
        assert len(ports) == 1
        port = ports[0]
        if isinstance(port, dict):
            host_ip, target = port.get("host_ip"), int(port["target"])
        else:
            host_ip, _, rest = port.partition(":")
            target = int(rest.split(":")[-1].split("/")[0])
        assert host_ip == "127.0.0.1", f"{name} is published beyond localhost by default"
        assert target == PUBLISHED[name]


def test_publishing_the_site_does_not_publish_the_operator_tools(tmp_path):
    everywhere = "0.0.0.0"  # noqa: S104 (what an operator sets to publish the site)
    result = run_compose_config({**COMPOSE_SECRETS, "HOST_BIND_ADDRESS": everywhere}, tmp_path)
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    host_ips = {name: {_host_ip(p) for p in services[name]["ports"]} for name in PUBLISHED}
    assert host_ips.pop("nginx") == {everywhere}
    assert all(ips == {"127.0.0.1"} for ips in host_ips.values()), host_ips


def _host_ip(port) -> str:
    return port.get("host_ip") if isinstance(port, dict) else port.partition(":")[0]


def test_backends_sit_only_on_internal_networks(compose):
    networks = compose["networks"]
    assert networks["backend"].get("internal") is True
    for name in BACKENDS:
        for network in compose["services"][name]["networks"]:
            assert network in {"backend", "egress"}, f"{name} is attached to {network}"
    # egress (Cloudinary) is for the replicas only
    services = compose["services"].items()
    others = [n for n, s in services if "egress" in s.get("networks", {}) and not n.startswith("instance-")]
    assert others == []


@pytest.mark.parametrize(
    "name",
    ["mongodb", "redis", "photo-store", "prometheus-1", "prometheus-2", "alertmanager-1", "alertmanager-2", "grafana"],
)
def test_stateful_parts_have_healthchecks(compose, name):
    assert compose["services"][name].get("healthcheck", {}).get("test"), f"{name} has no healthcheck"


@pytest.mark.parametrize(
    "service,dependency",
    [
        ("instance-1", "mongodb"),
        ("instance-2", "mongodb"),
        ("instance-3", "mongodb"),
        ("middleware", "mongodb"),
        ("middleware", "redis"),
        ("instance-1", "photo-store"),
    ],
)
def test_services_wait_for_healthy_dependencies(compose, service, dependency):
    depends = compose["services"][service]["depends_on"]
    assert depends[dependency]["condition"] == "service_healthy"


def test_mongodb_healthcheck_pings_with_mongosh(compose):
    test = " ".join(compose["services"]["mongodb"]["healthcheck"]["test"])
    assert "mongosh" in test and "ping" in test


@pytest.mark.parametrize("service", sorted(STATE_VOLUMES))
def test_state_lives_in_named_volumes(compose, service):
    mounts = _mounts(compose["services"][service])
    named = {target: source for source, target, _ in mounts if not source.startswith("/")}
    target = STATE_VOLUMES[service]
    assert target in named, f"{service} keeps {target} outside a named volume"
    assert named[target] in compose["volumes"]


def test_grafana_admin_password_comes_from_the_env_file(compose, compose_source):
    env = compose["services"]["grafana"]["environment"]
    assert env["GF_SECURITY_ADMIN_PASSWORD"] == DUMMY_SECRETS["GRAFANA_ADMIN_PASSWORD"]
    written = compose_source["services"]["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"]
    assert written.startswith("${GRAFANA_ADMIN_PASSWORD:?")


@pytest.mark.parametrize(
    "service,template",
    [
        ("nginx", "nginx/templates/default.conf.template"),
        ("photo-store", "photo-store/templates/default.conf.template"),
    ],
)
def test_every_template_placeholder_gets_a_value(compose, service, template):
    missing = placeholders(repo_file(template)) - set(compose["services"][service]["environment"])
    assert not missing, f"{service} leaves {sorted(missing)} of {template} unset"


def test_alertmanager_template_is_rendered_with_every_placeholder(compose):
    renderer = compose["services"]["alertmanager-config"]
    script = " ".join(renderer["entrypoint"])
    for name in placeholders(repo_file("alertmanager/alertmanager.yml")):
        assert f"${{{name}}}" in script.replace("$$", "$"), f"{name} is not substituted"
        assert name in renderer["environment"], f"{name} has no value"
    for name in ("alertmanager-1", "alertmanager-2"):
        alertmanager = compose["services"][name]
        assert "--config.file=/etc/alertmanager/alertmanager.yml" in alertmanager["command"]
        assert alertmanager["depends_on"]["alertmanager-config"]["condition"] == "service_completed_successfully"


def test_the_monitoring_runs_as_pairs(compose):
    """Two Prometheus servers told apart only by their replica label, two Alertmanagers each
    naming the other as its cluster peer, and every Prometheus sending to and scraping both."""
    services = compose["services"]
    assert [services[f"prometheus-{n}"]["environment"]["PROMETHEUS_REPLICA"] for n in (1, 2)] == [
        "prometheus-1",
        "prometheus-2",
    ]
    assert services["prometheus-1"]["command"] == services["prometheus-2"]["command"]
    for n, twin in ((1, 2), (2, 1)):
        command = services[f"alertmanager-{n}"]["command"]
        assert f"--cluster.peer=alertmanager-{twin}:9094" in command
        assert "--cluster.listen-address=0.0.0.0:9094" in command
    for job in ("prometheus", "alertmanager"):
        targets = yaml.safe_load(repo_file(f"prometheus/targets/compose/{job}.yml").read_text())
        assert sorted(t for group in targets for t in group["targets"]) == [
            f"{job}-{n}:{9090 if job == 'prometheus' else 9093}" for n in (1, 2)
        ]


def test_grafana_dashboards_are_mounted_where_the_provider_reads_them(compose):
    providers = yaml.safe_load(repo_file("grafana/provisioning/dashboards/dashboards.yml").read_text())["providers"]
    paths = {p["options"]["path"] for p in providers}
    mounted = {target for _source, target, _ in _bind_mounts(compose["services"]["grafana"])}
    assert paths <= mounted, f"dashboards.yml reads {sorted(paths)}, compose mounts {sorted(mounted)}"


def test_compose_target_files_cover_every_file_prometheus_reads(compose):
    config = yaml.safe_load(repo_file("prometheus/prometheus.yml").read_text())
    wanted = {
        Path(f).name
        for section in config["scrape_configs"] + config.get("alerting", {}).get("alertmanagers", [])
        for sd in section.get("file_sd_configs", [])
        for f in sd["files"]
    }
    present = {p.name for p in (REPO / "prometheus/targets/compose").glob("*.yml")}
    assert wanted <= present, f"compose has no target file for {sorted(wanted - present)}"


def test_images_are_pinned(compose):
    for name, service in compose["services"].items():
        image = service["image"]
        if "build" in service:
            continue
        repo_tag = image.rsplit("/", 1)[-1]
        assert ":" in repo_tag and not repo_tag.endswith(":latest"), f"{name} uses an unpinned image {image}"


def test_compose_services_do_not_push_logs_to_loki_themselves(compose):
    # Alloy ships stdout; a direct push as well would store each line twice.
    for name in ("instance-1", "instance-2", "instance-3", "middleware"):
        assert compose["services"][name]["environment"].get("LOKI_URL", "") == ""


# ---------------------------------------------------------------- what a first start would hit
# One-shot containers (they run to completion, others wait for them) need no healthcheck.
ONE_SHOT = {"alertmanager-config"}
# Images with no program but their own binary (distroless, FROM scratch): no healthcheck can run
# in them. Each says why in its `vaccination.healthcheck` label; anything else must have one.
NO_PROBE_POSSIBLE = {"loki", "nginx-exporter", "redis-exporter"}


def _is_under(path: str, folder: str) -> bool:
    return path != folder and path.startswith(folder.rstrip("/") + "/")


def test_no_mount_point_inside_a_read_only_mount(compose):
    # The runtime must create the inner mount point inside the outer mount, which it cannot
    # do when the outer one is read-only: the container never starts (Alertmanager did this).
    for name, service in compose["services"].items():
        mounts = _mounts(service)
        for _source, outer, mode in mounts:
            if "ro" not in mode.split(","):
                continue
            inner = [target for _s, target, _m in mounts if _is_under(target, outer)]
            assert not inner, f"{name} mounts {inner} inside its read-only mount {outer}"


def test_every_long_running_service_has_a_healthcheck(compose):
    missing = []
    for name, service in compose["services"].items():
        if name in ONE_SHOT:
            assert service.get("restart") == "no"
            continue
        test = service.get("healthcheck", {}).get("test")
        if name in NO_PROBE_POSSIBLE:
            assert not test, f"{name} has a healthcheck its image cannot run"
            assert service["labels"]["vaccination.healthcheck"].startswith("none: "), name
        elif not test or service["healthcheck"].get("disable"):
            missing.append(name)
    assert not missing, f"no healthcheck: {missing}"


def test_every_service_rotates_its_logs(compose):
    for name, service in compose["services"].items():
        logging = service.get("logging", {})
        assert logging.get("driver") == "json-file", f"{name} keeps its logs without rotation"
        options = logging.get("options", {})
        assert options.get("max-size") and int(options.get("max-file", 0)) >= 2, f"{name} never rotates its logs"


def test_every_service_has_a_memory_limit(compose):
    missing = [name for name, service in compose["services"].items() if not service.get("mem_limit")]
    assert not missing, f"no memory limit: {missing}"


def test_nginx_starts_with_the_replicas_started_not_all_healthy(compose):
    # One sick replica must not keep the whole site down: nginx's passive checks skip it.
    depends = compose["services"]["nginx"]["depends_on"]
    for name in ("instance-1", "instance-2", "instance-3", "middleware"):
        assert depends[name]["condition"] == "service_started", f"nginx waits for {name} to be healthy"


def _upstream_servers(rendered: str) -> list[str]:
    servers = []
    for block in re.findall(r"upstream\s+\w+\s*\{(.*?)\}", rendered, re.S):
        lines = [line.strip() for line in block.splitlines()]
        servers += [line.split(None, 1)[1].rstrip(";") for line in lines if line.startswith("server ")]
    return servers


def test_nginx_resolves_the_upstream_names_while_it_runs(compose):
    # A name in an upstream is resolved once at start unless the server has `resolve` (nginx
    # 1.27.3+) and a resolver is configured: a recreated replica would keep its old address.
    nginx = compose["services"]["nginx"]
    env = nginx["environment"]
    rendered = render(repo_file("nginx/templates/default.conf.template").read_text(), env)
    servers = _upstream_servers(rendered)
    assert len(servers) == 5
    for server in servers:
        address, *params = server.split()
        host = address.rsplit(":", 1)[0]
        if not re.fullmatch(r"[\d.]+", host):
            assert "resolve" in params, f"upstream server {address} is resolved only when nginx starts"
    templates = {t: s for s, t, _ in _bind_mounts(nginx) if t.startswith("/etc/nginx/templates/")}
    resolver = [Path(s).read_text() for t, s in templates.items() if t != "/etc/nginx/templates/default.conf.template"]
    assert any(re.search(r"^resolver \$\{NGINX_LOCAL_RESOLVERS\} valid=\d+s", text, re.M) for text in resolver)
    assert env.get("NGINX_ENTRYPOINT_LOCAL_RESOLVERS"), "the image's entrypoint must export NGINX_LOCAL_RESOLVERS"


def test_prometheus_lifecycle_api_is_off(compose):
    assert not any("enable-lifecycle" in arg for arg in compose["services"]["prometheus-1"]["command"])


def test_the_metrics_folder_is_writable_for_the_images_user(compose):
    # gunicorn empties and recreates PROMETHEUS_MULTIPROC_DIR at start, as uid 10001: it must
    # lie inside a tmpfs writable for everyone (/tmp), not be a root-owned tmpfs of its own
    for name, service in compose["services"].items():
        if "build" not in service:
            continue
        folder = service["environment"]["PROMETHEUS_MULTIPROC_DIR"]
        mounts = {entry.partition(":")[0] for entry in service["tmpfs"]}
        assert folder not in mounts, f"{name}: {folder} is a tmpfs of its own, root-owned"
        assert any(_is_under(folder, m) for m in mounts), f"{name}: {folder} is not on a tmpfs"
        assert "/tmp" in mounts  # noqa: S108 (inside the container)


def test_healthcheck_arguments_survive_podmans_api(compose):
    # podman's Docker-compatible API (4.3) splits a CMD healthcheck's arguments at spaces
    # ("import socket; ..." became "import"): an argument with a space goes in CMD-SHELL
    for name, service in compose["services"].items():
        test = service.get("healthcheck", {}).get("test") or ["NONE"]
        if test[0] == "CMD":
            spaced = [arg for arg in test[1:] if " " in arg]
            assert not spaced, f"{name}: healthcheck arguments with spaces {spaced} break under podman"


def test_mongodb_and_redis_ask_for_a_password(compose):
    # the backend network is shared with a container that holds the Docker socket
    services = compose["services"]
    mongodb = services["mongodb"]["environment"]
    assert mongodb["MONGO_INITDB_ROOT_PASSWORD"] == COMPOSE_SECRETS["MONGO_ROOT_PASSWORD"]
    assert mongodb["MONGO_APP_PASSWORD"] == COMPOSE_SECRETS["MONGO_APP_PASSWORD"]
    init = {target: source for source, target, _ in _mounts(services["mongodb"])}
    assert Path(init["/docker-entrypoint-initdb.d/app-user.js"]) == repo_file("mongodb/initdb/app-user.js")
    assert "process.env.MONGO_APP_PASSWORD" in repo_file("mongodb/initdb/app-user.js").read_text()
    redis = services["redis"]
    # `config` keeps compose's escape: the container's shell reads $REDIS_PASSWORD itself
    assert '--requirepass "$$REDIS_PASSWORD"' in " ".join(redis["command"])
    assert (
        redis["environment"]["REDIS_PASSWORD"]
        == redis["environment"]["REDISCLI_AUTH"]
        == COMPOSE_SECRETS["REDIS_PASSWORD"]
    )
    assert services["redis-exporter"]["environment"]["REDIS_PASSWORD"] == COMPOSE_SECRETS["REDIS_PASSWORD"]
    for name, service in services.items():
        env = service.get("environment") or {}
        if "MONGO_URL" in env:
            assert f"vaccination:{COMPOSE_SECRETS['MONGO_APP_PASSWORD']}@mongodb:" in env["MONGO_URL"], name
        if "REDIS_URL" in env:
            assert env["REDIS_URL"].startswith(f"redis://:{COMPOSE_SECRETS['REDIS_PASSWORD']}@redis:"), name


# Images that start as root and need their capabilities to hand files to their own user and
# switch to it (the entrypoints' chown and gosu/su-exec, nginx's master), or to read the
# Docker socket (Alloy). Every other service drops them all.
STARTS_AS_ROOT = {"nginx", "mongodb", "redis", "photo-store", "alertmanager-config", "mailpit", "alloy"}
STATELESS = {"node-exporter", "nginx-exporter", "redis-exporter", "blackbox-exporter", "middleware"}


def test_no_service_gains_privileges_and_non_root_ones_drop_every_capability(compose):
    services = compose["services"]
    assert set(services) >= STARTS_AS_ROOT
    for name, service in services.items():
        assert "no-new-privileges:true" in service.get("security_opt", []), name
        if name not in STARTS_AS_ROOT:
            assert service.get("cap_drop") == ["ALL"], name
    for name in STATELESS | {f"instance-{n}" for n in (1, 2, 3)}:
        assert services[name].get("read_only") is True, f"{name} writes nothing: its root filesystem can be read-only"
