"""The supervisor's pid files: a stale one never lets it signal a process it did not start.

Real processes, no stack: each test starts what it needs in a temporary state folder.
"""

import os
import subprocess
import sys
import time

import pytest
from servers import free_port

from stack import supervisor
from stack.part import Part
from stack.settings import ROOT, Settings


@pytest.fixture
def settings(tmp_path) -> Settings:
    (tmp_path / "run").mkdir()
    return Settings(var=tmp_path, ports={}, secrets={})


@pytest.fixture
def web_part() -> Part:
    port = free_port()
    return Part(
        "web",
        [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)],
        f"http://127.0.0.1:{port}/",
        port,
    )


@pytest.fixture
def spawn():
    """spawn(own_session=...) -> a sleeping process, killed after the test."""
    started = []

    def run(own_session=True) -> subprocess.Popen:
        process = subprocess.Popen(["sleep", "60"], cwd=ROOT, start_new_session=own_session)
        started.append(process)
        return process

    yield run
    for process in started:
        process.kill()
        process.wait()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_start_records_pid_and_start_time_and_stop_ends_it(settings, web_part):
    pid = supervisor.start(settings, web_part, wait=15)
    try:
        recorded = supervisor.pid_file(settings, web_part).read_text().split()
        assert recorded == [str(pid), str(supervisor._start_time(pid))]
        assert supervisor.running_pid(settings, web_part) == pid
        assert supervisor.start(settings, web_part) == pid  # idempotent
    finally:
        assert supervisor.stop(settings, web_part)
    assert not _alive(pid)
    assert not supervisor.pid_file(settings, web_part).exists()


def test_a_reused_pid_with_another_start_time_is_not_ours(settings, web_part, spawn):
    process = spawn()  # leads its own group, like a part: only the start time tells it apart
    supervisor.pid_file(settings, web_part).write_text(f"{process.pid} {supervisor._start_time(process.pid)}\n")
    assert supervisor.running_pid(settings, web_part) == process.pid  # the same file with the right time
    supervisor.pid_file(settings, web_part).write_text(f"{process.pid} {supervisor._start_time(process.pid) + 1}\n")
    assert supervisor.running_pid(settings, web_part) is None
    assert supervisor.stop(settings, web_part) is False
    assert process.poll() is None  # never signalled
    assert not supervisor.pid_file(settings, web_part).exists()


def test_a_process_outside_its_own_group_is_never_signalled(settings, web_part, spawn):
    process = spawn(own_session=False)  # same start time, but it shares our process group
    supervisor.pid_file(settings, web_part).write_text(f"{process.pid} {supervisor._start_time(process.pid)}\n")
    assert supervisor.running_pid(settings, web_part) is None
    assert supervisor.stop(settings, web_part) is False
    assert process.poll() is None


def test_a_dead_pid_is_gone(settings, web_part, spawn):
    process = spawn()
    started = supervisor._start_time(process.pid)
    process.kill()
    process.wait()
    supervisor.pid_file(settings, web_part).write_text(f"{process.pid} {started}\n")
    assert supervisor.running_pid(settings, web_part) is None


def test_a_pid_file_without_a_start_time_names_no_process_of_ours(settings, web_part, spawn):
    process = spawn()  # its own group, working in the checkout: only the start time could vouch for it
    supervisor.pid_file(settings, web_part).write_text(str(process.pid))
    assert supervisor.running_pid(settings, web_part) is None
    assert supervisor.stop(settings, web_part) is False
    time.sleep(0.1)
    assert process.poll() is None


def test_a_killed_part_has_let_go_of_its_port_when_kill_returns(settings):
    """As gunicorn does: the leader forks a worker that holds the listening socket too."""
    port = free_port()
    script = (
        f"import os, socket, time\nlistener = socket.create_server(('127.0.0.1', {port}))\nos.fork()\ntime.sleep(60)\n"
    )
    part = Part("forking", [sys.executable, "-c", script], f"tcp://127.0.0.1:{port}", port)
    supervisor.start(settings, part, wait=15)
    assert supervisor.kill(settings, part)
    assert not supervisor.port_taken(port)  # so it can be started again at once
