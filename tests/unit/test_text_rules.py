"""What a name or city may be, and which spellings are one city."""

import pytest

from common.cities import city_key, tidy
from common.errors import ApiError
from instance import validation
from instance.validation import NAME_MAX, required_text

REFUSED = {
    "zero-width space": "Ana\u200bMaría",
    "soft hyphen": "Ana\u00adMaría",
    "left-to-right mark": "Ana\u200e",
    "bidi override": "Ana\u202eZ",
    "word joiner": "Ana\u2060María",
    "byte order mark": "\ufeffAna",
    "a Hangul filler alone": "\u3164",
    "a half-width Hangul filler": "Ana \uffa0",
    "a Hangul choseong filler": "\u115fAna",
    "blank Braille pattern": "Ana\u2800",
    "a joiner at the start": "\u200dAna",
    "a joiner before a space": "Ana\u200c María",
    "a tag character": "Ana\U000e0041",
    "private use": "Ana\ue000",
    "unassigned": "Ana\U0003ffff",
    "newline": "Ana\nMaría",
    "tab": "Ana\tMaría",
    "C1 control": "Ana\x85María",
    "no letter": "1234 !",
}

ACCEPTED = {
    "Persian with a ZWNJ inside a word": "می\u200cخواهم",
    "Hindi with a ZWJ inside a word": "क्\u200dष",
    "an emoji ZWJ sequence": "Ana \U0001f469\u200d\U0001f4bb",
    "an emoji of Unicode 15": "Ana \U0001fae8",
    "a letter of Unicode 16 (Garay)": "Ana \U00010d50",
    "Hangul syllables": "김민준",
    "combining accents": "Jose\u0301",
}


@pytest.mark.parametrize("text", REFUSED.values(), ids=list(REFUSED))
def test_invisible_and_control_text_is_refused(text):
    with pytest.raises(ApiError) as refused:
        required_text(text, "name", "Name", NAME_MAX)
    assert refused.value.code == "invalid_name"


@pytest.mark.parametrize("text", ACCEPTED.values(), ids=list(ACCEPTED))
def test_text_scripts_need_is_accepted(text):
    assert required_text(f"  {text}  ", "name", "Name", NAME_MAX) == tidy(text)


def test_the_length_is_checked_before_any_work_per_character(monkeypatch):
    scanned = []
    monkeypatch.setattr(validation, "_invisible", lambda value: scanned.append(value) or False)
    with pytest.raises(ApiError) as refused:
        required_text("A" + "\u200b" * 1_000_000, "name", "Name", NAME_MAX)  # a form-sized field
    assert "at most" in refused.value.message
    assert scanned == []


@pytest.mark.parametrize(
    "spellings",
    [
        ("Quito", " quito ", "QUITO", "Ｑｕｉｔｏ"),  # full-width
        ("Mönchengladbach", "Mo\u0308nchengladbach"),  # composed and decomposed
        ("São Paulo", "São\u3000Paulo", "SÃO PAULO"),  # ideographic space
        ("Straße", "STRASSE"),
        ("ﬁnca", "Finca"),  # the ligature
    ],
)
def test_spellings_of_one_city_have_one_key(spellings):
    assert len({city_key(spelling) for spelling in spellings}) == 1, [city_key(s) for s in spellings]


def test_different_cities_keep_different_keys():
    assert city_key("Quito") != city_key("Quíto")
    assert city_key("Ana") != city_key("Аna")  # Cyrillic А: look-alikes across scripts are not merged
