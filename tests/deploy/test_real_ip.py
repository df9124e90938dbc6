"""The production overlay's real-IP settings, run by a real nginx: behind the Ingress each
client keeps its own address (what the admin-password throttle counts and the access log
shows), and what a client writes into X-Forwarded-For itself is never taken for it. The test's
own client plays the controller (trusted like a pod address would be)."""

import shutil

import pytest
import requests
from deploytools import repo_file
from servers import free_port, running

REAL_IP = repo_file("k8s/overlays/production/nginx-real-ip.conf")


@pytest.fixture(scope="module")
def nginx(tmp_path_factory):
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    if not shutil.which(binary):
        pytest.fail("nginx is not installed (./init.sh installs it)")
    root = tmp_path_factory.mktemp("real-ip")
    port = free_port()
    (root / "nginx.conf").write_text(f"""
pid {root}/nginx.pid;
error_log stderr;
events {{}}
http {{
    access_log off;
    include {REAL_IP};
    set_real_ip_from 127.0.0.1;  # the test client stands in for the controller
    server {{
        listen 127.0.0.1:{port};
        location / {{ return 200 $remote_addr; }}
    }}
}}
""")
    argv = [binary, "-p", root, "-c", root / "nginx.conf", "-e", "stderr", "-g", "daemon off;"]
    with running(argv, port, root / "nginx.log"):  # fails with nginx's words if the file is refused
        yield f"http://127.0.0.1:{port}/"


def _client(url: str, forwarded_for: str | None) -> str:
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for is not None else {}
    return requests.get(url, headers=headers, timeout=5).text


@pytest.mark.parametrize(
    "forwarded_for,client",
    [
        ("203.0.113.9", "203.0.113.9"),  # ingress-nginx: the header replaced by its peer
        ("198.51.100.7, 203.0.113.9", "203.0.113.9"),  # a Gateway appends; the client's own entry is not believed
        ("203.0.113.9, 10.1.2.3", "203.0.113.9"),  # one more proxy inside the cluster
        ("2001:db8::5", "2001:db8::5"),
    ],
)
def test_each_client_behind_the_controller_keeps_its_own_address(nginx, forwarded_for, client):
    assert _client(nginx, forwarded_for) == client


def test_without_the_header_the_peer_is_the_client(nginx):
    assert _client(nginx, None) == "127.0.0.1"


def test_an_address_outside_the_private_networks_is_never_trusted_to_name_another(nginx):
    # 203.0.113.9 is a client, not a proxy: the entry left of it is the client's own claim
    assert _client(nginx, "192.0.2.1, 203.0.113.9") == "203.0.113.9"
