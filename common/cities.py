"""City names as people type them, and the key they are compared by.

" quito ", "QUITO" and "Quito" must be one city in the report and the chart, so every
comparison goes through `city_key`: Unicode NFC, trimmed, inner whitespace collapsed,
case-folded. The display spelling keeps the person's case.
"""

import unicodedata


def tidy(text: str) -> str:
    """NFC, trimmed, inner whitespace collapsed to one space."""
    return " ".join(unicodedata.normalize("NFC", text).split())


def city_key(city: str) -> str:
    # casefold can produce non-NFC sequences (e.g. for some accented capitals), so normalise again
    return unicodedata.normalize("NFC", tidy(city).casefold())
