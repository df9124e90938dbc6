"""The per-city XLSX report, streamed to the client while it is written.

An XLSX file is a ZIP of XML parts. The ZIP is written to a stream that cannot seek (zipfile
then puts each entry's sizes in a data descriptor after its data), so its bytes can leave as
soon as they are compressed: nothing is written to disk, and what is held in memory is the
rows of a few database batches and the bytes not yet handed to the server. The parts that do
not depend on the data (document properties, theme) go first, so the client gets its first
bytes at once even while the database is still sorting the scan.

openpyxl writes every sheet: its own write-only worksheet serialises the cells (the same
cells, types and escaping as a workbook it saves itself), but the sheet's XML goes straight
into its ZIP entry instead of a spool file that save() copies later. The Summary sheet comes
first in the workbook but its entry is written last, from the rows actually written, so its
totals always match the city sheets; it links every city to its sheet, since a sheet title
(31 characters at most) cannot always hold the city's whole name.

A reader thread reads the rows into a small bounded queue while the response writes, so the
database's work and the workbook's overlap. It reads them in short pages (see _pages), never in
one long command: the embedded database server runs one operation at a time, and a
registration must not wait for a report. The rows counted per city are handed to `counted`
when the last sheet is written: the chart and the city counters are refreshed from them.
"""

import contextlib
import logging
import queue
import re
import threading
import time
import unicodedata
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import groupby

from bson.codec_options import CodecOptions
from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import ERROR_CODES
from openpyxl.drawing.spreadsheet_drawing import SpreadsheetDrawing
from openpyxl.styles.stylesheet import write_stylesheet
from openpyxl.utils.datetime import to_excel
from openpyxl.workbook._writer import WorkbookWriter
from openpyxl.worksheet._writer import WorksheetWriter
from openpyxl.worksheet.hyperlink import Hyperlink
from openpyxl.writer.excel import ExcelWriter
from openpyxl.writer.theme import theme_xml
from openpyxl.xml import LXML
from openpyxl.xml.constants import (
    ARC_APP,
    ARC_CORE,
    ARC_ROOT_RELS,
    ARC_STYLE,
    ARC_THEME,
    ARC_WORKBOOK,
    ARC_WORKBOOK_RELS,
)
from openpyxl.xml.functions import tostring
from pymongo import ASCENDING
from pymongo.database import Database

from common import records
from common.metrics import REPORT_ROWS, REPORT_SECONDS, REPORT_SKIPPED, track_dependency

log = logging.getLogger(__name__)

HEADER = ["Name", "City", "Registered at (UTC)", "Photo link"]
SUMMARY_HEADER = ["City", "Total", "Sheet"]
CELL_MAX = 32767  # characters a cell holds in Excel and LibreOffice
CHUNK = 64 * 1024  # bytes handed to the server at a time
SCAN_PAGE = 1000  # rows per query: 30-60 ms of the embedded server's time, which nothing else gets meanwhile
SCAN_DEPTH = 4  # pages read ahead: bounds memory (a page is ~2 MB of documents)
_SCAN_ORDER = [("city_key", ASCENDING), ("created_at", ASCENDING)]  # the compound index's order

# Excel's rules for sheet names: at most 31 UTF-16 code units, none of these characters, not
# starting or ending with an apostrophe, unique ignoring case, and "History" is reserved.
TITLE_MAX = 31
_TITLE_FORBIDDEN = set("[]:*?/\\")
_TITLE_RESERVED = {"history", "summary"}  # Summary is ours


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _cut(text: str, units: int, from_end: bool = False) -> str:
    """The longest start (or end) of text within `units` UTF-16 code units, never half a pair."""
    chars = reversed(text) if from_end else iter(text)
    kept, used = [], 0
    for char in chars:
        used += 2 if ord(char) > 0xFFFF else 1
        if used > units:
            break
        kept.append(char)
    return "".join(reversed(kept)) if from_end else "".join(kept)


# Office Open XML reads "_xHHHH_" in a string or a sheet name as the character U+HHHH (ECMA-376
# Part 1, 22.9.2.19 ST_Xstring); its own "_x005F_" stands for a literal "_".
_OOXML_ESCAPE = re.compile(r"_(?=x[0-9A-Fa-f]{4}_)")


# characters XML 1.0 cannot hold: the format writes them as escape sequences
_XML_REFUSED = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


def ooxml_text(text: str) -> str:
    """text written so every spreadsheet program reads it back as it is."""
    if "_x" in text:
        text = _OOXML_ESCAPE.sub("_x005F_", text)
    return _XML_REFUSED.sub(lambda match: f"_x{ord(match.group()):04X}_", text)


def _title_keys(title: str) -> set[str]:
    # Spreadsheet programs compare sheet titles ignoring case, each with its own mapping (Excel
    # upper-cases, LibreOffice folds with ICU, some ignore width): "ı" and "i" are one title
    # to an upper-casing program though casefold() tells them apart. A title is taken when any
    # of these mappings of it is.
    forms = {title, unicodedata.normalize("NFKC", title)}
    return {mapped for form in forms for mapped in (form.casefold(), form.upper(), form.lower())}


class SheetTitles:
    """Gives each city a sheet title Excel and LibreOffice accept, unique within one workbook.

    A long name keeps its start and its end ("Santo Domingo de …Tsáchilas"): cities that share
    a long prefix usually differ at the end. Collisions get a number ("Quito (2)")."""

    def __init__(self):
        self.taken: set[str] = {key for reserved in _TITLE_RESERVED for key in _title_keys(reserved)}
        self.next_number: dict[str, int] = {}

    @staticmethod
    def base(city: str) -> str:
        clean = "".join(
            " " if char in _TITLE_FORBIDDEN or unicodedata.category(char)[0] == "C" else char for char in city
        )
        # no escape sequence in a title: a reader would decode it, and "_x005F_" is not read
        # back as "_" in a sheet name by every program
        clean = _OOXML_ESCAPE.sub(" ", clean)
        clean = " ".join(clean.split()).strip("'").strip()
        if _utf16_len(clean) > TITLE_MAX:
            head = _cut(clean, 19).rstrip()
            clean = f"{head}…{_cut(clean, TITLE_MAX - _utf16_len(head) - 1, from_end=True).lstrip()}"
        return clean.strip("'").strip() or "City"

    def __call__(self, city: str) -> str:
        base = self.base(city)
        title = base
        while _title_keys(title) & self.taken:
            number = self.next_number.get(base.casefold(), 2)
            self.next_number[base.casefold()] = number + 1
            suffix = f" ({number})"
            title = _cut(base, TITLE_MAX - len(suffix)).rstrip().rstrip("'") + suffix
        self.taken |= _title_keys(title)
        return title


def _text(sheet, value: str):
    # A user's "=HYPERLINK(...)" must stay text. openpyxl makes a formula only of a string that
    # starts with "=", and an error cell only of an error code such as "#N/A", so only those
    # need an explicit string cell (a cell object per value would cost a third of the report's time).
    # openpyxl writes text as it is, escape sequences included: they are escaped here.
    value = ooxml_text(value)
    if not value.startswith("=") and value not in ERROR_CODES:
        return value
    cell = WriteOnlyCell(sheet, value=value)
    cell.data_type = "s"
    return cell


def link_to(sheet, title: str):
    cell = WriteOnlyCell(sheet, value=title)
    cell.data_type = "s"  # a title can be "=…" too: always text
    quoted = title.replace("'", "''")
    cell.hyperlink = Hyperlink(ref="", location=f"'{quoted}'!A1", display=title)
    return cell


class _CityRows:
    """Writes a city sheet's rows inside its <sheetData>, the bulk of the report's work.

    A registration row whose values are plain (text with no leading or trailing space, no
    character XML refuses, not "=…" nor "#…", and a naive datetime) is formatted here in one
    go, to the very bytes openpyxl writes for it (the unit tests compare them); any other row
    goes through openpyxl cell by cell. openpyxl's own path costs about ten times more per row."""

    def __init__(self, sheet, xf, entry):
        self.sheet = sheet
        self.xf = xf
        # openpyxl writes with lxml's xmlfile when lxml can be imported (openpyxl.xml.LXML), else
        # with et_xmlfile's; our rows go where that writer is, under the element it has open
        if LXML:
            # lxml buffers on its own, and writes what is not ASCII as character references
            self.raw = lambda text: (xf.flush(), entry.write(text.encode("ascii", "xmlcharrefreplace")))
        else:
            self.raw = xf._file  # et_xmlfile writes through this text stream
        self.epoch = sheet.parent.epoch
        self.date_style: str | None = None  # registered with the first date, as openpyxl does

    def cells(self, row: int, values: list) -> None:
        writer = self.sheet._writer
        writer.write_row(self.xf, self.sheet._values_to_row(values, row), row)

    def registration(self, row: int, name, city: str, city_xml: str | None, created, link) -> None:
        """One registration's row; city_xml: the city escaped, None when it is not plain."""
        if (
            city_xml is not None
            and self.date_style is not None
            and type(created) is datetime
            and created.tzinfo is None
            and _plain(name)
            and _plain(link)
        ):
            self.raw(
                f'<row r="{row}"><c r="A{row}" t="inlineStr"><is><t>{_escape(ooxml_text(name))}</t></is></c>'
                f'<c r="B{row}" t="inlineStr"><is><t>{city_xml}</t></is></c>'
                f'<c r="C{row}" s="{self.date_style}" t="n"><v>{to_excel(created, self.epoch):.16g}</v></c>'
                f'<c r="D{row}" t="inlineStr"><is><t>{_escape(ooxml_text(link))}</t></is></c></row>'
            )
            return
        if self.date_style is None and isinstance(created, datetime):
            self.date_style = str(WriteOnlyCell(self.sheet, value=created).style_id)
        self.cells(row, [_text(self.sheet, name), _text(self.sheet, city), created, ooxml_text(link)])


# text openpyxl writes as it is: no control character XML refuses (openpyxl raises on those),
# no formula or error code, no surrounding space (xml:space="preserve" then), not empty
_NOT_PLAIN = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]|\A[\s=#]|\s\Z")


def _unwritable(doc: dict) -> str | None:
    """Why a registration cannot be written (only a direct database write makes one), or None."""
    name = doc.get("name")
    if type(name) is not str:
        return f"its name is a {type(name).__name__}, not text"
    if len(name) > CELL_MAX:
        return f"its name is longer than a cell holds ({len(name)} characters)"
    if not isinstance(doc.get("created_at"), datetime):
        return "it has no registration time"
    return None


def _plain(value) -> bool:
    return type(value) is str and 0 < len(value) <= CELL_MAX and _NOT_PLAIN.search(value) is None


def _escape(text: str) -> str:
    # what ElementTree escapes in text, in its order
    if "&" in text:
        text = text.replace("&", "&amp;")
    if "<" in text:
        text = text.replace("<", "&lt;")
    if ">" in text:
        text = text.replace(">", "&gt;")
    return text


@dataclass(frozen=True)
class Counted:
    """What a finished report counted. scope: "all" or "city"; known: records.cities() as the
    report began; rows: {city key: (rows, newest created_at)}; started_at: naive UTC."""

    scope: str
    known: dict[str, dict]
    rows: dict[str, tuple[int, datetime | None]]
    started_at: datetime


class _Spout:
    """The ZIP's output: bytes kept until the response takes them. No tell() or seek(), so
    zipfile writes the stream form (data descriptors)."""

    def __init__(self):
        self.parts: list[bytes] = []
        self.size = 0

    def write(self, data) -> int:
        self.parts.append(bytes(data))
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        data = b"".join(self.parts)
        self.parts.clear()
        self.size = 0
        return data


class _StreamingExcelWriter(ExcelWriter):
    """openpyxl's ExcelWriter for sheets whose entries are already in the archive.

    save() writes the parts in one go; here the parts that need nothing from the sheets go
    first and the rest after the last sheet. Only what this report uses (no charts, images,
    comments, external links or macros), following openpyxl 3.1's write_data."""

    def write_head(self) -> None:
        self._archive.writestr(ARC_APP, tostring(_extended_properties()))
        self._archive.writestr(ARC_CORE, tostring(self.workbook.properties.to_tree()))
        self._archive.writestr(ARC_THEME, theme_xml)

    def write_worksheet(self, ws) -> None:
        ws._drawing = SpreadsheetDrawing()
        ws._rels = ws._writer._rels
        self.manifest.append(ws)

    def write_tail(self) -> None:
        self._write_worksheets()
        self._archive.writestr(ARC_STYLE, tostring(write_stylesheet(self.workbook)))
        writer = WorkbookWriter(self.workbook)
        self._archive.writestr(ARC_ROOT_RELS, writer.write_root_rels())
        self._archive.writestr(ARC_WORKBOOK, writer.write())
        self._archive.writestr(ARC_WORKBOOK_RELS, writer.write_rels())
        self.manifest._write(self._archive, self.workbook)


def _extended_properties():
    from openpyxl.packaging.extended import ExtendedProperties  # as openpyxl imports it: late

    return ExtendedProperties().to_tree()


def _pages(registrations, city_key: str | None) -> Iterator[list[dict]]:
    """Every row with a text city key (or of one city) in (city_key, created_at) order, a page
    of at most SCAN_PAGE rows per query.

    Each page starts at a position: a city key and how many of its rows were read. The query
    asks for keys from that city on, in the index's order, skips the rows read and stops at the
    page's end, so the server walks the index, never the collection, and sorts nothing. The
    position within a city is an offset rather than a bound on created_at: the embedded server
    compares dates through SQLite's datetime() (whole seconds, no index) and would then sort a
    whole city in Python for each page. A row inserted behind the position shifts the offset
    by one: the page then begins with a row already read, which the last key read (created_at
    and the ids at that instant) recognises and drops, so no row is written twice. (Rows are
    never deleted while the service runs; one deleted behind the position would be missed.)

    A page is one reply (batch_size: no getMore round trip) of whole documents: the embedded
    server applies a projection by deep-copying each document in Python, which cost more than
    the two fields it saves (docs/embedded-database.md)."""
    city, offset = (city_key or ""), 0
    last: tuple = (None, None, set())  # city, created_at, ids read at that instant
    while True:
        keys = {"$gte": city, "$lte": city} if city_key is not None else {"$gte": city}
        with (
            track_dependency("mongodb", "report_scan"),
            registrations.find({"city_key": keys})
            .sort(_SCAN_ORDER)
            .skip(offset)
            .limit(SCAN_PAGE)
            .batch_size(SCAN_PAGE) as cursor,
        ):
            page = list(cursor)
        if not page:
            return
        fresh = []
        for doc in page:
            key = (doc["city_key"], doc["created_at"])
            if key[0] == last[0] and (key[1] < last[1] or (key[1] == last[1] and doc["_id"] in last[2])):
                continue  # read already (see above)
            fresh.append(doc)
        end = page[-1]
        if end["city_key"] == city:
            offset += len(page)
        else:
            city, offset = end["city_key"], sum(1 for doc in page if doc["city_key"] == end["city_key"])
        ids = {doc["_id"] for doc in page if (doc["city_key"], doc["created_at"]) == (city, end["created_at"])}
        last = (city, end["created_at"], ids | last[2] if last[:2] == (city, end["created_at"]) else ids)
        yield fresh
        if len(page) < SCAN_PAGE:
            return


class _Scan:
    """The report's rows, read ahead by a thread into a bounded queue, a page at a time."""

    _END = object()

    def __init__(self, pages: Callable[[], Iterator[list[dict]]]):
        self._queue: queue.Queue = queue.Queue(SCAN_DEPTH)
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._read, args=(pages,), name="report-scan", daemon=True)
        self._thread.start()

    def _put(self, item) -> bool:
        while not self._stopped.is_set():
            try:
                self._queue.put(item, timeout=0.5)
                return True
            except queue.Full:
                continue
        return False

    def _read(self, pages: Callable[[], Iterator[list[dict]]]) -> None:
        try:
            for page in pages():
                if not self._put(page):
                    return  # the client went away: no more pages are asked for
            self._put(self._END)
        except Exception as error:  # handed to the writer, which raises it in the request
            self._put(error)

    def __iter__(self) -> Iterator[dict]:
        while True:
            item = self._queue.get()
            if item is self._END:
                return
            if isinstance(item, Exception):
                raise item
            yield from item

    def close(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=5)


class ReportStream:
    """The workbook as a WSGI body: an iterable of byte chunks with close().

    Creating it reads the cities (their display names; so a database that is down is a 503
    before any byte) and starts the scan; iterating it writes and yields the file, and hands
    what it counted to `counted`. The server calls close() even when the client went away,
    which stops the scan. A city gets a sheet when it has rows."""

    def __init__(
        self,
        db: Database,
        photo_link: Callable[[str], str],
        city_key: str | None = None,
        counted: Callable[[Counted], None] | None = None,
    ):
        self.scope = "city" if city_key else "all"
        self.started = time.perf_counter()
        self.started_at = datetime.now(UTC).replace(tzinfo=None)
        self.photo_link = photo_link
        self.counted = counted
        with track_dependency("mongodb", "city_totals"):
            self.known = records.cities(db)  # display names, and the counters as the report began
        naive_utc = db[records.REGISTRATIONS].with_options(codec_options=CodecOptions(tz_aware=False))
        self.scan = _Scan(lambda: _pages(naive_utc, city_key))

    def close(self) -> None:
        self.scan.close()

    def __iter__(self) -> Iterator[bytes]:
        spout = _Spout()
        workbook = Workbook(write_only=True)
        workbook.properties.modified = datetime.now(UTC).replace(tzinfo=None)
        archive = zipfile.ZipFile(spout, "w", zipfile.ZIP_DEFLATED)
        open_sheet: list = []  # the sheet being written and its ZIP entry, to finish if the client leaves
        try:
            yield from self._write(workbook, archive, spout, open_sheet)
        except BaseException:
            # The client went away (GeneratorExit) or the scan failed: finish the parts quietly
            # into the spout, which nobody reads any more, so nothing complains when collected.
            for close in [*open_sheet, archive.close]:
                with contextlib.suppress(Exception):  # best effort on a stream already lost
                    close()
            raise

    def _write(self, workbook: Workbook, archive: zipfile.ZipFile, spout: _Spout, open_sheet: list) -> Iterator[bytes]:
        summary = workbook.create_sheet("Summary")
        summary._id = 1
        writer = _StreamingExcelWriter(workbook, archive)
        writer.write_head()
        yield spout.take()

        def start(sheet, own_rows: bool = False):
            entry = archive.open(sheet.path[1:], "w")
            # a city sheet's rows are written by _CityRows, the Summary's by the sheet itself
            open_sheet[:] = [(lambda: sheet._writer.close()) if own_rows else sheet.close, entry.close]
            sheet._writer = WorksheetWriter(sheet, out=entry)
            sheet._writer.write_top()
            return entry

        def finish():
            for close in open_sheet:
                close()
            open_sheet.clear()

        titles = SheetTitles()
        written: list[tuple[str, int, str]] = []
        skipped = 0
        counts: dict[str, tuple[int, datetime | None]] = {}  # per city key: rows, the newest created_at
        # a city registered after the report began has no display name read: its key stands in
        for number, (key, docs) in enumerate(groupby(self.scan, key=lambda doc: doc["city_key"]), start=2):
            name = self.known[key]["city"] if key in self.known else key.title()
            title = titles(name)
            sheet = workbook.create_sheet(title)
            sheet._id = number
            entry = start(sheet, own_rows=True)
            xf = sheet._writer.xf.send(True)
            with xf.element("sheetData"):
                rows = _CityRows(sheet, xf, entry)
                rows.cells(1, HEADER)
                count, newest = 0, None
                name_xml = _escape(ooxml_text(name)) if _plain(name) else None
                for doc in docs:
                    problem = _unwritable(doc)
                    if problem:
                        skipped += 1
                        REPORT_SKIPPED.inc()
                        log.warning("report leaves out registration %s: %s", doc.get("_id"), problem)
                        continue
                    count, newest = count + 1, doc["created_at"]
                    rows.registration(count + 1, doc["name"], name, name_xml, newest, self.photo_link(doc["_id"]))
                    if spout.size >= CHUNK:
                        yield spout.take()
                rows.cells(count + 2, [])
                rows.cells(count + 3, ["Total", count])
            sheet._writer.xf.send(None)
            sheet._writer.write_tail()
            finish()
            written.append((name, count, title))
            counts[key] = (count, newest)
            if spout.size >= CHUNK:
                yield spout.take()
        if self.counted is not None:
            # before the last bytes: a client holding the whole file finds the chart refreshed
            self.counted(Counted(self.scope, self.known, counts, self.started_at))

        start(summary)
        summary.append(SUMMARY_HEADER)
        for name, count, title in written:
            summary.append([_text(summary, name), count, link_to(summary, title)])
        summary.append(["All cities", sum(count for _, count, _ in written)])
        if skipped:
            summary.append([])
            summary.append(["Registrations left out (they could not be written; see the log)", skipped])
        finish()
        writer.write_tail()
        archive.close()
        yield spout.take()
        REPORT_SECONDS.labels(self.scope).observe(time.perf_counter() - self.started)
        REPORT_ROWS.labels(self.scope).observe(sum(count for _, count, _ in written))


def stream_xlsx(
    db: Database,
    photo_link: Callable[[str], str],
    city_key: str | None = None,
    counted: Callable[[Counted], None] | None = None,
) -> ReportStream:
    """The report for every city, or for one city key: see ReportStream."""
    return ReportStream(db, photo_link, city_key, counted)
