"""Small promises: a refused registration is counted once, /ready names what failed, and a
streamed photo gives its connection back to the store however the download ends."""

import pytest
from pymongo.errors import ServerSelectionTimeoutError

from common.metrics import REJECTED
from forms import jpeg
from instance import registrations


def _rejected(reason: str) -> float:
    return REJECTED.labels(reason)._value.get()


def test_a_registration_without_a_photo_is_counted_once(instance_app, post_registration):
    before = _rejected("missing_field")
    response = post_registration(photo=False)
    assert response.status_code == 400 and response.get_json()["error"]["field"] == "photo"
    assert _rejected("missing_field") - before == 1


class FakeMongo:
    """A MongoClient as /ready sees it: `admin.command("ping")` answers or raises."""

    def __init__(self, error: Exception | None = None):
        self.error = error
        self.admin = self

    def command(self, name):
        if self.error:
            raise self.error
        return {"ok": 1}

    def close(self):
        pass


def test_ready_names_the_dependency_that_failed_and_why(instance_app):
    instance_app.extensions["mongo"].close()
    instance_app.extensions["mongo"] = FakeMongo(
        ServerSelectionTimeoutError("127.0.0.1:27027: [Errno 111] Connection refused\nTopology: ..."))
    with instance_app.test_client() as client:
        response = client.get("/ready")
    body = response.get_json()
    assert response.status_code == 503 and body["status"] == "not_ready"
    assert body["failed"] == ["database"]
    assert body["checks"] == {
        "database": "unreachable: ServerSelectionTimeoutError: 127.0.0.1:27027: [Errno 111] Connection refused",
        "photo_store": "ok",
    }


def test_middleware_ready_names_redis_when_it_is_down(make_middleware_app):
    app = make_middleware_app("http://127.0.0.1:9")
    app.extensions["mongo"].close()
    app.extensions["mongo"] = FakeMongo()
    with app.test_client() as client:
        body = client.get("/ready").get_json()
    assert body["failed"] == ["redis"]
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["redis"].startswith("unreachable: ConnectionError: ")


@pytest.fixture
def stored_photo(instance_app, photo_store, monkeypatch):
    """An admin photo route over one registration whose photo is in the fake store."""
    photo_store.photos["ab/ab01.jpg"] = jpeg() * 20  # a few chunks
    doc = {"_id": "ab" * 16, "photo_key": "ab/ab01.jpg"}

    class Db:
        def __getitem__(self, name):
            return self

        def find_one(self, query):
            return doc if query["_id"] == doc["_id"] else None

    monkeypatch.setattr(registrations, "get_db", lambda: Db())
    return f"/api/registrations/{doc['_id']}/photo"


@pytest.mark.parametrize("read_all", [True, False], ids=["downloaded", "client left early"])
def test_a_streamed_photo_is_closed_when_the_response_ends(instance_app, photo_store, stored_photo, read_all):
    with instance_app.test_client() as client:
        response = client.get(stored_photo, auth=("admin", "unit-test-admin"), buffered=False)
        assert response.status_code == 200
        if read_all:
            assert b"".join(response.response) == photo_store.photos["ab/ab01.jpg"]
        response.close()
    (download,) = photo_store.opened
    assert download.closed
