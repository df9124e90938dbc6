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

from instance import registrations


@pytest.mark.parametrize("error", [ServerSelectionTimeoutError("no server"), WriteError("refused", 121)])
def test_an_insert_that_certainly_failed_is_not_looked_up(error):
    def find():
        raise AssertionError("no lookup needed")

    assert registrations.insert_outcome(error, find) == "not_stored"


@pytest.mark.parametrize("error", [NetworkTimeout("timed out"), AutoReconnect("reset"),
                                   WriteConcernError("wtimeout", 64), DuplicateKeyError("dup", 11000)])
def test_an_insert_that_may_have_landed_is_decided_by_a_lookup(error):
    assert registrations.insert_outcome(error, lambda: {"_id": "x"}) == "stored"
    assert registrations.insert_outcome(error, lambda: None) == "unknown"

    def lookup_fails():
        raise AutoReconnect("still down")

    assert registrations.insert_outcome(error, lookup_fails) == "unknown"


class FakeDb:
    """Just the collection calls a registration makes, failing the way a test says."""

    def __init__(self, upsert_error=None, insert_error=None, lands=False, find_error=None):
        self.upsert_error, self.insert_error, self.find_error = upsert_error, insert_error, find_error
        self.lands = lands  # the insert raises, but the server wrote the record anyway
        self.registrations: dict[str, dict] = {}

    def __getitem__(self, name):
        return self

    def update_one(self, query, update, upsert=False):
        if self.upsert_error:
            raise self.upsert_error

    def insert_one(self, doc):
        if self.insert_error is None or self.lands:
            self.registrations[doc["_id"]] = doc
        if self.insert_error:
            raise self.insert_error

    def find_one(self, query, projection=None):
        if self.find_error:
            raise self.find_error
        return self.registrations.get(query["_id"])


CASES = {
    # (FakeDb arguments, status, photo kept)
    "no server selectable": (dict(insert_error=ServerSelectionTimeoutError("none")), 503, False),
    "city upsert failed, insert never sent": (dict(upsert_error=AutoReconnect("reset")), 503, False),
    "timeout, but the insert landed": (dict(insert_error=NetworkTimeout("read timed out"), lands=True), 201, True),
    "write concern failed, record present": (dict(insert_error=WriteConcernError("wtimeout", 64), lands=True), 201,
                                             True),
    "connection lost, record absent": (dict(insert_error=AutoReconnect("reset")), 503, True),
    "connection lost, lookup failed": (dict(insert_error=AutoReconnect("reset"), find_error=AutoReconnect("down")),
                                       503, True),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_failed_write_keeps_or_deletes_the_photo_as_the_outcome_says(monkeypatch, post_registration,
                                                                         photo_store, case):
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
