"""Waiting for the stack to reach a state, without a fixed sleep."""

import time


def wait_for(check, timeout: float = 30.0, every: float = 0.3) -> bool:
    """True as soon as check() is, False when `timeout` seconds pass first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(every)
    return False
