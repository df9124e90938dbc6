"""The MongoDB schema both services read: registrations and the city display names.

Only plain CRUD, indexes and a $group aggregation: the code must behave the same on a real
mongod and on the embedded wire-protocol server the native stack runs by default.
"""

from pymongo import ASCENDING, MongoClient
from pymongo.database import Database

REGISTRATIONS = "registrations"
CITIES = "cities"


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
