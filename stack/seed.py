"""`./init.sh seed N`: bulk-load N synthetic registrations for demos and benchmarks.

Rows go straight to MongoDB in batches (a registration through the API costs a photo
re-encode each; 100,000 of those would take minutes). All seeded rows share one synthetic
photo, stored once in the photo store, so their report links work.
"""

import io
import random
from collections import Counter
from datetime import UTC, datetime, timedelta

from PIL import Image

from common import records
from common.cities import city_key
from instance.photo_store import new_key
from loadtests import workload
from stack.settings import Settings

BATCH = 1000


def _placeholder_photo(s: Settings) -> str:
    image = Image.new("RGB", (400, 300), (210, 220, 235))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=80)
    key = new_key("jpg")
    s.photo_store().put(key, out.getvalue(), "image/jpeg")
    return key


def run(s: Settings, count: int) -> None:
    db = s.database()
    records.ensure_indexes(db)
    photo_key = _placeholder_photo(s)
    # the load test's registrants (realistic names, the skewed city distribution), stored under
    # each city's display name as the service stores them, not as typed
    display = {city_key(city): city for city in workload.canonical_cities()}
    for key, city in display.items():
        db[records.CITIES].update_one({"_id": key}, {"$setOnInsert": {"city": city}}, upsert=True)
    now = datetime.now(UTC)
    done = 0
    while done < count:
        batch = [
            records.new_registration(
                workload.random_name(),
                display[city_key(workload.random_city())],
                photo_key,
                created_at=now - timedelta(seconds=random.randint(0, 30 * 86400)),
            )
            for _ in range(min(BATCH, count - done))
        ]
        db[records.REGISTRATIONS].insert_many(batch, ordered=False)
        for key, rows in Counter(doc["city_key"] for doc in batch).items():
            db[records.CITIES].update_one({"_id": key}, {"$inc": {"total": rows}})
        done += len(batch)
        print(f"\r  seeded {done}/{count}", end="", flush=True)
    print()
