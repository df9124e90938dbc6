"""Middleware settings, read from the environment once, in one place."""

import os


def from_env() -> dict:
    urls = os.environ.get("INSTANCE_URLS", "http://127.0.0.1:8001,http://127.0.0.1:8002,http://127.0.0.1:8003")
    return {
        "INSTANCE_NAME": "middleware",
        "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6390/0"),
        "MONGO_URL": os.environ.get("MONGO_URL", "mongodb://127.0.0.1:27027"),
        "MONGO_DB": os.environ.get("MONGO_DB", "vaccination"),
        "INSTANCE_URLS": [url.strip().rstrip("/") for url in urls.split(",") if url.strip()],
        "CHART_CACHE_TTL_SECONDS": int(os.environ.get("CHART_CACHE_TTL_SECONDS", 300)),
        "LOG_LEVEL": os.environ.get("LOG_LEVEL", "INFO"),
        "LOKI_URL": os.environ.get("LOKI_URL", ""),
    }
