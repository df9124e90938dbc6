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
from stack.settings import Settings

CITIES = [
    "Quito",
    "Guayaquil",
    "Cuenca",
    "Santo Domingo",
    "Machala",
    "Durán",
    "Manta",
    "Portoviejo",
    "Loja",
    "Ambato",
    "Esmeraldas",
    "Riobamba",
    "Ibarra",
    "Latacunga",
    "Babahoyo",
    "Tulcán",
]
FIRST = ["María", "José", "Ana", "Luis", "Carmen", "Jorge", "Lucía", "Carlos", "Rosa", "Andrés", "Sofía", "Diego"]
LAST = ["García", "Rodríguez", "Zambrano", "Mendoza", "Vera", "Torres", "Cedeño", "Morales", "Andrade", "Muñoz"]
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
    # Zipf-like: a few big cities hold most registrations, as in real life
    weights = [1 / (rank + 1) for rank in range(len(CITIES))]
    for city in CITIES:
        db[records.CITIES].update_one({"_id": city_key(city)}, {"$setOnInsert": {"city": city}}, upsert=True)
    now = datetime.now(UTC)
    done = 0
    while done < count:
        batch = []
        for _ in range(min(BATCH, count - done)):
            city = random.choices(CITIES, weights)[0]
            batch.append(
                records.new_registration(
                    f"{random.choice(FIRST)} {random.choice(LAST)} {random.choice(LAST)}",
                    city,
                    photo_key,
                    created_at=now - timedelta(seconds=random.randint(0, 30 * 86400)),
                )
            )
        db[records.REGISTRATIONS].insert_many(batch, ordered=False)
        for key, rows in Counter(doc["city_key"] for doc in batch).items():
            db[records.CITIES].update_one({"_id": key}, {"$inc": {"total": rows}})
        done += len(batch)
        print(f"\r  seeded {done}/{count}", end="", flush=True)
    print()
