"""Push log records to Loki without slowing requests down.

python-logging-loki's handler posts synchronously, one HTTP call per record; behind a queue
its listener thread does the posting and a request thread only enqueues. When Loki is slow or
down the queue fills up: records are then dropped (stdout still has them) and counted in
log_records_dropped_total, never waited for. Each push has a timeout. Labels are the
low-cardinality trio service, instance, level: a request id or user input as a label would
create a stream per value (Loki's cardinality limit), so those stay in the line's JSON body.
"""

import logging
import logging.handlers
import queue

import logging_loki
import requests
from logging_loki.emitter import LokiEmitterV1

from common.metrics import LOG_RECORDS_DROPPED

PUSH_TIMEOUT = 5  # seconds (connect and read) per push; the library sets none


class _TimeoutSession(requests.Session):
    def request(self, *args, **kwargs):
        kwargs.setdefault("timeout", PUSH_TIMEOUT)
        return super().request(*args, **kwargs)


class _Emitter(LokiEmitterV1):
    level_tag = "level"
    session_class = _TimeoutSession

    def build_tags(self, record: logging.LogRecord) -> dict:
        # only the fixed trio: the library would also add the logger name and any `tags` extra
        return {**self.tags, self.level_tag: record.levelname.lower()}


class _LokiHandler(logging_loki.LokiHandler):
    def __init__(self, url: str, tags: dict):
        logging.Handler.__init__(self)
        self.emitter = _Emitter(url, tags)


class _DroppingQueueHandler(logging.handlers.QueueHandler):
    def enqueue(self, record: logging.LogRecord) -> None:
        try:
            self.queue.put_nowait(record)
        except queue.Full:
            LOG_RECORDS_DROPPED.inc()


def loki_handler(
    url: str, service: str, instance: str, formatter: logging.Formatter, stamp: logging.Filter | None
) -> logging.Handler:
    push_url = url.rstrip("/")
    if not push_url.endswith("/loki/api/v1/push"):
        push_url += "/loki/api/v1/push"
    target = _LokiHandler(push_url, tags={"service": service, "instance": instance})
    # the body is the same JSON line as stdout's, so LogQL's `| json` works on it
    target.setFormatter(formatter)
    records: queue.Queue = queue.Queue(maxsize=10_000)
    listener = logging.handlers.QueueListener(records, target, respect_handler_level=True)
    listener.start()
    handler = _DroppingQueueHandler(records)
    if stamp:
        handler.addFilter(stamp)
    return handler
