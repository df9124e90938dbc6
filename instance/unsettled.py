"""Photos whose registration may or may not have reached the database.

When the database write fails after the request may have been sent (the connection broke
mid-call) and the database cannot be asked right away, the photo is kept: a record without
its photo would be worse than a photo without its record. The worker then asks again every
few seconds, in a thread of its own, and removes the photo once the database answers that
the record is not there (or holds another attempt's photo). The list lives in the worker's
memory: a worker killed meanwhile leaves the photo, and the log line that names it, for an
operator.
"""

import logging
import threading
import time

from pymongo.collection import Collection
from pymongo.errors import PyMongoError

from instance.photo_store import PhotoStoreUnavailable

log = logging.getLogger(__name__)


class UnsettledPhotos:
    def __init__(self, registrations: Collection, store, interval: float = 5.0):
        self.registrations = registrations
        self.store = store
        self.interval = interval
        # photo key -> registration id: attempts with one Idempotency-Key share the id
        self.pending: dict[str, str] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def add(self, registration_id: str, photo_key: str) -> None:
        with self._lock:
            self.pending[photo_key] = registration_id
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="unsettled-photos", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            time.sleep(self.interval)
            with self._lock:
                if not self.pending:
                    self._thread = None
                    return
            self.settle()

    def settle(self) -> None:
        """Ask the database once about every pending registration; keep what it cannot answer."""
        with self._lock:
            pending = list(self.pending.items())
        for photo_key, registration_id in pending:
            try:
                # stored under this id with another photo: an attempt with the same
                # Idempotency-Key won, and this photo is nobody's
                found = self.registrations.find_one({"_id": registration_id}, {"photo_key": 1})
                stored = found is not None and found.get("photo_key") == photo_key
                if not stored:
                    self.store.delete(photo_key)
            except (PyMongoError, PhotoStoreUnavailable):
                return  # still unreachable: next round
            log.info(
                "unsettled registration resolved: %s",
                "stored" if stored else "never stored, photo removed",
                extra={"registration_id": registration_id, "photo_key": photo_key},
            )
            with self._lock:
                self.pending.pop(photo_key, None)
