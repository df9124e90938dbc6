"""k8s/: both overlays render, validate against the Kubernetes schemas, and keep the contract."""

import base64
import importlib.util
import re
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from code_flows import container_env as env_of
from deploytools import (
    DUMMY_SECRETS,
    KUBERNETES_VERSION,
    OPTIONAL_SETTINGS,
    OVERLAYS,
    REPO,
    configmap,
    find,
    one,
    placeholders,
    render_overlay,
    render_with_component,
    repo_file,
    shadow_repo,
)

_spec = importlib.util.spec_from_file_location("k8s_targets", REPO / "k8s/components/monitoring/k8s_targets.py")
k8s_targets = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(k8s_targets)

# generated ConfigMap -> {key: repository file}: the very files native and compose use
SHARED_CONFIGMAPS = {
    "nginx-templates": {"default.conf.template": "nginx/templates/default.conf.template"},
    "photo-store-templates": {"default.conf.template": "photo-store/templates/default.conf.template"},
    "prometheus-config": {"prometheus.yml": "prometheus/prometheus.yml"},
    "blackbox-config": {"config.yml": "prometheus/blackbox.yml"},
    "alertmanager-template": {"alertmanager.yml": "alertmanager/alertmanager.yml"},
    "grafana-datasources": {"datasources.yml": "grafana/provisioning/datasources/datasources.yml"},
    "grafana-dashboard-providers": {"dashboards.yml": "grafana/provisioning/dashboards/dashboards.yml"},
    "loki-config": {"loki.yml": "loki/loki.yml"},
    "alloy-config": {"config.alloy": "alloy/config.k8s.alloy"},
}


def _pod_spec(obj: dict) -> dict:
    return obj["spec"]["template"]["spec"]


def _env_names(objects: list[dict], container: dict) -> set[str]:
    names = {e["name"] for e in container.get("env", [])}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            cm = next(o for o in find(objects, "ConfigMap") if o["metadata"]["name"] == source["configMapRef"]["name"])
            names |= set(cm.get("data", {}))
    return names


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders(rendered, overlay):
    kinds = {o["kind"] for o in rendered[overlay]}
    assert {"Deployment", "StatefulSet", "Service", "ConfigMap", "Secret", "PodDisruptionBudget"} <= kinds


def test_schema_validation_is_real():
    broken = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"}, "spec": {"replicas": "three"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_validates_against_the_kubernetes_schemas(rendered, overlay):
    failures = []
    for obj in rendered[overlay]:
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except (kubernetes_validate.ValidationError, kubernetes_validate.SchemaNotFoundError) as error:
            failures.append(f"{obj['kind']}/{obj['metadata']['name']}: {getattr(error, 'message', error)}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_instance_deployment_probes_resources_replicas_and_spread(rendered, overlay):
    deployment = one(rendered[overlay], "Deployment", "instance")
    spec = _pod_spec(deployment)
    container = spec["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][kind]), f"no {kind}"
    spread = spec["topologySpreadConstraints"]
    assert any(c["topologyKey"] == "kubernetes.io/hostname" for c in spread)
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    for constraint in spread:
        assert constraint["labelSelector"]["matchLabels"].items() <= labels.items()


def test_production_spreads_replicas_strictly_over_nodes_that_can_take_them(rendered):
    spread = _pod_spec(one(rendered["production"], "Deployment", "instance"))["topologySpreadConstraints"]
    (by_node,) = [c for c in spread if c["topologyKey"] == "kubernetes.io/hostname"]
    assert by_node["whenUnsatisfiable"] == "DoNotSchedule"
    # else a tainted or cordoned node is an empty domain, and the skew to it holds pods Pending
    assert by_node.get("nodeTaintsPolicy") == "Honor"


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("kind", ["PodDisruptionBudget", "HorizontalPodAutoscaler"])
def test_pdb_and_hpa_select_the_instance_pods(rendered, overlay, kind):
    objects = rendered[overlay]
    deployment = one(objects, "Deployment", "instance")
    obj = one(objects, kind, "instance")
    if kind == "PodDisruptionBudget":
        selector = obj["spec"]["selector"]["matchLabels"]
        assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
        hpa = one(objects, "HorizontalPodAutoscaler", "instance")
        assert obj["spec"]["minAvailable"] < hpa["spec"]["minReplicas"]
    else:
        target = obj["spec"]["scaleTargetRef"]
        assert (target["kind"], target["name"]) == ("Deployment", "instance")
        assert obj["spec"]["minReplicas"] == 3 and obj["spec"]["maxReplicas"] > 3


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("name", ["instance", "middleware"])
def test_services_run_non_root_on_a_read_only_filesystem(rendered, overlay, name):
    spec = _pod_spec(one(rendered[overlay], "Deployment", name))
    assert spec["securityContext"]["runAsNonRoot"] is True
    container = spec["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    empty_dirs = {v["name"] for v in spec["volumes"] if "emptyDir" in v}
    multiproc = configmap(rendered[overlay], "app-config")["data"]["PROMETHEUS_MULTIPROC_DIR"]
    for path in ("/tmp", multiproc):  # noqa: S108 (a path inside the pod)
        assert mounts.get(path) in empty_dirs, f"{name}: {path} is not a writable emptyDir"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_runs_non_root(rendered, overlay):
    for obj in rendered[overlay]:
        if obj["kind"] in {"Deployment", "StatefulSet", "Job"}:
            spec = _pod_spec(obj)
            assert spec.get("securityContext", {}).get("runAsNonRoot") is True, obj["metadata"]["name"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_secret_carries_a_committed_value(rendered, k8s_repo, overlay):
    secrets = find(rendered[overlay], "Secret")
    assert [s["metadata"]["name"].rsplit("-", 1)[0] for s in secrets] == ["vaccination-secrets"]
    values = {k: base64.b64decode(v).decode() for k, v in secrets[0].get("data", {}).items()}
    example = (REPO / "k8s" / "overlays" / overlay / "secrets.env.example").read_text()
    committed = dict(line.split("=", 1) for line in example.splitlines() if "=" in line and not line.startswith("#"))
    for key, value in values.items():
        if key in DUMMY_SECRETS:
            assert value == DUMMY_SECRETS[key], f"{key} does not come from secrets.env"
        elif key in OPTIONAL_SETTINGS:
            assert value == OPTIONAL_SETTINGS[key] and committed[key] == "", f"{key} is not optional"
        else:
            # the example's non-secret defaults or empty; a connection string names its password
            # only as the placeholder the user replaces
            assert value == committed.get(key, ""), f"{key} holds a value that is not in the example"
            assert "@" not in value or ":<MONGO_APP_PASSWORD>@" in value, f"{key} carries credentials"
    assert set(DUMMY_SECRETS) <= set(values)


def test_no_secret_manifest_or_secrets_file_is_committed():
    for path in (REPO / "k8s").rglob("*"):
        if path.suffix in {".yaml", ".yml"}:
            for doc in yaml.safe_load_all(path.read_text()):
                assert not (doc and doc.get("kind") == "Secret"), f"{path} commits a Secret"
    tracked = subprocess.run(["git", "ls-files", "k8s"], cwd=REPO, capture_output=True, text=True).stdout.split()
    assert not [t for t in tracked if Path(t).name == "secrets.env"]
    for overlay in OVERLAYS:
        ignored = subprocess.run(["git", "check-ignore", "-q", f"k8s/overlays/{overlay}/secrets.env"], cwd=REPO)
        assert ignored.returncode == 0, f"k8s/overlays/{overlay}/secrets.env is not git-ignored"


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("name", sorted(SHARED_CONFIGMAPS))
def test_configmaps_are_generated_from_the_repository_files(rendered, overlay, name):
    data = configmap(rendered[overlay], name)["data"]
    for key, relative in SHARED_CONFIGMAPS[name].items():
        assert data[key] == repo_file(relative).read_text(), f"{name}/{key} is not {relative}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_rules_file_and_dashboard_is_deployed(rendered, overlay):
    rules = configmap(rendered[overlay], "prometheus-rules").get("data", {})
    for path in sorted((REPO / "prometheus/rules").glob("*.yml")):
        assert rules.get(path.name) == path.read_text(), (
            f"prometheus/rules/{path.name} is missing from k8s/components/monitoring/kustomization.yaml"
        )
    dashboards = configmap(rendered[overlay], "grafana-dashboards").get("data", {})
    for path in sorted((REPO / "grafana/dashboards").glob("*.json")):
        assert dashboards.get(path.name) == path.read_text(), (
            f"grafana/dashboards/{path.name} is missing from k8s/components/monitoring/kustomization.yaml"
        )


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize(
    "kind,name,template",
    [
        ("Deployment", "nginx", "nginx/templates/default.conf.template"),
        ("StatefulSet", "photo-store", "photo-store/templates/default.conf.template"),
    ],
)
def test_every_template_placeholder_gets_a_value(rendered, overlay, kind, name, template):
    objects = rendered[overlay]
    container = _pod_spec(one(objects, kind, name))["containers"][0]
    missing = placeholders(repo_file(template)) - _env_names(objects, container)
    assert not missing, f"{name} leaves {sorted(missing)} of {template} unset"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_alertmanager_template_is_rendered_with_every_placeholder(rendered, overlay):
    objects = rendered[overlay]
    init = _pod_spec(one(objects, "StatefulSet", "alertmanager"))["initContainers"][0]
    script = " ".join(init["command"])
    for name in placeholders(repo_file("alertmanager/alertmanager.yml")):
        assert f"${{{name}}}" in script, f"{name} is not substituted"
        assert name in _env_names(objects, init), f"{name} has no value"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_grafana_dashboards_are_mounted_where_the_provider_reads_them(rendered, overlay):
    providers = yaml.safe_load(repo_file("grafana/provisioning/dashboards/dashboards.yml").read_text())["providers"]
    container = _pod_spec(one(rendered[overlay], "Deployment", "grafana"))["containers"][0]
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert {p["options"]["path"] for p in providers} <= mounts


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_grafana_admin_password_is_required_from_the_secret(rendered, overlay):
    container = _pod_spec(one(rendered[overlay], "Deployment", "grafana"))["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    ref = env["GF_SECURITY_ADMIN_PASSWORD"]["valueFrom"]["secretKeyRef"]
    assert ref["key"] == "GRAFANA_ADMIN_PASSWORD" and not ref.get("optional")


@pytest.mark.parametrize("password", ["", "admin", "short"])
def test_grafana_refuses_to_start_with_an_empty_or_default_password(rendered, password):
    # Kustomize accepts an empty Secret value and Grafana ignores one (admin/admin): the init
    # container's own script, run here, is what stops the pod.
    spec = _pod_spec(one(rendered["production"], "Deployment", "grafana"))
    (guard,) = [c for c in spec.get("initContainers", []) if c["name"] == "require-password"]
    assert guard["env"][0]["valueFrom"]["secretKeyRef"]["key"] == "GRAFANA_ADMIN_PASSWORD"

    def run(value):
        env = {"PATH": "/usr/bin:/bin", "GF_SECURITY_ADMIN_PASSWORD": value}
        return subprocess.run(guard["command"], env=env, capture_output=True, timeout=10).returncode

    assert run(password) != 0
    assert run("a-real-grafana-password") == 0


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_mongodb_is_a_replica_set_written_with_majority(rendered, overlay):
    objects = rendered[overlay]
    statefulset = one(objects, "StatefulSet", "mongodb")
    assert "--replSet=rs0" in _pod_spec(statefulset)["containers"][0]["args"]
    bootstrap = next(c for c in _pod_spec(statefulset)["containers"] if c["name"] == "bootstrap")
    members = {e["name"]: e.get("value") for e in bootstrap["env"]}["MONGO_MEMBERS"]
    assert int(members) == statefulset["spec"]["replicas"]
    for name in ("instance", "middleware"):
        url = _mongo_url(objects, name)
        assert "replicaSet=rs0" in url and "w=majority" in url
        assert url.count("mongodb-") == statefulset["spec"]["replicas"]


def _mongo_url(objects: list[dict], deployment: str) -> str:
    """The MONGO_URL a service's pod gets, as Kubernetes composes it."""
    container = _pod_spec(one(objects, "Deployment", deployment))["containers"][0]
    return env_of(objects, container)["MONGO_URL"]


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("deployment", ["instance", "middleware"])
def test_the_app_password_lives_in_one_secret_key(rendered, overlay, deployment):
    # rotating MONGO_APP_PASSWORD (which the bootstrap sets on the user) must reach MONGO_URL
    objects = rendered[overlay]
    url = _mongo_url(objects, deployment)
    assert f"vaccination:{DUMMY_SECRETS['MONGO_APP_PASSWORD']}@" in url
    secret = find(objects, "Secret")[0]
    assert "MONGO_URL" not in secret["data"], "a second copy of the password"


def test_production_runs_three_mongodb_members_with_a_disruption_budget(rendered):
    objects = rendered["production"]
    assert one(objects, "StatefulSet", "mongodb")["spec"]["replicas"] == 3
    assert one(objects, "PodDisruptionBudget", "mongodb")["spec"]["maxUnavailable"] == 1


def test_apply_refuses_to_run_without_secrets_env(tmp_path):
    repo = shadow_repo(tmp_path, DUMMY_SECRETS)
    (repo / "k8s/overlays/local/secrets.env").unlink()
    result = render_overlay(repo, "local")
    assert result.returncode != 0 and "secrets.env" in result.stderr


def test_production_ingress_terminates_tls_in_front_of_our_nginx(rendered):
    objects = rendered["production"]
    ingress = one(objects, "Ingress", "vaccination")
    hosts = {rule["host"] for rule in ingress["spec"]["rules"]}
    assert hosts <= {host for tls in ingress["spec"]["tls"] for host in tls["hosts"]}
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    service = one(objects, "Service", backend["name"])
    assert backend["port"]["name"] in {port.get("name") for port in service["spec"]["ports"]}
    # the controller's X-Forwarded-Proto (https) reaches the replicas, which build the links
    template = configmap(objects, "nginx-templates")["data"]["default.conf.template"]
    assert "proxy_set_header X-Forwarded-Proto $fwd_proto;" in template
    assert "proxy_set_header X-Forwarded-Proto $scheme;" not in template


# ---------------------------------------------------------------- what a first apply would hit
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "Job"}  # whose pod template is spec.template


def _workload_containers(objects: list[dict]):
    """(workload, container) for every container, init containers included, of every workload."""
    for obj in objects:
        if obj["kind"] in WORKLOADS:
            spec = _pod_spec(obj)
            for container in spec.get("initContainers", []) + spec["containers"]:
                yield obj, container


def test_config_copies_match_the_repository_files():
    # kustomize reads nothing above a kustomization, so k8s/ holds copies (k8s/sync_config.py)
    result = subprocess.run(
        ["python3", str(REPO / "k8s/sync_config.py"), "--check"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


def test_no_kustomization_reads_a_file_above_itself():
    # the default load restrictor (the one `kubectl apply -k` uses) refuses them
    for kustomization in (REPO / "k8s").rglob("kustomization.yaml"):
        text = kustomization.read_text()
        assert not re.search(r"=\.\./|^\s*-\s+\.\./[^\n]*\.(ya?ml|json|template|alloy|tmpl|js)$", text, re.M), (
            f"{kustomization.relative_to(REPO)} reads a file outside its folder"
        )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_mount_point_inside_a_read_only_mount(rendered, overlay):
    for obj, container in _workload_containers(rendered[overlay]):
        mounts = container.get("volumeMounts", [])
        for outer in mounts:
            if not outer.get("readOnly"):
                continue
            folder = outer["mountPath"].rstrip("/") + "/"
            inner = [m["mountPath"] for m in mounts if m["mountPath"].startswith(folder)]
            assert not inner, f"{obj['metadata']['name']}/{container['name']}: {inner} inside read-only {folder}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_probe_depends_on_another_service(rendered, overlay):
    # /ready asks MongoDB, the photo store, Redis: shared by every replica, so as a readiness
    # probe one blip would take every pod out of its Service; as liveness it would restart them.
    for obj, container in _workload_containers(rendered[overlay]):
        for kind in ("readinessProbe", "livenessProbe", "startupProbe"):
            probe = container.get(kind)
            if not probe:
                continue
            where = f"{obj['metadata']['name']}/{container['name']} {kind}"
            ours = "vaccination" in container["image"]  # Loki's or Prometheus's /-/ready is their own
            if "httpGet" in probe:
                assert not (ours and probe["httpGet"]["path"] == "/ready"), f"{where} depends on other services"
                assert "host" not in probe["httpGet"], f"{where} asks another host"
            if "exec" in probe:
                command = " ".join(probe["exec"]["command"])
                assert "mongodb://" not in command and "--host" not in command, f"{where} asks another host"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_autoscaled_workloads_leave_the_replica_count_to_the_hpa(rendered, overlay):
    # a `replicas` in the manifest resets the HPA's choice on every apply
    for hpa in find(rendered[overlay], "HorizontalPodAutoscaler"):
        target = hpa["spec"]["scaleTargetRef"]
        workload = one(rendered[overlay], target["kind"], target["name"])
        assert "replicas" not in workload["spec"], f"{target['name']} fixes replicas under an HPA"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_job_whose_template_cannot_change(rendered, overlay):
    # a Job's pod template is immutable: the next `kubectl apply` with any change to it fails
    assert not find(rendered[overlay], "Job"), "a Job breaks every later apply that changes it"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_mongodb_authenticates_members_and_clients(rendered, overlay):
    objects = rendered[overlay]
    spec = _pod_spec(one(objects, "StatefulSet", "mongodb"))
    mongod = spec["containers"][0]
    assert any(arg.startswith("--keyFile=") for arg in mongod["args"])
    keyfile = next(v for v in spec["volumes"] if v["name"] == "keyfile-secret")["secret"]
    assert keyfile["secretName"].startswith("vaccination-secrets-") and keyfile["items"][0]["key"] == "MONGO_KEYFILE"
    bootstrap = next(c for c in spec["containers"] if c["name"] == "bootstrap")
    refs = {
        e["name"]: e["valueFrom"]["secretKeyRef"] for e in bootstrap["env"] if "secretKeyRef" in e.get("valueFrom", {})
    }
    for key in ("MONGO_ROOT_USERNAME", "MONGO_ROOT_PASSWORD", "MONGO_APP_USERNAME", "MONGO_APP_PASSWORD"):
        assert refs[key]["name"].startswith("vaccination-secrets-") and not refs[key].get("optional"), key
    script = configmap(objects, "mongodb-bootstrap")["data"]["bootstrap.js"]
    assert "rs.initiate" in script and "createUser" in script and 'role: "readWrite"' in script
    assert "authSource=admin" in _mongo_url(objects, "instance")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_mongodb_members_never_share_a_node(rendered, overlay):
    statefulset = one(rendered[overlay], "StatefulSet", "mongodb")
    terms = _pod_spec(statefulset)["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    labels = statefulset["spec"]["template"]["metadata"]["labels"]
    assert any(
        t["topologyKey"] == "kubernetes.io/hostname" and t["labelSelector"]["matchLabels"].items() <= labels.items()
        for t in terms
    )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_prometheus_lifecycle_api_is_off(rendered, overlay):
    container = _pod_spec(one(rendered[overlay], "StatefulSet", "prometheus"))["containers"][0]
    assert not any("enable-lifecycle" in arg for arg in container["args"])


def _headless(objects: list[dict], statefulset: dict) -> dict:
    service = one(objects, "Service", statefulset["spec"]["serviceName"])
    assert service["spec"].get("clusterIP") == "None", "pod names resolve only through a headless Service"
    assert service["spec"].get("publishNotReadyAddresses") is True, "a member not yet ready must be found"
    assert service["spec"]["selector"] == statefulset["spec"]["selector"]["matchLabels"]
    return service


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_monitoring_runs_as_pairs_watching_each_other(rendered, overlay):
    """Two Prometheus servers told apart by their pod name, two Alertmanagers naming every
    member as a peer by its stable name, and the targets naming exactly those pods."""
    objects = rendered[overlay]
    for app, port in (("prometheus", 9090), ("alertmanager", 9093)):
        statefulset = one(objects, "StatefulSet", app)
        members = [f"{app}-{n}" for n in range(statefulset["spec"]["replicas"])]
        assert members == list(k8s_targets.PAIR_MEMBERS[app]) and len(members) == 2
        service = _headless(objects, statefulset)["metadata"]["name"]
        files = k8s_targets.build_targets([])
        assert [entry["targets"] for entry in files[f"{app}.yml"]] == [[f"{m}.{service}:{port}"] for m in members]
    prometheus = _pod_spec(one(objects, "StatefulSet", "prometheus"))["containers"][0]
    replica = next(e for e in prometheus["env"] if e["name"] == "PROMETHEUS_REPLICA")
    assert replica["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    statefulset = one(objects, "StatefulSet", "alertmanager")
    args = _pod_spec(statefulset)["containers"][0]["args"]
    service = statefulset["spec"]["serviceName"]
    peers = sorted(arg.split("=", 1)[1] for arg in args if arg.startswith("--cluster.peer="))
    assert peers == [f"alertmanager-{n}.{service}:9094" for n in (0, 1)]
    assert "--cluster.listen-address=0.0.0.0:9094" in args
    assert any(arg.startswith("--web.external-url=") for arg in args)
    settings = configmap(objects, "alertmanager-settings")["data"]
    assert settings["ALERTMANAGER_EXTERNAL_URL"].startswith(("http://", "https://"))


def test_alloy_collects_every_pod_of_the_namespace():
    config = repo_file("alloy/config.k8s.alloy").read_text()
    relabel = config.split('discovery.relabel "pods"', 1)[1].split("\n}\n", 1)[0]
    assert 'action        = "keep"' not in relabel and 'action = "keep"' not in relabel, (
        "Alloy keeps only some pods: Prometheus, Alertmanager, Grafana and Loki logs would never reach Loki"
    )
    assert "own_namespace = true" in config


def _bytes(size: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([kmg]?)", size.lower()).groups()
    return int(number) * {"": 1, "k": 2**10, "m": 2**20, "g": 2**30}[unit]


def test_ingress_accepts_a_5_mib_photo_and_sends_hsts(rendered):
    objects = rendered["production"]
    annotations = one(objects, "Ingress", "vaccination")["metadata"]["annotations"]
    body_limit = int(configmap(objects, "nginx-config")["data"]["BODY_LIMIT"])
    assert body_limit >= 5 * 2**20 + 2**20
    # ingress-nginx, and F5 NGINX Ingress Controller (ingress-nginx sends HSTS by default)
    assert _bytes(annotations["nginx.ingress.kubernetes.io/proxy-body-size"]) >= body_limit
    assert _bytes(annotations["nginx.org/client-max-body-size"]) >= body_limit
    assert annotations["nginx.org/hsts"] == "true"


def test_production_nginx_takes_each_client_from_the_controllers_header(rendered):
    # behind the Ingress every client would be the controller: one admin-throttle count for all
    # (the file's behaviour, run by a real nginx: test_real_ip.py)
    templates = configmap(rendered["production"], "nginx-templates")["data"]
    assert templates["real-ip.conf.template"] == repo_file("k8s/overlays/production/nginx-real-ip.conf").read_text()
    assert templates["default.conf.template"] == repo_file("nginx/templates/default.conf.template").read_text()
    assert "real-ip.conf.template" not in configmap(rendered["local"], "nginx-templates")["data"]


def test_gateway_api_component_replaces_the_ingress(tmp_path):
    objects = render_with_component(tmp_path, "gateway-api")
    assert not find(objects, "Ingress")
    route = one(objects, "HTTPRoute", "vaccination")
    backend = route["spec"]["rules"][0]["backendRefs"][0]
    service = one(objects, "Service", backend["name"])
    assert backend["port"] in {p["port"] for p in service["spec"]["ports"]}
    headers = route["spec"]["rules"][0]["filters"][0]["responseHeaderModifier"]["set"]
    assert any(h["name"] == "Strict-Transport-Security" and "max-age=" in h["value"] for h in headers)


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("name", ["loki", "alloy"])
def test_central_logging_is_restarted_when_it_hangs(rendered, overlay, name):
    (workload,) = [o for o in rendered[overlay] if o["kind"] in WORKLOADS and o["metadata"]["name"] == name]
    container = _pod_spec(workload)["containers"][0]
    # not the readiness path: a liveness probe that fails while Loki joins its ring restarts it forever
    assert container["livenessProbe"]["httpGet"]["path"] != container["readinessProbe"]["httpGet"]["path"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_prometheus_deletes_old_data_before_its_volume_is_full(rendered, overlay):
    statefulset = one(rendered[overlay], "StatefulSet", "prometheus")
    args = _pod_spec(statefulset)["containers"][0]["args"]
    (size,) = [a.split("=", 1)[1] for a in args if a.startswith("--storage.tsdb.retention.size=")]
    (claim,) = statefulset["spec"]["volumeClaimTemplates"]
    volume_gib = int(claim["spec"]["resources"]["requests"]["storage"].removesuffix("Gi"))
    assert int(size.removesuffix("GB")) * 1e9 <= 0.85 * volume_gib * 2**30


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_mongodb_is_promised_the_memory_it_may_use(rendered, overlay):
    (mongod,) = [
        c for c in _pod_spec(one(rendered[overlay], "StatefulSet", "mongodb"))["containers"] if c["name"] == "mongodb"
    ]
    assert mongod["resources"]["requests"]["memory"] == mongod["resources"]["limits"]["memory"]


def test_the_docs_give_the_dashboards_configmap_its_real_size(rendered):
    data = configmap(rendered["production"], "grafana-dashboards")["data"]
    size_kb = sum(len(v.encode()) for v in data.values()) / 1000
    text = repo_file("docs/deployment.md").read_text()
    (stated,) = re.findall(r"the dashboards ConfigMap is about (\d+) KB", text.replace("\n", " "))
    assert abs(int(stated) - size_kb) <= 0.25 * size_kb, f"the docs say {stated} KB, it is {size_kb:.0f} KB"
    assert size_kb < 256 * 1.024  # else client-side apply could not take it at all; say so in the docs


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_alertmanager_mails_name_an_address_operators_can_open(rendered, overlay):
    # the mail template prints .ExternalURL; without the flag it is the pod's own name
    assert "{{ .ExternalURL }}" in repo_file("alertmanager/templates/email.tmpl").read_text()
    container = _pod_spec(one(rendered[overlay], "StatefulSet", "alertmanager"))["containers"][0]
    (url,) = [a.split("=", 1)[1] for a in container["args"] if a.startswith("--web.external-url=")]
    url = re.sub(r"\$\((\w+)\)", lambda m: env_of(rendered[overlay], container)[m[1]], url)
    # local: kubectl port-forward (docs/deployment.md); production: the operators' own address
    assert url == {"local": "http://127.0.0.1:9093", "production": "https://alertmanager.example.org"}[overlay]
