"""The MongoDB schema both services read: registrations and the city display names.

Only plain CRUD, indexes and a $group aggregation: the code must behave the same on a real
mongod and on the embedded wire-protocol server the native stack runs by default.
"""

import hashlib
import secrets
from datetime import UTC, datetime

from pymongo import ASCENDING, MongoClient
from pymongo.database import Database

from common.cities import city_key

REGISTRATIONS = "registrations"
CITIES = "cities"
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


def city_totals(db: Database) -> list[dict]:
    """[{"city", "city_key", "total"}] for every city with registrations, by display name."""
    totals = db[REGISTRATIONS].aggregate([{"$group": {"_id": "$city_key", "total": {"$sum": 1}}}])
    counts = {row["_id"]: row["total"] for row in totals if row["_id"]}
    names = display_names(db, list(counts))
    rows = [{"city": names.get(key, key.title()), "city_key": key, "total": n} for key, n in counts.items()]
    return sorted(rows, key=lambda row: (row["city"].casefold(), row["city_key"]))


# Keys per look-up of display names: one query with every key would grow with the number of
# cities past the server's limits (a 16 MB BSON command); a few hundred keys stay far below.
NAMES_BATCH = 500


def display_names(db: Database, keys: list[str]) -> dict[str, str]:
    """{city key: the first spelling seen} for these keys, looked up a batch of keys at a time."""
    names: dict[str, str] = {}
    for start in range(0, len(keys), NAMES_BATCH):
        batch = keys[start : start + NAMES_BATCH]
        names.update((row["_id"], row["city"]) for row in db[CITIES].find({"_id": {"$in": batch}}, {"city": 1}))
    return names


def rekey_cities(db: Database) -> int:
    """Gives stored registrations the key city_key() makes of their city now (after the rule
    changed, as when NFKC was added); returns how many moved. Safe to run again and beside the
    services: an update moves only documents that do not have the current key yet."""
    moved = 0
    for city in db[REGISTRATIONS].distinct("city"):  # one per spelling: thousands at most
        if not isinstance(city, str):
            continue
        key = city_key(city)
        db[CITIES].update_one({"_id": key}, {"$setOnInsert": {"city": city}}, upsert=True)
        moved += (
            db[REGISTRATIONS]
            .update_many({"city": city, "city_key": {"$ne": key}}, {"$set": {"city_key": key}})
            .modified_count
        )
    return moved
