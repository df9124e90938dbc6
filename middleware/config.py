"""Middleware settings, read from the environment once, in one place."""

import os

from common import records


def from_env() -> dict:
    return {
        "INSTANCE_NAME": "middleware",
        "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6390/0"),
        "MONGO_URL": os.environ.get("MONGO_URL", "mongodb://127.0.0.1:27027"),
        "MONGO_DB": os.environ.get("MONGO_DB", records.DATABASE),
        # the replicas as nginx balances them: its internal port (NGINX_STATUS_PORT)
        "INSTANCES_URL": os.environ.get("INSTANCES_URL", "http://127.0.0.1:8079").rstrip("/"),
        "CHART_CACHE_TTL_SECONDS": int(os.environ.get("CHART_CACHE_TTL_SECONDS", 300)),
        "LOG_LEVEL": os.environ.get("LOG_LEVEL", "INFO"),
        "LOKI_URL": os.environ.get("LOKI_URL", ""),
    }
