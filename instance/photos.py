"""ID-card photos: proven to be images by decoding them, then re-encoded without metadata.

The file name and the client's content type say nothing (HTML can hide behind image/jpeg), so
the bytes are decoded with Pillow, fully. Re-encoding drops EXIF (GPS, device serials), XMP,
comments and text chunks; the orientation EXIF carried is applied to the pixels first.
Phones' multi-picture JPEGs (MPO) are accepted as JPEG: only the first, main picture is kept.
"""

import io
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

from common.errors import ApiError

ACCEPTED = {"JPEG": ("image/jpeg", "jpg"), "PNG": ("image/png", "png")}
# no other decoder ever sees the bytes. Not "MPO": Pillow registers no opener of that name (the
# JPEG one returns an MPO image when it finds several pictures), and an unknown name is a KeyError.
OPENED = ["JPEG", "PNG"]
# a 5 MiB JPEG can decode to a huge bitmap (decompression bomb); ID photos need far less.
# The default of MAX_PHOTO_PIXELS.
MAX_PIXELS = 40_000_000
TOO_MANY_PIXELS = "The photo has too many pixels for an ID card picture."


def set_pixel_cap(max_pixels: int) -> None:
    """Pillow's own guard, process-wide and set once: Image.open refuses more than twice this
    before decoding. prepare() refuses more than this itself, so Pillow's warning between the
    two says nothing new (and toggling warning filters per request is not thread-safe)."""
    Image.MAX_IMAGE_PIXELS = max_pixels
    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


set_pixel_cap(MAX_PIXELS)


@dataclass(frozen=True)
class Photo:
    data: bytes
    content_type: str
    extension: str
    width: int
    height: int


def _invalid(message: str) -> ApiError:
    return ApiError(400, "invalid_photo", message, "photo")


def prepare(raw: bytes, max_bytes: int, max_pixels: int = MAX_PIXELS) -> Photo:
    if not raw:
        raise ApiError(400, "missing_field", "The photo file is empty.", "photo")
    if len(raw) > max_bytes:
        raise ApiError(413, "photo_too_large", f"The photo must be at most {max_bytes / 2**20:g} MiB.", "photo")
    try:
        with Image.open(io.BytesIO(raw), formats=OPENED) as probe:
            if probe.width * probe.height > max_pixels:
                raise _invalid(TOO_MANY_PIXELS)
            probe.verify()
        with Image.open(io.BytesIO(raw), formats=OPENED) as image:
            # an MPO is a JPEG with more pictures appended; the first (shown) one is the photo
            kind = "JPEG" if image.format == "MPO" else image.format
            image.load()  # verify() skips pixel data; load() finds truncated files
            ImageOps.exif_transpose(image, in_place=True)  # in place: no copy of the pixels
            return _reencode(image, kind)
    except ApiError:
        raise
    except Image.DecompressionBombError:
        raise _invalid(TOO_MANY_PIXELS) from None
    except UnidentifiedImageError:
        raise _invalid("The file is not a readable JPEG or PNG image.") from None
    except (OSError, SyntaxError, ValueError) as error:  # truncated or corrupt data
        raise _invalid(f"The image is damaged or incomplete ({error.__class__.__name__}).") from None


def _reencode(image: Image.Image, kind: str) -> Photo:
    # savers fall back to image.info for some chunks (ICC, PNG exif/text): keep only transparency
    image.info = {k: v for k, v in image.info.items() if k == "transparency"}
    out = io.BytesIO()
    if kind == "JPEG":
        (image if image.mode == "RGB" else image.convert("RGB")).save(out, "JPEG", quality=85)
    else:
        if image.mode not in ("RGB", "RGBA", "L", "LA", "P"):
            image = image.convert("RGBA")
        image.save(out, "PNG")  # without pnginfo: text/time chunks are not copied
    content_type, extension = ACCEPTED[kind]
    return Photo(out.getvalue(), content_type, extension, image.width, image.height)
