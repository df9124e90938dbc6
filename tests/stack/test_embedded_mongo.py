"""The embedded database's log lines are the stack's JSON lines, whatever its messages hold."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# stack.embedded_mongo as ./init.sh runs it, with the server's main() replaced by one warning
# of the kind nx-27017 writes (a query quoted in the message) and one error with a traceback
RUN = """
import logging, runpy
import nx_27017.nx_27017 as server

def main():
    log = logging.getLogger("nx_27017")
    log.info("every command at INFO: not written")
    log.warning('slow query on "registrations": {"city_key": "quito"}\\nplan: scan')
    try:
        raise ValueError('bad "document"')
    except ValueError:
        log.exception("command failed")

server.main = main
runpy.run_module("stack.embedded_mongo", run_name="__main__")
"""


def test_messages_with_quotes_and_newlines_are_written_as_valid_json():
    output = subprocess.run(
        [sys.executable, "-c", RUN], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    ).stdout
    lines = [json.loads(line) for line in output.splitlines()]
    assert [(line["level"], line["service"], line["instance"]) for line in lines] == [
        ("warning", "mongodb", "mongodb"),
        ("error", "mongodb", "mongodb"),
    ]
    assert lines[0]["message"] == 'slow query on "registrations": {"city_key": "quito"}\nplan: scan'
    assert 'ValueError: bad "document"' in lines[1]["exc_info"]
