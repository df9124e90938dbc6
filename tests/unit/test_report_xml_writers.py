"""The report is the same whichever XML writer openpyxl picks: lxml's when lxml can be imported
(any dependency may bring it; the test environment installs it), et_xmlfile's otherwise (the
images). The report's byte-for-byte and skipped-record tests run once each way."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TESTS = ["tests/unit/test_report_files.py", "tests/unit/test_report_unwritable_records.py"]
SELECTED = "openpyxl_saves_itself or unwritable or fails_the_stream"

RUN = """
import sys
if {block}:
    sys.modules["lxml"] = None  # as if it were not installed: every import of it fails
import openpyxl.xml
assert openpyxl.xml.LXML is {lxml}, openpyxl.xml.LXML
import pytest
sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", "-k", {selected!r}, *{tests!r}]))
"""


@pytest.mark.parametrize("lxml", [True, False], ids=["with lxml", "without lxml"])
def test_the_report_is_written_alike_with_and_without_lxml(lxml):
    code = RUN.format(block=not lxml, lxml=lxml, selected=SELECTED, tests=TESTS)
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "deselected" in result.stdout
