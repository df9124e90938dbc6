"""A registration the report cannot write (only a direct database write makes one) is left out,
logged, counted and noted on the Summary sheet; the rest of the report is whole."""

import io
import logging
from datetime import datetime

from openpyxl import load_workbook
from prometheus_client import REGISTRY
from test_report_files import FakeRegistrations, _read

from common import records
from instance import report

BROKEN = [
    {"name": 12345},
    {"name": {"first": "Ana"}},
    {"name": None},
    {"name": "A" * (report.CELL_MAX + 1)},
    {"name": "No time", "created_at": "yesterday"},
]


def _skipped() -> float:
    return REGISTRY.get_sample_value("report_records_skipped_total") or 0.0


def test_records_that_cannot_be_written_are_left_out_logged_counted_and_noted(monkeypatch, caplog):
    monkeypatch.setattr(records, "cities", lambda db: {"quito": {"city": "Quito", "total": 8}})
    collection = FakeRegistrations(0, 0)
    good = [{"_id": f"good-{n}", "name": f"Ana {n}", "city_key": "quito"} for n in range(3)]
    bad = [{"_id": f"bad-{n}", "city_key": "quito", **fields} for n, fields in enumerate(BROKEN)]
    collection.docs = [
        {"created_at": datetime(2026, 1, 1, 8, n), **doc} for n, doc in enumerate([good[0], *bad, *good[1:]])
    ]
    collection.sort = lambda keys: collection  # already in order; Python cannot compare a string to a time
    before = _skipped()

    with caplog.at_level(logging.WARNING, logger="instance.report"):
        workbook = load_workbook(io.BytesIO(_read(report.stream_xlsx({records.REGISTRATIONS: collection}, str))))

    sheet = workbook["Quito"]
    assert [row[0] for row in sheet.iter_rows(min_row=2, max_row=4, values_only=True)] == ["Ana 0", "Ana 1", "Ana 2"]
    assert [cell.value for cell in sheet[6]][:2] == ["Total", 3]
    summary = [row for row in workbook["Summary"].iter_rows(values_only=True) if any(row)]
    assert summary[1][:2] == ("Quito", 3)
    assert summary[-1][1] == len(BROKEN) and "left out" in summary[-1][0]
    assert _skipped() - before == len(BROKEN)
    assert {f"bad-{n}" for n in range(len(BROKEN))} == {
        record.args[0] for record in caplog.records if record.getMessage().startswith("report leaves out")
    }
