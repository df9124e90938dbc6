"""Branch coverage of a test run over every Python process it starts, with coverage.py.

Settings in pyproject.toml ([tool.coverage.*]). COVERAGE_PROCESS_START in the environment makes
each Python process of the venv (coverage's own .pth) measure itself from its start: the parts
the supervisor starts inherit it, so do pytest and what the tests run, and `patch = fork`
gives each forked gunicorn worker its own data file.
"""

import os
from pathlib import Path

import coverage

from stack.settings import ROOT

CONFIG = ROOT / "pyproject.toml"


def start(folder: Path) -> coverage.Coverage | None:
    """Measure this process from here on, and every Python process started after it."""
    folder.mkdir(parents=True, exist_ok=True)
    os.environ.update(COVERAGE_PROCESS_START=str(CONFIG), COVERAGE_FILE=str(folder / ".coverage"))
    return coverage.process_startup()


def report(measured: coverage.Coverage | None, folder: Path) -> None:
    """Combine what every process saved; print the files short of full coverage, and the total."""
    if measured is not None:
        measured.stop()
        measured.save()
    combined = coverage.Coverage(config_file=str(CONFIG), data_file=str(folder / ".coverage"))
    combined.combine(keep=False)
    combined.save()
    print("\nBranch coverage of the product code, every process of the run (files short of 100%):")
    try:
        combined.report(skip_covered=True, skip_empty=True, sort="cover")
    except coverage.exceptions.NoDataError:
        print("  no data: nothing was measured")
        return
    # the HTML map costs half a minute more: made on demand
    print(f"Line by line: .venv/bin/coverage html --data-file={folder / '.coverage'} (then htmlcov/index.html)")
