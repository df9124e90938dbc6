"""The database side of the bench: enough rows for the report, the registrations it made
checked and removed again."""

from __future__ import annotations

from collections import Counter

from common import records
from stack import seed
from stack.settings import Settings


def ensure_rows(s: Settings, db, wanted: int) -> int:
    have = db[records.REGISTRATIONS].count_documents({})
    if have < wanted:
        print(f"  seeding {wanted - have} registrations (the database holds {have})", flush=True)
        seed.run(s, wanted - have)
        have = db[records.REGISTRATIONS].count_documents({})
    return have


def stored(db, ids: list[str]) -> set[str]:
    """Which of these registration ids the database holds."""
    found: set[str] = set()
    for start in range(0, len(ids), 1000):
        found.update(
            doc["_id"]
            for doc in db[records.REGISTRATIONS].find({"_id": {"$in": ids[start : start + 1000]}}, {"_id": 1})
        )
    return found


def remove(s: Settings, db, names: list[str]) -> int:
    """Delete the registrations bearing the bench's own names (records, then photos): those
    acknowledged and those whose answer wrk cut at the end of a run alike, so repeated runs leave
    the database at its seeded size and the report measures the same rows."""
    store = s.photo_store()
    query = {"name": {"$in": names}}
    found = list(db[records.REGISTRATIONS].find(query, {"photo_key": 1, "city_key": 1}))
    removed = db[records.REGISTRATIONS].delete_many(query).deleted_count
    # the city totals drop by the rows removed (a whole report would correct them otherwise)
    for key, rows in Counter(doc["city_key"] for doc in found).items():
        db[records.CITIES].update_one({"_id": key}, {"$inc": {"total": -rows}})
    for doc in found:
        store.delete(doc["photo_key"])
    return removed
