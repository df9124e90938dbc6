"""Parts under the real supervisord: a killed part comes back, one that keeps dying is left
FATAL after backing off, a frozen one is not restarted, and stop means stop.

No stack: each test runs its own supervisord in a temporary state folder.
"""

import os
import sys
import time

import pytest
from servers import free_port

from polling import wait_for
from stack import supervisor
from stack.part import Part
from stack.settings import Settings


@pytest.fixture
def settings(tmp_path):
    s = Settings(var=tmp_path, ports={}, secrets={})
    yield s
    pid = supervisor.supervisord_pid(s)
    if pid:  # a test that failed half-way: nothing may outlive it
        supervisor.rpc(s).supervisor.stopAllProcesses(True)
        supervisor.rpc(s).supervisor.shutdown()
        wait_for(lambda: not os.path.exists(f"/proc/{pid}"), timeout=15, every=0.1)


@pytest.fixture
def web_part() -> Part:
    port = free_port()
    return Part(
        "web",
        [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)],
        f"http://127.0.0.1:{port}/",
        port,
    )


def _alive(pid: int) -> bool:
    return os.path.exists(f"/proc/{pid}")


def test_start_runs_the_part_in_a_group_of_its_own_and_stop_ends_it_and_supervisord(settings, web_part):
    pid = supervisor.start(settings, web_part, wait=15)
    supervisord = supervisor.supervisord_pid(settings)
    try:
        assert os.getpgid(pid) == pid
        assert supervisor.running_pid(settings, web_part) == pid
        assert supervisor.start(settings, web_part) == pid  # idempotent
        assert (settings.log_dir / "web.log").exists()
    finally:
        assert supervisor.stop(settings, web_part)
    assert not _alive(pid)
    assert wait_for(lambda: not _alive(supervisord), timeout=15, every=0.1)  # nothing left to run
    assert supervisor.stop(settings, web_part) is False


def test_a_killed_part_is_started_again_by_supervisord(settings, web_part):
    first = supervisor.start(settings, web_part, wait=15)
    assert supervisor.kill(settings, web_part)
    assert wait_for(lambda: (supervisor.running_pid(settings, web_part) or first) != first, timeout=15, every=0.1)
    assert wait_for(lambda: supervisor.healthy(web_part), timeout=15, every=0.1)
    supervisor.stop(settings, web_part)


def test_a_part_that_keeps_dying_backs_off_then_is_left_fatal(settings, tmp_path):
    starts = tmp_path / "starts"
    crashing = Part(
        "crashing",
        [sys.executable, "-c", f"import time; open({str(starts)!r}, 'a').write(f'{{time.time()}}\\n'); exit(1)"],
        "tcp://127.0.0.1:9",
        free_port(),
    )
    with pytest.raises(RuntimeError, match="FATAL"):
        supervisor.start(settings, crashing, wait=60)
    times = [float(line) for line in starts.read_text().split()]
    assert len(times) == supervisor.STARTRETRIES + 1
    gaps = [later - earlier for earlier, later in zip(times, times[1:], strict=False)]
    # supervisord waits 1 s longer before each retry
    assert all(gap >= n - 0.2 for n, gap in enumerate(gaps, start=1)), gaps
    assert supervisor.state(settings, crashing) == supervisor.FATAL
    time.sleep(2)
    assert len(starts.read_text().split()) == len(times)  # left down: no restart after FATAL


def test_a_frozen_part_is_not_restarted_and_thaws_as_it_was(settings, web_part):
    pid = supervisor.start(settings, web_part, wait=15)
    supervisor.freeze(settings, web_part, True)
    try:
        time.sleep(supervisor.STARTSECS + 1)
        assert not supervisor.healthy(web_part, timeout=0.5)
        assert supervisor.state(settings, web_part) == supervisor.RUNNING
        assert supervisor.running_pid(settings, web_part) == pid
    finally:
        supervisor.freeze(settings, web_part, False)
    assert supervisor.healthy(web_part)
    assert supervisor.running_pid(settings, web_part) == pid
    assert supervisor.stop(settings, web_part)


def test_a_frozen_part_still_stops(settings, web_part):
    pid = supervisor.start(settings, web_part, wait=15)
    supervisor.freeze(settings, web_part, True)
    assert supervisor.stop(settings, web_part)
    assert not _alive(pid)
