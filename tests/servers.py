"""Servers a test starts itself: a free port on 127.0.0.1, and a process run until it listens."""

import socket
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def running(argv: list, port: int, log: Path):
    """A process of ours, waited for until it accepts connections, always stopped after."""
    with open(log, "wb") as output:
        process = subprocess.Popen([str(arg) for arg in argv], cwd=ROOT, stdout=output, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while True:
            assert process.poll() is None, log.read_text()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, f"{argv[0]} never listened on {port}: {log.read_text()}"
                time.sleep(0.1)
        yield process
    finally:
        process.terminate()
        process.wait(timeout=10)
