"""GET /ready on both services: it names the dependency that failed, and why."""

from pymongo.errors import ServerSelectionTimeoutError


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
        ServerSelectionTimeoutError("127.0.0.1:27027: [Errno 111] Connection refused\nTopology: ...")
    )
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
