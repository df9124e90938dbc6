"""Photo checks without the stack: the photos people take are stored, at most PHOTO_MAX_SIDE
long and in their own mode; crafted ones (pixel bombs, scan floods, codings no camera writes)
are refused before they cost anything; decodes wait for a slot and keep to a time budget."""

import dataclasses
import io
import struct
import threading

import pytest
from PIL import Image
from werkzeug.exceptions import ServiceUnavailable

from instance import config, photos
from loadtests.hostile_uploads import png_file, progressive_jpeg, restart_flood_jpeg, scan_flood_jpeg, text_bomb_png
from loadtests.workload import make_jpeg

MAX_BYTES = 5 * 2**20
SCAN = b"\xff\xda"


def _mpo(first=(640, 480), second=(320, 240)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", first, (200, 30, 30)).save(
        out, "MPO", save_all=True, append_images=[Image.new("RGB", second, (30, 30, 200))]
    )
    return out.getvalue()


def _png_of(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("1", (width, height)).save(out, "PNG")  # one bit per pixel compresses to almost nothing
    return out.getvalue()


def _saved(image: Image.Image, kind: str, **options) -> bytes:
    out = io.BytesIO()
    image.save(out, kind, **options)
    return out.getvalue()


def _prepare(raw: bytes, max_bytes: int, **kwargs) -> photos.Photo:
    """What a registration does with an upload: the checks without decoding, then the decode."""
    return photos.decode(photos.check(raw, max_bytes, **kwargs))


def _stored(raw: bytes, **kwargs) -> Image.Image:
    return Image.open(io.BytesIO(_prepare(raw, MAX_BYTES, **kwargs).data))


def _refused(raw: bytes, **kwargs) -> photos.ApiError:
    with pytest.raises(photos.ApiError) as refused:
        _prepare(raw, MAX_BYTES, **kwargs)
    assert (refused.value.status, refused.value.code, refused.value.field) == (400, "invalid_photo", "photo")
    assert refused.value.message.endswith(".")
    return refused.value


# --- photos people take ------------------------------------------------------------------


def test_an_mpo_from_a_phone_is_stored_as_a_plain_jpeg_of_its_first_picture():
    raw = _mpo()
    assert Image.open(io.BytesIO(raw)).format == "MPO"
    photo = _prepare(raw, MAX_BYTES)
    assert (photo.content_type, photo.extension) == ("image/jpeg", "jpg")
    stored = Image.open(io.BytesIO(photo.data))
    assert stored.format == "JPEG" and stored.size == (640, 480)
    assert getattr(stored, "n_frames", 1) == 1
    assert stored.getpixel((10, 10))[0] > 150  # the red first picture, not the blue second one


def test_a_phone_photo_of_12_megapixels_is_stored_at_the_longest_side_allowed():
    raw = make_jpeg(4000, 3000, 92)  # grain and all: about 4 MiB, as phones write them
    assert 3 * 2**20 < len(raw) <= MAX_BYTES
    stored = _stored(raw)
    assert (stored.format, stored.mode, stored.size) == ("JPEG", "RGB", (2000, 1500))


def test_an_mpo_of_a_phone_is_shrunk_too():
    stored = _stored(_mpo(first=(4032, 3024)))
    assert stored.format == "JPEG" and max(stored.size) == 2000


def test_an_exif_rotated_photo_is_stored_upright_and_shrunk():
    photo = Image.new("RGB", (4000, 3000), (240, 240, 240))
    photo.paste((200, 20, 20), (0, 0, 400, 400))  # a red corner, top left as the sensor saw it
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned 90 degrees clockwise
    stored = _stored(_saved(photo, "JPEG", exif=exif.tobytes()))
    assert stored.size == (1500, 2000)
    assert stored.getpixel((1450, 50))[0] > 150 and stored.getpixel((50, 50))[1] > 150  # now top right
    assert not stored.getexif()


def test_a_photo_whose_exif_holds_a_tag_of_the_wrong_type_is_stored_upright():
    # orientation 6, and an XResolution of type UNDEFINED: Pillow reads it, but cannot write it
    # back, which made ImageOps.exif_transpose raise TypeError (a 500)
    ifd = struct.pack("<HHHIHH", 2, 0x0112, 3, 1, 6, 0) + struct.pack("<HHII", 0x011A, 7, 4, 38) + bytes(4)
    exif = b"II*\x00" + struct.pack("<I", 8) + ifd + bytes(range(16))
    stored = _stored(_saved(Image.new("RGB", (400, 300), (240, 240, 240)), "JPEG", exif=b"Exif\x00\x00" + exif))
    assert stored.size == (300, 400)


@pytest.mark.parametrize("mode, size", [("RGBA", (2560, 1600)), ("RGB", (1170, 2532))], ids=["desktop", "phone"])
def test_a_png_screenshot_is_stored_as_a_png_at_most_the_longest_side(mode, size):
    shot = Image.new(mode, size, (250, 250, 250))
    shot.paste((30, 90, 200), (0, 0, size[0], 120))  # a title bar
    stored = _stored(_saved(shot, "PNG"))
    assert (stored.format, stored.mode) == ("PNG", mode)
    assert max(stored.size) == 2000 and abs(stored.size[0] / stored.size[1] - size[0] / size[1]) < 0.01


@pytest.mark.parametrize(
    "raw, kind, mode",
    [
        (_saved(Image.new("L", (3000, 2000), 90), "JPEG"), "JPEG", "L"),
        (_saved(Image.new("1", (800, 600), 1), "PNG"), "PNG", "1"),
        (_saved(Image.new("1", (3000, 2000), 1), "PNG"), "PNG", "L"),  # shrunk: smooth grey, never RGBA
        (_saved(Image.new("L", (640, 480), 90), "PNG"), "PNG", "L"),
        (png_file(640, 480, 8, 3, extra=[(b"PLTE", bytes(range(256)) * 3)]), "PNG", "P"),
    ],
    ids=["grey jpeg", "1-bit png", "large 1-bit png", "grey png", "palette png"],
)
def test_grey_1_bit_and_palette_images_are_not_widened(raw, kind, mode):
    stored = _stored(raw)
    assert (stored.format, stored.mode) == (kind, mode)


def test_a_16_bit_png_keeps_its_grey_levels():
    grey = Image.new("I;16", (640, 480), 30000)
    stored = _stored(_saved(grey, "PNG"))
    assert stored.mode == "I;16" and stored.getpixel((10, 10)) == 30000  # not clipped to white


@pytest.mark.parametrize(
    "raw",
    [
        _saved(Image.new("RGB", (3000, 2000), (20, 120, 40)), "JPEG", progressive=True),
        _saved(Image.new("CMYK", (3000, 2000), (10, 200, 30, 5)), "JPEG"),
        png_file(3000, 2000, 8, 6, interlace=1),
        png_file(1200, 900, 16, 2),
        progressive_jpeg(640, 480, scans=99, components=3),  # with its DC scan: 100, the limit
    ],
    ids=["progressive jpeg", "cmyk jpeg", "interlaced png", "16-bit rgb png", "100 scans"],
)
def test_unusual_but_real_files_are_stored(raw):
    stored = _stored(raw)
    assert stored.format in ("JPEG", "PNG") and max(stored.size) <= 2000
    assert stored.mode in ("RGB", "RGBA", "L")  # CMYK is shown by browsers as RGB


def test_a_png_with_a_little_text_is_stored_without_it():
    raw = png_file(640, 480, 8, 2, extra=[(b"tEXt", b"Software\0Screenshot tool")])
    stored = _stored(raw)
    assert stored.format == "PNG" and not stored.text


# --- crafted files ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, message",
    [
        (b"just some text, not an image", "not a readable JPEG or PNG"),
        (b"<html><script>alert(1)</script></html>", "not a readable JPEG or PNG"),
        (b"\xff\xd8\xff" + b"\xff" * 100_000, "not a readable JPEG or PNG"),
        # Pillow would skip them one at a time, in Python
        (make_jpeg(400, 300)[:2] + b"\xff" * 100_000 + make_jpeg(400, 300)[2:], "belong to no segment"),
    ],
)
def test_bytes_that_are_no_image_are_a_clear_400(raw, message):
    assert message in _refused(raw).message


# Pillow's own warning (between the cap and twice it) is silenced in production; here pytest resets filters
@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize("size", [(8000, 5001), (10_000, 10_000)], ids=["over the cap", "over twice the cap"])
def test_too_many_pixels_is_a_clear_400(size):
    raw = _png_of(*size)
    assert len(raw) < MAX_BYTES
    assert "too many pixels" in _refused(raw).message


@pytest.mark.parametrize("size", [600_000, 1_200_000, MAX_BYTES - 4096], ids=["0.6 MB", "1.2 MB", "5 MiB"])
def test_a_progressive_jpeg_flooded_with_scans_is_refused_before_decoding(size):
    raw = scan_flood_jpeg(size)  # decoded, each of these would cost 15 s of CPU or more
    assert raw.count(SCAN) > 10_000 and len(raw) <= size
    assert Image.open(io.BytesIO(raw)).info["progressive"]
    assert "more than 100 scans" in _refused(raw).message


def test_one_scan_over_the_limit_is_refused():
    raw = progressive_jpeg(640, 480, scans=100, components=3)
    assert raw.count(SCAN) == 101
    assert "more than 100 scans" in _refused(raw).message


def test_a_jpeg_flooded_with_segments_is_refused():
    real = make_jpeg(400, 300)
    raw = real[:2] + b"\xff\xfe\x00\x03x" * 5000 + real[2:]  # 5,000 comments
    assert "segments" in _refused(raw).message


@pytest.mark.parametrize("coding", [0xC9, 0xCA, 0xC3], ids=["arithmetic", "progressive arithmetic", "lossless"])
def test_jpeg_codings_no_camera_writes_are_refused(coding):
    assert "coding" in _refused(progressive_jpeg(640, 480, scans=5, coding=coding)).message


def test_a_progressive_jpeg_whose_coefficients_need_too_much_memory_is_refused():
    # 36 Mpx in three full-resolution components: libjpeg would keep 216 MB of coefficients
    raw = progressive_jpeg(8000, 4500, scans=5, components=3)
    assert len(raw) < 400_000
    assert "MiB to decode" in _refused(raw).message


@pytest.mark.parametrize(
    "raw",
    [
        png_file(6300, 6300),  # 1 bit per pixel
        png_file(3163, 3163, 8, 6),  # RGBA, just over the decode budget of 10 Mpx
        png_file(6300, 6300, 8, 2, interlace=1),
    ],
    ids=["1-bit 40 Mpx", "rgba 10 Mpx", "interlaced rgb 40 Mpx"],
)
def test_a_tiny_png_declaring_a_huge_bitmap_is_refused_before_decoding(raw):
    assert len(raw) < 400_000
    assert "The PNG is too large" in _refused(raw).message


def test_a_png_whose_text_inflates_to_megabytes_is_refused():
    raw = text_bomb_png(2)
    assert len(raw) < 10_000
    assert "too much text" in _refused(raw).message


def test_a_png_flooded_with_chunks_is_refused():
    raw = png_file(64, 64, 8, 2, extra=[(b"zzZz", b"")] * 20_000)
    assert "chunks" in _refused(raw).message


# --- slots and time budget ------------------------------------------------------------------


def test_a_photo_that_finds_no_free_decode_slot_is_a_503_with_retry_after():
    limits = photos.Limits(decodes=1, decode_wait=0.05)
    assert limits.slots.acquire(timeout=1)  # another request is decoding
    try:
        with pytest.raises(ServiceUnavailable) as busy:
            _prepare(make_jpeg(400, 300), MAX_BYTES, limits=limits)
        assert busy.value.retry_after == 4
    finally:
        limits.slots.release()
    assert _prepare(make_jpeg(400, 300), MAX_BYTES, limits=limits).data  # free again


def test_a_photo_whose_decode_costs_more_cpu_than_its_budget_is_refused():
    # passes the scan limit set here; each block Pillow reads costs the decoder a quarter second of CPU
    raw = progressive_jpeg(2000, 2000, scans=9000)
    limits = photos.Limits(max_scans=10**6, decode_seconds=30, decode_cpu_seconds=0.1)
    assert "too long to decode" in _refused(raw, limits=limits).message
    assert limits.slots.acquire(timeout=0)  # the slot was given back
    limits.slots.release()


def test_a_quick_decode_asks_for_its_cpu_time_once_not_at_every_read(monkeypatch):
    # the CPU clock is a system call; Pillow reads a JPEG's header in dozens of small reads
    calls = []
    thread_time = photos.time.thread_time
    monkeypatch.setattr(photos.time, "thread_time", lambda: calls.append(1) or thread_time())
    monkeypatch.setattr(photos, "CPU_CHECK_INTERVAL", 60)  # no decode here takes a minute
    assert _prepare(make_jpeg(400, 300), MAX_BYTES, limits=photos.Limits()).data
    assert len(calls) <= 2


def test_a_photo_past_its_deadline_in_wall_time_is_a_503():
    limits = photos.Limits(decodes=1, decode_wait=5, decode_seconds=0.2)
    assert limits.slots.acquire(timeout=1)
    threading.Timer(0.4, limits.slots.release).start()  # the slot frees up after the deadline
    with pytest.raises(ServiceUnavailable):
        _prepare(make_jpeg(400, 300), MAX_BYTES, limits=limits)
    assert limits.slots.acquire(timeout=0)
    limits.slots.release()


# --- the app ------------------------------------------------------------------------------


def test_the_pixel_cap_is_set_from_the_config(instance_app):
    assert Image.MAX_IMAGE_PIXELS == instance_app.config["MAX_PHOTO_PIXELS"] == photos.MAX_PIXELS


def test_the_limits_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("PHOTO_MAX_SIDE", "1600")
    monkeypatch.setenv("PHOTO_DECODE_SECONDS", "2.5")
    monkeypatch.setenv("PHOTO_DECODE_CPU_SECONDS", "1.25")
    monkeypatch.setenv("GUNICORN_WORKERS", "64")
    settings = config.from_env()
    limits = photos.Limits.from_config(settings)
    assert (limits.max_side, limits.decode_seconds, limits.decode_cpu_seconds, limits.max_scans) == (
        1600,
        2.5,
        1.25,
        100,
    )
    assert limits.decodes == 1  # more workers than CPUs: still one decode at a time each
    monkeypatch.setenv("PHOTO_DECODES", "3")
    assert photos.Limits.from_config(config.from_env()).decodes == 3


def test_a_pixel_bomb_upload_is_answered_with_json_and_nothing_is_stored(post_registration, photo_store):
    response = post_registration(photo=_png_of(10_000, 10_000))
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_photo"
    assert "too many pixels" in response.get_json()["error"]["message"]
    assert photo_store.photos == {}


def test_a_busy_replica_answers_503_json_with_retry_after_and_stores_nothing(
    instance_app, post_registration, photo_store
):
    instance_app.config["PHOTO_DECODE_WAIT_SECONDS"] = 0.05
    with instance_app.app_context():
        limits = photos.get_limits()
    assert limits.decode_wait == 0.05 and limits.slots.acquire(timeout=1)
    try:
        response = post_registration()
    finally:
        limits.slots.release()
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "4"
    assert response.get_json()["error"]["code"] == "service_unavailable"
    assert "nothing was stored" in response.get_json()["error"]["message"]
    assert photo_store.photos == {}


# --- the structure check's own cost ---------------------------------------------------------


def test_restart_markers_in_a_jpeg_header_are_refused_as_junk_before_they_cost_anything():
    # 2.6 million of them made the marker scan loop for a second, then Pillow's for the whole budget
    assert "belong to no segment" in _refused(restart_flood_jpeg(MAX_BYTES - 4096)).message


def test_a_jpeg_with_a_restart_marker_at_every_block_is_stored():
    # about 4,000 restart markers amid the scan (one per 16x16 block): not segments, so no limit
    # of the header applies
    raw = _saved(Image.new("RGB", (1000, 1000), (90, 120, 150)), "JPEG", restart_marker_blocks=1)
    assert sum(raw.count(bytes([0xFF, code])) for code in range(0xD0, 0xD8)) > photos.MAX_JPEG_SEGMENTS
    assert _stored(raw).size == (1000, 1000)


def test_the_cpu_the_structure_check_took_counts_against_the_decode_budget(monkeypatch):
    monkeypatch.setattr(photos, "CPU_CHECK_INTERVAL", 0)  # this decode is quicker than the interval
    checked = photos.check(make_jpeg(400, 300), MAX_BYTES, limits=photos.Limits())
    with pytest.raises(photos.ApiError) as refused:
        photos.decode(dataclasses.replace(checked, cpu_started=checked.cpu_started - checked.limits.decode_cpu_seconds))
    assert "too long to decode" in refused.value.message
