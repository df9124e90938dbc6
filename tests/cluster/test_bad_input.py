"""Bad input gets a clear JSON error naming the problem, and nothing is stored."""

import io
import uuid

import pytest
from PIL import Image

from forms import jpeg

VALID = {"name": "Ana Pérez", "city": "Quito"}


def _png_bomb() -> bytes:
    out = io.BytesIO()
    Image.new("1", (12000, 12000)).save(out, "PNG")  # 144 MP from a few kilobytes
    return out.getvalue()


def _gif() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (50, 50)).save(out, "GIF")
    return out.getvalue()


CASES = {
    # id: (form fields, photo (filename, bytes, content type) or None, status, code, field)
    "missing name": ({"city": "Quito"}, "jpeg", 400, "missing_field", "name"),
    "blank name": ({"name": "   ", "city": "Quito"}, "jpeg", 400, "missing_field", "name"),
    "missing city": ({"name": "Ana"}, "jpeg", 400, "missing_field", "city"),
    "blank city": ({"name": "Ana", "city": "\t "}, "jpeg", 400, "missing_field", "city"),
    "missing photo": (VALID, None, 400, "missing_field", "photo"),
    "empty photo": (VALID, ("id.jpg", b"", "image/jpeg"), 400, "missing_field", "photo"),
    "over-long name": ({"name": "A" * 101, "city": "Quito"}, "jpeg", 400, "invalid_name", "name"),
    "over-long city": ({"name": "Ana", "city": "Q" * 61}, "jpeg", 400, "invalid_city", "city"),
    "newline in name": ({"name": "Ana\nBcc: x", "city": "Quito"}, "jpeg", 400, "invalid_name", "name"),
    "NUL in name": ({"name": "Ana\x00", "city": "Quito"}, "jpeg", 400, "invalid_name", "name"),
    "escape in city": ({"name": "Ana", "city": "Qui\x1b[31mto"}, "jpeg", 400, "invalid_city", "city"),
    "bidi override in name": ({"name": "Ana\u202eZ", "city": "Quito"}, "jpeg", 400, "invalid_name", "name"),
    "zero-width space in name": ({"name": "Ana\u200bPérez", "city": "Quito"}, "jpeg", 400, "invalid_name", "name"),
    "a Hangul filler as name": ({"name": "\u3164", "city": "Quito"}, "jpeg", 400, "invalid_name", "name"),
    "digits only city": ({"name": "Ana", "city": "12345"}, "jpeg", 400, "invalid_city", "city"),
    "text behind a .jpg name": (
        VALID,
        ("id.jpg", b"just some text, not an image", "image/jpeg"),
        400,
        "invalid_photo",
        "photo",
    ),
    "truncated jpeg": (VALID, ("id.jpg", jpeg(800, 600)[:3000], "image/jpeg"), 400, "invalid_photo", "photo"),
    "html behind image/jpeg": (
        VALID,
        ("id.jpg", b"<html><script>alert(1)</script></html>", "image/jpeg"),
        400,
        "invalid_photo",
        "photo",
    ),
    "gif is not accepted": (VALID, ("id.gif", _gif(), "image/gif"), 400, "invalid_photo", "photo"),
    "decompression bomb": (VALID, ("id.png", _png_bomb(), "image/png"), 400, "invalid_photo", "photo"),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_bad_registration_is_refused_and_nothing_stored(http, stack, case):
    fields, photo, status, code, field = CASES[case]
    marker = f"bad-input-{uuid.uuid4().hex}"
    fields = {
        **fields,
        **({"name": f"{fields['name']} {marker}"} if fields.get("name", "").strip() and code != "invalid_name" else {}),
    }
    files = {}
    if photo == "jpeg":
        files["photo"] = ("id.jpg", jpeg(), "image/jpeg")
    elif photo:
        files["photo"] = photo
    photos_before = stack.photo_count()
    before = stack.registration_count()

    response = http.post(f"{stack.url}/api/registrations", data=fields, files=files or None, timeout=30)

    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert error["field"] == field
    assert len(error["message"]) > 10 and error["message"].endswith(".")
    assert stack.db.registrations.count_documents({"name": {"$regex": marker}}) == 0
    assert stack.registration_count() == before
    assert stack.photo_count() == photos_before


def test_photo_over_the_limit_is_413_from_the_replica(http, stack):
    limit = stack.settings.max_photo_bytes
    before = stack.registration_count()
    big = b"\xff\xd8" + b"\0" * (limit + 1000)  # over the photo limit, under nginx's body cap
    response = http.post(f"{stack.url}/api/registrations", data=VALID, files={"photo": ("id.jpg", big, "image/jpeg")})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "photo_too_large"
    assert response.json()["error"]["field"] == "photo"
    assert stack.registration_count() == before


def test_body_over_the_cap_is_413_json_from_nginx(http, stack):
    huge = b"\0" * (stack.settings.max_photo_bytes + 3 * 2**20)
    response = http.post(f"{stack.url}/api/registrations", data=VALID, files={"photo": ("id.jpg", huge, "image/jpeg")})
    assert response.status_code == 413
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json()["error"]["code"] == "payload_too_large"


def test_body_over_the_cap_is_413_json_from_the_replica_itself(http, stack):
    # the replica's own limit, for whatever reaches it without nginx's cap in front
    huge = b"\0" * (stack.settings.max_photo_bytes + 3 * 2**20)
    before = stack.registration_count()
    url = f"http://127.0.0.1:{stack.settings.instance_port(1)}/api/registrations"
    response = http.post(url, data=VALID, files={"photo": ("id.jpg", huge, "image/jpeg")})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    assert "MiB for the whole form" in response.json()["error"]["message"]
    assert stack.registration_count() == before


def test_json_body_is_415_with_instructions(http, stack):
    response = http.post(f"{stack.url}/api/registrations", json=VALID)
    assert response.status_code == 415
    assert "multipart/form-data" in response.json()["error"]["message"]


def test_unknown_route_is_a_json_404(http, stack):
    response = http.get(f"{stack.url}/api/nothing-here")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_wrong_method_is_a_json_405(http, stack):
    response = http.delete(f"{stack.url}/api/registrations")
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"
