"""The admin photo route streams the photo from the store and gives the store's connection back
however the download ends."""

import pytest

from forms import jpeg
from instance import registrations


@pytest.fixture
def stored_photo(instance_app, photo_store, monkeypatch):
    """An admin photo route over one registration whose photo is in the fake store."""
    photo_store.photos["ab/ab01.jpg"] = jpeg() * 20  # a few chunks
    doc = {"_id": "ab" * 16, "photo_key": "ab/ab01.jpg"}

    class Db:
        def __getitem__(self, name):
            return self

        def find_one(self, query):
            return doc if query["_id"] == doc["_id"] else None

    monkeypatch.setattr(registrations, "get_db", lambda: Db())
    return f"/api/registrations/{doc['_id']}/photo"


@pytest.mark.parametrize("read_all", [True, False], ids=["downloaded", "client left early"])
def test_a_streamed_photo_is_closed_when_the_response_ends(instance_app, photo_store, stored_photo, read_all):
    with instance_app.test_client() as client:
        response = client.get(stored_photo, auth=("admin", "unit-test-admin"), buffered=False)
        assert response.status_code == 200
        if read_all:
            assert b"".join(response.response) == photo_store.photos["ab/ab01.jpg"]
        response.close()
    (download,) = photo_store.opened
    assert download.closed
