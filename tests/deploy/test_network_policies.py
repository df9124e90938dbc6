"""NetworkPolicies: which pod may open a connection to which port, computed from the rendered
manifests, is exactly the "Network flows" table of docs/architecture.md, both ways.

A connection is allowed when an ingress rule of a policy selecting the destination admits the
source and the port, and an egress rule of a policy selecting the source admits the destination
and the port (with a default deny, a pod no policy selects for a direction gets nothing).
`outside` stands for everything that is not a pod of the namespace.
"""

import re

import pytest
from deploytools import OVERLAYS, find, repo_file

OUTSIDE = "outside"
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet"}


def architecture_flows() -> set[tuple[str, str, int]]:
    text = repo_file("docs/architecture.md").read_text()
    section = text.split("## Network flows", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| ([a-z-]+) \| ([a-z-]+) \| (\d+) \|", section, re.M)
    assert rows, "docs/architecture.md has no network flow table"
    return {(source, destination, int(port)) for source, destination, port in rows}


def _pods(objects: list[dict]) -> dict[str, dict]:
    """pod name (app.kubernetes.io/name) -> {"labels": ..., "ports": {number: name}}"""
    pods = {}
    for obj in objects:
        if obj["kind"] in WORKLOADS:
            template = obj["spec"]["template"]
            ports = {
                p["containerPort"]: p.get("name") for c in template["spec"]["containers"] for p in c.get("ports", [])
            }
            pods[template["metadata"]["labels"]["app.kubernetes.io/name"]] = {
                "labels": template["metadata"]["labels"],
                "ports": ports,
            }
    return pods


def _selects(selector: dict, labels: dict) -> bool:
    assert not selector.get("matchExpressions"), "the reachability model reads matchLabels only"
    return selector.get("matchLabels", {}).items() <= labels.items()


def _peer_matches(peers: list[dict] | None, other: str, pods: dict) -> bool:
    """Whether a rule's from/to list admits a pod of the namespace (by name) or `outside`."""
    if not peers:  # no from/to: everyone, in and out of the namespace
        return True
    for peer in peers:
        if "ipBlock" in peer:
            if other == OUTSIDE:
                return True
        elif "namespaceSelector" in peer:
            # another namespace's pods (the cluster DNS): not a pod of ours, not `outside` traffic
            continue
        elif other != OUTSIDE and _selects(peer["podSelector"], pods[other]["labels"]):
            return True
    return False


def _port_matches(ports: list[dict] | None, number: int, name: str | None) -> bool:
    if not ports:
        return True
    return any(p.get("protocol", "TCP") == "TCP" and p.get("port") in (number, name) for p in ports)


def _allowed(policies: list[dict], pods: dict, source: str, destination: str, port: int) -> bool:
    port_name = pods[destination]["ports"].get(port) if destination != OUTSIDE else None

    def side(pod: str, direction: str, other: str) -> bool:
        if pod == OUTSIDE:
            return True  # the outside is not ours to police
        key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
        selecting = [p for p in policies if _selects(p["spec"]["podSelector"], pods[pod]["labels"])]
        selecting = [p for p in selecting if direction in p["spec"].get("policyTypes", ["Ingress"])]
        assert selecting, f"no policy selects {pod} for {direction}: nothing denies by default"
        return any(
            _peer_matches(rule.get(peers_key), other, pods) and _port_matches(rule.get("ports"), port, port_name)
            for p in selecting
            for rule in p["spec"].get(key, [])
        )

    return side(destination, "Ingress", source) and side(source, "Egress", destination)


def reachability(objects: list[dict], outside_ports: set[int]) -> set[tuple[str, str, int]]:
    policies = find(objects, "NetworkPolicy")
    pods = _pods(objects)
    flows = set()
    for source in [*pods, OUTSIDE]:
        for destination in [*pods, OUTSIDE]:
            if source == destination == OUTSIDE:
                continue
            ports = outside_ports if destination == OUTSIDE else set(pods[destination]["ports"])
            flows |= {
                (source, destination, port) for port in ports if _allowed(policies, pods, source, destination, port)
            }
    return flows


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_reachability_is_exactly_the_architecture_table(rendered, overlay):
    objects = rendered[overlay]
    pods = set(_pods(objects))
    expected = {(s, d, p) for s, d, p in architecture_flows() if {s, d} - {OUTSIDE} <= pods}
    # every port the table names for `outside`, plus a few it must not reach
    outside_ports = {p for s, d, p in architecture_flows() if d == OUTSIDE} | {22, 80, 8080, 27017}
    actual = reachability(objects, outside_ports)
    assert not actual - expected, f"allowed but not in docs/architecture.md: {sorted(actual - expected)}"
    assert not expected - actual, f"in docs/architecture.md but blocked: {sorted(expected - actual)}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_everything_else_is_denied_by_default(rendered, overlay):
    deny = [
        p
        for p in find(rendered[overlay], "NetworkPolicy")
        if p["spec"]["podSelector"] == {} and set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    ]
    assert deny and not deny[0]["spec"].get("ingress") and not deny[0]["spec"].get("egress")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_may_ask_the_cluster_dns_and_only_on_53(rendered, overlay):
    dns = [
        p
        for p in find(rendered[overlay], "NetworkPolicy")
        if p["spec"]["podSelector"] == {} and p["spec"].get("egress")
    ]
    assert len(dns) == 1
    (rule,) = dns[0]["spec"]["egress"]
    assert rule["to"][0]["podSelector"]["matchLabels"] == {"k8s-app": "kube-dns"}
    assert {(p["protocol"], p["port"]) for p in rule["ports"]} == {("UDP", 53), ("TCP", 53)}


def test_the_model_sees_a_missing_and_an_extra_flow(rendered):
    # the computation is real: dropping a rule loses a flow, an open rule adds many
    import copy

    objects = copy.deepcopy(rendered["local"])
    flows = reachability(objects, {443})
    assert ("middleware", "redis", 6379) in flows and ("nginx", "redis", 6379) not in flows
    redis = next(p for p in find(objects, "NetworkPolicy") if p["metadata"]["name"] == "redis")
    redis["spec"]["ingress"] = []
    assert ("middleware", "redis", 6379) not in reachability(objects, {443})
    nginx = next(p for p in find(objects, "NetworkPolicy") if p["metadata"]["name"] == "nginx")
    nginx["spec"]["egress"].append({})
    redis["spec"]["ingress"] = [{}]
    assert ("nginx", "redis", 6379) in reachability(objects, {443})
