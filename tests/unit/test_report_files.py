"""The report's files: nothing named on disk while it streams, a private directory, and a
descriptor count that does not grow with the number of cities."""

import io
import os
import resource
import stat
from datetime import datetime

import pytest
from openpyxl import load_workbook

from common import gunicorn_conf, records
from instance import report


class FakeRegistrations:
    """The registrations collection as the report reads it: one scan in (city, time) order."""

    def __init__(self, cities: int, per_city: int):
        self.docs = [{"_id": f"city {c}-{n}", "name": f"Person {n}", "city_key": f"city {c}",
                      "created_at": datetime(2026, 1, 1)} for c in range(cities) for n in range(per_city)]

    def with_options(self, codec_options):
        return self

    def find(self, query, projection):
        self.found = [doc for doc in self.docs if query.get("city_key", doc["city_key"]) == doc["city_key"]]
        return self

    def sort(self, keys):
        self.found.sort(key=lambda doc: (doc["city_key"], doc["created_at"]))
        return self

    def batch_size(self, size):
        return self

    def __iter__(self):
        return iter(self.found)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass


def _build(monkeypatch, cities: int, per_city: int = 2):
    totals = [{"city": f"City {n}", "city_key": f"city {n}", "total": per_city} for n in range(cities)]
    monkeypatch.setattr(records, "city_totals", lambda db: totals)
    return report.build({records.REGISTRATIONS: FakeRegistrations(cities, per_city)}, lambda rid: f"https://x/{rid}")


@pytest.fixture
def few_descriptors():
    """Only 40 more files may be opened during the test."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")) + 40, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_the_workbook_has_no_name_on_disk_and_lives_in_a_private_directory(monkeypatch):
    body = report.TemporaryFileBody(_build(monkeypatch, cities=3))
    directory = report.private_dir()
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
    assert os.listdir(directory) == []  # a killed worker leaves nothing behind
    data = b"".join(body)
    assert len(data) == body.size
    body.close()
    assert body.handle.closed
    workbook = load_workbook(io.BytesIO(data), read_only=True)
    assert workbook.sheetnames == ["Summary", "City 0", "City 1", "City 2"]


def test_a_report_of_many_cities_needs_no_more_descriptors_than_one_of_few(monkeypatch, few_descriptors):
    body = report.TemporaryFileBody(_build(monkeypatch, cities=300))
    try:
        workbook = load_workbook(io.BytesIO(b"".join(body)), read_only=True)
        assert len(workbook.sheetnames) == 301
    finally:
        body.close()


def test_workers_raise_their_soft_open_files_limit_to_the_hard_one():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(256, hard), hard))
    try:
        gunicorn_conf.raise_open_files_limit()
        raised, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        assert raised == (hard if hard != resource.RLIM_INFINITY else 1 << 20)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
