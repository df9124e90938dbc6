"""Fixtures that hand tests the real stack `./init.sh test` started: its URLs, its database,
its photo folder, and the power to stop and restart any part of it (always restored)."""

import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common import records  # noqa: E402
from stack import supervisor  # noqa: E402
from stack.parts import all_parts  # noqa: E402
from stack.settings import load  # noqa: E402


class Stack:
    def __init__(self):
        self.settings = load()
        self.parts = {part.name: part for part in all_parts(self.settings)}
        self.url = self.settings.public_url
        self.admin = ("admin", self.settings.secrets["ADMIN_PASSWORD"])
        self.db = self.settings.database()
        self.photo_dir = self.settings.data_dir / "photos"

    def is_up(self, name: str) -> bool:
        return bool(supervisor.running_pid(self.settings, self.parts[name])) and supervisor.healthy(self.parts[name])

    def stop(self, name: str) -> None:
        supervisor.stop(self.settings, self.parts[name])

    def start(self, name: str) -> None:
        supervisor.start(self.settings, self.parts[name])

    def wait_until_routed(self, timeout: float = 15.0) -> None:
        """Until nginx sends traffic to a replica again (it rests failed ones for a moment)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.url}/", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise AssertionError(f"nginx did not route to a replica within {timeout:.0f}s")

    def freeze(self, name: str, frozen: bool = True) -> None:
        supervisor.freeze(self.settings, self.parts[name], frozen)

    def kill(self, name: str) -> None:
        supervisor.kill(self.settings, self.parts[name])

    def nginx_log(self) -> list[dict]:
        """The public nginx's access log, one dict per request."""
        path = self.settings.log_dir / "nginx.log"
        # nginx writes a client's bytes >= 0x80 as they came, and a line ends at "\n" alone (a
        # path may hold U+2028 or NEL, which str.splitlines() would also split at)
        lines = path.read_text(errors="replace").split("\n")
        return [json.loads(line) for line in lines if line.startswith("{")]

    def photo_count(self) -> int:
        return sum(1 for path in self.photo_dir.rglob("*") if path.is_file())

    def registration_count(self) -> int:
        return self.db[records.REGISTRATIONS].count_documents({})


@pytest.fixture(scope="session")
def stack() -> Stack:
    s = Stack()
    down = [name for name in s.parts if not s.is_up(name)]
    if down:
        pytest.fail(f"the stack is not running ({', '.join(down)} down): run the suite with ./init.sh test")
    return s


@pytest.fixture
def stopped(stack):
    """stopped("redis") stops a part for this test and brings it back afterwards, whatever happens."""
    taken = []

    def stop(name: str, wait: bool = True, kill: bool = False) -> None:
        """wait=False: SIGTERM and return at once, while the part is still shutting down.
        kill=True: SIGKILL, the way a machine dies."""
        taken.append(name)
        if kill:
            stack.kill(name)
        elif wait:
            stack.stop(name)
        else:
            os.killpg(supervisor.running_pid(stack.settings, stack.parts[name]), signal.SIGTERM)

    yield stop
    for name in reversed(taken):
        stack.stop(name)  # waits for one still shutting down; nothing to do for one already gone
        stack.start(name)
    if any(name.startswith("instance-") for name in taken):
        stack.wait_until_routed()


@pytest.fixture
def frozen(stack):
    """frozen("mongodb") freezes a part (SIGSTOP, a machine that hangs); thawed after the test
    whatever happens, or earlier by frozen.thaw(name)."""
    held = []

    def freeze(name: str) -> None:
        held.append(name)
        stack.freeze(name)

    def thaw(name: str) -> None:
        held.remove(name)
        stack.freeze(name, frozen=False)

    freeze.thaw = thaw
    yield freeze
    for name in reversed(held):
        with contextlib.suppress(RuntimeError):  # killed meanwhile: nothing to thaw
            stack.freeze(name, frozen=False)
    if any(name.startswith("instance-") for name in held):
        stack.wait_until_routed()


@pytest.fixture
def http() -> requests.Session:
    session = requests.Session()
    yield session
    session.close()


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium under Playwright, launched as every browser test launches it."""
    from playwright.sync_api import sync_playwright

    import chromium  # tests/chromium.py

    with sync_playwright() as playwright:
        launched = chromium.launch(playwright)
        yield launched
        launched.close()
