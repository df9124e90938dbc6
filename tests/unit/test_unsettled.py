"""A photo kept after an ambiguous database write is removed once the database says the record
never landed, kept for the next round while it cannot answer, and left alone when it did land."""

from pymongo.errors import AutoReconnect

from instance.unsettled import UnsettledPhotos


class Registrations:
    """The registrations collection at its pymongo boundary: down, then holding `stored`."""

    def __init__(self, stored: set[str]):
        self.stored, self.down = stored, True

    def find_one(self, query, projection):
        if self.down:
            raise AutoReconnect("connection refused")
        return {"_id": query["_id"]} if query["_id"] in self.stored else None


class Store:
    def __init__(self):
        self.deleted = []

    def delete(self, key):
        self.deleted.append(key)


def test_photos_are_settled_once_the_database_answers():
    registrations, store = Registrations(stored={"landed"}), Store()
    unsettled = UnsettledPhotos(registrations, store, interval=3600)
    unsettled.add("landed", "aa/landed.jpg")
    unsettled.add("lost", "bb/lost.jpg")

    unsettled.settle()  # the database is still down: nothing decided
    assert store.deleted == [] and set(unsettled.pending) == {"landed", "lost"}

    registrations.down = False
    unsettled.settle()
    assert store.deleted == ["bb/lost.jpg"]  # the record that landed keeps its photo
    assert unsettled.pending == {}


def test_the_worker_thread_settles_by_itself_and_stops_when_done():
    registrations, store = Registrations(stored=set()), Store()
    registrations.down = False
    unsettled = UnsettledPhotos(registrations, store, interval=0.05)
    unsettled.add("lost", "cc/lost.jpg")
    thread = unsettled._thread
    thread.join(timeout=5)
    assert not thread.is_alive() and store.deleted == ["cc/lost.jpg"] and unsettled._thread is None
