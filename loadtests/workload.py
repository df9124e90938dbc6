"""Test data and response checks for the locustfile, kept free of locust imports.

Importing locust monkey-patches the whole process (gevent), so everything that can be
tested on its own lives here: realistic names, a skewed city distribution with the
spellings people really type, JPEG photos made with Pillow, the bad requests and the
rules that say whether an answer to one of them is the expected rejection.
"""

from __future__ import annotations

import functools
import io
import os
import random
from pathlib import Path

from stack.settings import ENV_FILE, read_env_file

REPO_ROOT = Path(__file__).resolve().parent.parent

# --- cities -------------------------------------------------------------------------
# Ranked by (rough) size; each entry lists the spellings sent for that city, the first
# one most often. The variants exercise the service's city key (NFC, trim, collapse
# inner whitespace, casefold): they must all be counted as one city. "Dura\u0301n" is
# "Durán" in decomposed (NFD) form.
CITIES: list[tuple[str, ...]] = [
    ("Quito", " quito ", "QUITO", "quito"),
    ("Guayaquil", "guayaquil", "GUAYAQUIL ", "Guayaquil  "),
    ("Cuenca", "cuenca", " CUENCA"),
    ("Santo Domingo", "santo  domingo", "SANTO DOMINGO"),
    ("Machala", "machala"),
    ("Durán", "Dura\u0301n", "DURÁN", " durán"),
    ("Manta", "MANTA"),
    ("Portoviejo", "portoviejo "),
    ("Loja", "loja"),
    ("Ambato", "AMBATO"),
    ("Esmeraldas", "esmeraldas"),
    ("Quevedo", "quevedo"),
    ("Riobamba", "RIOBAMBA"),
    ("Milagro", "milagro"),
    ("Ibarra", " ibarra"),
    ("Latacunga", "latacunga"),
    ("Babahoyo",),
    ("Sangolquí", "sangolquí", "SANGOLQUÍ"),
    ("Tulcán", "tulcán"),
    ("Otavalo", "OTAVALO"),
    ("Puyo",),
    ("Azogues", "azogues"),
    ("Salinas", "salinas "),
    ("Puerto Ayora", "puerto   ayora"),
    ("Macas",),
]
ZIPF_EXPONENT = 1.1  # weight of the k-th city is 1 / k**s: Quito ~34x Macas
CANONICAL_SHARE = 0.7  # how often the first spelling is used; variants share the rest


def _city_table() -> tuple[list[str], list[float]]:
    spellings: list[str] = []
    weights: list[float] = []
    for rank, variants in enumerate(CITIES, start=1):
        city_weight = 1.0 / rank**ZIPF_EXPONENT
        if len(variants) == 1:
            spellings.append(variants[0])
            weights.append(city_weight)
            continue
        spellings.append(variants[0])
        weights.append(city_weight * CANONICAL_SHARE)
        for variant in variants[1:]:
            spellings.append(variant)
            weights.append(city_weight * (1 - CANONICAL_SHARE) / (len(variants) - 1))
    return spellings, weights


_SPELLINGS, _WEIGHTS = _city_table()


def random_city(rng: random.Random = random) -> str:  # type: ignore[assignment]
    """One city as a person would type it, drawn from the skewed distribution."""
    return rng.choices(_SPELLINGS, weights=_WEIGHTS)[0]


def canonical_cities() -> list[str]:
    """The display name of every city, most frequent first (for per-city reports)."""
    return [variants[0] for variants in CITIES]


def random_report_city(rng: random.Random = random) -> str:  # type: ignore[assignment]
    """A city to ask a report for: admins look at the big cities more often."""
    names = canonical_cities()
    return rng.choices(names, weights=[1.0 / k for k in range(1, len(names) + 1)])[0]


# --- names --------------------------------------------------------------------------
FIRST_NAMES = (
    [  # women
        "María",
        "Ana",
        "Carmen",
        "Rosa",
        "Lucía",
        "Sofía",
        "Valentina",
        "Camila",
        "Gabriela",
        "Daniela",
        "Paola",
        "Inés",
        "Verónica",
        "Elena",
        "Noemí",
        "Laura",
        "Emily",
        "Grace",
        "Mónica",
        "Belén",
    ],
    [  # men
        "José",
        "Juan",
        "Luis",
        "Carlos",
        "Jorge",
        "Andrés",
        "Miguel",
        "Diego",
        "Sebastián",
        "Mateo",
        "Fernando",
        "Ramón",
        "Héctor",
        "Pedro",
        "Iñaki",
        "David",
        "Kevin",
        "Joaquín",
        "Martín",
        "Raúl",
    ],
)
LAST_NAMES = [
    "García",
    "Rodríguez",
    "Martínez",
    "López",
    "González",
    "Pérez",
    "Sánchez",
    "Ramírez",
    "Torres",
    "Flores",
    "Vásquez",
    "Castillo",
    "Morales",
    "Ortiz",
    "Jiménez",
    "Chávez",
    "Muñoz",
    "Espinoza",
    "Zambrano",
    "Mendoza",
    "Cedeño",
    "Andrade",
    "Benítez",
    "Quishpe",
    "Guamán",
    "Yánez",
    "Peña",
    "Núñez",
    "Córdova",
    "Salazar",
    "Smith",
    "Müller",
]


def random_name(rng: random.Random = random) -> str:  # type: ignore[assignment]
    """A realistic full name: one or two given names and one or two surnames."""
    first = rng.sample(rng.choice(FIRST_NAMES), rng.choice((1, 1, 2)))
    last = rng.sample(LAST_NAMES, rng.choice((1, 2, 2)))
    return " ".join(first + last)


# --- photos -------------------------------------------------------------------------
# (width, height, relative weight): phone photos scaled down by the browser are the
# common case, full-size camera shots the heavy tail.
PHOTO_SIZES: list[tuple[int, int, int]] = [
    (400, 300, 3),
    (1024, 768, 5),
    (2000, 1500, 2),
]


@functools.cache
def make_jpeg(width: int, height: int, quality: int = 85) -> bytes:
    """A JPEG that looks like a photo: smooth light, a face-like blob, sensor noise.

    Cached: each process builds each size once and reuses the bytes.
    """
    from PIL import Image, ImageDraw

    base = Image.linear_gradient("L").resize((width, height))
    img = Image.merge(
        "RGB",
        (
            base,
            base.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
            base.transpose(Image.Transpose.ROTATE_180).point(lambda v: 90 + v // 2),
        ),
    )
    draw = ImageDraw.Draw(img)
    cx, cy, r = width // 2, height // 2, min(width, height) // 3
    draw.ellipse((cx - r, cy - int(r * 1.25), cx + r, cy + int(r * 1.25)), fill=(224, 182, 150))
    draw.rectangle((0, height * 5 // 6, width, height), fill=(40, 60, 110))
    # Grain makes the file sizes those of real photos (about 30 KiB, 190 KiB and 730 KiB).
    noise = Image.effect_noise((width, height), 40).convert("RGB")
    img = Image.blend(img, noise, 0.2)
    out = io.BytesIO()
    img.save(out, format="JPEG", quality=quality)
    return out.getvalue()


def random_photo(rng: random.Random = random) -> tuple[str, bytes]:  # type: ignore[assignment]
    """(label like '1024x768', JPEG bytes) for one registration."""
    width, height, _ = rng.choices(PHOTO_SIZES, weights=[w for *_, w in PHOTO_SIZES])[0]
    return f"{width}x{height}", make_jpeg(width, height)


def tagged_photo(jpeg: bytes, tag: str) -> bytes:
    """The same picture with a JPEG comment holding `tag`: each registration's upload is then
    unique, so a drill can tell one person stored twice from two people (the service re-encodes
    photos, which drops the comment)."""
    comment = tag.encode()
    return jpeg[:2] + b"\xff\xfe" + (len(comment) + 2).to_bytes(2, "big") + comment + jpeg[2:]


# --- careful clients ----------------------------------------------------------------
# A careful client sends each registration with an Idempotency-Key and, on an answer that says
# "try again" (no answer at all, 502, 503, 504), sends it again with the same key: the service
# stores it once however many attempts reach it.
RETRYABLE_STATUSES = frozenset({0, 502, 503, 504})
RETRY_BUDGET_S = 60.0  # longer than any outage a drill stages
RETRY_DELAY_MAX_S = 5.0


def retry_delay(attempt: int, retry_after: str | None = None, rng: random.Random = random) -> float:  # type: ignore[assignment]
    """Seconds to wait before attempt `attempt + 1`: exponential backoff from 0.5 s with full
    jitter (so clients that failed together do not retry together), or the server's Retry-After
    (seconds), both capped."""
    if retry_after and retry_after.strip().isdigit():
        return min(float(retry_after), RETRY_DELAY_MAX_S)
    return rng.uniform(0, min(0.5 * 2**attempt, RETRY_DELAY_MAX_S))


# --- bad requests -------------------------------------------------------------------
# kind -> the form field the service must blame. Each builds (data, files) for requests.
BAD_REQUEST_KINDS = {
    "missing photo": "photo",
    "text as .jpg": "photo",
    "empty name": "name",
}


def bad_request(kind: str, rng: random.Random = random) -> dict:  # type: ignore[assignment]
    """The multipart parts (``files=`` for requests) of one bad registration.

    Text fields are (None, value) parts so the body stays multipart/form-data even
    without a photo, as a browser would send it.
    """
    parts: dict = {
        "name": (None, random_name(rng)),
        "city": (None, random_city(rng)),
        "photo": ("photo.jpg", make_jpeg(400, 300), "image/jpeg"),
    }
    if kind == "missing photo":
        del parts["photo"]
    elif kind == "text as .jpg":
        parts["photo"] = (
            "photo.jpg",
            b"this is not a picture, just text\n" * 20,
            "image/jpeg",
        )
    elif kind == "empty name":
        parts["name"] = (None, "")
    else:
        raise ValueError(f"unknown bad request kind: {kind}")
    return parts


def check_rejection(status: int, content_type: str, body: object, field: str) -> str | None:
    """None when the answer is the expected rejection, else why it is not.

    Expected: a 4xx whose body is the contract's JSON error
    {"error": {"code": str, "message": str, "field": <field> or null}}.
    """
    if not 400 <= status < 500:
        return f"expected a 4xx rejection, got {status}"
    if "json" not in (content_type or "").lower():
        return f"{status} rejection is not JSON (content-type {content_type!r})"
    err = body.get("error") if isinstance(body, dict) else None
    if not isinstance(err, dict):
        return f"{status} rejection has no 'error' object"
    if not isinstance(err.get("code"), str) or not err["code"]:
        return f"{status} rejection has no error code"
    if not isinstance(err.get("message"), str):
        return f"{status} rejection has no error message"
    if err.get("field") not in (field, None):
        return f"{status} rejection blames field {err.get('field')!r}, expected {field!r}"
    return None


# --- admin password -----------------------------------------------------------------
def admin_password(env: dict | None = None, dotenv: Path | None = None) -> str | None:
    """ADMIN_PASSWORD from the environment, else from the env file ./init.sh keeps (.env)."""
    env = os.environ if env is None else env
    path = dotenv or Path(env.get("ENV_FILE") or ENV_FILE)
    return env.get("ADMIN_PASSWORD") or read_env_file(path).get("ADMIN_PASSWORD") or None
