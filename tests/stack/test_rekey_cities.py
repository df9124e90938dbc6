"""`python -m stack.rekey_cities`: registrations stored under an older city key rule join their
city's current key, their counters move with them, and the chart then counts them together."""

import subprocess
import sys
import unicodedata
import uuid

from common import records
from common.cities import city_key
from stack.settings import ROOT


def _key_before_nfkc(city: str) -> str:
    return unicodedata.normalize("NFC", " ".join(unicodedata.normalize("NFC", city).split()).casefold())


def test_registrations_under_an_older_key_join_their_city(stack):
    marker = uuid.uuid4().hex[:8]
    plain, full_width = f"Quito {marker}", f"Ｑｕｉｔｏ {marker}"
    old = records.new_registration(full_width, full_width, "aa/none.jpg")
    old["city_key"] = _key_before_nfkc(full_width)
    assert old["city_key"] != city_key(full_width)  # what NFKC changed
    new = records.new_registration(plain, plain, "aa/none.jpg")
    stack.db[records.REGISTRATIONS].insert_many([old, new])
    for doc in (old, new):  # counted as the registration that stored it counts it
        records.count_registration(stack.db, doc["city_key"], doc["city"])
    try:
        result = subprocess.run(
            [sys.executable, "-m", "stack.rekey_cities"], cwd=ROOT, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stderr
        assert stack.db[records.REGISTRATIONS].find_one({"_id": old["_id"]})["city_key"] == city_key(plain)
        totals = [row for row in records.city_totals(stack.db) if marker in row["city_key"]]
        assert [row["total"] for row in totals] == [2]
        again = subprocess.run(
            [sys.executable, "-m", "stack.rekey_cities"], cwd=ROOT, capture_output=True, text=True, timeout=60
        )
        assert again.stdout.startswith("0 ")  # nothing left to move
    finally:
        stack.db[records.REGISTRATIONS].delete_many({"_id": {"$in": [old["_id"], new["_id"]]}})
        stack.db[records.CITIES].delete_many({"_id": {"$in": [old["city_key"], city_key(plain)]}})
