"""The per-city XLSX report, built row by row and never held in memory.

openpyxl's write-only mode spools each sheet to a temporary file as rows are appended, so
memory stays flat however many registrations there are; the finished workbook is then sent
in chunks and deleted. The summary sheet comes first in the workbook but is filled last,
from the rows actually written, so its totals always match the city sheets.
"""

import contextlib
import os
import re
import tempfile
import time
from collections.abc import Iterator

from bson.codec_options import CodecOptions
from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from pymongo import ASCENDING
from pymongo.database import Database

from common import records
from common.metrics import REPORT_ROWS, REPORT_SECONDS, track_dependency

HEADER = ["Name", "City", "Registered at (UTC)", "Photo link"]
_SHEET_FORBIDDEN = re.compile(r"[\[\]:*?/\\]")
CHUNK = 64 * 1024


def _text(sheet, value: str):
    # A user's "=HYPERLINK(...)" must stay text. openpyxl makes a formula only of a string that
    # starts with "=", so only those need an explicit string cell (a cell object per value
    # would cost a third of the report's time).
    if not value.startswith("="):
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


def build(db: Database, photo_link, city_key: str | None = None) -> str:
    """Write the workbook to a temporary file and return its path (the caller deletes it)."""
    scope = "city" if city_key else "all"
    started = time.perf_counter()
    cities = [c for c in records.city_totals(db) if city_key is None or c["city_key"] == city_key]
    workbook = Workbook(write_only=True)
    summary = workbook.create_sheet("Summary")
    taken: set[str] = set()
    sheets = {c["city_key"]: workbook.create_sheet(_sheet_title(c["city"], taken)) for c in cities}
    counts = dict.fromkeys(sheets, 0)
    for sheet in sheets.values():
        sheet.append(HEADER)
    # One scan in (city, time) order, the compound index's order, rather than one query per
    # city: a query costs a pass over the collection on a server without that index.
    query = {"city_key": city_key} if city_key else {}
    naive_utc = db[records.REGISTRATIONS].with_options(codec_options=CodecOptions(tz_aware=False))
    with track_dependency("mongodb", "report_scan"):
        cursor = (
            naive_utc.find(query, {"name": 1, "city_key": 1, "created_at": 1})
            .sort([("city_key", ASCENDING), ("created_at", ASCENDING)])
            .batch_size(2000)
        )
        names = {c["city_key"]: c["city"] for c in cities}
        for doc in cursor:
            key = doc["city_key"]
            sheet = sheets.get(key)
            if sheet is None:  # a city first registered after the totals were read: next report
                continue
            sheet.append([_text(sheet, doc["name"]), _text(sheet, names[key]), doc["created_at"],
                          photo_link(doc["_id"])])
            counts[key] += 1
    written = [(c["city"], counts[c["city_key"]]) for c in cities]
    for key, sheet in sheets.items():
        sheet.append([])
        sheet.append(["Total", counts[key]])

    summary.append(["City", "Total"])
    for name, count in written:
        summary.append([_text(summary, name), count])
    summary.append(["All cities", sum(count for _, count in written)])

    handle, path = tempfile.mkstemp(prefix="report-", suffix=".xlsx")
    os.close(handle)
    try:
        workbook.save(path)
    except BaseException:
        os.unlink(path)
        raise
    REPORT_SECONDS.labels(scope).observe(time.perf_counter() - started)
    REPORT_ROWS.labels(scope).observe(sum(count for _, count in written))
    return path


class TemporaryFileBody:
    """A WSGI body that sends the file in chunks and removes it when the server closes it,
    which the server does even when the client went away before the first byte."""

    def __init__(self, path: str):
        self.path = path
        self.handle = open(path, "rb")  # noqa: SIM115 - closed by close(), after the last chunk

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self.handle.read(CHUNK):
            yield chunk

    def close(self) -> None:
        self.handle.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
