"""Crafted photos through nginx: a clear JSON 400 naming the photo, and nothing stored; the
photos people take still register, stored at most PHOTO_MAX_SIDE long."""

import io
import uuid

import pytest
from PIL import Image

from forms import register
from loadtests.hostile_uploads import png_file, progressive_jpeg, restart_flood_jpeg, scan_flood_jpeg, text_bomb_png
from loadtests.workload import make_jpeg

MAX_SIDE = 2000  # PHOTO_MAX_SIDE's default

CRAFTED = {
    # id: (bytes, file name, content type, what the message says)
    "scan flood 0.6 MB": (lambda: scan_flood_jpeg(600_000), "id.jpg", "image/jpeg", "scans"),
    "scan flood 1.2 MB": (lambda: scan_flood_jpeg(1_200_000), "id.jpg", "image/jpeg", "scans"),
    "scan flood 5 MiB": (lambda: scan_flood_jpeg(5 * 2**20 - 4096), "id.jpg", "image/jpeg", "scans"),
    "restart flood 5 MiB": (lambda: restart_flood_jpeg(5 * 2**20 - 4096), "id.jpg", "image/jpeg", "no segment"),
    "5 KB png of 40 Mpx": (lambda: png_file(6300, 6300), "id.png", "image/png", "too large"),
    "png text bomb": (lambda: text_bomb_png(2), "id.png", "image/png", "text"),
    "arithmetic jpeg": (lambda: progressive_jpeg(640, 480, 5, coding=0xCA), "id.jpg", "image/jpeg", "coding"),
    "progressive coefficient bomb": (
        lambda: progressive_jpeg(8000, 4500, 5, components=3),
        "id.jpg",
        "image/jpeg",
        "MiB to decode",
    ),
}


@pytest.mark.parametrize("case", CRAFTED, ids=list(CRAFTED))
def test_a_crafted_photo_is_a_json_400_and_nothing_is_stored(http, stack, case):
    build, filename, content_type, says = CRAFTED[case]
    marker = f"crafted-{uuid.uuid4().hex}"
    photos_before, records_before = stack.photo_count(), stack.registration_count()

    response = register(http, stack, name=f"Eve {marker}", photo=build(), filename=filename, content_type=content_type)

    assert response.status_code == 400, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    error = response.json()["error"]
    assert (error["code"], error["field"]) == ("invalid_photo", "photo")
    assert says in error["message"] and error["message"].endswith(".")
    assert stack.db.registrations.count_documents({"name": {"$regex": marker}}) == 0
    assert stack.registration_count() == records_before
    assert stack.photo_count() == photos_before


def _stored_photo(http, stack, body: dict) -> Image.Image:
    answer = http.get(f"{stack.url}/api/registrations/{body['id']}/photo", auth=stack.admin, timeout=30)
    assert answer.status_code == 200
    return Image.open(io.BytesIO(answer.content))


def test_a_phone_photo_of_4_mib_registers_shrunk_to_the_longest_side(http, stack):
    raw = make_jpeg(4000, 3000, 92)
    assert len(raw) > 3 * 2**20
    response = register(http, stack, photo=raw)
    assert response.status_code == 201, response.text
    stored = _stored_photo(http, stack, response.json())
    assert (stored.format, stored.size) == ("JPEG", (MAX_SIDE, MAX_SIDE * 3 // 4))


def test_an_exif_rotated_photo_registers_upright(http, stack):
    exif = Image.Exif()
    exif[0x0112] = 8  # shown turned 90 degrees counter-clockwise
    out = io.BytesIO()
    Image.new("RGB", (3000, 2000), (90, 140, 200)).save(out, "JPEG", exif=exif.tobytes())
    response = register(http, stack, photo=out.getvalue())
    assert response.status_code == 201, response.text
    assert _stored_photo(http, stack, response.json()).size == (MAX_SIDE * 2 // 3, MAX_SIDE)


def test_a_png_screenshot_registers_as_a_png(http, stack):
    shot = Image.new("RGBA", (2880, 1800), (245, 245, 245, 255))
    shot.paste((20, 60, 160, 255), (0, 0, 2880, 90))
    out = io.BytesIO()
    shot.save(out, "PNG")
    response = register(http, stack, photo=out.getvalue(), filename="screenshot.png", content_type="image/png")
    assert response.status_code == 201, response.text
    stored = _stored_photo(http, stack, response.json())
    assert (stored.format, stored.mode, stored.size) == ("PNG", "RGBA", (MAX_SIDE, 1250))
