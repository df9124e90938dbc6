"""POST /api/registrations and the admin reads of one registration.

Order matters for "nothing half-stored": validate everything, store the photo, then write the
record. If the record certainly was not written the photo is deleted again, so no photo outlives
a refused registration. If the insert may have reached the database (a timeout or a lost
connection after sending), the record is looked up: found, the registration succeeded after
all; not found, the photo is kept (logged), because the write may still land and a record must
never point at a missing photo. An orphan photo is unreachable and can be swept.
"""

import logging
import secrets
import time
from datetime import UTC, datetime

from flask import Blueprint, Response, current_app, jsonify, request, stream_with_context, url_for
from pymongo.errors import (
    DuplicateKeyError,
    PyMongoError,
    ServerSelectionTimeoutError,
    WriteError,
)

from common import records
from common.cities import city_key
from common.errors import ApiError
from common.metrics import REGISTRATIONS, REJECTED, track_dependency
from instance import photos
from instance.auth import admin_required
from instance.db import get_db
from instance.photo_store import PhotoStoreUnavailable, get_photo_store, new_key, observe_upload
from instance.unsettled import UnsettledPhotos
from instance.validation import CITY_MAX, NAME_MAX, required_text

bp = Blueprint("registrations", __name__)
log = logging.getLogger(__name__)

DATABASE_DOWN = "The registration database is unavailable right now; nothing was stored. Please try again shortly."
KNOWN_CITIES_MAX = 10_000
STORE_DOWN = "The photo store is unavailable right now; nothing was stored. Please try again shortly."


def _public_base() -> str:
    return request.host_url


def to_json(doc: dict) -> dict:
    return {
        "id": doc["_id"],
        "name": doc["name"],
        "city": doc["city"],
        "photo_url": get_photo_store().signed_url(doc["photo_key"], _public_base()),
        "created_at": doc["created_at"].astimezone(UTC).isoformat(timespec="milliseconds"),
    }


def _read_photo() -> bytes:
    upload = request.files.get("photo")
    if upload is None or not upload.filename:
        # an ApiError, not reject(): create() counts every refused photo once
        raise ApiError(400, "missing_field", "A photo of the ID card is required (form field 'photo').", "photo")
    return upload.read(current_app.config["MAX_PHOTO_BYTES"] + 1)


@bp.post("/api/registrations")
def create():
    # a form without a file arrives url-encoded: that is a missing photo, not a wrong format
    if request.mimetype not in ("multipart/form-data", "application/x-www-form-urlencoded"):
        raise ApiError(415, "unsupported_media_type",
                       "Send the registration as multipart/form-data with fields name, city and photo.")
    name = required_text(request.form.get("name"), "name", "Name", NAME_MAX)
    city = required_text(request.form.get("city"), "city", "City", CITY_MAX)
    try:
        photo = photos.prepare(_read_photo(), current_app.config["MAX_PHOTO_BYTES"],
                               current_app.config["MAX_PHOTO_PIXELS"])
    except ApiError as error:
        REJECTED.labels(error.code).inc()
        raise

    store = get_photo_store()
    key = new_key(photo.extension)
    started = time.perf_counter()
    try:
        store.put(key, photo.data, photo.content_type)
    except PhotoStoreUnavailable as error:
        log.error("photo upload failed, registration refused: %s", error)
        raise ApiError(503, "photo_store_unavailable", STORE_DOWN) from None
    observe_upload(store, time.perf_counter() - started, len(photo.data))

    doc = {
        "_id": secrets.token_hex(16),
        "name": name,
        "city": city,
        "city_key": city_key(city),
        "photo_key": key,
        "created_at": datetime.now(UTC),
    }
    sent = False
    try:
        with track_dependency("mongodb", "insert"):
            db = get_db()
            _remember_city(db, doc["city_key"], city)
            sent = True  # from here on the record may reach the database even if pymongo raises
            db[records.REGISTRATIONS].insert_one(doc)
    except PyMongoError as error:
        outcome = "not_stored"
        if sent:
            outcome = insert_outcome(error, lambda: db[records.REGISTRATIONS].find_one({"_id": doc["_id"]}, {"_id": 1}))
        if outcome == "not_stored":
            log.error("database write failed, removing the uploaded photo: %s", error)
            _discard_photo(store, key)
            raise ApiError(503, "database_unavailable", DATABASE_DOWN) from None
        if outcome == "unknown":
            # the write may still land: the photo stays until the database can say (see unsettled.py)
            log.error("database write may have been sent; photo kept until the database can be asked",
                      extra={"photo_key": key, "registration_id": doc["_id"], "error": str(error)})
            current_app.extensions.setdefault(
                "unsettled_photos", UnsettledPhotos(db[records.REGISTRATIONS], store)).add(doc["_id"], key)
            raise ApiError(503, "database_unavailable", DATABASE_DOWN) from None
        log.warning("database write reported %s but the registration is stored", error.__class__.__name__,
                    extra={"registration_id": doc["_id"]})

    REGISTRATIONS.inc()
    log.info("registration stored", extra={"registration_id": doc["_id"], "photo_bytes": len(photo.data)})
    response = jsonify(to_json(doc))
    response.status_code = 201
    response.headers["Location"] = url_for("registrations.read", registration_id=doc["_id"])
    return response


def insert_outcome(error: PyMongoError, find) -> str:
    """After insert_one raised `error`: 'not_stored' when it certainly did not write, else what
    `find()` (a lookup by id) says: 'stored', or 'unknown' when absent or the lookup failed."""
    # never sent (pymongo re-raises a first attempt's error if only the retry's selection fails),
    # or the server refused this very document; a duplicate key may be our own earlier attempt
    if isinstance(error, ServerSelectionTimeoutError) or (
            isinstance(error, WriteError) and not isinstance(error, DuplicateKeyError)):
        return "not_stored"
    try:
        return "stored" if find() is not None else "unknown"
    except PyMongoError as lookup_error:
        log.warning("registration lookup after a failed write failed too: %s", lookup_error)
        return "unknown"


def _remember_city(db, key: str, spelling: str) -> None:
    """The first spelling of a city becomes its display name (harmless if the insert then fails).
    Each process asks the database once per city: a round trip per registration otherwise."""
    known = current_app.extensions.setdefault("known_cities", set())
    if key in known:
        return
    db[records.CITIES].update_one({"_id": key}, {"$setOnInsert": {"city": spelling}}, upsert=True)
    if len(known) >= KNOWN_CITIES_MAX:
        known.clear()
    known.add(key)


def _discard_photo(store, key: str) -> None:
    try:
        store.delete(key)
    except PhotoStoreUnavailable as error:
        # unreferenced and unguessable, so unreachable; logged so an operator can sweep it
        log.error("orphan photo left after a failed registration", extra={"photo_key": key, "error": str(error)})


def _find(registration_id: str) -> dict:
    if len(registration_id) != 32 or not all(c in "0123456789abcdef" for c in registration_id):
        raise ApiError(404, "not_found", "No registration has that id.")
    try:
        with track_dependency("mongodb", "find_one"):
            doc = get_db()[records.REGISTRATIONS].find_one({"_id": registration_id})
    except PyMongoError:
        raise ApiError(503, "database_unavailable", "The registration database is unavailable right now.") from None
    if doc is None:
        raise ApiError(404, "not_found", "No registration has that id.")
    return doc


@bp.get("/api/registrations/<registration_id>")
@admin_required
def read(registration_id: str):
    return jsonify(to_json(_find(registration_id)))


@bp.get("/api/registrations/<registration_id>/photo")
@admin_required
def photo(registration_id: str):
    doc = _find(registration_id)
    try:
        found = get_photo_store().open(doc["photo_key"])
    except PhotoStoreUnavailable:
        raise ApiError(503, "photo_store_unavailable", "The photo store is unavailable right now.") from None
    if found is None:
        raise ApiError(404, "not_found", "The photo of this registration is missing.")
    upstream, content_type = found
    response = Response(stream_with_context(upstream.iter_content(64 * 1024)), content_type=content_type)
    # gives the store's connection back even when the client leaves before the last chunk
    response.call_on_close(upstream.close)
    response.headers["Cache-Control"] = "private, no-store"
    return response
