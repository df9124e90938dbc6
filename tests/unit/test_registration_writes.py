"""A failed database write after the photo was uploaded: the photo is deleted only when the
record certainly was not written; when the insert may have reached the server the record is
looked up, and a registration found is a success."""

import pytest
from pymongo.errors import (
    AutoReconnect,
    DuplicateKeyError,
    NetworkTimeout,
    ServerSelectionTimeoutError,
    WriteConcernError,
    WriteError,
)

from forms import jpeg
from instance import registrations


@pytest.mark.parametrize("error", [ServerSelectionTimeoutError("no server"), WriteError("refused", 121)])
def test_an_insert_that_certainly_failed_is_not_looked_up(error):
    def find():
        raise AssertionError("no lookup needed")

    assert registrations.insert_outcome(error, find) == ("not_stored", None)


@pytest.mark.parametrize(
    "error",
    [
        NetworkTimeout("timed out"),
        AutoReconnect("reset"),
        WriteConcernError("wtimeout", 64),
        DuplicateKeyError("dup", 11000),
    ],
)
def test_an_insert_that_may_have_landed_is_decided_by_a_lookup(error):
    assert registrations.insert_outcome(error, lambda: {"_id": "x"}) == ("stored", {"_id": "x"})
    assert registrations.insert_outcome(error, lambda: None) == ("unknown", None)

    def lookup_fails():
        raise AutoReconnect("still down")

    assert registrations.insert_outcome(error, lookup_fails) == ("unknown", None)


class FakeDb:
    """Just the collection calls a registration makes, failing the way a test says."""

    def __init__(self, upsert_error=None, insert_error=None, lands=False, find_error=None):
        self.upsert_error, self.insert_error, self.find_error = upsert_error, insert_error, find_error
        self.lands = lands  # the insert raises, but the server wrote the record anyway
        self.registrations: dict[str, dict] = {}
        self.inserting = False  # find_error hits the lookups after an insert, not the one before

    def __getitem__(self, name):
        return self

    def update_one(self, query, update, upsert=False):
        if self.upsert_error:
            raise self.upsert_error

    def insert_one(self, doc):
        self.inserting = True
        if doc["_id"] in self.registrations:  # the unique _id index
            raise DuplicateKeyError("E11000 duplicate key error", 11000)
        if self.insert_error is None or self.lands:
            self.registrations[doc["_id"]] = dict(doc)
        if self.insert_error:
            raise self.insert_error

    def find_one(self, query, projection=None):
        if self.find_error and self.inserting:
            raise self.find_error
        return self.registrations.get(query["_id"])


CASES = {
    # (FakeDb arguments, status, photo kept)
    "no server selectable": (dict(insert_error=ServerSelectionTimeoutError("none")), 503, False),
    "city upsert failed, insert never sent": (dict(upsert_error=AutoReconnect("reset")), 503, False),
    "timeout, but the insert landed": (dict(insert_error=NetworkTimeout("read timed out"), lands=True), 201, True),
    "write concern failed, record present": (
        dict(insert_error=WriteConcernError("wtimeout", 64), lands=True),
        201,
        True,
    ),
    "connection lost, record absent": (dict(insert_error=AutoReconnect("reset")), 503, True),
    "connection lost, lookup failed": (
        dict(insert_error=AutoReconnect("reset"), find_error=AutoReconnect("down")),
        503,
        True,
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_failed_write_keeps_or_deletes_the_photo_as_the_outcome_says(
    monkeypatch, post_registration, photo_store, case
):
    arguments, status, photo_kept = CASES[case]
    db = FakeDb(**arguments)
    monkeypatch.setattr(registrations, "get_db", lambda: db)

    response = post_registration()

    assert response.status_code == status, response.get_json()
    assert bool(photo_store.photos) == photo_kept
    if status == 201:
        assert response.get_json()["id"] in db.registrations
    else:
        assert response.get_json()["error"]["code"] == "database_unavailable"


KEY = {"Idempotency-Key": "0b6c3f5e-2d1a-4c8e-9f7a-5e4d3c2b1a00"}


@pytest.fixture
def db(monkeypatch):
    fake = FakeDb()
    monkeypatch.setattr(registrations, "get_db", lambda: fake)
    return fake


def test_a_retry_with_the_same_key_replays_the_first_answer(db, post_registration, photo_store):
    first = post_registration(headers=KEY)
    again = post_registration(headers=KEY)

    assert first.status_code == again.status_code == 201
    assert again.get_data() == first.get_data()  # same id, same link, same time
    assert again.headers["Idempotent-Replayed"] == "true" and "Idempotent-Replayed" not in first.headers
    assert len(db.registrations) == 1 and len(photo_store.photos) == 1


def test_the_same_key_for_another_registration_is_refused(db, post_registration, photo_store):
    assert post_registration(headers=KEY).status_code == 201

    for changed in ({"name": "Someone Else"}, {"city": "Cuenca"}, {"photo": jpeg(64, 48)}):
        response = post_registration(headers=KEY, **changed)
        assert response.status_code == 422
        assert response.get_json()["error"]["code"] == "idempotency_key_reused"
    assert len(db.registrations) == 1 and len(photo_store.photos) == 1


def test_requests_without_a_key_are_separate_registrations(db, post_registration, photo_store):
    assert post_registration().get_json()["id"] != post_registration().get_json()["id"]
    assert len(db.registrations) == 2 and len(photo_store.photos) == 2


@pytest.mark.parametrize("key", ["", "x" * 129, "has space", "semi;colon", "ünicode"])
def test_a_malformed_key_is_refused_before_anything_is_stored(db, post_registration, photo_store, key):
    response = post_registration(headers={"Idempotency-Key": key})
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_idempotency_key"
    assert not db.registrations and not photo_store.photos


def test_an_attempt_that_loses_the_race_removes_its_photo_and_replays_the_winner(
    db, post_registration, photo_store, monkeypatch
):
    """Two attempts with one key both passed the first lookup; the other one inserted first."""
    winner = post_registration(headers=KEY)
    stored = dict(db.registrations)
    db.registrations.clear()  # this attempt's first lookup finds nothing ...
    real_insert = db.insert_one

    def insert_after_the_winner(doc):
        db.registrations.update(stored)  # ... and its insert meets the winner's record
        return real_insert(doc)

    monkeypatch.setattr(db, "insert_one", insert_after_the_winner)
    loser = post_registration(headers=KEY)

    assert loser.status_code == 201 and loser.get_data() == winner.get_data()
    assert list(photo_store.photos) == [stored[winner.get_json()["id"]]["photo_key"]]


def test_an_unknown_outcome_says_the_registration_may_be_stored(db, post_registration, photo_store):
    db.insert_error = AutoReconnect("reset")  # sent, not confirmed, and the record is not there
    response = post_registration(headers=KEY)

    assert response.status_code == 503
    message = response.get_json()["error"]["message"]
    assert "may have been stored" in message and "Idempotency-Key" in message
    assert "nothing was stored" not in message
    assert len(photo_store.photos) == 1  # kept until the database can say


def test_a_write_that_landed_unconfirmed_is_found_by_the_retry(db, post_registration, photo_store):
    db.insert_error, db.lands, db.find_error = NetworkTimeout("timed out"), True, AutoReconnect("down")
    assert post_registration(headers=KEY).status_code == 503  # stored, but nobody could tell

    db.insert_error = db.find_error = None
    db.inserting = False
    retry = post_registration(headers=KEY)
    assert retry.status_code == 201 and retry.headers["Idempotent-Replayed"] == "true"
    assert len(db.registrations) == 1


def test_a_keyed_registration_with_the_database_down_is_a_503_and_stores_nothing(
    monkeypatch, post_registration, photo_store
):
    def unreachable():
        raise ServerSelectionTimeoutError("no server")  # as get_db() does when its indexes wait

    monkeypatch.setattr(registrations, "get_db", unreachable)
    response = post_registration(headers=KEY)

    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "database_unavailable"
    assert not photo_store.photos
