"""Photo checks without the stack: phones' MPO pictures are JPEGs, pixel bombs are refused."""

import io

import pytest
from PIL import Image

from instance import photos

MAX_BYTES = 5 * 2**20


def _mpo(first=(640, 480), second=(320, 240)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", first, (200, 30, 30)).save(
        out, "MPO", save_all=True, append_images=[Image.new("RGB", second, (30, 30, 200))])
    return out.getvalue()


def _png_of(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("1", (width, height)).save(out, "PNG")  # one bit per pixel compresses to almost nothing
    return out.getvalue()


def test_an_mpo_from_a_phone_is_stored_as_a_plain_jpeg_of_its_first_picture():
    raw = _mpo()
    assert Image.open(io.BytesIO(raw)).format == "MPO"
    photo = photos.prepare(raw, MAX_BYTES)
    assert (photo.content_type, photo.extension) == ("image/jpeg", "jpg")
    stored = Image.open(io.BytesIO(photo.data))
    assert stored.format == "JPEG" and stored.size == (640, 480)
    assert getattr(stored, "n_frames", 1) == 1
    assert stored.getpixel((10, 10))[0] > 150  # the red first picture, not the blue second one


@pytest.mark.parametrize("raw", [b"just some text, not an image", b"<html><script>alert(1)</script></html>"])
def test_bytes_that_are_no_image_are_a_clear_400(raw):
    with pytest.raises(photos.ApiError) as refused:
        photos.prepare(raw, MAX_BYTES)
    assert (refused.value.status, refused.value.code) == (400, "invalid_photo")


# Pillow's own warning (between the cap and twice it) is silenced in production; here pytest resets filters
@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize("size", [(8000, 5001), (10_000, 10_000)], ids=["over the cap", "over twice the cap"])
def test_too_many_pixels_is_a_clear_400(size):
    raw = _png_of(*size)
    assert len(raw) < MAX_BYTES
    with pytest.raises(photos.ApiError) as refused:
        photos.prepare(raw, MAX_BYTES)
    assert (refused.value.status, refused.value.code, refused.value.field) == (400, "invalid_photo", "photo")
    assert "too many pixels" in refused.value.message


def test_the_pixel_cap_is_set_from_the_config(instance_app):
    assert Image.MAX_IMAGE_PIXELS == instance_app.config["MAX_PHOTO_PIXELS"] == photos.MAX_PIXELS


def test_a_pixel_bomb_upload_is_answered_with_json_and_nothing_is_stored(post_registration, photo_store):
    response = post_registration(photo=_png_of(10_000, 10_000))
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_photo"
    assert "too many pixels" in response.get_json()["error"]["message"]
    assert photo_store.photos == {}

