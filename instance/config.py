"""Instance settings, read from the environment once, in one place."""

import os

from common import records


def _decodes_per_process() -> int:
    """The CPUs this process may run on, shared by the service's gunicorn workers: more decodes
    at once only make each slower and add their memory."""
    workers = int(os.environ.get("GUNICORN_WORKERS", "2"))  # gunicorn's own setting (common/gunicorn_conf.py)
    return max(1, len(os.sched_getaffinity(0)) // max(1, workers))


MAX_PHOTO_BYTES = 5 * 2**20  # the default; the native stack derives nginx's body limit from it too


def from_env() -> dict:
    max_photo = int(os.environ.get("MAX_PHOTO_BYTES", MAX_PHOTO_BYTES))
    return {
        "INSTANCE_NAME": os.environ.get("INSTANCE_NAME", "instance-1"),
        "MONGO_URL": os.environ.get("MONGO_URL", "mongodb://127.0.0.1:27027"),
        "MONGO_DB": os.environ.get("MONGO_DB", records.DATABASE),
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
        # what one photo may cost to check (instance/photos.py)
        "PHOTO_MAX_SIDE": int(os.environ.get("PHOTO_MAX_SIDE", 2000)),
        "PHOTO_DECODE_MAX_PIXELS": int(os.environ.get("PHOTO_DECODE_MAX_PIXELS", 10_000_000)),
        "PHOTO_MAX_SCANS": int(os.environ.get("PHOTO_MAX_SCANS", 100)),
        "PHOTO_DECODES": int(os.environ.get("PHOTO_DECODES") or _decodes_per_process()),
        "PHOTO_DECODE_WAIT_SECONDS": float(os.environ.get("PHOTO_DECODE_WAIT_SECONDS", 2)),
        "PHOTO_DECODE_SECONDS": float(os.environ.get("PHOTO_DECODE_SECONDS", 4)),
        # a phone's 12 Mpx JPEG costs about 0.07 s; past this, an upload is refused (400)
        "PHOTO_DECODE_CPU_SECONDS": float(os.environ.get("PHOTO_DECODE_CPU_SECONDS", 0.3)),
        # the photo plus the text fields and multipart framing
        "MAX_CONTENT_LENGTH": max_photo + 2**20,
        "LOG_LEVEL": os.environ.get("LOG_LEVEL", "INFO"),
        "LOKI_URL": os.environ.get("LOKI_URL", ""),
        # shared by every replica: the count of wrong admin passwords per client address
        "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6390/0"),
        "ADMIN_AUTH_MAX_FAILURES": int(os.environ.get("ADMIN_AUTH_MAX_FAILURES", 10)),
        "ADMIN_AUTH_WINDOW_SECONDS": int(os.environ.get("ADMIN_AUTH_WINDOW_SECONDS", 60)),
    }
