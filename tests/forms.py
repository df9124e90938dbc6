"""Registration forms and photos as a client sends them."""

import io

import requests
from PIL import Image


def jpeg(width=400, height=300, color=(180, 40, 40), exif: bytes | None = None) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), color).save(out, "JPEG", quality=90, **({"exif": exif} if exif else {}))
    return out.getvalue()


def png(width=320, height=200) -> bytes:
    out = io.BytesIO()
    Image.new("RGBA", (width, height), (20, 120, 200, 128)).save(out, "PNG")
    return out.getvalue()


def register(
    http,
    stack,
    name="Ana María Pérez",
    city="Quito",
    photo: bytes | None = None,
    filename="id.jpg",
    content_type="image/jpeg",
    **kwargs,
) -> requests.Response:
    files = {"photo": (filename, jpeg() if photo is None else photo, content_type)}
    return http.post(
        f"{stack.url}/api/registrations", data={"name": name, "city": city}, files=files, timeout=30, **kwargs
    )
