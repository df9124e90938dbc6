"""The Cloudinary photo store at its HTTP boundary, against a fake Cloudinary API.

Cloudinary cannot be reached from the test network, so a small HTTP server plays its Upload
API (`POST /v1_1/<cloud>/image/upload` and `/destroy`) and the private download endpoint,
answering the way Cloudinary does and checking signatures the way Cloudinary does. The real
SDK is pointed at it with the documented `upload_prefix` option of CLOUDINARY_URL, and a real
instance app (Flask test client) registers against it, writing to a throwaway MongoDB database
on the test stack that is dropped afterwards.

Cloudinary's signature (https://cloudinary.com/documentation/authentication_signatures): every
parameter except file, cloud_name, resource_type and api_key, sorted by name, joined as
`k=v&k=v`, the API secret appended, hashed with SHA-1 (the SDK's default `signature_algorithm`;
SHA-256 only when configured, which CLOUDINARY_URL does not do here; signature_version 2 also
escapes "&" inside values, and none of ours has one). It is recomputed below without the SDK, so
a change in what the SDK signs shows up as a failure.
"""

import hashlib
import io
import json
import logging
import re
import threading
import time
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

import prometheus_client
import pytest
from PIL import Image
from servers import free_port
from werkzeug.formparser import parse_form_data

from common import records
from forms import jpeg

CLOUD = "demo-cloud"
API_KEY = "614335564976464"
API_SECRET = "fake-api-secret-for-tests"  # noqa: S105 - the fake server's own secret
LINK_TTL = 600
NOT_SIGNED = {"file", "cloud_name", "resource_type", "api_key", "signature"}
RANDOM_PUBLIC_ID = re.compile(r"(?P<dir>[0-9a-f]{2})/(?P=dir)[0-9a-f]{30}")


def cloudinary_signature(params: dict[str, str], secret: str = API_SECRET) -> str:
    signed = "&".join(f"{k}={v}" for k, v in sorted(params.items()) if k not in NOT_SIGNED and v != "")
    return hashlib.sha1((signed + secret).encode()).hexdigest()  # noqa: S324 - Cloudinary's scheme


def signature_is_valid(params: dict[str, str]) -> bool:
    return re.fullmatch(r"[0-9a-f]{40}", params.get("signature", "")) is not None and params[
        "signature"
    ] == cloudinary_signature(params)


class FakeCloudinary:
    """Cloudinary's Upload API, recorded: `calls` holds (method, path, fields, file bytes)."""

    def __init__(self):
        self.calls: list[tuple[str, str, dict[str, str], bytes | None]] = []
        self.assets: dict[str, bytes] = {}
        self.fail_with: tuple[int, str, str] | None = None  # (status, content type, body)
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep the test output quiet
                pass

            def do_POST(self):
                fake._handle(self, "POST")

            def do_GET(self):
                fake._handle(self, "GET")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        self.running = True

    @property
    def cloudinary_url(self) -> str:
        return f"cloudinary://{API_KEY}:{API_SECRET}@{CLOUD}?upload_prefix={self.url}"

    def stop(self) -> None:
        if self.running:
            self.server.shutdown()
            self.server.server_close()
            self.running = False

    def calls_to(self, action: str) -> list[dict[str, str]]:
        return [fields for method, path, fields, _ in self.calls if path == f"/v1_1/{CLOUD}/image/{action}"]

    def uploaded_file(self) -> bytes:
        return next(data for _, path, _, data in self.calls if path.endswith("/upload"))

    # --- the server side --------------------------------------------------------------------

    def _handle(self, request: BaseHTTPRequestHandler, method: str) -> None:
        target = urlsplit(request.path)
        fields, data = dict(parse_qsl(target.query)), None
        if method == "POST":
            body = request.rfile.read(int(request.headers.get("Content-Length", 0)))
            _, form, files = parse_form_data(
                {
                    "wsgi.input": io.BytesIO(body),
                    "REQUEST_METHOD": "POST",
                    "CONTENT_LENGTH": str(len(body)),
                    "CONTENT_TYPE": request.headers.get("Content-Type", ""),
                }
            )
            fields = form.to_dict()
            data = files["file"].read() if "file" in files else None
        self.calls.append((method, target.path, fields, data))

        if self.fail_with:
            status, content_type, text = self.fail_with
            return self._answer(request, status, text.encode(), content_type)
        if not signature_is_valid(fields) or fields.get("api_key") != API_KEY:
            return self._error(request, 401, "Invalid Signature. String to sign - 'see the test'.")
        if int(fields.get("timestamp", 0)) < time.time() - 3600:
            return self._error(request, 400, "Stale request - reported time is more than 1 hour ago")
        action = {(method, f"/v1_1/{CLOUD}/image/{name}"): name for name in ("upload", "destroy", "download")}
        name = action.get((method, target.path), "")
        if name == "upload" and data:
            return self._json(request, 200, self._upload(fields, data))
        if name == "destroy":
            found = self.assets.pop(fields.get("public_id", ""), None)
            return self._json(request, 200, {"result": "ok" if found is not None else "not found"})
        if name == "download":
            if int(fields.get("expires_at", 0)) < time.time():
                return self._error(request, 401, "Download link expired")
            asset = self.assets.get(fields.get("public_id", ""))
            if asset is None:
                return self._error(request, 404, "Resource not found")
            return self._answer(request, 200, asset, "image/jpeg")
        return self._error(request, 404, f"Unknown API call {method} {target.path}")

    def _upload(self, fields: dict[str, str], data: bytes) -> dict:
        public_id = fields.get("public_id") or uuid.uuid4().hex[:20]
        self.assets[public_id] = data
        version = int(time.time())
        width, height = Image.open(io.BytesIO(data)).size
        delivery = fields.get("type", "upload")
        url_path = f"{CLOUD}/image/{delivery}/s--{uuid.uuid4().hex[:8]}--/v{version}/{public_id}.jpg"
        return {
            "asset_id": uuid.uuid4().hex,
            "public_id": public_id,
            "version": version,
            "version_id": uuid.uuid4().hex,
            "signature": cloudinary_signature({"public_id": public_id, "version": str(version)}),
            "width": width,
            "height": height,
            "format": "jpg",
            "resource_type": "image",
            "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "tags": [],
            "bytes": len(data),
            "type": delivery,
            "etag": hashlib.md5(data).hexdigest(),  # noqa: S324
            "placeholder": False,
            "url": f"http://res.cloudinary.com/{url_path}",
            "secure_url": f"https://res.cloudinary.com/{url_path}",
            "asset_folder": "",
            "display_name": public_id.rsplit("/", 1)[-1],
            "original_filename": "stream",
            "api_key": API_KEY,
        }

    @staticmethod
    def _answer(request, status: int, body: bytes, content_type: str) -> None:
        request.send_response(status)
        request.send_header("Content-Type", content_type)
        request.send_header("Content-Length", str(len(body)))
        request.send_header("X-Request-Id", uuid.uuid4().hex)
        request.end_headers()
        request.wfile.write(body)

    def _json(self, request, status: int, answer: dict) -> None:
        self._answer(request, status, json.dumps(answer).encode(), "application/json; charset=utf-8")

    def _error(self, request, status: int, message: str) -> None:
        self._json(request, status, {"error": {"message": message}})


@pytest.fixture
def fake_cloudinary():
    fake = FakeCloudinary()
    yield fake
    fake.stop()


@pytest.fixture
def throwaway_db(stack):
    """A database of its own on the test stack's MongoDB, dropped afterwards."""
    name = f"test_cloudinary_{uuid.uuid4().hex[:12]}"
    client = records.connect(stack.settings.mongo_url)
    yield client[name]
    client.drop_database(name)
    client.close()


@pytest.fixture
def make_app(monkeypatch, stack, fake_cloudinary, throwaway_db):
    """make_app(mongo_url=...) builds a real instance app on the fake Cloudinary; the process
    state the app touches (os.environ, the SDK's global config, the metrics registry, the root
    logger) is restored afterwards."""
    import cloudinary

    import instance

    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    apps = []
    # CloudinaryStore writes os.environ["CLOUDINARY_URL"] and resets the SDK's global config
    monkeypatch.setenv("CLOUDINARY_URL", fake_cloudinary.cloudinary_url)
    monkeypatch.setattr(cloudinary, "_config", cloudinary._config)
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)

    def make(mongo_url: str | None = None):
        # every app registers its HTTP metrics; a fresh registry lets one process build several
        monkeypatch.setattr(prometheus_client, "REGISTRY", prometheus_client.CollectorRegistry(auto_describe=True))
        app = instance.create_app(
            test_config={
                "TESTING": True,
                "INSTANCE_NAME": "instance-cloudinary-test",
                "CLOUDINARY_URL": fake_cloudinary.cloudinary_url,
                "MONGO_URL": mongo_url or stack.settings.mongo_url,
                "MONGO_DB": throwaway_db.name,
                "ADMIN_PASSWORD": "cloudinary-test-admin",
                "PHOTO_LINK_TTL_SECONDS": LINK_TTL,
                "LOKI_URL": "",
            }
        )
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.extensions["mongo"].close()
    root.handlers[:] = saved_handlers  # create_app sends the root logger to its own JSON handler
    root.setLevel(saved_level)


def register(app, name="Ana María Pérez", city="Quito", photo: bytes | None = None):
    with app.test_client() as client:
        return client.post(
            "/api/registrations",
            content_type="multipart/form-data",
            data={"name": name, "city": city, "photo": (io.BytesIO(photo or jpeg(640, 480)), "id.jpg", "image/jpeg")},
        )


def query(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query))


# --- a registration against a working Cloudinary -------------------------------------------------


def test_registration_uploads_the_photo_once_as_authenticated_with_a_valid_signature(
    make_app, fake_cloudinary, throwaway_db
):
    response = register(make_app(), photo=jpeg(640, 480))
    assert response.status_code == 201, response.get_json()

    uploads = fake_cloudinary.calls_to("upload")
    assert len(uploads) == 1 and len(fake_cloudinary.calls) == 1
    upload = uploads[0]
    assert upload["type"] == "authenticated"
    assert upload["overwrite"] == "0"  # a (vanishingly unlikely) clash must never replace a photo
    assert upload["api_key"] == API_KEY
    assert abs(int(upload["timestamp"]) - time.time()) < 60
    assert upload["signature"] == cloudinary_signature(upload)  # SHA-1: 40 hex digits
    assert re.fullmatch(r"[0-9a-f]{40}", upload["signature"])
    # the re-encoded photo went up, and the record points at exactly that asset
    assert Image.open(io.BytesIO(fake_cloudinary.uploaded_file())).size == (640, 480)
    stored = throwaway_db.registrations.find_one({"_id": response.get_json()["id"]})
    assert stored["photo_key"] == f"{upload['public_id']}.jpg"


def test_public_ids_are_random_and_not_derived_from_the_name_or_city(make_app, fake_cloudinary):
    app = make_app()
    for _ in range(2):
        assert register(app, name="Same Person", city="Same City").status_code == 201
    first, second = (upload["public_id"] for upload in fake_cloudinary.calls_to("upload"))
    assert first != second
    for public_id in (first, second):
        assert RANDOM_PUBLIC_ID.fullmatch(public_id), public_id
        assert "same" not in public_id.casefold()


def test_photo_url_is_a_signed_expiring_private_download_link(make_app, fake_cloudinary):
    before = int(time.time())
    body = register(make_app()).get_json()
    public_id = fake_cloudinary.calls_to("upload")[0]["public_id"]

    link = urlsplit(body["photo_url"])
    # upload_prefix moves every API call, download links included, to the fake API host
    assert f"{link.scheme}://{link.netloc}" == fake_cloudinary.url
    assert link.path == f"/v1_1/{CLOUD}/image/download"
    params = query(body["photo_url"])
    assert params["public_id"] == public_id
    assert params["format"] == "jpg"
    assert params["type"] == "authenticated"
    assert before + LINK_TTL <= int(params["expires_at"]) <= time.time() + LINK_TTL + 1
    assert params["api_key"] == API_KEY
    assert signature_is_valid(params)


def test_photo_links_go_to_the_cloudinary_api_host_without_upload_prefix(monkeypatch):
    import cloudinary

    from instance.photo_store import CloudinaryStore

    production_url = f"cloudinary://{API_KEY}:{API_SECRET}@{CLOUD}"
    monkeypatch.setenv("CLOUDINARY_URL", production_url)  # restored afterwards; the store writes it
    monkeypatch.setattr(cloudinary, "_config", cloudinary._config)
    store = CloudinaryStore(production_url, LINK_TTL)
    url = store.signed_url("ab/ab0123456789abcdef0123456789ab.jpg")
    assert url.startswith(f"https://api.cloudinary.com/v1_1/{CLOUD}/image/download?")
    params = query(url)
    assert params["public_id"] == "ab/ab0123456789abcdef0123456789ab" and params["type"] == "authenticated"
    assert int(params["expires_at"]) > time.time()
    assert signature_is_valid(params)


def test_admin_photo_route_streams_the_photo_through_a_signed_download(make_app, fake_cloudinary):
    app = make_app()
    registration_id = register(app, photo=jpeg(320, 200)).get_json()["id"]
    with app.test_client() as client:
        response = client.get(f"/api/registrations/{registration_id}/photo", auth=("admin", "cloudinary-test-admin"))
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "image/jpeg"
    assert Image.open(io.BytesIO(response.data)).size == (320, 200)
    (download,) = fake_cloudinary.calls_to("download")
    assert signature_is_valid(download)


# --- Cloudinary failing ----------------------------------------------------------------------------

CLOUDINARY_FAILURES = {
    "http-500-json": (500, "application/json", json.dumps({"error": {"message": "General Error"}})),
    "http-500-html": (500, "text/html", "<html><body><h1>500 Internal Server Error</h1></body></html>"),
    "down": None,
}


@pytest.mark.parametrize("failure", list(CLOUDINARY_FAILURES))
def test_cloudinary_failure_answers_503_and_stores_nothing(make_app, fake_cloudinary, throwaway_db, failure):
    app = make_app()
    if failure == "down":
        fake_cloudinary.stop()
    else:
        fake_cloudinary.fail_with = CLOUDINARY_FAILURES[failure]

    response = register(app, city="Nowhere Stored")
    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "photo_store_unavailable"
    assert throwaway_db.registrations.count_documents({}) == 0
    assert throwaway_db.cities.count_documents({}) == 0
    if failure != "down":
        assert len(fake_cloudinary.calls_to("upload")) == 1  # tried once, not hammered
        assert fake_cloudinary.calls_to("destroy") == []


def test_database_failure_after_upload_destroys_that_same_photo_and_answers_503(make_app, fake_cloudinary):
    app = make_app(mongo_url=f"mongodb://127.0.0.1:{free_port()}")  # nobody listens there

    response = register(app)
    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "database_unavailable"
    (upload,) = fake_cloudinary.calls_to("upload")
    (destroy,) = fake_cloudinary.calls_to("destroy")
    assert destroy["public_id"] == upload["public_id"]
    assert destroy["type"] == "authenticated"
    assert signature_is_valid(destroy)
    assert [path.rsplit("/", 1)[-1] for _, path, _, _ in fake_cloudinary.calls] == ["upload", "destroy"]
    assert fake_cloudinary.assets == {}  # nothing left behind at Cloudinary
