"""Faults degrade as documented and recover by themselves: a replica, the database, the photo store."""

import socket
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import requests

from forms import jpeg, register
from polling import wait_for
from stack import supervisor


def test_a_stopped_replica_costs_no_request(stack, stopped):
    stopped("instance-2")
    city = f"Failover {uuid.uuid4().hex[:8]}"
    photo = jpeg()

    def registration(n):
        with requests.Session() as http:
            return register(http, stack, name=f"Burst {n}", city=city, photo=photo)

    def chart(_):
        return requests.get(f"{stack.url}/api/chart", timeout=10)

    with ThreadPoolExecutor(max_workers=12) as pool:
        registrations = list(pool.map(registration, range(60)))
        charts = list(pool.map(chart, range(60)))

    assert [r.status_code for r in registrations] == [201] * 60
    assert [r.status_code for r in charts] == [200] * 60
    assert {r.headers["X-Served-By"] for r in registrations} <= {"instance-1", "instance-3"}
    ids = [r.json()["id"] for r in registrations]
    assert stack.db.registrations.count_documents({"_id": {"$in": ids}}) == 60


def test_a_stopping_replica_refuses_new_connections_while_it_finishes_old_ones(http, stack, stopped):
    """A graceful stop must not leave its listening socket open for its whole grace period: nginx
    would connect, send a registration into the backlog and wait for an answer that never comes."""
    port = stack.settings.instance_port(3)
    busy = socket.create_connection(("127.0.0.1", port))  # an unfinished request keeps it in its grace period
    busy.sendall(b"POST /api/registrations HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
    time.sleep(0.5)
    stopped("instance-3", wait=False)  # SIGTERM, and on at once

    def refused() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except ConnectionRefusedError:
            return True
        return False

    try:
        assert wait_for(refused, timeout=5, every=0.1)
        assert supervisor.running_pid(stack.settings, stack.parts["instance-3"])  # still in its grace period
        assert all(register(http, stack).status_code == 201 for _ in range(6))
    finally:
        busy.close()


def test_a_restarted_replica_takes_traffic_again(http, stack, stopped):
    stopped("instance-3")
    assert {register(http, stack).headers["X-Served-By"] for _ in range(6)} <= {"instance-1", "instance-2"}
    stack.start("instance-3")
    assert wait_for(lambda: register(http, stack).headers["X-Served-By"] == "instance-3", timeout=30, every=0.1)


def test_database_down_is_503_and_nothing_is_stored(http, stack, stopped):
    photos = stack.photo_count()
    stopped("mongodb")
    marker = f"NoDb {uuid.uuid4().hex}"
    response = register(http, stack, name=marker)
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "database_unavailable"
    ready = http.get(f"http://127.0.0.1:{stack.settings.instance_port(1)}/ready")
    assert ready.status_code == 503 and ready.json()["checks"]["database"].startswith("unreachable")
    assert http.get(f"http://127.0.0.1:{stack.settings.instance_port(1)}/health").status_code == 200
    # The photo was uploaded before the write failed. It is removed at once when the write was
    # certainly not sent, else as soon as the database answers that the record is not there.
    stack.start("mongodb")
    assert wait_for(lambda: stack.photo_count() == photos, timeout=30)
    assert stack.db.registrations.count_documents({"name": marker}) == 0


def test_database_comes_back_by_itself(http, stack, stopped):
    stopped("mongodb")
    assert register(http, stack).status_code == 503
    stack.start("mongodb")
    assert wait_for(lambda: register(http, stack).status_code == 201, timeout=30)
    assert http.get(f"http://127.0.0.1:{stack.settings.instance_port(1)}/ready").status_code == 200


def test_photo_store_down_is_503_and_nothing_is_stored(http, stack, stopped):
    before = stack.registration_count()
    stopped("photo-store")
    marker = f"NoStore {uuid.uuid4().hex}"
    response = register(http, stack, name=marker)
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "photo_store_unavailable"
    assert "nothing was stored" in response.json()["error"]["message"]
    assert stack.db.registrations.count_documents({"name": marker}) == 0
    assert stack.registration_count() == before
    ready = http.get(f"http://127.0.0.1:{stack.settings.instance_port(2)}/ready")
    assert ready.status_code == 503 and ready.json()["checks"]["photo_store"].startswith("unreachable")
    stack.start("photo-store")
    assert wait_for(lambda: register(http, stack).status_code == 201, timeout=30)


def test_all_replicas_down_is_a_json_503(http, stack, stopped):
    for name in ("instance-1", "instance-2", "instance-3"):
        stopped(name)
    response = register(http, stack)
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "service_unavailable"
    report = http.get(f"{stack.url}/api/reports/cities.xlsx", auth=stack.admin)
    assert report.status_code == 503
    assert report.json()["error"]["code"] == "replicas_unavailable"
