"""Real instance and middleware apps (Flask test client) on fakes: no stack needed. The photo
store is an in-memory fake, MongoDB and Redis point at nothing (tests fake what they need at
pymongo's boundary), and the process state create_app touches (metrics registry, root logger)
is restored afterwards."""

import io
import logging

import prometheus_client
import pytest

import instance
import middleware
from common import records
from forms import jpeg

NOWHERE = "mongodb://127.0.0.1:9/"  # the discard port: nothing answers there


class FakePhotoStore:
    backend = "webdav"

    def __init__(self):
        self.photos: dict[str, bytes] = {}
        self.opened: list = []

    def put(self, key: str, data: bytes, content_type: str) -> None:
        self.photos[key] = data

    def delete(self, key: str) -> None:
        self.photos.pop(key, None)

    def open(self, key: str):
        if key not in self.photos:
            return None
        chunks = FakeStream(self.photos[key])
        self.opened.append(chunks)
        return chunks, "image/jpeg"

    def signed_url(self, key: str, public_base: str, expires: int | None = None) -> str:
        return f"{public_base}photos/{key}?expires={expires}"

    def ping(self) -> None:
        pass


class FakeStream:
    """A streamed download, like requests' Response with stream=True: records whether it was closed."""

    def __init__(self, data: bytes):
        self.data = data
        self.closed = False

    def iter_content(self, size: int):
        for start in range(0, len(self.data), size):
            yield self.data[start : start + size]

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def fresh_process_state(monkeypatch):
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    # every app registers its HTTP metrics; a fresh registry lets one process build several
    monkeypatch.setattr(prometheus_client, "REGISTRY", prometheus_client.CollectorRegistry(auto_describe=True))
    yield
    root.handlers[:] = saved_handlers  # create_app sends the root logger to its own JSON handler
    root.setLevel(saved_level)


@pytest.fixture
def instance_app(monkeypatch, fresh_process_state):
    monkeypatch.setattr(records, "ensure_indexes", lambda db: None)  # nobody listens at MONGO_URL
    app = instance.create_app(
        test_config={
            "TESTING": True,
            "INSTANCE_NAME": "instance-unit-test",
            "MONGO_URL": NOWHERE,
            "ADMIN_PASSWORD": "unit-test-admin",
            "PHOTO_LINK_SECRET": "unit-test-secret",
            "PHOTO_STORE_TOKEN": "unit-test-token",
            "CLOUDINARY_URL": "",
            "LOKI_URL": "",
        }
    )
    app.extensions["photo_store"] = FakePhotoStore()
    yield app
    app.extensions["mongo"].close()


@pytest.fixture
def make_middleware_app(fresh_process_state):
    """make_middleware_app(instances_url) builds the middleware on nothing but that balancer."""
    apps = []

    def make(instances_url: str):
        app = middleware.create_app(
            test_config={
                "TESTING": True,
                "MONGO_URL": NOWHERE,
                "REDIS_URL": "redis://127.0.0.1:9/0",
                "INSTANCES_URL": instances_url,
                "LOKI_URL": "",
            }
        )
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.extensions["mongo"].close()


@pytest.fixture
def photo_store(instance_app) -> FakePhotoStore:
    return instance_app.extensions["photo_store"]


@pytest.fixture
def post_registration(instance_app):
    """post_registration(photo=bytes | False, headers={...}, name=..., city=...) through the test client."""

    def post(photo: bytes | bool | None = None, headers: dict | None = None, **fields):
        data = {"name": "Ana María Pérez", "city": "Quito", **fields}
        if photo is not False:
            data["photo"] = (io.BytesIO(photo or jpeg()), "id.jpg", "image/jpeg")
        with instance_app.test_client() as client:
            return client.post(
                "/api/registrations", content_type="multipart/form-data", data=data, headers=headers or {}
            )

    return post
