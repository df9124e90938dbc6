"""The MongoDB handle: one client per process (pymongo pools and is thread-safe)."""

import logging

from flask import Flask, current_app
from pymongo.database import Database

from common import records

log = logging.getLogger(__name__)


def get_db() -> Database:
    db = current_app.extensions["mongo"][current_app.config["MONGO_DB"]]
    if not current_app.extensions.get("mongo_indexes"):
        # the database may have been down at start; create the indexes once it answers
        records.ensure_indexes(db)
        current_app.extensions["mongo_indexes"] = True
    return db


def init_app(app: Flask) -> None:
    client = records.connect(app.config["MONGO_URL"])
    app.extensions["mongo"] = client
    try:
        records.ensure_indexes(client[app.config["MONGO_DB"]])
        app.extensions["mongo_indexes"] = True
    except Exception as error:
        log.warning("database not reachable at start, indexes deferred: %s", error)
