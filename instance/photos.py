"""ID-card photos: proven to be images by decoding them, then re-encoded without metadata.

The file name and the client's content type say nothing (HTML can hide behind image/jpeg), so
the bytes are decoded with Pillow, fully. Re-encoding drops EXIF (GPS, device serials), XMP,
comments and text chunks; the orientation EXIF carried is applied to the pixels first.
"""

import io
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

from common.errors import ApiError

ACCEPTED = {"JPEG": ("image/jpeg", "jpg"), "PNG": ("image/png", "png")}
# a 5 MiB JPEG can decode to a huge bitmap (decompression bomb); ID photos need far less
MAX_PIXELS = 40_000_000


@dataclass(frozen=True)
class Photo:
    data: bytes
    content_type: str
    extension: str
    width: int
    height: int


def _invalid(message: str) -> ApiError:
    return ApiError(400, "invalid_photo", message, "photo")


def prepare(raw: bytes, max_bytes: int) -> Photo:
    if not raw:
        raise ApiError(400, "missing_field", "The photo file is empty.", "photo")
    if len(raw) > max_bytes:
        raise ApiError(413, "photo_too_large", f"The photo must be at most {max_bytes / 2**20:g} MiB.", "photo")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(raw)) as probe:
                kind = probe.format
                if kind not in ACCEPTED:
                    raise _invalid("The photo must be a JPEG or PNG image.")
                if probe.width * probe.height > MAX_PIXELS:
                    raise _invalid("The photo has too many pixels for an ID card picture.")
                probe.verify()
            with Image.open(io.BytesIO(raw)) as image:
                image.load()  # verify() skips pixel data; load() finds truncated files
                image = ImageOps.exif_transpose(image)
                return _reencode(image, kind)
    except ApiError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _invalid("The file is not a readable JPEG or PNG image.") from None
    except (OSError, SyntaxError, ValueError) as error:  # truncated or corrupt data
        raise _invalid(f"The image is damaged or incomplete ({error.__class__.__name__}).") from None


def _reencode(image: Image.Image, kind: str) -> Photo:
    # savers fall back to image.info for some chunks (ICC, PNG exif/text): keep only transparency
    image.info = {k: v for k, v in image.info.items() if k == "transparency"}
    out = io.BytesIO()
    if kind == "JPEG":
        image.convert("RGB").save(out, "JPEG", quality=85)
    else:
        if image.mode not in ("RGB", "RGBA", "L", "LA", "P"):
            image = image.convert("RGBA")
        image.save(out, "PNG")  # without pnginfo: text/time chunks are not copied
    content_type, extension = ACCEPTED[kind]
    return Photo(out.getvalue(), content_type, extension, image.width, image.height)
