"""A tool nobody here wrote reads the NetworkPolicies: network-config-analyzer (np-guard) computes
from the rendered manifests which workload may reach which port, and its map must be exactly the
flows the code opens (code_flows.py), both ways.

What it does not show is checked another way: a workload's connections to itself (MongoDB
members replicating) are not in its map, so test_network_policies.py's own model covers them;
CiliumNetworkPolicy (k8s/components/cilium) it does not read, test_network_policies.py checks it.
"""

import re

import pytest
import yaml
from code_flows import OUTSIDE, derived_flows
from deploytools import OVERLAYS
from tool_venvs import run_tool

NAMESPACE = "vaccination"
NCA = "import sys; from nca.nca_cli import nca_main; sys.exit(nca_main())"
# the cluster DNS is a flow of every pod, checked on its own (test_network_policies.py)
DNS_PEERS = ("kube-system/kube-dns-livesim[Pod]", "169.254.20.10")
LINE = re.compile(r"^(\S+) => (\S+) : (.+)$")


def _endpoint(text: str, workloads: dict[str, str]) -> str | None:
    """A workload of ours by its pod name, `outside`, or None (two outsiders between themselves)."""
    if text.startswith(f"{NAMESPACE}/"):
        return workloads[text.removeprefix(f"{NAMESPACE}/").split("[", 1)[0]]
    return OUTSIDE


def _tcp_ports(connection: str) -> set[int]:
    assert connection != "All connections", "an unrestricted connection"
    ports = set()
    for group in re.findall(r"\{([^}]*)\}", connection):
        protocols = re.search(r"protocols:([A-Z, ]+)", group)[1]
        if "TCP" in protocols:
            for item in re.search(r"dst_ports:([\d,\-]+)", group)[1].strip(",").split(","):
                low, _, high = item.partition("-")
                assert int(high or low) - int(low) < 100, f"a port range: {item}"
                ports |= set(range(int(low), int(high or low) + 1))
    return ports


def analyzer_flows(manifests: str, objects: list[dict], tmp_path) -> set[tuple[str, str, int]]:
    path = tmp_path / "rendered.yaml"
    path.write_text(manifests)
    result = run_tool(
        "network-config-analyzer",
        NCA,
        ["--connectivity", str(path), "--resource_list", str(path)]
        + ["--output_format", "txt_no_fw_rules", "--output_endpoints", "deployments"],
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    workloads = {
        o["metadata"]["name"]: o["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"]
        for o in objects
        if o["kind"] in ("Deployment", "StatefulSet", "DaemonSet")
    }
    flows = set()
    lines = [m for m in map(LINE.match, result.stdout.splitlines()) if m]
    assert lines, f"no connectivity map in:\n{result.stdout[-2000:]}"
    for match in lines:
        source, destination = (_endpoint(match[i], workloads) for i in (1, 2))
        if source == destination == OUTSIDE:
            continue
        for port in _tcp_ports(match[3]):
            if port == 53 and match[2] in DNS_PEERS:
                continue
            flows.add((source, destination, port))
    return flows


# The cluster the production policy assumes: an ingress controller in its own namespace (the
# analyzer's simulated controller sits in a namespace of its own naming).
CONTROLLER = [
    {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": "ingress-nginx", "labels": {"kubernetes.io/metadata.name": "ingress-nginx"}},
    },
    {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "controller", "namespace": "ingress-nginx", "labels": {"app": "ingress-nginx"}},
        "spec": {"containers": [{"name": "controller", "image": "controller"}]},
    },
]


@pytest.fixture(scope="module")
def manifests(rendered) -> dict[str, str]:
    return {overlay: yaml.safe_dump_all(rendered[overlay] + CONTROLLER) for overlay in OVERLAYS}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_analyzer_allows_exactly_the_flows_the_code_opens(rendered, manifests, overlay, tmp_path):
    objects = rendered[overlay]
    allowed = analyzer_flows(manifests[overlay], objects, tmp_path)
    needed = {(s, d, p) for s, d, p in derived_flows(objects) if s != d}
    assert not needed - allowed, f"the code opens these, the analyzer finds them blocked: {sorted(needed - allowed)}"
    assert not allowed - needed, f"the analyzer finds these allowed, nothing opens them: {sorted(allowed - needed)}"


def test_the_analyzer_sees_a_missing_flow(rendered, tmp_path):
    # the comparison is real: without the instance -> Redis rule the analyzer reports it blocked
    objects = [dict(o) for o in rendered["local"]]
    for i, obj in enumerate(objects):
        if obj["kind"] == "NetworkPolicy" and obj["metadata"]["name"] == "redis":
            spec = {**obj["spec"], "ingress": [rule for rule in obj["spec"]["ingress"] if 6379 not in _ports(rule)]}
            objects[i] = {**obj, "spec": spec}
    allowed = analyzer_flows(yaml.safe_dump_all(objects), objects, tmp_path)
    assert ("instance", "redis", 6379) not in allowed and ("prometheus", "redis", 9121) in allowed


def _ports(rule: dict) -> set[int]:
    return {p["port"] for p in rule.get("ports", [])}
