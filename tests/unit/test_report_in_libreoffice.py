"""The report reads back the same in another spreadsheet program: LibreOffice opens it, saves
every sheet as OpenDocument, and every name and city is the text we wrote, every Summary link
reaches the sheet of its city."""

import io
import subprocess
import xml.etree.ElementTree as ET
import zipfile
from datetime import datetime

from test_report_files import FakeRegistrations, _read

from common import records
from instance import report

NAMES = [
    "_x0041_",  # the format's escape syntax, which a reader decodes to "A"
    "_x005F_x0041_",
    "_X0041_ upper",
    "Ana_x000D_Pérez",
    "=SUM(1)",
    "#N/A",
    "  two leading spaces",
    "tab\tinside",
    "line\nbreak",
    "Ñandú 😀 & <b>",
]
CITIES = [
    "Loja",
    "Loj_x0061_",  # decoded, it would take Loja's title
    "Cuenca_x003A_",  # decoded, a ":" that a sheet title cannot hold
    "Diyarbakır",  # apart from the next under casefold(), one title upper-cased
    "DIYARBAKIR",
    "'Quoted'",
    "History",
    "San Francisco de Quito, capital de la República",
]

NS = {
    "table": "urn:oasis:names:tc:opendocument:xmlns:table:1.0",
    "text": "urn:oasis:names:tc:opendocument:xmlns:text:1.0",
    "xlink": "http://www.w3.org/1999/xlink",
}


def _tag(name: str) -> str:
    prefix, local = name.split(":")
    return f"{{{NS[prefix]}}}{local}"


def _text(element) -> str:
    """A paragraph's text as OpenDocument spells it: runs of spaces, tabs and breaks as elements."""
    out = [element.text or ""]
    for child in element:
        if child.tag == _tag("text:s"):
            out.append(" " * int(child.get(_tag("text:c"), "1")))
        elif child.tag == _tag("text:tab"):
            out.append("\t")
        elif child.tag == _tag("text:line-break"):
            out.append("\n")
        else:
            out.append(_text(child))
        out.append(child.tail or "")
    return "".join(out)


def _sheets(ods: bytes) -> dict[str, list[list[tuple[str, str | None]]]]:
    """{sheet name: rows of (cell text, link target)}."""
    root = ET.fromstring(zipfile.ZipFile(io.BytesIO(ods)).read("content.xml"))  # noqa: S314 (LibreOffice's own output)
    sheets = {}
    for table in root.iter(_tag("table:table")):
        rows = []
        for row in table.iter(_tag("table:table-row")):
            cells = []
            for cell in row.iter(_tag("table:table-cell")):
                paragraphs = cell.findall("text:p", NS)
                link = next((a.get(_tag("xlink:href")) for p in paragraphs for a in p.iter(_tag("text:a"))), None)
                repeat = min(int(cell.get(_tag("table:number-columns-repeated"), "1")), 8)
                cells += [("\n".join(_text(p) for p in paragraphs), link)] * repeat
            rows.append(cells)
        sheets[table.get(_tag("table:name"))] = rows
    return sheets


def _convert(xlsx: bytes, tmp_path) -> bytes:
    (tmp_path / "report.xlsx").write_bytes(xlsx)
    subprocess.run(
        [
            "soffice",
            f"-env:UserInstallation=file://{tmp_path}/profile",  # its own profile: runs side by side
            "--headless",
            "--norestore",
            "--convert-to",
            "ods",
            "--outdir",
            str(tmp_path),
            str(tmp_path / "report.xlsx"),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return (tmp_path / "report.ods").read_bytes()


def test_libreoffice_reads_every_name_city_and_link_as_written(monkeypatch, tmp_path):
    keys = [f"city {n:04d}" for n in range(len(CITIES))]
    known = {key: {"city": city, "total": len(NAMES)} for city, key in zip(CITIES, keys, strict=True)}
    monkeypatch.setattr(records, "cities", lambda db: known)
    collection = FakeRegistrations(0, 0)
    collection.docs = [
        {"_id": f"{key}-{n}", "name": name, "city_key": key, "created_at": datetime(2026, 1, 1, 8, n)}
        for key in keys
        for n, name in enumerate(NAMES)
    ]
    body = report.stream_xlsx({records.REGISTRATIONS: collection}, lambda rid: f"https://x/{rid}")

    sheets = _sheets(_convert(_read(body), tmp_path))

    assert len(sheets) == 1 + len(CITIES)  # no sheet dropped
    summary = sheets["Summary"]
    assert [row[0][0] for row in summary[1 : 1 + len(CITIES)]] == CITIES
    for city, row in zip(CITIES, summary[1 : 1 + len(CITIES)], strict=True):
        title, link = row[2]
        assert link in (f"#{title}.A1", f"#'{title}'.A1"), (city, link)
        sheet = sheets[title]  # the link reaches a sheet, and it is this city's
        assert [cells[0][0] for cells in sheet[1 : 1 + len(NAMES)]] == NAMES
        assert {cells[1][0] for cells in sheet[1 : 1 + len(NAMES)]} == {city}
