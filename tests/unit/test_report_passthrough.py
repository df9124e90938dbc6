"""The report pass-through: one request to the replicas' balancer (nginx's internal port), the
answer streamed back, the chart cache refreshed only after a 200, and the balancer's own
failures turned into the services' JSON errors. Which replica builds a report, and building it
again when one dropped it, is nginx's (the last tests read that from its template)."""

import contextlib
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
from servers import free_port

from middleware import chart_cache, report_passthrough
from stack import supervisor
from stack.parts import public_nginx
from stack.settings import Settings

READ_TIMEOUT = report_passthrough.READ_TIMEOUT  # the real one; the tests below shorten it
TEMPLATE = Path(__file__).resolve().parents[2] / "nginx/templates/default.conf.template"


class Balancer:
    """Stands where nginx's internal port is: answers every report with the status and headers
    it is given, and records the requests it got."""

    def __init__(self, status: int = 200, headers: dict | None = None, body: bytes = b"report"):
        self.requests = []
        balancer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                balancer.requests.append((self.path, dict(self.headers)))
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def balancer():
    made = []

    def make(*args, **kwargs) -> Balancer:
        made.append(Balancer(*args, **kwargs))
        return made[-1]

    yield make
    for b in made:
        b.stop()


@pytest.fixture
def refreshes(monkeypatch):
    done = []
    monkeypatch.setattr(report_passthrough, "READ_TIMEOUT", 0.5)
    # no Redis nor database here: the refresh records which request's counts it would take
    monkeypatch.setattr(chart_cache, "report_started", lambda: 0)
    monkeypatch.setattr(chart_cache, "refresh_from_report", lambda request_id, started: done.append(request_id) or {})
    return done


def _report(app, **headers):
    with app.test_client() as client:
        return client.get("/api/reports/cities.xlsx?city=Quito", headers=headers)


def test_a_built_report_is_streamed_back_and_refreshes_the_chart(make_middleware_app, balancer, refreshes):
    upstream = balancer(200, {"Content-Type": "application/octet-stream", "X-Served-By": "instance-2"})
    response = _report(
        make_middleware_app(upstream.url), Authorization="Basic YWRtaW46eA==", **{"X-Request-ID": "req-7"}
    )
    assert response.status_code == 200 and response.data == b"report"
    assert response.headers["X-Served-By"] == "instance-2"
    assert refreshes == ["req-7"]  # the counts the replica saved under this request's id
    ((path, headers),) = upstream.requests
    assert path == "/api/reports/cities.xlsx?city=Quito"
    assert headers["Authorization"] == "Basic YWRtaW46eA==" and headers["X-Request-ID"] == "req-7"


def test_a_refused_report_is_passed_back_and_refreshes_nothing(make_middleware_app, balancer, refreshes):
    upstream = balancer(
        401,
        {"WWW-Authenticate": 'Basic realm="admin"', "X-Served-By": "instance-1", "Content-Type": "application/json"},
        b'{"error":{"code":"unauthorized"}}',
    )
    response = _report(make_middleware_app(upstream.url))
    assert response.status_code == 401 and response.headers["WWW-Authenticate"].startswith("Basic")
    assert refreshes == []


def test_a_replica_error_is_passed_back_as_the_replica_wrote_it(make_middleware_app, balancer, refreshes):
    body = b'{"error":{"code":"database_unavailable","message":"...","field":null}}'
    upstream = balancer(503, {"X-Served-By": "instance-3", "Content-Type": "application/json"}, body)
    response = _report(make_middleware_app(upstream.url))
    assert response.status_code == 503 and response.data == body
    assert refreshes == []


@pytest.mark.parametrize(
    ("status", "code", "answer"), [(502, "replicas_unavailable", 503), (504, "report_timeout", 504)]
)
def test_the_balancers_own_error_becomes_a_json_error(make_middleware_app, balancer, refreshes, status, code, answer):
    upstream = balancer(status, {"Content-Type": "text/html"}, b"<html>nginx</html>")  # no X-Served-By
    response = _report(make_middleware_app(upstream.url))
    assert response.status_code == answer and response.get_json()["error"]["code"] == code
    assert refreshes == []


def test_a_report_not_answered_in_time_is_504(make_middleware_app, refreshes):
    with socket.socket() as silent:  # takes the connection (the kernel accepts), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        response = _report(make_middleware_app(f"http://127.0.0.1:{silent.getsockname()[1]}"))
    assert response.status_code == 504 and response.get_json()["error"]["code"] == "report_timeout"


def test_an_unreachable_balancer_is_503(make_middleware_app, refreshes):
    port = free_port()  # nothing listens: connection refused
    response = _report(make_middleware_app(f"http://127.0.0.1:{port}"))
    assert response.status_code == 503 and response.get_json()["error"]["code"] == "replicas_unavailable"


def _reports_location(server_start: str) -> str:
    template = TEMPLATE.read_text()
    server = template[template.index(server_start) :]
    location = server[server.index("location ^~ /api/reports/") :]
    return location[: location.index("\n    }")]


def _seconds(location: str, directive: str) -> int:
    return int(re.search(rf"{directive}\s+(\d+)s;", location).group(1))


def test_the_read_timeout_is_below_both_nginx_read_timeouts_for_reports():
    public = _reports_location("listen ${BIND_HOST}:${PUBLIC_PORT}")
    internal = _reports_location("listen ${BIND_HOST}:${NGINX_STATUS_PORT}")
    assert _seconds(public, "proxy_read_timeout") > READ_TIMEOUT
    assert _seconds(internal, "proxy_read_timeout") > READ_TIMEOUT


def test_nginx_builds_a_dropped_report_again_but_never_a_slow_one():
    internal = _reports_location("listen ${BIND_HOST}:${NGINX_STATUS_PORT}")
    assert "proxy_pass http://instances;" in internal  # the upstream every other request uses
    (retried_on,) = re.findall(r"proxy_next_upstream\s+([^;]+);", internal)
    assert retried_on.split() == ["error"]  # refused or dropped; "timeout" would repeat a slow build


@pytest.fixture
def dying():
    """A replica that reads the request, then drops the connection (killed mid-report)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    dropped = []

    def serve():
        with contextlib.suppress(OSError):
            while True:
                conn, _ = sock.accept()
                conn.recv(65536)
                dropped.append(conn.close())

    threading.Thread(target=serve, daemon=True).start()
    yield sock.getsockname()[1], dropped
    sock.close()


@pytest.fixture
def nginx(tmp_path):
    """nginx(instance_ports) -> the internal port of the real public nginx, rendered from the
    template as ./init.sh renders it, in front of those replicas."""
    started = []

    def start(instance_ports: list[int]) -> int:
        ports = {"PHOTO_STORE_PORT": free_port(), "NGINX_STATUS_PORT": free_port()}
        s = Settings(
            var=tmp_path,
            ports=ports,
            secrets={"PHOTO_LINK_SECRET": "s", "PHOTO_STORE_TOKEN": "t"},
            env={"MAX_PHOTO_BYTES": "1048576"},
        )
        part = public_nginx(s, "nginx", instance_ports, free_port(), free_port(), ports["NGINX_STATUS_PORT"])
        supervisor.start(s, part, wait=20)
        started.append((s, part))
        return ports["NGINX_STATUS_PORT"]

    yield start
    for s, part in started:
        supervisor.stop(s, part)


def test_nginx_builds_a_report_again_on_the_next_replica_when_one_drops_it(nginx, balancer, dying):
    dying_port, dropped = dying
    good = balancer(200, {"X-Served-By": "instance-2"})
    good_port = int(good.url.rsplit(":", 1)[1])
    internal = nginx([dying_port, good_port, good_port])
    answers = [requests.get(f"http://127.0.0.1:{internal}/api/reports/cities.xlsx", timeout=10) for _ in range(3)]
    assert [(a.status_code, a.content) for a in answers] == [(200, b"report")] * 3
    assert len(dropped) == 1  # the least-connections turn reached it once; then nginx rested it
    assert len(good.requests) == 3


def test_nginx_answers_its_own_error_when_every_replica_drops_the_report(nginx, dying):
    dying_port, dropped = dying
    internal = nginx([dying_port] * 3)
    answer = requests.get(f"http://127.0.0.1:{internal}/api/reports/cities.xlsx", timeout=10)
    assert answer.status_code == 502 and "X-Served-By" not in answer.headers  # what the middleware turns into 503
