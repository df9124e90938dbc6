"""Nothing a request depends on waits without a bound: Cloudinary calls and the Loki push."""

import logging
import queue
import socket
import time

import pytest
import requests

from common import loki
from common.metrics import LOG_RECORDS_DROPPED


def test_cloudinary_upload_and_destroy_have_explicit_timeouts(monkeypatch):
    import cloudinary
    import cloudinary.uploader

    from instance.photo_store import CloudinaryStore

    calls = {}
    monkeypatch.setenv("CLOUDINARY_URL", "cloudinary://key:secret@cloud")  # restored; the store writes it
    monkeypatch.setattr(cloudinary, "_config", cloudinary._config)
    monkeypatch.setattr(cloudinary.uploader, "upload", lambda file, **options: calls.update(upload=options))
    monkeypatch.setattr(cloudinary.uploader, "destroy", lambda public_id, **options: calls.update(destroy=options))
    store = CloudinaryStore("cloudinary://key:secret@cloud", 600)
    store.put("ab/ab01.jpg", b"jpeg", "image/jpeg")
    store.delete("ab/ab01.jpg")
    assert calls["upload"]["timeout"] == 15
    assert calls["destroy"]["timeout"] == 5


def _record(message="hello") -> logging.LogRecord:
    return logging.LogRecord("test", logging.INFO, __file__, 1, message, None, None)


def test_a_full_loki_queue_drops_and_counts_records_without_waiting():
    records = queue.Queue(maxsize=2)
    handler = loki._DroppingQueueHandler(records)
    before = LOG_RECORDS_DROPPED._value.get()
    started = time.perf_counter()
    for n in range(5):
        handler.emit(_record(f"line {n}"))
    assert time.perf_counter() - started < 1
    assert records.qsize() == 2
    assert LOG_RECORDS_DROPPED._value.get() - before == 3


def test_a_loki_push_to_a_server_that_never_answers_times_out(monkeypatch):
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)  # takes the connection, never answers
    monkeypatch.setattr(loki, "PUSH_TIMEOUT", 0.3)
    emitter = loki._Emitter(f"http://127.0.0.1:{silent.getsockname()[1]}/loki/api/v1/push", {"service": "t"})
    started = time.perf_counter()
    try:
        with pytest.raises(requests.Timeout):
            emitter(_record(), "line")
    finally:
        emitter.close()
        silent.close()
    assert time.perf_counter() - started < 3
