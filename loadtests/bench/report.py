"""The whole XLSX report, downloaded as a client does: time to the first byte and to the last."""

from __future__ import annotations

import time

import urllib3

from stack.settings import Settings

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def download(s: Settings) -> dict:
    """{"seconds", "first_byte_s", "bytes", "served_by"}; the first byte is the first byte of the
    body (the headers alone could be sent before any work is done)."""
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
        while chunk := response.read1(1 << 20):
            size += len(chunk)
        return {
            "seconds": time.perf_counter() - started,
            "first_byte_s": first_byte,
            "bytes": size,
            "served_by": response.headers.get("X-Served-By", "?"),
        }
    finally:
        response.release_conn()
        http.clear()
