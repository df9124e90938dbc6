"""Thousands of cities, some with long names sharing a prefix: the chart JSON lists them all, the
chart image stays one legible picture, and the report opens with every city findable from its
Summary, under sheet titles Excel accepts."""

import io
import secrets
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from openpyxl import load_workbook
from PIL import Image

from common import records
from common.cities import city_key

CITIES = 3000
LONG = 200  # characters, past what the API takes today: names stored by another client or an old rule


def _names(tag: str) -> list[str]:
    prefix = f"Ciudad {tag} de un nombre tan largo que comparte su comienzo con muchas otras ciudades " * 3
    names = [f"{prefix[: LONG - 6]} n{n:04d}" for n in range(1100)]  # 200 characters, one prefix
    for n in range(5):  # same title once the characters Excel refuses are gone
        names += [f"Scale {tag} [Norte]: {n}", f"Scale {tag} /Norte/ {n}"]
    names += [f"'Scale {tag} quoted'", f"=Scale {tag} formula", "History"]
    names += [f"Scale {tag} town {n:04d}" for n in range(CITIES - len(names))]
    return names


@pytest.fixture(scope="module")
def many_cities(stack):
    """CITIES cities stored directly in the database (as registrations would store them), one or
    two registrations each; removed afterwards."""
    tag = uuid.uuid4().hex[:8]
    names = _names(tag)
    now = datetime.now(UTC)
    docs, totals = [], {}
    for number, name in enumerate(names):
        for copy in range(1 + (number % 7 == 0)):
            docs.append(
                {
                    "_id": secrets.token_hex(16),
                    "name": f"Person {number}-{copy}",
                    "city": name,
                    "city_key": city_key(name),
                    "photo_key": "00/none.jpg",
                    "created_at": now - timedelta(seconds=copy),
                }
            )
        totals[name] = 1 + (number % 7 == 0)
    keys = [city_key(name) for name in names]
    stack.db[records.CITIES].insert_many([{"_id": key, "city": name} for key, name in zip(keys, names, strict=True)])
    stack.db[records.REGISTRATIONS].insert_many(docs)
    yield totals
    for start in range(0, len(keys), 500):
        batch = keys[start : start + 500]
        stack.db[records.REGISTRATIONS].delete_many({"city_key": {"$in": batch}})
        stack.db[records.CITIES].delete_many({"_id": {"$in": batch}})


def _report(http, stack):
    response = http.get(f"{stack.url}/api/reports/cities.xlsx", auth=stack.admin, timeout=280)
    assert response.status_code == 200, response.text[:500]
    return load_workbook(io.BytesIO(response.content))


def _valid_title(title: str) -> bool:
    return (
        0 < len(title.encode("utf-16-le")) // 2 <= 31
        and not set(title) & set("[]:*?/\\")
        and not title.startswith("'")
        and not title.endswith("'")
        and title.casefold() != "history"
    )


def test_the_report_lists_every_city_under_a_valid_unique_sheet_title(http, stack, many_cities):
    workbook = _report(http, stack)
    titles = workbook.sheetnames
    assert titles[0] == "Summary"
    assert all(_valid_title(title) for title in titles), [title for title in titles if not _valid_title(title)]
    assert len({title.casefold() for title in titles}) == len(titles)

    summary = list(workbook["Summary"].iter_rows(min_row=2))
    by_city = {row[0].value: row for row in summary[:-1]}
    for name, total in many_cities.items():
        row = by_city[name]  # the whole name, however long
        assert row[1].value == total
        title = row[2].value
        assert row[2].hyperlink.location == "'{}'!A1".format(title.replace("'", "''"))
        sheet = workbook[title]
        rows = list(sheet.iter_rows(min_row=2, values_only=True))
        assert {values[1] for values in rows[:-2]} == {name}
        assert rows[-1][:2] == ("Total", total)
    formula = next(name for name in many_cities if name.startswith("="))
    assert by_city[formula][0].data_type == "s" and by_city[formula][2].data_type == "s"


def test_the_chart_lists_every_city_and_its_picture_stays_legible(http, stack, many_cities):
    assert http.get(f"{stack.url}/api/reports/cities.xlsx", auth=stack.admin, timeout=280).status_code == 200
    chart = http.get(f"{stack.url}/api/chart", timeout=30).json()  # refreshed by the report
    listed = {row["city"]: row["total"] for row in chart["cities"]}
    assert all(listed.get(name) == total for name, total in many_cities.items())

    response = http.get(f"{stack.url}/api/chart.png", timeout=60)
    assert response.status_code == 200 and response.headers["Content-Type"] == "image/png"
    width, height = Image.open(io.BytesIO(response.content)).size
    assert width <= 1000 and height < 2000
