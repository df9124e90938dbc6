"""Instance settings, read from the environment once, in one place."""

import os


def from_env() -> dict:
    max_photo = int(os.environ.get("MAX_PHOTO_BYTES", 5 * 2**20))
    return {
        "INSTANCE_NAME": os.environ.get("INSTANCE_NAME", "instance-1"),
        "MONGO_URL": os.environ.get("MONGO_URL", "mongodb://127.0.0.1:27027"),
        "MONGO_DB": os.environ.get("MONGO_DB", "vaccination"),
        # all database calls of one registration together; past it: 503, never a hung worker
        "MONGO_TIMEOUT_MS": int(os.environ.get("MONGO_TIMEOUT_MS", 3000)),
        "PHOTO_STORE_URL": os.environ.get("PHOTO_STORE_URL", "http://127.0.0.1:8090"),
        "PHOTO_STORE_TOKEN": os.environ.get("PHOTO_STORE_TOKEN", ""),
        "PHOTO_LINK_SECRET": os.environ.get("PHOTO_LINK_SECRET", ""),
        "PHOTO_LINK_TTL_SECONDS": int(os.environ.get("PHOTO_LINK_TTL_SECONDS", 3600)),
        "CLOUDINARY_URL": os.environ.get("CLOUDINARY_URL", ""),
        "ADMIN_PASSWORD": os.environ.get("ADMIN_PASSWORD", ""),
        "MAX_PHOTO_BYTES": max_photo,
        "MAX_PHOTO_PIXELS": int(os.environ.get("MAX_PHOTO_PIXELS", 40_000_000)),
        # the photo plus the text fields and multipart framing
        "MAX_CONTENT_LENGTH": max_photo + 2**20,
        "LOG_LEVEL": os.environ.get("LOG_LEVEL", "INFO"),
        "LOKI_URL": os.environ.get("LOKI_URL", ""),
        # shared by every replica: the count of wrong admin passwords per client address
        "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6390/0"),
        "ADMIN_AUTH_MAX_FAILURES": int(os.environ.get("ADMIN_AUTH_MAX_FAILURES", 10)),
        "ADMIN_AUTH_WINDOW_SECONDS": int(os.environ.get("ADMIN_AUTH_WINDOW_SECONDS", 60)),
    }
