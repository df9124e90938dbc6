"""In Kubernetes our nginx balances over the instance pods, not over one ClusterIP: its passive
failure marking, retries and least_conn only mean something per pod."""

import re

import pytest
from code_flows import NAMESPACE
from deploytools import OVERLAYS, configmap, one, repo_file


def _nginx_env(objects: list[dict]) -> dict[str, str]:
    container = one(objects, "Deployment", "nginx")["spec"]["template"]["spec"]["containers"][0]
    env = dict(configmap(objects, "nginx-config")["data"])
    for item in container["env"]:
        if item.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.namespace":
            env[item["name"]] = NAMESPACE
        elif "value" in item:
            env[item["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env[m[1]], item["value"])
    return env


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_nginx_has_one_upstream_server_per_ready_instance_pod(rendered, overlay):
    objects = rendered[overlay]
    env = _nginx_env(objects)
    slots = [env[f"INSTANCE_{n}_ADDR"].split() for n in (1, 2, 3)]
    primaries = [slot for slot in slots if "backup" not in slot[1:]]
    assert primaries, "every slot is a backup"
    deployment = one(objects, "Deployment", "instance")
    for address, *params in primaries:
        host, port = address.rsplit(":", 1)
        # nginx's resolver has no search path: a full name, in this namespace
        assert host.endswith(f".{NAMESPACE}.svc.cluster.local"), host
        service = one(objects, "Service", host.split(".")[0])
        assert service["spec"].get("clusterIP") == "None", "a ClusterIP: one upstream for every pod"
        assert not service["spec"].get("publishNotReadyAddresses")
        selector = service["spec"]["selector"]
        assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
        assert int(port) in {p["port"] for p in service["spec"]["ports"]}
        assert "resolve" in params, "looked up once at start, a pod the HPA adds would get nothing"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_nginx_can_resolve_while_it_runs(rendered, overlay):
    env = _nginx_env(rendered[overlay])
    assert env.get("NGINX_ENTRYPOINT_LOCAL_RESOLVERS")  # the image exports the pod's DNS server
    templates = configmap(rendered[overlay], "nginx-templates")["data"]
    assert re.search(r"^resolver \$\{NGINX_LOCAL_RESOLVERS\} valid=", "".join(templates.values()), re.M)
    # `resolve` needs the upstream's shared-memory zone
    template = repo_file("nginx/templates/default.conf.template").read_text()
    assert re.search(r"upstream instances \{[^}]*\bzone instances ", template)
