"""The per-city XLSX report, built row by row and never held in memory.

openpyxl's write-only mode spools each sheet to a temporary file as rows are appended, so
memory stays flat however many registrations there are. Each city sheet is closed as soon as
its rows are written, so a report holds two spool files open whatever the number of cities.
The finished workbook goes to a temporary file that has no name on disk (unlinked as it is
created, in a directory only this process can read), so nothing is left behind even when the
worker is killed, and is sent in chunks. The summary sheet comes first in the workbook but is
filled last, from the rows actually written, so its totals always match the city sheets.
"""

import atexit
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from itertools import groupby
from operator import itemgetter
from typing import BinaryIO

from bson.codec_options import CodecOptions
from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import ERROR_CODES
from pymongo import ASCENDING
from pymongo.database import Database

from common import records
from common.metrics import REPORT_ROWS, REPORT_SECONDS, track_dependency

HEADER = ["Name", "City", "Registered at (UTC)", "Photo link"]
_SHEET_FORBIDDEN = re.compile(r"[\[\]:*?/\\]")
CHUNK = 64 * 1024
_private_dir: str | None = None
_private_dir_lock = threading.Lock()


def private_dir() -> str:
    """This process's own 0700 directory (mkdtemp), removed when it exits."""
    global _private_dir
    with _private_dir_lock:
        if _private_dir is None or not os.path.isdir(_private_dir):
            _private_dir = tempfile.mkdtemp(prefix="reports-")
            atexit.register(shutil.rmtree, _private_dir, True)
        return _private_dir


def _text(sheet, value: str):
    # A user's "=HYPERLINK(...)" must stay text. openpyxl makes a formula only of a string that
    # starts with "=", and an error cell only of an error code such as "#N/A", so only those
    # need an explicit string cell (a cell object per value would cost a third of the report's time).
    if not value.startswith("=") and value not in ERROR_CODES:
        return value
    cell = WriteOnlyCell(sheet, value=value)
    cell.data_type = "s"
    return cell


def _sheet_title(city: str, taken: set[str]) -> str:
    """Excel sheet names: at most 31 characters, none of []:*?/\\, unique ignoring case."""
    base = _SHEET_FORBIDDEN.sub(" ", city).strip("' ")[:28] or "City"
    title, n = base, 2
    while title.casefold() in taken or title.casefold() == "summary":
        title = f"{base[:27]} {n}"
        n += 1
    taken.add(title.casefold())
    return title


def build(db: Database, photo_link, city_key: str | None = None) -> BinaryIO:
    """Write the workbook to an unnamed temporary file and return it, rewound (the caller closes it)."""
    scope = "city" if city_key else "all"
    started = time.perf_counter()
    # cities in key order, the order of the one scan below
    cities = sorted((c for c in records.city_totals(db) if city_key is None or c["city_key"] == city_key),
                    key=itemgetter("city_key"))
    workbook = Workbook(write_only=True)
    summary = workbook.create_sheet("Summary")
    taken: set[str] = set()
    written: list[tuple[str, int]] = []
    # One scan in (city, time) order, the compound index's order, rather than a query per city
    # (which costs a pass over the collection on a server that does not use that index).
    naive_utc = db[records.REGISTRATIONS].with_options(codec_options=CodecOptions(tz_aware=False))
    query = {"city_key": city_key} if city_key else {}
    with (track_dependency("mongodb", "report_scan"),
          naive_utc.find(query, {"name": 1, "created_at": 1, "city_key": 1})
          .sort([("city_key", ASCENDING), ("created_at", ASCENDING)]).batch_size(2000) as cursor):
        # a record without a usable key (never written by this code) sorts apart and is skipped
        groups = groupby(cursor, key=lambda doc: doc.get("city_key") if isinstance(doc.get("city_key"), str) else "")
        group = next(groups, None)
        for city in cities:
            while group is not None and group[0] < city["city_key"]:
                group = next(groups, None)  # a city first registered after the totals were read
            sheet = workbook.create_sheet(_sheet_title(city["city"], taken))
            sheet.append(HEADER)
            count = 0
            if group is not None and group[0] == city["city_key"]:
                for doc in group[1]:  # a text cell is used up by its row: one per row
                    sheet.append([_text(sheet, doc["name"]), _text(sheet, city["city"]), doc["created_at"],
                                  photo_link(doc["_id"])])
                    count += 1
                group = next(groups, None)
            sheet.append([])
            sheet.append(["Total", count])
            sheet.close()  # releases its spool file's descriptor: one per city would run out of them
            written.append((city["city"], count))

    summary.append(["City", "Total"])
    for name, count in written:
        summary.append([_text(summary, name), count])
    summary.append(["All cities", sum(count for _, count in written)])

    # unlinked as it is opened (or never named, with O_TMPFILE): closing it is deleting it
    out = tempfile.TemporaryFile(prefix="report-", suffix=".xlsx", dir=private_dir())  # noqa: SIM115 - returned
    try:
        workbook.save(out)
        out.seek(0)
    except BaseException:
        out.close()
        raise
    REPORT_SECONDS.labels(scope).observe(time.perf_counter() - started)
    REPORT_ROWS.labels(scope).observe(sum(count for _, count in written))
    return out


class TemporaryFileBody:
    """A WSGI body that sends the file in chunks and closes (so deletes) it when the server
    closes the body, which the server does even when the client went away before the first byte."""

    def __init__(self, handle: BinaryIO):
        self.handle = handle
        self.size = os.fstat(handle.fileno()).st_size

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self.handle.read(CHUNK):
            yield chunk

    def close(self) -> None:
        self.handle.close()
