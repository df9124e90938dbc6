"""Checks of the text a person types: names and cities.

Accepted: letters of any script and their marks, digits, punctuation, symbols (emoji too) and
spaces, in the current Unicode version (unicodedata2). Refused: control, private-use,
unassigned and surrogate code points, format characters (zero-width space, bidi controls, soft
hyphen, tags...) except a zero-width joiner or non-joiner between two visible characters (some
scripts and emoji sequences need them), and fillers that render as nothing (Hangul fillers, the
blank Braille pattern). Text must contain at least one letter.
"""

import re

import unicodedata2

from common.cities import tidy
from common.errors import ApiError
from common.metrics import REJECTED

NAME_MAX = 100
CITY_MAX = 60
_JOINERS = {"\u200c", "\u200d"}  # ZWNJ, ZWJ: needed inside words of Persian, Indic scripts and in emoji
# letters (Lo, So) that display nothing, so a "name" of one of them looks empty
_FILLERS = {"\u115f", "\u1160", "\u3164", "\uffa0", "\u2800"}
_REFUSED_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Cn"}
_JOINABLE = ("L", "M", "N", "S")  # what a joiner may stand between (not spaces or punctuation)
# control characters (category Cc), looked for in the raw field: tidying would make a newline a space
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def reject(status: int, reason: str, message: str, field: str | None) -> ApiError:
    REJECTED.labels(reason).inc()
    return ApiError(status, reason, message, field)


def _invisible(value: str) -> bool:
    for index, char in enumerate(value):
        if char in _FILLERS:
            return True
        if unicodedata2.category(char) not in _REFUSED_CATEGORIES:
            continue
        if char not in _JOINERS or index in (0, len(value) - 1):
            return True
        before, after = unicodedata2.category(value[index - 1]), unicodedata2.category(value[index + 1])
        if not (before.startswith(_JOINABLE) and after.startswith(_JOINABLE)):
            return True
    return False


def required_text(raw: str | None, field: str, label: str, limit: int) -> str:
    if raw is None or not raw.strip():
        raise reject(400, "missing_field", f"{label} is required.", field)
    reason = f"invalid_{field}"
    # the length first, at C speed (normalising and splitting), before any work per character
    value = tidy(raw)
    if len(value) > limit:
        raise reject(400, reason, f"{label} must be at most {limit} characters.", field)
    if _CONTROLS.search(raw) or _invisible(value):
        raise reject(400, reason, f"{label} contains a control or invisible character.", field)
    if not any(unicodedata2.category(char).startswith("L") for char in value):
        raise reject(400, reason, f"{label} must contain letters.", field)
    return value
