"""ID-card photos: proven to be images by decoding them, then re-encoded without metadata.

The file name and the client's content type say nothing (HTML can hide behind image/jpeg), so
the bytes are decoded with Pillow. Re-encoding drops EXIF (GPS, device serials), XMP, comments
and text chunks; the orientation EXIF carried is applied to the pixels first (unreadable EXIF is
ignored, as browsers do; anything else Pillow raises on a file is a 400). Phones'
multi-picture JPEGs (MPO) are accepted as JPEG: only the first, main picture is kept.

Every upload has a bounded cost, because a few kilobytes can ask a decoder for minutes of CPU
(a progressive JPEG of thousands of scans walks the whole image once per scan) or gigabytes (a
PNG of 40 megapixels that compresses to 5 KB):
* the file's structure is read first, without decoding: only baseline and progressive Huffman
  JPEGs (what cameras, phones and browsers write) with at most `max_scans` scans, and PNGs
  whose declared bitmap fits the decode budget; the rest is refused before any pixel is made;
* JPEGs are decoded at 1/2, 1/4 or 1/8 scale when that still gives `max_side` pixels, and
  every photo is stored at most `max_side` pixels long: an ID photo needs no more;
* 1-bit, grey and 16-bit images keep their mode; nothing is widened to RGBA;
* a process decodes at most `decodes` photos at once; a photo that waits longer than
  `decode_wait` for its turn is answered 503 with Retry-After;
* a decode is checked against its time budget at every block Pillow reads or writes and
  between its steps: past `decode_cpu_seconds` of CPU, counted from the start of check(), the
  photo is refused (400): a phone's photo takes a quarter of it; past `decode_seconds` in wall
  time (waiting for a slot included) it is answered 503, as the machine was too busy. So no
  upload costs much more CPU than the budget (one step, at most a shrink, runs past it), and no
  request's decoding outlives its client by more than a few seconds.
"""

from __future__ import annotations

import io
import logging
import math
import re
import struct
import threading
import time
import warnings
from dataclasses import dataclass, field

from flask import current_app, has_app_context
from PIL import ExifTags, Image, PngImagePlugin, UnidentifiedImageError
from werkzeug.exceptions import ServiceUnavailable

from common.errors import ApiError

log = logging.getLogger(__name__)

ACCEPTED = {"JPEG": ("image/jpeg", "jpg"), "PNG": ("image/png", "png")}
# no other decoder ever sees the bytes. Not "MPO": Pillow registers no opener of that name (the
# JPEG one returns an MPO image when it finds several pictures), and an unknown name is a KeyError.
OPENED = ["JPEG", "PNG"]
# a 5 MiB JPEG can decode to a huge bitmap (decompression bomb); ID photos need far less.
# The default of MAX_PHOTO_PIXELS.
MAX_PIXELS = 40_000_000
TOO_MANY_PIXELS = "The photo has too many pixels for an ID card picture."
UNREADABLE = "The file is not a readable JPEG or PNG image."
# Real JPEGs have a dozen segments besides their scans (progressive ones also a table per scan),
# PNGs a few hundred chunks (encoders write 8-64 KiB of pixels per chunk). Pillow parses each in
# Python, holding the GIL.
MAX_JPEG_SEGMENTS = 1000
MAX_JPEG_HEADER_JUNK = 1024
MAX_PNG_CHUNKS = 20_000
# Text chunks are dropped anyway; Pillow's default lets them inflate to 64 MiB per image.
PNG_TEXT_MEMORY = 2**20
# Pillow feeds the decoder this much input at a time (its default: 64 KiB) and the time budget
# is checked between blocks: 16 KiB of a PNG inflate to at most 16 MiB of pixels.
READ_BLOCK = 16 * 2**10


def set_pixel_cap(max_pixels: int) -> None:
    """Pillow's own guard, process-wide and set once: Image.open refuses more than twice this
    before decoding. check() refuses more than this itself, so Pillow's warning between the
    two says nothing new (and toggling warning filters per request is not thread-safe)."""
    Image.MAX_IMAGE_PIXELS = max_pixels
    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


set_pixel_cap(MAX_PIXELS)
PngImagePlugin.MAX_TEXT_MEMORY = PNG_TEXT_MEMORY


@dataclass
class Limits:
    """What one photo may cost, and the process's decode slots (defaults: instance/config.py)."""

    max_side: int = 2000
    decode_max_pixels: int = 10_000_000
    max_scans: int = 100
    decodes: int = 1
    decode_wait: float = 2.0
    decode_seconds: float = 4.0
    decode_cpu_seconds: float = 0.3
    slots: threading.BoundedSemaphore = field(init=False, repr=False)

    def __post_init__(self):
        self.slots = threading.BoundedSemaphore(self.decodes)

    @classmethod
    def from_config(cls, config) -> Limits:
        return cls(
            config["PHOTO_MAX_SIDE"],
            config["PHOTO_DECODE_MAX_PIXELS"],
            config["PHOTO_MAX_SCANS"],
            config["PHOTO_DECODES"],
            config["PHOTO_DECODE_WAIT_SECONDS"],
            config["PHOTO_DECODE_SECONDS"],
            config["PHOTO_DECODE_CPU_SECONDS"],
        )


_DEFAULT_LIMITS = Limits()
_LIMITS_LOCK = threading.Lock()


def get_limits() -> Limits:
    """The app's limits (and decode slots), built on first use: one set per app, so per process."""
    if not has_app_context():
        return _DEFAULT_LIMITS
    extensions = current_app.extensions
    limits = extensions.get("photo_limits")
    if limits is None:
        with _LIMITS_LOCK:
            limits = extensions.setdefault("photo_limits", Limits.from_config(current_app.config))
    return limits


@dataclass(frozen=True)
class Photo:
    data: bytes
    content_type: str
    extension: str


def _invalid(message: str) -> ApiError:
    return ApiError(400, "invalid_photo", message, "photo")


def _too_costly(reason: str, message: str) -> ApiError:
    # the access log has the 400; this says which limit an attack ran into
    log.warning("photo refused: %s", reason, extra={"reason": reason})
    return _invalid(message)


# --- the structure, read without decoding ---------------------------------------------

# A marker is 0xFF and a code (after any number of 0xFF fill bytes); 0xFF 0x00 in entropy-coded
# data is a stuffed byte. libjpeg finds markers the same way, skipping anything else in between.
# Not r"\xff+(.)": on a run of 0xFF bytes that would backtrack quadratically.
_MARKER = re.compile(rb"\xff([^\x00\xff])")
_STANDALONE = {0x01, *range(0xD0, 0xD8)}  # TEM and the restart markers carry no length
# Once the scans begin, restart markers may come every few bytes (a camera may restart at every
# block): the search skips them, and whatever else lies in the entropy-coded data, in C. So the
# loop below runs once per segment or scan, each counted against a limit, whatever the file holds.
_MARKER_AMID_SCANS = re.compile(rb"\xff([^\x00\xff\x01\xd0-\xd7])")
_HUFFMAN_FRAMES = {0xC0, 0xC1, 0xC2}  # baseline, extended sequential, progressive
_OTHER_FRAMES = {0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}  # lossless, hierarchical, arithmetic


@dataclass(frozen=True)
class _Jpeg:
    size: tuple[int, int]
    progressive: bool
    scans: int
    coefficients: int  # every component's samples: what a multi-scan decode keeps in memory


def _inspect_jpeg(raw: bytes, limits: Limits) -> _Jpeg:
    """The first picture's frame and scan count, from its markers (an MPO's others follow its EOI)."""
    pos, segments, scans, junk, frame = 2, 0, 0, 0, None
    while (found := (_MARKER_AMID_SCANS if scans else _MARKER).search(raw, pos)) is not None:
        code = found.group(1)[0]
        if not scans:
            # Pillow reads the header itself, in Python, a byte or a marker at a time; a
            # restart marker belongs in a scan, so in the header it is junk too
            junk += found.start() - pos + (found.end() - found.start() if code in _STANDALONE else 0)
            if junk > MAX_JPEG_HEADER_JUNK:
                raise _invalid("The JPEG is damaged: its header has bytes that belong to no segment.")
        pos = found.end()
        if code in _STANDALONE:
            continue
        if code in (0xD8, 0xD9) or pos + 2 > len(raw):
            break  # the end of the picture (or a damaged one: the decoder says which)
        segments += code != 0xDA  # scans have their own limit
        if segments > MAX_JPEG_SEGMENTS:
            raise _too_costly(
                "jpeg segments",
                f"The JPEG has more than {MAX_JPEG_SEGMENTS} segments; "
                "no camera writes that. Please send the photo as taken.",
            )
        length = int.from_bytes(raw[pos : pos + 2], "big")
        if code in _OTHER_FRAMES or (code in _HUFFMAN_FRAMES and frame):
            raise _invalid(
                "The JPEG uses a coding that cameras and browsers do not (lossless, hierarchical "
                "or arithmetic); please send it as a normal JPEG or PNG."
            )
        if code in _HUFFMAN_FRAMES:
            frame = _frame(raw[pos + 2 : pos + length], progressive=code == 0xC2)
        elif code == 0xDA:
            scans += 1
            if scans > limits.max_scans:
                raise _too_costly(
                    "jpeg scans",
                    f"The JPEG has more than {limits.max_scans} scans; decoding it "
                    "would take far too long. Please send the photo as taken.",
                )
        pos += length
    if frame is None:
        raise _invalid(UNREADABLE)
    return _Jpeg(frame[0], frame[1], scans, frame[2])


def _frame(payload: bytes, progressive: bool) -> tuple[tuple[int, int], bool, int]:
    if len(payload) < 6:
        raise _invalid(UNREADABLE)
    precision, height, width, count = struct.unpack_from(">BHHB", payload)
    sampling = [(payload[7 + 3 * n] >> 4, payload[7 + 3 * n] & 15) for n in range(count) if 8 + 3 * n < len(payload)]
    if (
        precision != 8
        or not width
        or not height
        or count not in (1, 3, 4)
        or len(sampling) != count
        or not all(1 <= h <= 4 and 1 <= v <= 4 for h, v in sampling)
    ):
        raise _invalid("The JPEG is not an 8-bit grey, colour or CMYK picture that can be read.")
    max_h, max_v = max(h for h, _ in sampling), max(v for _, v in sampling)
    mcus = math.ceil(width / (8 * max_h)) * math.ceil(height / (8 * max_v))
    return (width, height), progressive, mcus * 64 * sum(h * v for h, v in sampling)


def _inspect_png(raw: bytes) -> tuple[int, int]:
    """The declared size, after walking the chunks (their lengths only: nothing is inflated)."""
    if raw[12:16] != b"IHDR" or len(raw) < 33:
        raise _invalid(UNREADABLE)
    size = struct.unpack_from(">II", raw, 16)
    pos, chunks = 8, 0
    while pos + 8 <= len(raw):
        length, kind = struct.unpack_from(">I4s", raw, pos)
        chunks += 1
        if chunks > MAX_PNG_CHUNKS:
            raise _too_costly(
                "png chunks",
                f"The PNG has more than {MAX_PNG_CHUNKS} chunks; no camera or "
                "screenshot tool writes that. Please send the picture as taken.",
            )
        if kind == b"IEND":
            break
        pos += 12 + length
    return size


def _check_structure(raw: bytes, max_pixels: int, limits: Limits) -> _Jpeg | None:
    jpeg = _inspect_jpeg(raw, limits) if raw[:3] == b"\xff\xd8\xff" else None
    if raw[:8] == b"\x89PNG\r\n\x1a\n":
        width, height = _inspect_png(raw)
    elif jpeg:
        width, height = jpeg.size
    else:
        raise _invalid(UNREADABLE)
    if width * height > max_pixels:
        raise _invalid(TOO_MANY_PIXELS)
    mib = 4 * limits.decode_max_pixels / 2**20
    if not jpeg and width * height > limits.decode_max_pixels:
        # a PNG cannot be decoded at a reduced scale: all of it would be in memory at once
        raise _too_costly(
            "png pixels",
            f"The PNG is too large ({width}x{height} pixels); at most "
            f"{limits.decode_max_pixels / 1e6:.1f} megapixels. "
            "Please send a smaller picture or a JPEG.",
        )
    if jpeg and (jpeg.progressive or jpeg.scans > 1) and 2 * jpeg.coefficients > 4 * limits.decode_max_pixels:
        # libjpeg keeps every coefficient of a multi-scan JPEG until the last scan, whatever the scale
        raise _too_costly(
            "jpeg coefficients",
            f"The progressive JPEG ({width}x{height} pixels) needs more than "
            f"{mib:.0f} MiB to decode. Please send a smaller or a "
            "baseline JPEG.",
        )
    return jpeg


# --- decoding on a budget -----------------------------------------------------------------


class _OverBudget(Exception):  # noqa: N818 - not an error of the file: raised to stop Pillow mid-decode
    def __init__(self, costly: bool):
        super().__init__()
        self.costly = costly


# A thread's CPU time is a system call (a few microseconds, holding the GIL), and Pillow reads a
# JPEG's header a byte or a segment at a time: asking at every read was 5 % of a replica's CPU at
# saturation. A thread cannot use more CPU than wall time, so asking once per this much wall time
# finds an overrun at most this late.
CPU_CHECK_INTERVAL = 0.01


class _Budget:
    """The CPU time from the start of check() (this thread's only; decoders release the GIL, so
    other requests' work is not counted) and the wall time from the start of decode(), waiting
    for a slot included."""

    def __init__(self, limits: Limits, cpu_started: float):
        self.cpu_seconds = limits.decode_cpu_seconds
        now = time.monotonic()
        self.deadline = now + limits.decode_seconds
        self.next_cpu_check = now + CPU_CHECK_INTERVAL
        self.cpu_started = cpu_started

    def check(self) -> None:
        now = time.monotonic()
        if now >= self.next_cpu_check or now > self.deadline:
            self.next_cpu_check = now + CPU_CHECK_INTERVAL
            if time.thread_time() - self.cpu_started > self.cpu_seconds:
                raise _OverBudget(costly=True)
        if now > self.deadline:
            raise _OverBudget(costly=False)


class _BudgetedBytes(io.BytesIO):
    """Pillow reads its input and writes its output in blocks: each is a checkpoint."""

    def __init__(self, budget: _Budget, initial: bytes = b""):
        super().__init__(initial)
        self.budget = budget

    def read(self, size: int | None = -1) -> bytes:
        self.budget.check()
        return super().read(size)

    def write(self, data) -> int:
        self.budget.check()
        return super().write(data)


@dataclass(frozen=True)
class Checked:
    """An upload whose structure passed: what decode() needs, with nothing decoded yet."""

    raw: bytes
    jpeg: _Jpeg | None
    max_pixels: int
    limits: Limits
    cpu_started: float  # this thread's CPU clock when check() began


def check(raw: bytes, max_bytes: int, max_pixels: int = MAX_PIXELS, limits: Limits | None = None) -> Checked:
    """Refuses what can be refused without decoding (empty, too large, not a well-formed JPEG or
    PNG, too many pixels, too costly to decode): cheap, so it comes before anything else is
    asked of the database."""
    cpu_started = time.thread_time()
    limits = limits or get_limits()
    if not raw:
        raise ApiError(400, "missing_field", "The photo file is empty.", "photo")
    if len(raw) > max_bytes:
        raise ApiError(413, "photo_too_large", f"The photo must be at most {max_bytes / 2**20:g} MiB.", "photo")
    return Checked(raw, _check_structure(raw, max_pixels, limits), max_pixels, limits, cpu_started)


def decode(checked: Checked) -> Photo:
    """The photo decoded on its budget, which starts now (its wait for a decode slot included),
    and re-encoded without metadata."""
    raw, jpeg, max_pixels, limits = checked.raw, checked.jpeg, checked.max_pixels, checked.limits
    budget = _Budget(limits, checked.cpu_started)
    retry_after = max(1, math.ceil(limits.decode_seconds))
    if not limits.slots.acquire(timeout=limits.decode_wait):
        raise ServiceUnavailable(
            "Too many photos are being checked right now; nothing was stored. "
            f"Please try again in {retry_after} seconds.",
            retry_after=retry_after,
        )
    try:
        return _decode(raw, jpeg, max_pixels, limits, budget)
    except _OverBudget as over:
        if over.costly:
            raise _too_costly(
                "decode time", "The photo takes too long to decode; please send it as the camera or phone saved it."
            ) from None
        raise ServiceUnavailable(
            "The server is too busy to check the photo right now; nothing was stored. "
            f"Please try again in {retry_after} seconds.",
            retry_after=retry_after,
        ) from None
    finally:
        limits.slots.release()


def _decode(raw: bytes, jpeg: _Jpeg | None, max_pixels: int, limits: Limits, budget: _Budget) -> Photo:
    try:
        with Image.open(_BudgetedBytes(budget, raw), formats=OPENED) as image:
            if image.width * image.height > max_pixels:
                raise _invalid(TOO_MANY_PIXELS)
            # an MPO is a JPEG with more pictures appended; the first (shown) one is the photo
            kind = "JPEG" if image.format == "MPO" else image.format
            if jpeg and image.size != jpeg.size:
                raise _invalid(UNREADABLE)  # Pillow found another frame than the one that was checked
            if kind == "JPEG":
                _draft(image, limits)
            image.decodermaxblock = READ_BLOCK
            image.load()  # the pixels themselves: finds truncated and damaged files
            budget.check()
            image = _shrink(image, limits.max_side)
            budget.check()
            image = _upright(image)
            return _reencode(image, kind, budget)
    except (ApiError, _OverBudget):
        raise
    except Image.DecompressionBombError:
        raise _invalid(TOO_MANY_PIXELS) from None
    except UnidentifiedImageError:
        raise _invalid(UNREADABLE) from None
    except ValueError as error:
        if "text" in str(error):  # Pillow's PNG text limits (MAX_TEXT_CHUNK, MAX_TEXT_MEMORY)
            raise _too_costly("png text", "The PNG carries too much text (metadata) to be checked.") from None
        raise _invalid(f"The image is damaged or incomplete ({error.__class__.__name__}).") from None
    except (OSError, SyntaxError, struct.error, IndexError) as error:  # truncated or corrupt data
        raise _invalid(f"The image is damaged or incomplete ({error.__class__.__name__}).") from None
    except Exception as error:
        # Pillow's parsers raise whatever hostile bytes lead them to (TypeError, KeyError,
        # ZeroDivisionError...): the file's fault, so a 400; logged with its trace, in case
        # it was ours
        log.warning("photo decode raised %s", error.__class__.__name__, exc_info=True)
        raise _invalid(f"The image is damaged or incomplete ({error.__class__.__name__}).") from None


def _draft(image: Image.Image, limits: Limits) -> None:
    """Let libjpeg decode at the smallest of 1/1, 1/2, 1/4 and 1/8 that still gives max_side
    pixels, or a smaller one if that bitmap would not fit the decode budget."""
    width, height = image.size
    scale = 1
    for candidate in (2, 4, 8):
        if (
            max(width, height) // candidate >= limits.max_side
            or math.ceil(width / scale) * math.ceil(height / scale) > limits.decode_max_pixels
        ):
            scale = candidate
    if math.ceil(width / scale) * math.ceil(height / scale) > limits.decode_max_pixels:
        raise _too_costly("jpeg pixels", TOO_MANY_PIXELS)
    if scale > 1:
        # asked for (size // scale), Pillow picks exactly this scale (and keeps the colour mode)
        image.draft(None, (max(1, width // scale), max(1, height // scale)))


# EXIF orientation -> the transposition that shows the picture upright (ImageOps.exif_transpose's
# table). Not exif_transpose itself: it also re-serialises the EXIF, which is dropped here anyway,
# and that raises on tags whose values do not fit their declared types.
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _upright(image: Image.Image) -> Image.Image:
    try:
        orientation = image.getexif().get(ExifTags.Base.Orientation)
    except Exception:  # EXIF that cannot be read: shown as stored, as browsers do
        log.info("photo EXIF unreadable, orientation not applied", exc_info=True)
        return image
    method = _UPRIGHT.get(orientation) if type(orientation) is int else None
    return image if method is None else image.transpose(method)


def _shrink(image: Image.Image, max_side: int) -> Image.Image:
    if max(image.size) <= max_side:
        return image
    if image.mode == "1":
        image = image.convert("L")  # grey, not RGBA: shrinks smoothly at the same byte per pixel
    # bilinear (which Pillow widens to every source pixel it covers) costs half of the default
    # bicubic, and the shrink is one C call that the budget cannot stop midway
    image.thumbnail(
        (max_side, max_side), Image.Resampling.BILINEAR
    )  # palette images are shrunk by nearest pixel, keeping the palette
    return image


def _reencode(image: Image.Image, kind: str, budget: _Budget) -> Photo:
    # savers fall back to image.info for some chunks (ICC, PNG exif/text): keep only transparency
    image.info = {k: v for k, v in image.info.items() if k == "transparency"}
    out = _BudgetedBytes(budget)
    if kind == "JPEG":
        # grey stays grey; CMYK (print files) becomes RGB, which every browser shows right
        (image if image.mode in ("RGB", "L") else image.convert("RGB")).save(out, "JPEG", quality=85)
    else:
        if image.mode not in ("1", "L", "LA", "P", "I;16", "RGB", "RGBA"):
            image = image.convert("RGBA")
        image.save(out, "PNG")  # without pnginfo: text/time chunks are not copied
    content_type, extension = ACCEPTED[kind]
    return Photo(out.getvalue(), content_type, extension)
