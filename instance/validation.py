"""Checks of the text a person types: names and cities."""

import unicodedata

from common.cities import tidy
from common.errors import ApiError
from common.metrics import REJECTED

NAME_MAX = 100
CITY_MAX = 60
# bidirectional overrides make "Ana" render as something else: spoofing, never a real name
_BIDI_CONTROLS = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def reject(status: int, reason: str, message: str, field: str | None) -> ApiError:
    REJECTED.labels(reason).inc()
    return ApiError(status, reason, message, field)


def required_text(raw: str | None, field: str, label: str, limit: int) -> str:
    if raw is None or not raw.strip():
        raise reject(400, "missing_field", f"{label} is required.", field)
    reason = f"invalid_{field}"
    for char in raw:
        category = unicodedata.category(char)
        # Cc: control characters (newlines, NUL, escapes); Cs/Co/Cn: surrogates, private, unassigned
        if category in ("Cc", "Cs", "Co", "Cn") or char in _BIDI_CONTROLS:
            raise reject(400, reason, f"{label} contains a control or invisible character.", field)
    value = tidy(raw)
    if len(value) > limit:
        raise reject(400, reason, f"{label} must be at most {limit} characters.", field)
    if not any(char.isalpha() for char in value):
        raise reject(400, reason, f"{label} must contain letters.", field)
    return value
