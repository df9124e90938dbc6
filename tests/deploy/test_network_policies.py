"""NetworkPolicies: which pod may open a connection to which port, computed from the rendered
manifests, is exactly the flows the code opens (code_flows.py derives them from the code and its
settings) and exactly the "Network flows" table of docs/architecture.md, both ways.

A connection is allowed when an ingress rule of a policy selecting the destination admits the
source and the port, and an egress rule of a policy selecting the source admits the destination
and the port (with a default deny, a pod no policy selects for a direction gets nothing).
`outside` stands for everything that is not a pod of the namespace.
"""

import re

import pytest
from code_flows import derived_flows
from deploytools import OVERLAYS, find, one, repo_file

OUTSIDE = "outside"
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet"}


def architecture_flows(overlay: str) -> set[tuple[str, str, int]]:
    """The table's rows for one overlay (a row ending "(<other> overlay)" is not one of them)."""
    text = repo_file("docs/architecture.md").read_text()
    section = text.split("## Network flows", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| ([a-z-]+) \| ([a-z-]+) \| (\d+) \| (.*) \|$", section, re.M)
    assert rows, "docs/architecture.md has no network flow table"
    return {
        (source, destination, int(port))
        for source, destination, port, what in rows
        if not (m := re.search(r"\((\w+) overlay\)$", what)) or m[1] == overlay
    }


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
            # another namespace's pods: the cluster DNS (with a podSelector), not ours to check
            # here; or a whole namespace (the ingress controller's), which is `outside`
            if other == OUTSIDE and "podSelector" not in peer:
                return True
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
    expected = {(s, d, p) for s, d, p in architecture_flows(overlay) if {s, d} - {OUTSIDE} <= pods}
    # every port the table names for `outside`, plus a few it must not reach
    outside_ports = {p for s, d, p in architecture_flows(overlay) if d == OUTSIDE} | {22, 25, 80, 465, 8080, 27017}
    actual = reachability(objects, outside_ports)
    assert not actual - expected, f"allowed but not in docs/architecture.md: {sorted(actual - expected)}"
    assert not expected - actual, f"in docs/architecture.md but blocked: {sorted(expected - actual)}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_reachability_is_exactly_what_the_code_opens(rendered, overlay):
    objects = rendered[overlay]
    needed = derived_flows(objects)
    outside_ports = {p for s, d, p in needed if d == OUTSIDE} | {22, 25, 80, 465, 8080, 27017}
    actual = reachability(objects, outside_ports)
    assert not needed - actual, f"the code opens these, the policies block them: {sorted(needed - actual)}"
    assert not actual - needed, f"allowed, but nothing in the code opens them: {sorted(actual - needed)}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_table_lists_every_flow_the_code_opens(rendered, overlay):
    pods = set(_pods(rendered[overlay]))
    table = {(s, d, p) for s, d, p in architecture_flows(overlay) if {s, d} - {OUTSIDE} <= pods}
    needed = derived_flows(rendered[overlay])
    assert not needed - table, f"missing from docs/architecture.md: {sorted(needed - table)}"
    assert not table - needed, f"in docs/architecture.md, opened by nothing: {sorted(table - needed)}"


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
    # NodeLocal DNSCache answers on a link-local address from the host network: no pod selector
    assert {"cidr": "169.254.20.10/32"} in [peer.get("ipBlock") for peer in rule["to"]]
    assert {(p["protocol"], p["port"]) for p in rule["ports"]} == {("UDP", 53), ("TCP", 53)}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_rule_to_the_internet_holds_on_ipv6_too(rendered, overlay):
    for policy in find(rendered[overlay], "NetworkPolicy"):
        for rule in policy["spec"].get("egress", []):
            cidrs = {peer["ipBlock"]["cidr"] for peer in rule.get("to", []) if "ipBlock" in peer}
            if "0.0.0.0/0" in cidrs or "::/0" in cidrs:
                assert {"0.0.0.0/0", "::/0"} <= cidrs, policy["metadata"]["name"]


def test_the_cilium_component_lets_discovery_reach_the_api_server(tmp_path):
    # On Cilium no ipBlock matches the API server: the component's entity rule must cover every
    # pod that talks to it (those the code derivation sends to the API ports).
    from code_flows import KUBE_API_PORTS
    from deploytools import render_with_component

    objects = render_with_component(tmp_path, "cilium", namespace=True)
    (policy,) = find(objects, "CiliumNetworkPolicy")
    assert policy["metadata"]["namespace"] == "vaccination"
    (expression,) = policy["spec"]["endpointSelector"]["matchExpressions"]
    callers = {s for s, d, p in derived_flows(objects) if d == OUTSIDE and p in KUBE_API_PORTS}
    assert set(expression["values"]) == callers
    (rule,) = policy["spec"]["egress"]
    assert rule["toEntities"] == ["kube-apiserver"]
    assert {int(p["port"]) for p in rule["toPorts"][0]["ports"]} == set(KUBE_API_PORTS)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_alloy_sends_no_usage_reports(rendered, overlay):
    alloy = one(rendered[overlay], "Deployment", "alloy")
    assert "--disable-reporting" in alloy["spec"]["template"]["spec"]["containers"][0]["args"]


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


def test_only_the_ingress_controller_may_reach_the_production_nginx(rendered):
    # our nginx trusts X-Forwarded-For from private addresses: no other pod may connect
    policy = one(rendered["production"], "NetworkPolicy", "nginx")
    (public,) = [rule for rule in policy["spec"]["ingress"] if {p["port"] for p in rule["ports"]} == {8080}]
    namespaces = [peer["namespaceSelector"] for peer in public["from"] if "namespaceSelector" in peer]
    assert namespaces == [{"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}]
    pods = [peer["podSelector"]["matchLabels"] for peer in public["from"] if "podSelector" in peer]
    assert pods == [{"app.kubernetes.io/name": "blackbox-exporter"}]
