"""The report benchmark's baseline: openpyxl alone writing the report's rows, in its own process.

    python -m loadtests.baseline_report --mongo-url URL --db NAME --link-prefix URL

Reads the same rows the report holds from MongoDB first (not timed), then times only openpyxl:
a write-only workbook with exactly the report's sheets (a Summary sheet, then one sheet per city
in city-key order, titled by the report's own rule, with its header, the rows in time order, a
blank row and the total; the Summary links each city to its sheet), the same rows and cell
values (name and city as text, the registration time as a datetime, the photo link as text),
saved to a temporary file. Plain values are
appended (openpyxl infers the types); nothing else runs. Prints one JSON object.
"""

import argparse
import json
import os
import tempfile
import time

from bson.codec_options import CodecOptions
from openpyxl import Workbook

from common import records
from instance.report import HEADER, SUMMARY_HEADER, SheetTitles, link_to  # the report's own pieces


def read_rows(db, link_prefix: str) -> list[tuple[str, list[tuple]]]:
    known = records.cities(db)
    naive = db[records.REGISTRATIONS].with_options(codec_options=CodecOptions(tz_aware=False))
    by_city: dict[str, list[tuple]] = {}
    for doc in naive.find({}, {"name": 1, "city_key": 1, "created_at": 1}).batch_size(5000):
        key = doc.get("city_key")
        if isinstance(key, str):
            name = known[key]["city"] if key in known else key.title()
            link = f"{link_prefix}{doc['_id']}/photo"
            by_city.setdefault(key, []).append((doc["name"], name, doc["created_at"], link))
    for rows in by_city.values():
        rows.sort(key=lambda row: row[2])
    return [(rows[0][1], rows) for _, rows in sorted(by_city.items())]  # the report's order: by city key


def write(cities: list[tuple[str, list[tuple]]]) -> tuple[float, int]:
    """Seconds to write and save the workbook, and its size in bytes."""
    handle, path = tempfile.mkstemp(prefix="baseline-report-", suffix=".xlsx")
    os.close(handle)
    try:
        started = time.perf_counter()
        workbook = Workbook(write_only=True)
        summary = workbook.create_sheet("Summary")
        titles, written = SheetTitles(), []
        for name, rows in cities:
            title = titles(name)
            sheet = workbook.create_sheet(title)
            sheet.append(HEADER)
            for row in rows:
                sheet.append(row)
            sheet.append([])
            sheet.append(["Total", len(rows)])
            written.append((name, len(rows), title))
        summary.append(SUMMARY_HEADER)
        for name, count, title in written:
            summary.append([name, count, link_to(summary, title)])  # the Summary's link to the city's sheet
        summary.append(["All cities", sum(len(rows) for _, rows in cities)])
        workbook.save(path)
        return time.perf_counter() - started, os.path.getsize(path)
    finally:
        os.unlink(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mongo-url", required=True)
    parser.add_argument("--db", default=records.DATABASE)
    parser.add_argument("--link-prefix", required=True, help="photo links: PREFIX<id>/photo")
    args = parser.parse_args()
    cities = read_rows(records.connect(args.mongo_url)[args.db], args.link_prefix)
    seconds, size = write(cities)
    print(json.dumps({"rows": sum(len(rows) for _, rows in cities), "seconds": seconds, "bytes": size}))


if __name__ == "__main__":
    main()
