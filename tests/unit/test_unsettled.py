"""A photo kept after an ambiguous database write is removed once the database says the record
never landed, kept for the next round while it cannot answer, and left alone when it did land."""

from pymongo.errors import AutoReconnect

from instance.unsettled import UnsettledPhotos


class Registrations:
    """The registrations collection at its pymongo boundary: down, then holding `stored`."""

    def __init__(self, stored: dict[str, str]):
        self.stored, self.down = stored, True  # registration id -> its photo key

    def find_one(self, query, projection):
        if self.down:
            raise AutoReconnect("connection refused")
        if query["_id"] not in self.stored:
            return None
        return {"_id": query["_id"], "photo_key": self.stored[query["_id"]]}


class Store:
    def __init__(self):
        self.deleted = []

    def delete(self, key):
        self.deleted.append(key)


def test_photos_are_settled_once_the_database_answers():
    registrations, store = Registrations(stored={"landed": "aa/landed.jpg"}), Store()
    unsettled = UnsettledPhotos(registrations, store, interval=3600)
    unsettled.add("landed", "aa/landed.jpg")
    unsettled.add("lost", "bb/lost.jpg")

    unsettled.settle()  # the database is still down: nothing decided
    assert store.deleted == [] and set(unsettled.pending) == {"aa/landed.jpg", "bb/lost.jpg"}

    registrations.down = False
    unsettled.settle()
    assert store.deleted == ["bb/lost.jpg"]  # the record that landed keeps its photo
    assert unsettled.pending == {}


def test_the_worker_thread_settles_by_itself_and_stops_when_done():
    registrations, store = Registrations(stored={}), Store()
    registrations.down = False
    unsettled = UnsettledPhotos(registrations, store, interval=0.05)
    unsettled.add("lost", "cc/lost.jpg")
    thread = unsettled._thread
    thread.join(timeout=5)
    assert not thread.is_alive() and store.deleted == ["cc/lost.jpg"] and unsettled._thread is None


def test_attempts_with_one_key_keep_only_the_photo_of_the_record_that_landed():
    """Three attempts with one Idempotency-Key share a registration id; one of them was stored."""
    registrations, store = Registrations(stored={"keyed": "bb/second.jpg"}), Store()
    unsettled = UnsettledPhotos(registrations, store, interval=3600)
    for photo in ("aa/first.jpg", "bb/second.jpg", "cc/third.jpg"):
        unsettled.add("keyed", photo)

    registrations.down = False
    unsettled.settle()
    assert sorted(store.deleted) == ["aa/first.jpg", "cc/third.jpg"]
    assert unsettled.pending == {}
