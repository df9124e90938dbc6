"""POST /api/registrations and the admin reads of one registration.

Order matters for "nothing half-stored": validate everything, store the photo, then write the
record. If the record certainly was not written the photo is deleted again, so no photo outlives
a refused registration. If the insert may have reached the database (a timeout or a lost
connection after sending), the record is looked up: found, the registration succeeded after
all; not found, the photo is kept (logged), because the write may still land and a record must
never point at a missing photo, and the client is told its registration may have been stored.

"Never stored twice" rests on the Idempotency-Key header (IETF httpapi draft): the record's id
is derived from the key, so of several attempts with one key (a client's retry, nginx's retry
on the next replica, a frozen replica waking up) the database's unique `_id` admits exactly one.
Every other attempt finds that record, removes its own photo and replays the first answer, or
answers 422 when it was asked for something else under the same key.
"""

import contextlib
import logging
import re
import time
from datetime import UTC, timedelta

import pymongo
from flask import Blueprint, Response, current_app, g, jsonify, request, stream_with_context, url_for
from pymongo.errors import (
    DuplicateKeyError,
    NetworkTimeout,
    PyMongoError,
    ServerSelectionTimeoutError,
    WriteError,
)

from common import records
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
OUTCOME_UNKNOWN = (
    "The registration database did not confirm the write in time: your registration may have been "
    "stored. Retry with the same Idempotency-Key to get its answer without registering twice."
)
KEY_REUSED = (
    "This Idempotency-Key was already used for a registration with another name, city or photo. "
    "Use a new key for a new registration."
)
KNOWN_CITIES_MAX = 10_000
STORE_DOWN = "The photo store is unavailable right now; nothing was stored. Please try again shortly."
# printable and short: UUIDs and the like; the key goes into logs and a hash, never into a query as is
IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def _public_base() -> str:
    return request.host_url


def to_json(doc: dict, link_expires: int | None = None) -> dict:
    return {
        "id": doc["_id"],
        "name": doc["name"],
        "city": doc["city"],
        "photo_url": get_photo_store().signed_url(doc["photo_key"], _public_base(), link_expires),
        "created_at": doc["created_at"].astimezone(UTC).isoformat(timespec="milliseconds"),
    }


def _answer(doc: dict, replayed: bool) -> Response:
    """201 with the registration. The link's expiry is counted from the registration's time, so a
    replay under the same Idempotency-Key repeats the first answer to the byte."""
    expires = int((doc["created_at"] + timedelta(seconds=current_app.config["PHOTO_LINK_TTL_SECONDS"])).timestamp())
    response = jsonify(to_json(doc, expires))
    response.status_code = 201
    response.headers["Location"] = url_for("registrations.read", registration_id=doc["_id"])
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return response


def _idempotency_key() -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not IDEMPOTENCY_KEY.fullmatch(key):
        raise ApiError(
            400,
            "invalid_idempotency_key",
            "The Idempotency-Key header must be 1 to 128 letters, digits or . _ : - (a UUID fits).",
        )
    return key


def _read_photo() -> bytes:
    upload = request.files.get("photo")
    if upload is None or not upload.filename:
        # an ApiError, not reject(): create() counts every refused photo once
        raise ApiError(400, "missing_field", "A photo of the ID card is required (form field 'photo').", "photo")
    return upload.read(current_app.config["MAX_PHOTO_BYTES"] + 1)


@contextlib.contextmanager
def _db_time_limit():
    """Every database call of a request together gets MONGO_TIMEOUT_MS, each what the earlier
    ones left: a frozen database must turn into a quick 503, not a wait for a 60 s socket
    timeout, nor a limit per call (an insert that timed out, then the lookup of its outcome,
    would outlast nginx's 6 s for a keyed registration and take the replica out of rotation)."""
    left = current_app.config["MONGO_TIMEOUT_MS"] / 1000 - g.get("db_seconds", 0.0)
    if left <= 0:
        raise NetworkTimeout("this request's database time is spent")
    started = time.monotonic()
    try:
        with pymongo.timeout(left):
            yield
    finally:
        g.db_seconds = g.get("db_seconds", 0.0) + time.monotonic() - started


def _earlier_attempt(registration_id: str, fingerprint: str) -> dict | None:
    """The record an earlier attempt with this key stored, if any; 422 if it was asked for another."""
    try:
        doc = _lookup(get_db(), registration_id)
    except PyMongoError:
        # nothing of this attempt is stored yet; an earlier attempt may be, hence the key
        raise ApiError(503, "database_unavailable", OUTCOME_UNKNOWN) from None
    if doc is not None:
        _check_same_request(doc, fingerprint)
    return doc


def _check_same_request(doc: dict, fingerprint: str) -> None:
    """A stored record replays only for the very request its key was first used with."""
    if doc.get("request_hash") != fingerprint:
        raise ApiError(422, "idempotency_key_reused", KEY_REUSED)


@bp.post("/api/registrations")
def create():
    # a form without a file arrives url-encoded: that is a missing photo, not a wrong format
    if request.mimetype not in ("multipart/form-data", "application/x-www-form-urlencoded"):
        raise ApiError(
            415,
            "unsupported_media_type",
            "Send the registration as multipart/form-data with fields name, city and photo.",
        )
    idempotency_key = _idempotency_key()
    name = required_text(request.form.get("name"), "name", "Name", NAME_MAX)
    city = required_text(request.form.get("city"), "city", "City", CITY_MAX)
    try:
        raw = _read_photo()
        # what is refused without decoding is refused before the database is asked anything
        checked = photos.check(raw, current_app.config["MAX_PHOTO_BYTES"], current_app.config["MAX_PHOTO_PIXELS"])
    except ApiError as error:
        REJECTED.labels(error.code).inc()
        raise
    fingerprint = records.request_hash(name, city, raw)
    registration_id = records.registration_id(idempotency_key)
    if idempotency_key is not None:
        # a retry of a registration that is stored costs one lookup: no decode, no upload
        earlier = _earlier_attempt(registration_id, fingerprint)
        if earlier is not None:
            return _answer(earlier, replayed=True)
    try:
        photo = photos.decode(checked)
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

    doc = records.new_registration(name, city, key, registration_id=registration_id, request_hash=fingerprint)
    stored = _insert(doc, store)
    if stored["photo_key"] != key:  # another attempt with this key won: ours is not needed
        _discard_photo(store, key)
        _check_same_request(stored, fingerprint)
        log.info("registration replayed", extra={"registration_id": stored["_id"]})
        return _answer(stored, replayed=True)
    REGISTRATIONS.inc()
    log.info("registration stored", extra={"registration_id": doc["_id"], "photo_bytes": len(photo.data)})
    return _answer(doc, replayed=False)


def _insert(doc: dict, store) -> dict:
    """Write the record; return what the database holds under its id (ours, or the record an
    earlier attempt with the same key stored). Raises the 503s, having settled the photo."""
    sent = False
    db = None
    try:
        with _db_time_limit(), track_dependency("mongodb", "insert"):
            db = get_db()
            _remember_city(db, doc["city_key"], doc["city"])
            sent = True  # from here on the record may reach the database even if pymongo raises
            db[records.REGISTRATIONS].insert_one(doc)
        _count(db, doc)
        return doc
    except PyMongoError as error:
        outcome, found = "not_stored", None
        if sent:
            outcome, found = insert_outcome(error, lambda: _lookup(db, doc["_id"]))
        if outcome == "stored":
            if found["photo_key"] == doc["photo_key"]:  # stored by this attempt: counted by it
                log.warning(
                    "database write reported %s but the registration is stored",
                    error.__class__.__name__,
                    extra={"registration_id": doc["_id"]},
                )
                _count(db, doc)
            return found
        if outcome == "not_stored":
            log.error("database write failed, removing the uploaded photo: %s", error)
            _discard_photo(store, doc["photo_key"])
            raise ApiError(503, "database_unavailable", DATABASE_DOWN) from None
        # the write may still land: the photo stays until the database can say (see unsettled.py)
        log.error(
            "database write may have been sent; photo kept until the database can be asked",
            extra={"photo_key": doc["photo_key"], "registration_id": doc["_id"], "error": str(error)},
        )
        current_app.extensions.setdefault("unsettled_photos", UnsettledPhotos(db[records.REGISTRATIONS], store)).add(
            doc["_id"], doc["photo_key"]
        )
        raise ApiError(503, "database_unavailable", OUTCOME_UNKNOWN) from None


def _lookup(db, registration_id: str) -> dict | None:
    # within what is left of the request's database time: after an insert that timed out,
    # nothing (its outcome is then reported unknown); after a connection lost at once, most
    with _db_time_limit(), track_dependency("mongodb", "find_one"):
        return db[records.REGISTRATIONS].find_one({"_id": registration_id})


def insert_outcome(error: PyMongoError, find) -> tuple[str, dict | None]:
    """After insert_one raised `error`: ('not_stored', None) when it certainly did not write, else
    what `find()` (a lookup by id) says: ('stored', the record), or ('unknown', None) when absent
    or the lookup failed."""
    # never sent (pymongo re-raises a first attempt's error if only the retry's selection fails),
    # or the server refused this very document; a duplicate key is our own earlier attempt or
    # another attempt with the same Idempotency-Key, and the lookup tells which
    if isinstance(error, ServerSelectionTimeoutError) or (
        isinstance(error, WriteError) and not isinstance(error, DuplicateKeyError)
    ):
        return "not_stored", None
    try:
        found = find()
    except PyMongoError as lookup_error:
        log.warning("registration lookup after a failed write failed too: %s", lookup_error)
        return "unknown", None
    return ("stored", found) if found is not None else ("unknown", None)


def _count(db, doc: dict) -> None:
    """Add the record this attempt stored to its city's total; a failure leaves the total one
    short, which the next whole report corrects (see records.correct_totals), not a failed
    registration."""
    try:
        with _db_time_limit(), track_dependency("mongodb", "count"):
            records.count_registration(db, doc["city_key"], doc["city"])
    except PyMongoError as error:
        log.error("city total not counted: %s", error, extra={"registration_id": doc["_id"]})


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
        doc = _lookup(get_db(), registration_id)
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
