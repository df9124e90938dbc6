"""The connections the code opens in the cluster, derived from the code and its settings, never
from a table: every *_URL a service's config.py reads (with the value the rendered pod gets),
nginx's upstreams, every Prometheus target and blackbox probe (k8s_targets.build_targets over
the rendered workloads), the alerting, log and dashboard endpoints, the replica-set members, and
the Service an Ingress or HTTPRoute sends the public to.

A flow is (source, destination, port): pods by their app.kubernetes.io/name, `outside` for
anything not a pod of the namespace, the port as the destination pod listens on it (a Service
port is translated to its targetPort). Kubelet probes are not flows: they come from the node,
which NetworkPolicies do not govern on the common CNIs.
"""

import base64
import importlib.util
import re
from urllib.parse import urlsplit

import yaml
from deploytools import REPO, configmap, find

OUTSIDE = "outside"
NAMESPACE = "vaccination"  # both overlays' namespace
NAME = "app.kubernetes.io/name"
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet"}
DEFAULT_PORTS = {"http": 80, "https": 443, "redis": 6379, "mongodb": 27017, "cloudinary": 443}
# The API server behind `kubernetes.default.svc:443`: NetworkPolicies see the endpoint after
# the Service's translation, which is 443 on some clusters and 6443 on kubeadm, kind, k3s.
KUBE_API_PORTS = (443, 6443)


def workloads(objects: list[dict]) -> dict[str, dict]:
    """pod name -> its pod template, for every workload."""
    return {
        o["spec"]["template"]["metadata"]["labels"][NAME]: o["spec"]["template"]
        for o in objects
        if o["kind"] in WORKLOADS
    }


def container_env(objects: list[dict], container: dict) -> dict[str, str]:
    """The environment a container gets: envFrom ConfigMaps, then env values and references."""
    configmaps = {o["metadata"]["name"]: o.get("data", {}) for o in find(objects, "ConfigMap")}
    secrets = {
        o["metadata"]["name"]: {k: base64.b64decode(v).decode() for k, v in o.get("data", {}).items()}
        for o in find(objects, "Secret")
    }
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(configmaps[source["configMapRef"]["name"]])
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env.get(m[1], ""), item["value"])
        elif "secretKeyRef" in item.get("valueFrom", {}):
            ref = item["valueFrom"]["secretKeyRef"]
            env[item["name"]] = secrets[ref["name"]].get(ref["key"], "")
        elif item.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.namespace":
            env[item["name"]] = NAMESPACE
        elif "configMapKeyRef" in item.get("valueFrom", {}):
            ref = item["valueFrom"]["configMapKeyRef"]
            env[item["name"]] = configmaps[ref["name"]].get(ref["key"], "")
    return env


class Cluster:
    """Where a host name leads in the rendered namespace."""

    def __init__(self, objects: list[dict]):
        self.pods = workloads(objects)
        self.services = {}
        for service in find(objects, "Service"):
            pod = service["spec"]["selector"][NAME]
            container_ports = {
                p.get("name"): p["containerPort"]
                for c in self.pods[pod]["spec"]["containers"]
                for p in c.get("ports", [])
            }
            ports = {}
            for p in service["spec"]["ports"]:
                target = container_ports.get(p.get("targetPort"), p.get("targetPort", p["port"]))
                ports[p["port"]] = target
                ports[p.get("name")] = target  # an Ingress may name the Service port
            self.services[service["metadata"]["name"]] = (pod, ports)

    def destination(self, host: str, port: int) -> tuple[str, int] | None:
        """(pod, port) a connection to host:port reaches; None for the pod itself."""
        if host in ("127.0.0.1", "localhost"):
            return None
        name = host.removesuffix(".svc.cluster.local").removesuffix(f".{NAMESPACE}")
        parts = name.split(".")
        if len(parts) == 2 and parts[1] in self.services:  # a StatefulSet member: mongodb-0.mongodb
            pod, ports = self.services[parts[1]]
            return pod, ports.get(port, port)
        if name in self.services:
            pod, ports = self.services[name]
            return pod, ports[port]
        if re.fullmatch(r"10\.\d+\.\d+\.\d+", host):  # a pod address of fake_pods()
            return self.pod_by_ip[host], port
        return OUTSIDE, port


def _host_ports(url: str) -> list[tuple[str, int]]:
    """Every host:port of a URL (a MongoDB URL lists several)."""
    if "://" not in url:
        url = f"tcp://{url}"
    parts = urlsplit(url)
    hosts = parts.netloc.rsplit("@", 1)[-1]
    if parts.scheme == "cloudinary":  # the credentials' URL; the API is api.cloudinary.com
        return [("api.cloudinary.com", 443)]
    found = []
    for host_port in hosts.split(","):
        host, _, port = host_port.rpartition(":") if ":" in host_port else (host_port, "", "")
        found.append((host, int(port) if port else DEFAULT_PORTS[parts.scheme]))
    return found


def _urls_read(service: str) -> list[str]:
    """The *_URL settings a service's config.py reads from the environment."""
    text = (REPO / service / "config.py").read_text()
    return sorted(set(re.findall(r'environ\.get\("([A-Z0-9_]+_URL)"', text)))


def _k8s_targets():
    path = REPO / "k8s" / "components" / "monitoring" / "k8s_targets.py"
    spec = importlib.util.spec_from_file_location("k8s_targets", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _fake_pods(cluster: Cluster, objects: list[dict]) -> list[dict]:
    """One Running pod per workload replica (StatefulSets by their ordinal names)."""
    pods, cluster.pod_by_ip = [], {}
    for obj in objects:
        if obj["kind"] not in WORKLOADS:
            continue
        name = obj["spec"]["template"]["metadata"]["labels"][NAME]
        for i in range(obj["spec"].get("replicas", 1)):
            ip = f"10.0.{len(pods)}.{i + 1}"
            cluster.pod_by_ip[ip] = name
            pod_name = f"{obj['metadata']['name']}-{i}"
            pods.append(
                {
                    "metadata": {"name": pod_name, "labels": {NAME: name}},
                    "status": {"phase": "Running", "podIP": ip},
                }
            )
    return pods


def _flow(cluster: Cluster, source: str, host: str, port: int) -> set[tuple[str, str, int]]:
    reached = cluster.destination(host, port)
    return set() if reached is None else {(source, *reached)}


def derived_flows(objects: list[dict]) -> set[tuple[str, str, int]]:
    cluster = Cluster(objects)
    pods = cluster.pods
    flows: set[tuple[str, str, int]] = set()

    # The Python services: every *_URL their config reads, as the pod's environment sets it.
    for service in ("instance", "middleware"):
        container = pods[service]["spec"]["containers"][0]
        env = container_env(objects, container)
        for key in _urls_read(service):
            for host, port in _host_ports(env.get(key, "")) if env.get(key) else []:
                flows |= _flow(cluster, service, host, port)

    # nginx: the upstreams its template is rendered with.
    nginx = pods["nginx"]["spec"]["containers"][0]
    for key, value in container_env(objects, nginx).items():
        if key.endswith("_ADDR"):
            host, port = value.split()[0].rsplit(":", 1)  # "host:port resolve"
            flows |= _flow(cluster, "nginx", host, int(port))

    # Prometheus: every target and probe its sidecar writes for these workloads, and the
    # Kubernetes API the sidecar lists pods from.
    if "prometheus" in pods:
        targets = _k8s_targets()
        files = targets.build_targets(_fake_pods(cluster, objects))
        for name, entries in files.items():
            for entry in entries:
                for target in entry["targets"]:
                    if name.startswith("blackbox-"):
                        host, port = _host_ports(target)[0]
                        flows |= _flow(cluster, "blackbox-exporter", host, port)
                        bb_host, bb_port = entry["labels"]["__blackbox_address__"].rsplit(":", 1)
                        flows |= _flow(cluster, "prometheus", bb_host, int(bb_port))
                    else:
                        host, port = target.rsplit(":", 1)
                        flows |= _flow(cluster, "prometheus", host, int(port))
        flows |= {("prometheus", OUTSIDE, port) for port in KUBE_API_PORTS}

        # Grafana's data sources; Alloy's Loki and its pod discovery through the API.
        datasources = yaml.safe_load(_configmap_file(objects, "grafana-datasources", "datasources.yml"))
        for source in datasources["datasources"]:
            flows |= {flow for h, p in _host_ports(source["url"]) for flow in _flow(cluster, "grafana", h, p)}
        alloy = pods["alloy"]["spec"]["containers"][0]
        loki = container_env(objects, alloy)["LOKI_PUSH_URL"]
        flows |= {flow for h, p in _host_ports(loki) for flow in _flow(cluster, "alloy", h, p)}
        assert "discovery.kubernetes" in _configmap_file(objects, "alloy-config", "config.alloy")
        flows |= {("alloy", OUTSIDE, port) for port in KUBE_API_PORTS}

        # Alertmanager's mail relay.
        settings = configmap(objects, "alertmanager-settings")["data"]
        flows |= {
            flow for h, p in _host_ports(settings["SMTP_SMARTHOST"]) for flow in _flow(cluster, "alertmanager", h, p)
        }

    # The Alertmanager pair gossips with the peers its arguments name.
    if pods.get("alertmanager"):
        args = pods["alertmanager"]["spec"]["containers"][0]["args"]
        for peer in (a.split("=", 1)[1] for a in args if a.startswith("--cluster.peer=")):
            host, port = peer.rsplit(":", 1)
            flows |= _flow(cluster, "alertmanager", host, int(port))

    # MongoDB members replicate from each other by the names the bootstrap gives them.
    if pods.get("mongodb"):
        script = _configmap_file(objects, "mongodb-bootstrap", "bootstrap.js")
        (member_host,) = set(re.findall(r"`(mongodb-\$\{\w+\}\.mongodb:\d+)`", script))
        host, port = member_host.replace("${i}", "0").rsplit(":", 1)
        flows |= _flow(cluster, "mongodb", host, int(port))

    # The public: whatever an Ingress or HTTPRoute anywhere in k8s/ sends it to.
    for path in (REPO / "k8s").rglob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc.get("kind") not in ("Ingress", "HTTPRoute"):
                continue
            for service, port in _route_backends(doc):
                pod, ports = cluster.services[service]
                flows.add((OUTSIDE, pod, ports[port]))
    return flows


def _route_backends(doc: dict) -> list[tuple[str, int | str]]:
    if doc["kind"] == "HTTPRoute":
        return [(b["name"], b["port"]) for rule in doc["spec"]["rules"] for b in rule["backendRefs"]]
    backends = [path["backend"]["service"] for rule in doc["spec"]["rules"] for path in rule["http"]["paths"]]
    return [(b["name"], b["port"].get("number", b["port"].get("name"))) for b in backends]


def _configmap_file(objects: list[dict], base_name: str, key: str) -> str:
    return configmap(objects, base_name)["data"][key]
