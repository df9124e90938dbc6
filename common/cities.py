"""City names as people type them, and the key they are compared by.

" quito ", "QUITO", "Quito" and full-width "Ｑｕｉｔｏ" must be one city in the report and the
chart, so every comparison goes through `city_key`: NFKC (compatibility forms fold to their
plain letters), trimmed, inner whitespace collapsed, case-folded. The display spelling keeps
the person's own form (NFC). Unicode data is unicodedata2's, the current Unicode version.
"""

import unicodedata2


def tidy(text: str) -> str:
    """NFC, trimmed, inner whitespace collapsed to one space."""
    return " ".join(unicodedata2.normalize("NFC", text).split())


def city_key(city: str) -> str:
    # NFKC before and after casefold (casefold can leave a non-normalised sequence), whitespace
    # collapsed again since NFKC turns some spaces (U+3000, U+2003...) into plain ones
    folded = unicodedata2.normalize("NFKC", unicodedata2.normalize("NFKC", city).casefold())
    return " ".join(folded.split())
