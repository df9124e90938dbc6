"""The public nginx behind a TLS-terminating proxy (a Kubernetes ingress), the headers on its
photo answers, and its own errors in the services' JSON shape."""

import io
import json
import socket
import time
import uuid
from urllib.parse import urlsplit

import pytest
from openpyxl import load_workbook

from forms import register

# what ingress-nginx sends for https://vaccination.example.org/
INGRESS = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "vaccination.example.org", "X-Forwarded-Port": "443"}


def test_links_name_this_entrypoint_without_a_proxy(http, stack):
    assert register(http, stack).json()["photo_url"].startswith(f"{stack.url}/photos/")


@pytest.mark.parametrize(
    "headers",
    [INGRESS, {"X-Forwarded-Proto": "https", "Host": "vaccination.example.org"}],
    ids=["proto host and port", "proto only"],
)
def test_photo_links_follow_the_tls_proxy_in_front(http, stack, headers):
    url = register(http, stack, headers=headers).json()["photo_url"]
    assert url.startswith("https://vaccination.example.org/photos/")
    link = urlsplit(url)
    assert http.get(f"{stack.url}{link.path}?{link.query}").status_code == 200  # the signature ignores the host


def test_report_links_follow_the_tls_proxy_in_front(http, stack):
    city = f"Proxy {uuid.uuid4().hex[:8]}"
    register(http, stack, city=city)
    # through nginx, the middleware and a replica
    report = http.get(
        f"{stack.url}/api/reports/cities.xlsx", params={"city": city}, auth=stack.admin, headers=INGRESS, timeout=60
    )
    assert report.status_code == 200, report.text
    link = load_workbook(io.BytesIO(report.content))[city]["D2"].value
    assert link.startswith("https://vaccination.example.org/api/registrations/")


def test_a_forged_forwarded_value_that_is_not_plain_is_ignored(http, stack):
    headers = {"X-Forwarded-Proto": "javascript", "X-Forwarded-Host": "evil.example/<x>"}
    assert register(http, stack, headers=headers).json()["photo_url"].startswith(f"{stack.url}/photos/")


def test_photo_answers_are_private_and_traced(http, stack):
    rid = f"photo-{time.time_ns()}"
    photo = http.get(register(http, stack).json()["photo_url"], headers={"X-Request-ID": rid})
    assert photo.status_code == 200
    assert photo.headers["Cache-Control"] == "private, no-store"
    assert photo.headers["X-Content-Type-Options"] == "nosniff"
    assert photo.headers["X-Frame-Options"] == "DENY"
    assert photo.headers["Referrer-Policy"] == "no-referrer"
    assert photo.headers["X-Request-ID"] == rid
    store_log = stack.settings.log_dir / "photo-store.log"
    deadline = time.monotonic() + 5
    while rid not in store_log.read_text() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert rid in store_log.read_text()  # the photo store got the request id too


def _raw(stack, request: bytes) -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", stack.settings.ports["PUBLIC_PORT"]), timeout=5) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


@pytest.mark.parametrize(
    "request_bytes, status, code",
    [
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, "bad_request"),
        (b"NOT A REQUEST\r\n\r\n", 400, "bad_request"),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"a" * 9000 + b"\r\nConnection: close\r\n\r\n", 400, "bad_request"),
        (b"GET /" + b"a" * 10000 + b" HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", 414, "uri_too_long"),
    ],
    ids=["duplicate host", "garbage request line", "header too large", "uri too long"],
)
def test_nginx_own_errors_are_json(stack, request_bytes, status, code):
    got, body = _raw(stack, request_bytes)
    assert got == status
    assert json.loads(body)["error"]["code"] == code
