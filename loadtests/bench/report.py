"""The whole XLSX report, downloaded as a client does: time to the first byte and to the last."""

from __future__ import annotations

import io
import time

import urllib3
from openpyxl import load_workbook

from stack.settings import Settings

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def download(s: Settings, keep: bool = False) -> dict:
    """{"seconds", "first_byte_s", "bytes", "served_by"}, and "body" when `keep`; the first byte
    is the first byte of the body (the headers alone could be sent before any work is done)."""
    http = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=5, read=600))
    headers = urllib3.make_headers(basic_auth=f"admin:{s.secrets['ADMIN_PASSWORD']}")
    started = time.perf_counter()
    response = http.request("GET", f"{s.public_url}/api/reports/cities.xlsx", headers=headers, preload_content=False)
    try:
        if response.status != 200 or not response.headers.get("Content-Type", "").startswith(XLSX):
            raise RuntimeError(f"the report answered {response.status}: {response.read(500)!r}")
        first = response.read1(1 << 16)  # whatever has arrived, as soon as anything has
        first_byte = time.perf_counter() - started
        if not first.startswith(b"PK"):
            raise RuntimeError("the report is not a ZIP (XLSX) file")
        size = len(first)
        kept = [first] if keep else []
        while chunk := response.read1(1 << 20):
            size += len(chunk)
            if keep:
                kept.append(chunk)
        got = {
            "seconds": time.perf_counter() - started,
            "first_byte_s": first_byte,
            "bytes": size,
            "served_by": response.headers.get("X-Served-By", "?"),
        }
        if keep:
            got["body"] = b"".join(kept)
        return got
    finally:
        response.release_conn()
        http.clear()


def summary_total(body: bytes) -> int:
    """The report's own "All cities" total, from its Summary sheet."""
    workbook = load_workbook(io.BytesIO(body), read_only=True)
    try:
        last = list(workbook["Summary"].iter_rows(values_only=True))[-1]
    finally:
        workbook.close()
    if last[0] != "All cities":
        raise RuntimeError(f"the report's Summary ends with {last!r}")
    return int(last[1])
