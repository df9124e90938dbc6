"""Registrations with an Idempotency-Key: one record per key through retries, races, replicas
that die or hang mid-request, and a database that freezes."""

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import requests
import urllib3

from forms import jpeg, register
from polling import wait_for


def _key() -> dict:
    return {"Idempotency-Key": str(uuid.uuid4())}


def _stored(stack, name: str) -> int:
    return stack.db.registrations.count_documents({"name": name})


def test_a_retry_gets_the_first_answer_and_nothing_more_is_stored(http, stack):
    name, key, photos = f"Retry {uuid.uuid4().hex}", _key(), stack.photo_count()
    first = register(http, stack, name=name, headers=key)
    again = register(http, stack, name=name, headers=key)

    assert first.status_code == again.status_code == 201
    assert again.content == first.content
    assert again.headers["Idempotent-Replayed"] == "true"
    assert _stored(stack, name) == 1 and stack.photo_count() == photos + 1


def test_the_same_key_with_other_fields_is_a_422(http, stack):
    name, key = f"Reused {uuid.uuid4().hex}", _key()
    assert register(http, stack, name=name, headers=key).status_code == 201

    other = register(http, stack, name=name, city="Cuenca", headers=key)
    assert other.status_code == 422
    assert other.json()["error"]["code"] == "idempotency_key_reused"
    assert _stored(stack, name) == 1


def test_concurrent_attempts_with_one_key_store_one_record_and_one_photo(stack):
    name, key, photo, photos = f"Race {uuid.uuid4().hex}", _key(), jpeg(), stack.photo_count()

    def attempt(_):
        with requests.Session() as http:
            return register(http, stack, name=name, photo=photo, headers=key)

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(attempt, range(8)))

    assert [a.status_code for a in answers] == [201] * 8
    assert len({a.json()["id"] for a in answers}) == 1
    assert _stored(stack, name) == 1
    assert stack.photo_count() == photos + 1  # the losers removed their photos before answering


def _attempts(stack, request_ids: set[str]) -> dict[str, list[str]]:
    """The replicas nginx tried, in order, for each of these requests."""
    return {
        line["request_id"]: line["upstream"].split(", ")
        for line in stack.nginx_log()
        if line["request_id"] in request_ids
    }


def _answered(stack, part: str) -> set[str]:
    """The request ids in the part's own access lines: requests it has finished with."""
    lines = (stack.settings.log_dir / f"{part}.log").read_text().splitlines()
    return {
        entry["request_id"]
        for entry in map(json.loads, filter(lambda line: line.startswith("{"), lines))
        if entry.get("logger") == "access"
    }


def test_a_frozen_replica_costs_a_keyed_registration_nothing(stack, frozen):
    frozen("instance-2")
    frozen_at = f"127.0.0.1:{stack.settings.instance_port(2)}"
    name, photo, request_ids = f"Frozen {uuid.uuid4().hex}", jpeg(), set()

    def attempt(n):
        request_id = f"frozen-{uuid.uuid4().hex}"
        request_ids.add(request_id)
        with requests.Session() as http:
            return register(
                http, stack, name=f"{name} {n}", photo=photo, headers={**_key(), "X-Request-ID": request_id}
            )

    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(pool.map(attempt, range(12)))

    assert [a.status_code for a in answers] == [201] * 12
    held = {rid for rid, tried in _attempts(stack, request_ids).items() if tried[0] == frozen_at and len(tried) > 1}
    assert held, "no registration met the frozen replica: the test proved nothing"
    photos = stack.photo_count()
    frozen.thaw("instance-2")  # it wakes up and finds its requests done by the others
    # not a fixed wait: until the replica has finished every request it held (a photo it stored
    # meanwhile is removed before it answers)
    assert wait_for(lambda: held <= _answered(stack, "instance-2"), timeout=30), "the thawed replica never answered"
    assert stack.db.registrations.count_documents({"name": {"$regex": f"^{name} "}}) == 12
    assert stack.photo_count() == photos  # nothing stored by the late replica


def test_a_replica_killed_mid_request_costs_a_keyed_registration_nothing(stack, frozen, stopped):
    frozen("instance-2")  # requests pile up in it, then it dies with them
    name, photo = f"Killed {uuid.uuid4().hex}", jpeg()

    def attempt(n):
        with requests.Session() as http:
            return register(http, stack, name=f"{name} {n}", photo=photo, headers=_key())

    with ThreadPoolExecutor(max_workers=6) as pool:
        pending = [pool.submit(attempt, n) for n in range(6)]
        time.sleep(1)
        stopped("instance-2", kill=True)
        answers = [future.result() for future in pending]

    assert [a.status_code for a in answers] == [201] * 6
    assert stack.db.registrations.count_documents({"name": {"$regex": f"^{name} "}}) == 6


def test_a_frozen_database_answers_503_soon_and_the_keyed_retry_stores_once(stack, frozen):
    name, key, photo, photos = f"DbFrozen {uuid.uuid4().hex}", _key(), jpeg(), stack.photo_count()
    frozen("mongodb")
    with requests.Session() as http:
        during = [register(http, stack, name=name, photo=photo, headers=key) for _ in range(2)]
        health = http.get(f"http://127.0.0.1:{stack.settings.instance_port(1)}/health", timeout=5)
        ready = http.get(f"http://127.0.0.1:{stack.settings.instance_port(1)}/ready", timeout=15)
    frozen.thaw("mongodb")

    assert [a.status_code for a in during] == [503, 503]
    assert all(a.json()["error"]["code"] == "database_unavailable" for a in during)
    assert all("nothing was stored" not in a.json()["error"]["message"] for a in during)
    assert health.status_code == 200
    assert ready.status_code == 503 and "database" in ready.json()["failed"]

    with requests.Session() as http:
        assert wait_for(lambda: register(http, stack, name=name, photo=photo, headers=key).status_code == 201)
    assert _stored(stack, name) == 1
    assert wait_for(lambda: stack.photo_count() == photos + 1)  # kept photos of the 503s are settled


def test_a_keyed_upload_that_is_no_photo_is_refused_even_with_the_database_frozen(stack, frozen):
    # what can be refused without decoding is refused before the key is looked up
    frozen("mongodb")
    with requests.Session() as http:
        answer = register(http, stack, photo=b"<html>not a photo</html>", headers=_key())
    frozen.thaw("mongodb")
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "invalid_photo"


def test_an_unkeyed_write_to_a_frozen_database_is_not_called_unstored(stack, frozen):
    """The insert may sit in the frozen server's socket and land when it wakes: the client must
    not be told that nothing was stored. The insert must be the call that meets the frozen
    server, so the worker that answers must know the city already: both registrations go over
    one keep-alive connection to one replica, and a gunicorn worker answers every request of a
    connection it accepted, so the first one teaches that very worker the city."""
    form = {"name": f"Unkeyed {uuid.uuid4().hex}", "city": "Quito"}
    one_connection = urllib3.HTTPConnectionPool("127.0.0.1", stack.settings.instance_port(1), maxsize=1, block=True)

    def post():
        fields = {**form, "photo": ("id.jpg", jpeg(), "image/jpeg")}
        return one_connection.request("POST", "/api/registrations", fields=fields, timeout=30, retries=False)

    assert post().status == 201
    frozen("mongodb")
    started = time.monotonic()
    answer = post()
    took = time.monotonic() - started
    frozen.thaw("mongodb")
    one_connection.close()
    assert one_connection.num_connections == 1, "the second registration took a new connection, maybe to another worker"
    assert answer.status == 503
    assert "may have been stored" in answer.json()["error"]["message"]
    # the insert and the lookup of its outcome share the request's MONGO_TIMEOUT_MS, not one
    # limit each: twice it kept keyed registrations past nginx's 6 s, and every replica was
    # taken out of rotation at once
    assert took < int(stack.settings.get("MONGO_TIMEOUT_MS", "3000")) / 1000 + 1.5
