"""The report's stream: bytes before the database has answered, nothing on disk, bounded chunks,
descriptors that do not grow with the number of cities, the same sheets openpyxl itself would
save, a scan that stops with its client, and sheet titles that Excel accepts."""

import io
import os
import resource
import tempfile
import threading
import time
import zipfile
from datetime import datetime

import pytest
from openpyxl import Workbook, load_workbook
from openpyxl.cell import WriteOnlyCell
from pymongo.errors import AutoReconnect

from common import gunicorn_conf, records
from instance import report

# names that take every path of the row writer: plain, escaped, spaced, formula-like, error-like
NAMES = [
    "Person {}",
    "Ana & Luis <{}>",
    " Leading {}",
    "Trailing {} ",
    "=SUM({})",
    "#N/A",
    "Ñandú 😀 {}",
    "tab\tinside {}",
    "nbsp {}\u00a0",
    "+{}",
    "-{}",
    "@{}",
    "# {}",
    "line\nbreak {}",
    "_x0041_ escaped {}",  # the format's own escape syntax, to be read as written
    "bell\x07 {}",  # a control character XML cannot hold (a direct database write)
]


class FakeRegistrations:
    """The registrations collection as the report reads it: pages of a (city, time) order, asked
    for by a range of city keys, an offset and a limit. `gate`, when given, holds the first page
    back (a database still working) until it is set; `fail_after` makes the read raise after
    that many documents (a database gone mid-scan)."""

    def __init__(self, cities: int, per_city: int, gate: threading.Event | None = None, fail_after: int | None = None):
        self.docs = [
            {
                "_id": f"city{c:04d}-{n}",
                "name": NAMES[n % len(NAMES)].format(n),
                "city_key": f"city {c:04d}",
                "created_at": datetime(2026, 1, 1, 8, n % 60, n % 60, n * 7919 % 1_000_000),
            }
            for c in range(cities)
            for n in range(per_city)
        ]
        self.docs.sort(key=lambda doc: (doc["city_key"], doc["created_at"]))
        self.gate = gate
        self.fail_after = fail_after
        self.pages = 0
        self.read = 0

    def with_options(self, codec_options):
        return self

    def find(self, query):
        keys = query["city_key"]
        self.found = [doc for doc in self.docs if keys["$gte"] <= doc["city_key"] <= keys.get("$lte", "\uffff")]
        return self

    def sort(self, keys):
        assert keys == [("city_key", 1), ("created_at", 1)]
        return self

    def skip(self, offset):
        self.found = self.found[offset:]
        return self

    def limit(self, count):
        self.found = self.found[:count]
        self.limit_count = count
        return self

    def batch_size(self, count):
        assert count == self.limit_count  # a page comes in one reply
        return self

    def __iter__(self):
        if self.gate is not None:
            assert self.gate.wait(10)
        self.pages += 1
        for doc in self.found:
            if self.read == self.fail_after:
                raise AutoReconnect("connection closed")
            self.read += 1
            yield doc

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass


def _known(cities: int, per_city: int, name=lambda n: f"City {n:04d}"):
    return {f"city {n:04d}": {"city": name(n), "total": per_city} for n in range(cities)}


def _stream(monkeypatch, cities: int, per_city: int = 2, **fake):
    monkeypatch.setattr(records, "cities", lambda db: _known(cities, per_city))
    collection = FakeRegistrations(cities, per_city, **fake)
    body = report.stream_xlsx({records.REGISTRATIONS: collection}, lambda rid: f"https://x/{rid}")
    return body, collection


def _read(body) -> bytes:
    try:
        return b"".join(body)
    finally:
        body.close()


@pytest.fixture
def few_descriptors():
    """Only 40 more files may be opened during the test."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")) + 40, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_the_first_bytes_leave_before_the_database_has_answered(monkeypatch):
    gate = threading.Event()
    body, _ = _stream(monkeypatch, cities=3, gate=gate)
    try:
        first = next(iter(body))  # the scan is still held back
        assert first.startswith(b"PK\x03\x04") and not gate.is_set()
    finally:
        gate.set()
        body.close()


def test_the_workbook_streams_in_bounded_chunks_and_nothing_is_written_to_disk(monkeypatch, tmp_path):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    body, _ = _stream(monkeypatch, cities=40, per_city=500)
    chunks = []
    for chunk in body:
        chunks.append(chunk)
        assert os.listdir(tmp_path) == []
    body.close()
    assert len(chunks) > 5
    assert max(len(chunk) for chunk in chunks) < 4 * report.CHUNK
    workbook = load_workbook(io.BytesIO(b"".join(chunks)), read_only=True)
    assert len(workbook.sheetnames) == 41


def test_a_report_of_many_cities_needs_no_more_descriptors_than_one_of_few(monkeypatch, few_descriptors):
    body, _ = _stream(monkeypatch, cities=300)
    workbook = load_workbook(io.BytesIO(_read(body)), read_only=True)
    assert len(workbook.sheetnames) == 301


def test_the_sheets_are_exactly_those_openpyxl_saves_itself(monkeypatch):
    per_city = 2 * len(NAMES)
    monkeypatch.setattr(records, "cities", lambda db: _known(3, per_city, name=CITY_NAMES.__getitem__))
    collection = FakeRegistrations(3, per_city)
    body = report.stream_xlsx({records.REGISTRATIONS: collection}, lambda rid: f"https://x/{rid}?a=1&b=<2>")
    streamed = zipfile.ZipFile(io.BytesIO(_read(body)))

    expected = Workbook(write_only=True)
    summary = expected.create_sheet("Summary")
    for n, city in enumerate(CITY_NAMES):
        sheet = expected.create_sheet(TITLES[n])
        sheet.append(report.HEADER)
        for doc in (doc for doc in collection.docs if doc["city_key"] == f"city {n:04d}"):
            # what openpyxl writes by itself, text kept text as the report promises
            sheet.append(
                [
                    _as_text(sheet, doc["name"]),
                    _as_text(sheet, city),
                    doc["created_at"],
                    f"https://x/{doc['_id']}?a=1&b=<2>",
                ]
            )
        sheet.append([])
        sheet.append(["Total", per_city])
    summary.append(report.SUMMARY_HEADER)
    for n, city in enumerate(CITY_NAMES):
        summary.append([_as_text(summary, city), per_city, report.link_to(summary, TITLES[n])])
    summary.append(["All cities", 3 * per_city])
    saved = io.BytesIO()
    expected.save(saved)
    saved = zipfile.ZipFile(saved)

    assert sorted(streamed.namelist()) == sorted(saved.namelist())
    for name in saved.namelist():
        if name != "docProps/core.xml":  # holds the time it was written
            assert streamed.read(name) == saved.read(name), name
    workbook = load_workbook(io.BytesIO(streamed.fp.getvalue()))
    assert workbook.sheetnames == ["Summary", *TITLES]
    assert workbook["Summary"]["C2"].hyperlink.location == f"'{TITLES[0]}'!A1"
    sheet = workbook[TITLES[1]]
    # openpyxl reads escape sequences back as written (LibreOffice decodes them: test_report_in_libreoffice)
    written = [report.ooxml_text(name.format(n)) for n, name in enumerate(NAMES)]
    assert [cell.value for cell in sheet["A"][1 : 1 + len(NAMES)]] == written
    assert all(cell.data_type == "s" for cell in sheet["A"][1 : 1 + len(NAMES)])
    assert all(cell.is_date for cell in sheet["C"][1 : 1 + per_city])
    assert sheet["B2"].value == CITY_NAMES[1]


CITY_NAMES = ["Quito & <Norte>", "=Cuenca", " Loja [sur] _x005B_"]
TITLES = ["Quito & <Norte>", "=Cuenca", "Loja sur x005B_"]


def _as_text(sheet, value):
    # openpyxl writes text as it is; the report escapes the format's escape syntax first
    cell = WriteOnlyCell(sheet, value=report.ooxml_text(value))
    cell.data_type = "s"
    return cell


def test_a_client_that_goes_away_stops_the_scan(monkeypatch):
    body, collection = _stream(monkeypatch, cities=50, per_city=2000)  # far more than the queue holds
    chunks = iter(body)
    next(chunks)
    next(chunks)
    body.close()
    assert not body.scan._thread.is_alive()  # the reader thread is gone
    pages = collection.pages
    assert pages * report.SCAN_PAGE < len(collection.docs)  # and asked for no more pages
    time.sleep(0.2)
    assert collection.pages == pages


def test_pages_span_cities_and_a_row_inserted_behind_the_position_is_not_read_twice(monkeypatch):
    monkeypatch.setattr(report, "SCAN_PAGE", 7)
    collection = FakeRegistrations(cities=40, per_city=3)  # 120 rows, 18 pages of 7 at most
    expected = [doc["_id"] for doc in collection.docs]
    read = []
    for page in report._pages(collection, None):
        read.extend(doc["_id"] for doc in page)
        if len(read) == 14:  # a row lands behind the position, in the city being read
            behind = {**page[-1], "_id": "late", "created_at": datetime(2025, 1, 1)}
            collection.docs.insert(collection.docs.index(page[-1]) - 1, behind)
    assert read == expected  # every row once, in order; the late one is behind the position
    assert collection.pages == len(expected) // 7 + 1


def test_a_one_city_report_reads_only_that_city(monkeypatch):
    monkeypatch.setattr(report, "SCAN_PAGE", 5)
    collection = FakeRegistrations(cities=3, per_city=12)
    read = [doc for page in report._pages(collection, "city 0001") for doc in page]
    assert [doc["_id"] for doc in read] == [doc["_id"] for doc in collection.docs if doc["city_key"] == "city 0001"]


def test_a_scan_that_fails_fails_the_stream(monkeypatch):
    body, _ = _stream(monkeypatch, cities=2, per_city=10, fail_after=5)
    with pytest.raises(AutoReconnect, match="connection closed"):
        _read(body)


@pytest.mark.parametrize(
    ("city", "title"),
    [
        ("Quito", "Quito"),
        ("Santa Cruz [Norte]/Sur: a*b?c\\d", "Santa Cruz Norte Sur a b c d"),
        ("'Quoted'", "Quoted"),
        ("History", "History (2)"),
        ("summary", "summary (2)"),
        ("\t", "City"),
        ("San Francisco de Quito, capital de la República", "San Francisco de Qu…a República"),
        ("Ibarra_x005B_", "Ibarra x005B_"),  # no escape sequence a reader would decode
    ],
)
def test_sheet_titles_follow_excels_rules(city, title):
    assert report.SheetTitles()(city) == title


@pytest.mark.parametrize(
    "cities",
    [
        ("Diyarbakır", "DIYARBAKIR"),  # dotless i: apart under casefold(), one title upper-cased
        ("Straße", "STRASSE"),
        ("Ｑｕｉｔｏ", "quito"),  # full width
        ("ǅupa", "ǄUPA"),  # a title-case letter
        ("Kelvin", "\u212aelvin"),  # the Kelvin sign
    ],
)
def test_titles_spreadsheet_programs_take_for_one_are_numbered(cities):
    titles = report.SheetTitles()
    assert [titles(city) for city in cities] == [cities[0], f"{cities[1]} (2)"]


def _valid(title: str) -> bool:
    return (
        0 < len(title.encode("utf-16-le")) // 2 <= 31
        and not set(title) & set("[]:*?/\\")
        and title[0] != "'"
        and title[-1] != "'"
        and title.casefold() != "history"
    )


def test_thousands_of_long_names_sharing_a_prefix_get_unique_valid_titles():
    prefix = "Ciudad de nombre muy largo que comparte un prefijo " * 3
    cities = [f"{prefix}{n}" for n in range(3000)] + [f"{prefix}{n}'" for n in range(10)] + ["Quito"] * 3
    cities += ["QUITO (2)", "😀" * 40, "'" * 40]
    titles = report.SheetTitles()
    given = [titles(city) for city in cities]
    assert all(_valid(title) for title in given), [t for t in given if not _valid(t)]
    assert len({title.casefold() for title in given}) == len(given)
    assert given[:2] == [f"{report.SheetTitles.base(cities[0])}", f"{report.SheetTitles.base(cities[1])}"]
    assert given[0].endswith("prefijo 0") and given[1].endswith("prefijo 1")  # the end of the name survives


def test_workers_raise_their_soft_open_files_limit_to_the_hard_one():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(256, hard), hard))
    try:
        gunicorn_conf.raise_open_files_limit()
        raised, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        assert raised == (hard if hard != resource.RLIM_INFINITY else 1 << 20)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
