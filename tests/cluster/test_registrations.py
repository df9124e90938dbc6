"""The registration contract through the public nginx: what a client sends and gets back."""

import base64
import hashlib
import io
import re
import time

from PIL import Image

from forms import jpeg, png, register


def test_register_answers_201_with_the_record(http, stack):
    response = register(http, stack, name="  Ana   María  Pérez ", city=" quito ")
    assert response.status_code == 201
    body = response.json()
    assert set(body) >= {"id", "name", "city", "photo_url", "created_at"}
    assert re.fullmatch(r"[0-9a-f]{32}", body["id"])
    assert body["name"] == "Ana María Pérez"  # trimmed, inner whitespace collapsed
    assert body["city"] == "quito"
    stored = stack.db.registrations.find_one({"_id": body["id"]})
    assert stored["city_key"] == "quito" and stored["name"] == "Ana María Pérez"


def test_every_replica_answer_names_its_replica(http, stack):
    served = {register(http, stack).headers["X-Served-By"] for _ in range(9)}
    assert served <= {"instance-1", "instance-2", "instance-3"}
    assert len(served) >= 2  # load balanced, not pinned to one replica


def test_request_id_is_adopted_when_sane_and_replaced_when_not(http, stack):
    adopted = http.get(f"{stack.url}/", headers={"X-Request-ID": "trace-abc.123"})
    assert adopted.headers["X-Request-ID"] == "trace-abc.123"
    replaced = http.get(f"{stack.url}/", headers={"X-Request-ID": "bad id\twith spaces"}).headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", replaced)


def test_request_id_follows_the_request_into_the_replica_log(http, stack):
    rid = f"follow-{time.time_ns()}"
    served_by = register(http, stack, headers={"X-Request-ID": rid}).headers["X-Served-By"]
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        logs = "".join((stack.settings.log_dir / f"{part}.log").read_text() for part in (served_by, "nginx"))
        if logs.count(rid) >= 3:  # nginx access line, replica access line, "registration stored"
            break
        time.sleep(0.2)
    assert logs.count(rid) >= 3


def test_photo_link_serves_the_reencoded_photo(http, stack):
    body = register(http, stack, photo=jpeg(640, 480)).json()
    photo = http.get(body["photo_url"])
    assert photo.status_code == 200
    assert photo.headers["Content-Type"] == "image/jpeg"
    assert Image.open(io.BytesIO(photo.content)).size == (640, 480)


def test_photo_metadata_is_stripped(http, stack):
    exif = Image.Exif()
    exif[0x010F] = "SpyCam Inc."  # Make
    exif[0x0131] = "secret-firmware"  # Software
    gps = exif.get_ifd(0x8825)
    gps[2] = (51.0, 30.0, 0.0)  # GPSLatitude
    original = jpeg(exif=exif.tobytes())
    assert b"SpyCam" in original
    body = register(http, stack, photo=original).json()
    stored = http.get(body["photo_url"]).content
    assert b"SpyCam" not in stored and b"secret-firmware" not in stored
    assert not Image.open(io.BytesIO(stored)).getexif()


def test_png_is_accepted_and_kept_png(http, stack):
    body = register(http, stack, photo=png(), filename="card.png", content_type="image/png").json()
    photo = http.get(body["photo_url"])
    assert photo.headers["Content-Type"] == "image/png"
    assert Image.open(io.BytesIO(photo.content)).format == "PNG"


def test_photo_names_are_random_and_unguessable(http, stack):
    urls = [register(http, stack, name="Same Person", city="Same City").json()["photo_url"] for _ in range(2)]
    names = [re.search(r"/photos/(\S+?)\?", url).group(1) for url in urls]
    assert names[0] != names[1]
    assert all(re.fullmatch(r"[0-9a-f]{2}/[0-9a-f]{32}\.jpg", name) for name in names)


def test_photo_link_without_signature_is_refused(http, stack):
    url = register(http, stack).json()["photo_url"]
    unsigned = http.get(url.split("?")[0])
    assert unsigned.status_code == 403
    assert unsigned.json()["error"]["code"] == "forbidden"
    tampered = http.get(url.replace("md5=", "md5=x"))
    assert tampered.status_code == 403


def test_expired_photo_link_is_refused(http, stack):
    url = register(http, stack).json()["photo_url"]
    path = re.search(r"(/photos/\S+?)\?", url).group(1)
    expires = int(time.time()) - 10
    secret = stack.settings.secrets["PHOTO_LINK_SECRET"]
    digest = hashlib.md5(f"{expires}{path} {secret}".encode()).digest()  # noqa: S324 - nginx secure_link's scheme
    signature = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    expired = http.get(f"{stack.url}{path}?md5={signature}&expires={expires}")
    assert expired.status_code == 410
    assert expired.json()["error"]["code"] == "link_expired"


def test_photo_store_is_not_listable(http, stack):
    register(http, stack)
    direct = f"http://127.0.0.1:{stack.settings.ports['PHOTO_STORE_PORT']}/"
    assert http.get(direct).status_code == 403
    with_token = http.get(direct, headers={"X-Photo-Store-Token": stack.settings.secrets["PHOTO_STORE_TOKEN"]})
    assert with_token.status_code in (403, 404, 405)
    assert "<a href" not in with_token.text


def test_admin_reads_a_registration_and_its_photo(http, stack):
    body = register(http, stack).json()
    assert http.get(f"{stack.url}/api/registrations/{body['id']}").status_code == 401
    record = http.get(f"{stack.url}/api/registrations/{body['id']}", auth=stack.admin)
    assert record.status_code == 200 and record.json()["id"] == body["id"]
    photo = http.get(f"{stack.url}/api/registrations/{body['id']}/photo", auth=stack.admin)
    assert photo.status_code == 200 and photo.headers["Content-Type"] == "image/jpeg"
    assert photo.headers["Cache-Control"] == "private, no-store"


def test_unknown_registration_is_a_json_404(http, stack):
    response = http.get(f"{stack.url}/api/registrations/{'0' * 32}", auth=stack.admin)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_metrics_and_readiness_details_are_not_served_through_the_public_entrypoint(http, stack):
    for path in ("/metrics", "/ready"):
        response = http.get(f"{stack.url}{path}")
        assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


def test_web_page_has_the_form_the_chart_and_the_report_link(http, stack):
    page = http.get(f"{stack.url}/")
    assert page.status_code == 200 and page.headers["X-Served-By"].startswith("instance-")
    for needle in (
        'enctype="multipart/form-data"',
        'name="photo"',
        'name="city"',
        'name="name"',
        'src="/api/chart.png"',
        'href="/api/reports/cities.xlsx"',
    ):
        assert needle in page.text


def test_health_and_readiness(http, stack):
    for n in (1, 2, 3):
        port = stack.settings.instance_port(n)
        assert http.get(f"http://127.0.0.1:{port}/health").json()["instance"] == f"instance-{n}"
        ready = http.get(f"http://127.0.0.1:{port}/ready")
        assert ready.status_code == 200 and ready.json()["checks"] == {"database": "ok", "photo_store": "ok"}
    middleware = http.get(f"http://127.0.0.1:{stack.settings.ports['MIDDLEWARE_PORT']}/ready")
    assert middleware.status_code == 200 and middleware.json()["checks"] == {"database": "ok", "redis": "ok"}
