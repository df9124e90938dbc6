"""The MongoDB schema both services read: registrations, and per city its display name and total.

Only plain CRUD and indexes: the code must behave the same on a real mongod and on the embedded
wire-protocol server the native stack runs by default, which runs one operation at a time, so
no query of ours may hold it for long (no whole-collection aggregation, no scan of every row in
one command).

A city's `total` is a counter kept on insert: only the attempt whose insert stored the record
adds one (the unique `_id` decides, as for the record itself), so a retried registration never
counts twice. A counter can still drift (the insert landed but the increment failed, or rows
were written or removed by hand): a whole report counts every row and corrects it (see
correct_totals).
"""

import hashlib
import secrets
from datetime import UTC, datetime, timedelta

from pymongo import ASCENDING, MongoClient
from pymongo.database import Database

from common.cities import city_key

REGISTRATIONS = "registrations"
CITIES = "cities"
REPORT_COUNTS = "report_counts"  # what a report counted, by request id, until the middleware takes it
REPORT_COUNTS_KEPT = timedelta(hours=1)  # one never taken (its client left at the very end) goes then
DATABASE = "vaccination"  # the default of MONGO_DB


def connect(url: str) -> MongoClient:
    # Short selection timeout: a dead database must turn into a fast 503, not a hung worker.
    # The connect timeout is also the monitor's heartbeat timeout: a server that is busy (a
    # report scan under load) rather than gone must not be declared down and its pool cleared.
    return MongoClient(
        url,
        tz_aware=True,
        serverSelectionTimeoutMS=2000,
        connectTimeoutMS=5000,
        socketTimeoutMS=60_000,
        retryWrites=True,
        appname="vaccination",
    )


def registration_id(idempotency_key: str | None = None) -> str:
    """32 hex characters: random, or derived from the client's Idempotency-Key, so that the
    unique `_id` index (not a lock) decides which of several attempts with one key is stored."""
    if idempotency_key is None:
        return secrets.token_hex(16)
    return hashlib.sha256(f"registration:{idempotency_key}".encode()).hexdigest()[:32]


def request_hash(name: str, city: str, photo: bytes) -> str:
    """What a registration was asked with: a retry under the same key must match it."""
    digest = hashlib.sha256()
    for part in (name.encode(), city.encode(), photo):
        digest.update(len(part).to_bytes(8, "big"))  # length-prefixed: no two splits hash alike
        digest.update(part)
    return digest.hexdigest()


def _now_ms() -> datetime:
    # BSON dates keep milliseconds: the answer made from this document must equal one made
    # from the stored copy (an idempotent replay)
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def new_registration(
    name: str,
    city: str,
    photo_key: str,
    *,
    registration_id: str | None = None,
    request_hash: str | None = None,
    created_at: datetime | None = None,
) -> dict:
    """The registration document, the one shape every writer (the API, the seeder) stores."""
    doc = {
        "_id": registration_id or secrets.token_hex(16),
        "name": name,
        "city": city,
        "city_key": city_key(city),
        "photo_key": photo_key,
        "created_at": created_at or _now_ms(),
    }
    if request_hash:
        doc["request_hash"] = request_hash
    return doc


def ensure_indexes(db: Database) -> None:
    db[REGISTRATIONS].create_index([("city_key", ASCENDING), ("created_at", ASCENDING)])
    db[REGISTRATIONS].create_index([("created_at", ASCENDING)])


def count_registration(db: Database, key: str, spelling: str) -> None:
    """One more stored registration in this city (called by the attempt that stored it)."""
    db[CITIES].update_one({"_id": key}, {"$inc": {"total": 1}, "$setOnInsert": {"city": spelling}}, upsert=True)


def cities(db: Database) -> dict[str, dict]:
    """{city key: {"city": display name, "total": its counter, None if never counted}}: one read
    of a collection with a document per city, not per registration."""
    return {
        row["_id"]: {"city": row.get("city") or row["_id"].title(), "total": row.get("total")}
        for row in db[CITIES].find({}, {"city": 1, "total": 1})
        if isinstance(row.get("_id"), str)
    }


def chart_rows(counts: dict[str, int], names: dict[str, str]) -> list[dict]:
    """[{"city", "city_key", "total"}] for every city with registrations, by display name."""
    rows = [{"city": names.get(key) or key.title(), "city_key": key, "total": n} for key, n in counts.items() if n > 0]
    return sorted(rows, key=lambda row: (row["city"].casefold(), row["city_key"]))


def city_totals(db: Database) -> list[dict]:
    """Every city's counter as chart rows (see chart_rows)."""
    known = cities(db)
    return chart_rows(
        {key: city["total"] or 0 for key, city in known.items()}, {k: c["city"] for k, c in known.items()}
    )


def rekey_cities(db: Database) -> int:
    """Gives stored registrations the key city_key() makes of their city now (after the rule
    changed, as when NFKC was added); returns how many moved. Safe to run again and beside the
    services: an update moves only documents that do not have the current key yet. The city
    counters follow the rows they moved (a whole report checks them again afterwards)."""
    moved = 0
    for city in db[REGISTRATIONS].distinct("city"):  # one per spelling: thousands at most
        if not isinstance(city, str):
            continue
        key = city_key(city)
        db[CITIES].update_one({"_id": key}, {"$setOnInsert": {"city": city}}, upsert=True)
        for old in db[REGISTRATIONS].distinct("city_key", {"city": city, "city_key": {"$ne": key}}):
            count = (
                db[REGISTRATIONS]
                .update_many({"city": city, "city_key": old}, {"$set": {"city_key": key}})
                .modified_count
            )
            db[CITIES].update_one({"_id": old}, {"$inc": {"total": -count}})
            db[CITIES].update_one({"_id": key}, {"$inc": {"total": count}})
            moved += count
    return moved


# A city's rows newer than this, when a report read it, may belong to a registration whose
# counter increment is still on its way: its request's database time (MONGO_TIMEOUT_MS) after a
# photo upload that began when created_at was set. Such a city is not corrected that time.
SETTLE_SECONDS = 120


def correct_totals(
    db: Database, before: dict[str, dict], counted: dict[str, tuple[int, datetime | None]], started: datetime
) -> list[str]:
    """After a whole report: set each city's counter to the rows the report counted, where that
    is certainly the truth. `before`: cities() as read when the report started; `counted`: {key:
    (rows, newest created_at)}; `started`: when it started (naive UTC). A city is corrected only
    if its counter did not move during the report (no increment raced it), its newest row is
    older than SETTLE_SECONDS, and the counter still holds the value compared (a compare-and-set:
    an increment between the read and the write wins). Returns the corrected keys."""
    after = cities(db)
    corrected = []
    for key in set(before) | set(counted):
        rows, newest = counted.get(key, (0, None))
        was = before.get(key, {}).get("total")
        now = after.get(key, {}).get("total")
        if key not in after or was != now or now == rows:
            continue
        if newest is not None and (started - newest).total_seconds() < SETTLE_SECONDS:
            continue
        unchanged = {"_id": key, "total": now} if now is not None else {"_id": key, "total": {"$exists": False}}
        if db[CITIES].update_one(unchanged, {"$set": {"total": rows}}).modified_count:
            corrected.append(key)
    return corrected


def save_report_counts(db: Database, request_id: str, scope: str, rows: list[dict]) -> None:
    """A finished report's chart rows (see chart_rows), for the middleware to refresh the chart
    from without counting again."""
    now = datetime.now(UTC)
    db[REPORT_COUNTS].delete_many({"at": {"$lt": now - REPORT_COUNTS_KEPT}})  # a handful of documents
    # an update, not replace_one: the embedded server's replacing upsert ignores the filter's _id
    db[REPORT_COUNTS].update_one(
        {"_id": request_id}, {"$set": {"scope": scope, "cities": rows, "at": now}}, upsert=True
    )


def take_report_counts(db: Database, request_id: str) -> dict | None:
    """{"scope", "cities"} a report saved under this request id, removed as it is read; None if none."""
    doc = db[REPORT_COUNTS].find_one({"_id": request_id})
    if doc is not None:
        db[REPORT_COUNTS].delete_one({"_id": request_id})
    return doc
