"""The report pass-through tries the next replica when one could not be reached or dropped the
connection, never after a replica received the request and was slow to answer it."""

import contextlib
import itertools
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from middleware import chart_cache, report_passthrough

READ_TIMEOUT = report_passthrough.READ_TIMEOUT  # the real one; the tests below shorten it


class Replica:
    """A replica that answers every report at once, counting the requests it got."""

    def __init__(self):
        self.requests = 0
        replica = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                replica.requests += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", "6")
                self.end_headers()
                self.wfile.write(b"report")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def replica():
    r = Replica()
    yield r
    r.stop()


def _listening() -> tuple[socket.socket, str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    return sock, f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.fixture
def silent():
    """A replica that takes the request and never answers (the kernel accepts; nobody replies)."""
    sock, url = _listening()
    yield url
    sock.close()


@pytest.fixture
def dying():
    """A replica that reads the request, then drops the connection (killed mid-report)."""
    sock, url = _listening()

    def serve():
        with contextlib.suppress(OSError):
            while True:
                conn, _ = sock.accept()
                conn.recv(65536)
                conn.close()

    threading.Thread(target=serve, daemon=True).start()
    yield url
    sock.close()


@pytest.fixture
def refused():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens: connection refused
    return f"http://127.0.0.1:{port}"


@pytest.fixture(autouse=True)
def _first_replica_first(monkeypatch):
    monkeypatch.setattr(report_passthrough, "_turn", itertools.count())
    monkeypatch.setattr(report_passthrough, "READ_TIMEOUT", 0.5)
    monkeypatch.setattr(chart_cache, "refresh", lambda trigger: {})  # no Redis or database here


def _report(app):
    with app.test_client() as client:
        return client.get("/api/reports/cities.xlsx")


def test_a_replica_that_cannot_be_reached_is_skipped(make_middleware_app, refused, replica):
    response = _report(make_middleware_app([refused, replica.url]))
    assert response.status_code == 200 and response.data == b"report"
    assert replica.requests == 1


def test_a_replica_that_got_the_request_and_timed_out_is_not_retried_elsewhere(make_middleware_app, silent,
                                                                               replica):
    response = _report(make_middleware_app([silent, replica.url]))
    assert response.status_code == 504
    assert response.get_json()["error"]["code"] == "report_timeout"
    assert replica.requests == 0


def test_a_replica_that_got_the_request_and_died_is_replaced_by_the_next(make_middleware_app, dying, replica):
    response = _report(make_middleware_app([dying, replica.url]))  # a GET: safe to build again
    assert response.status_code == 200 and response.data == b"report"
    assert replica.requests == 1


def test_the_read_timeout_is_below_nginx_proxy_read_timeout_for_reports():
    template = (Path(__file__).resolve().parents[2] / "nginx/templates/default.conf.template").read_text()
    reports = template[template.index("location ^~ /api/reports/"):]
    nginx_seconds = int(reports.split("proxy_read_timeout", 1)[1].split(";", 1)[0].strip().rstrip("s"))
    assert nginx_seconds > READ_TIMEOUT
