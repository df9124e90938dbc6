"""The chart cache: its compare-and-set write fails open, and each process's local copy of the
chart (Redis server-assisted client-side caching) is served without a round trip yet never
outlives a change made elsewhere, nor a Redis that went away. A private redis-server plays Redis
here; two Flask apps play two middleware processes. (Which of two racing refills wins, and the
same rules through the whole stack, are tested in tests/cluster/test_chart.py.)"""

import concurrent.futures
import shutil
import socket
import subprocess
import time

import pytest
import redis
from flask import Flask
from servers import free_port

from middleware import chart_cache
from polling import wait_for


def _app(url: str) -> Flask:
    app = Flask(__name__)
    app.config.update(REDIS_URL=url, CHART_CACHE_TTL_SECONDS=60)
    chart_cache.init_app(app)
    return app


def _read(app: Flask) -> bytes | None:
    with app.app_context():
        return app.extensions["chart_local"].get()


def _store(app: Flask, total: int, filled: int) -> None:
    with app.app_context():
        assert chart_cache.store({"cities": [], "total": total, "generated_at": "x"}, filled=filled)


class PrivateRedis:
    """redis-server on a free port, no persistence; stop() and start() keep the port."""

    def __init__(self, tmp_path):
        self.port = free_port()
        self.dir = tmp_path
        self.process = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.dir),
            ],
            stdout=subprocess.DEVNULL,
        )
        if not wait_for(self._answers, timeout=10, every=0.02):
            raise RuntimeError("redis-server did not start")

    def _answers(self) -> bool:
        try:
            return redis.Redis(port=self.port).ping()
        except redis.ConnectionError:
            return False

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)

    def commands(self) -> int:
        return redis.Redis(port=self.port).info("stats")["total_commands_processed"]


@pytest.fixture
def private_redis(tmp_path):
    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed (./init.sh installs it)")
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    if server.process.poll() is None:
        server.stop()


def test_storing_with_redis_down_is_not_an_error():
    app = _app("redis://127.0.0.1:9/0")  # nothing listens
    with app.app_context():
        assert chart_cache.store({"cities": [], "total": 0, "generated_at": "x"}, filled=1) is False


def test_a_hit_costs_no_round_trip(private_redis):
    app = _app(private_redis.url)
    _store(app, 1, filled=1)
    assert _read(app) == b'{"cities": [], "total": 1, "generated_at": "x"}'
    before = private_redis.commands()
    for _ in range(200):
        assert _read(app) is not None
    # the only command counted is the second INFO; at most one re-read of a trust interval
    assert private_redis.commands() - before <= 2


def test_a_change_made_by_another_process_is_seen_by_the_next_read(private_redis):
    reader, writer = _app(private_redis.url), _app(private_redis.url)
    _store(writer, 1, filled=1)
    assert b'"total": 1' in _read(reader)  # the reader now holds a local copy
    _store(writer, 2, filled=2)  # a report's refresh through another middleware process
    assert b'"total": 2' in _read(reader)
    direct = redis.Redis(port=private_redis.port)
    direct.hset(chart_cache.DATA_KEY, "data", b'{"total": 3}')
    direct.ping()  # the fence any writer owes the copies (see chart_cache): store() makes it
    assert _read(reader) == b'{"total": 3}'
    direct.flushall()
    direct.ping()
    assert _read(reader) is None


def test_a_read_right_after_a_store_elsewhere_is_never_stale(private_redis):
    """Redis answers a write before it sends the invalidations the write caused, so a reader
    polling its socket in between would still serve its old copy; store()'s fence closes that
    window. The window is microseconds wide (a busy machine's CI once hit it), hence the many
    rounds."""
    reader, writer = _app(private_redis.url), _app(private_redis.url)
    stale = 0
    for filled in range(1, 1001):
        _store(writer, filled, filled=filled)
        stale += f'"total": {filled},'.encode() not in _read(reader)
    assert stale == 0


def test_the_copy_never_outlives_the_keys_ttl(private_redis):
    app = _app(private_redis.url)
    _store(app, 1, filled=1)
    redis.Redis(port=private_redis.port).pexpire(chart_cache.DATA_KEY, 300)
    assert _read(app) is not None
    time.sleep(0.4)
    assert _read(app) is None  # expired in Redis: gone here too, whether or not Redis said so yet


def test_redis_going_away_and_coming_back(private_redis):
    app = _app(private_redis.url)
    _store(app, 1, filled=1)
    assert _read(app) is not None
    private_redis.stop()
    with pytest.raises(redis.RedisError):
        _read(app)  # no stale copy while Redis is away: the caller serves the database ("bypass")
    private_redis.start()  # back, empty (no persistence)
    assert _read(app) is None  # a miss, not an error: the closed connection was replaced
    _store(app, 2, filled=2)
    assert b'"total": 2' in _read(app)


def test_a_restart_between_two_reads_is_a_miss_not_an_error(private_redis):
    app = _app(private_redis.url)
    _store(app, 1, filled=1)
    assert _read(app) is not None
    private_redis.stop()
    private_redis.start()
    assert _read(app) is None


def test_a_server_refusing_tracking_is_read_every_time(private_redis, caplog):
    admin = redis.Redis(port=private_redis.port)
    admin.execute_command("ACL", "SETUSER", "default", "-client")  # e.g. a hosted Redis without CLIENT
    app = _app(private_redis.url)
    _store(app, 1, filled=1)
    assert b'"total": 1' in _read(app)
    assert "refuses client-side caching" in caplog.text
    _store(app, 2, filled=2)
    assert b'"total": 2' in _read(app)  # no copy kept, so nothing stale


def test_a_redis_that_does_not_answer_is_left_alone_for_a_moment():
    # accepts connections (the kernel's backlog) but never answers: every read times out
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        app = _app(f"redis://127.0.0.1:{silent.getsockname()[1]}/0")
        started = time.monotonic()
        with pytest.raises(redis.TimeoutError):
            _read(app)
        assert time.monotonic() - started >= 0.4  # the socket timeout
        started = time.monotonic()
        with pytest.raises(redis.TimeoutError):
            _read(app)  # the next request does not wait its turn to time out again
        assert time.monotonic() - started < 0.3  # not another 0.5 s socket timeout
        time.sleep(chart_cache._BACKOFF_SECONDS)
        started = time.monotonic()
        with pytest.raises(redis.TimeoutError):
            _read(app)  # then it is asked again
        assert time.monotonic() - started >= 0.4


def _png(app: Flask, generation: str, render) -> bytes:
    with app.app_context():
        return chart_cache.get_png({"cities": [], "total": 0, "generated_at": generation}, render)


def test_a_new_generation_is_drawn_once_however_many_ask_at_once(private_redis):
    app, drawn = _app(private_redis.url), []

    def render(chart):
        drawn.append(chart["generated_at"])
        time.sleep(0.2)  # about what matplotlib takes
        return chart["generated_at"].encode()

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        images = list(pool.map(lambda _: _png(app, "g1", render), range(8)))
    assert images == [b"g1"] * 8 and drawn == ["g1"]
    before = private_redis.commands()
    idle = private_redis.commands() - before  # what counting itself adds
    before = private_redis.commands()
    assert _png(app, "g1", render) == b"g1"
    assert private_redis.commands() - before == idle  # a repeat costs no round trip
    assert _png(app, "g2", render) == b"g2" and drawn == ["g1", "g2"]


def test_an_image_another_process_drew_is_not_drawn_again(private_redis):
    drawer, other = _app(private_redis.url), _app(private_redis.url)
    assert _png(drawer, "g1", lambda chart: b"picture") == b"picture"
    assert _png(other, "g1", lambda chart: pytest.fail("drawn twice")) == b"picture"


def _slow_query(answers: list, seconds: float = 0.2, error: Exception | None = None):
    def query():
        answers.append(1)
        time.sleep(seconds)  # a whole-collection scan on a busy database
        if error:
            raise error
        return {"total": len(answers)}, len(answers)

    return query


def test_requests_arriving_during_a_totals_query_share_it():
    shared, ran = chart_cache.SharedQuery(), []
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(lambda _: shared.get(_slow_query(ran)), range(8)))
    assert len(ran) == 1
    assert {answer[0]["total"] for answer, _ in outcomes} == {1}
    assert sum(leader for _, leader in outcomes) == 1  # one stores it in Redis, the others do not
    assert shared.get(_slow_query(ran, 0))[0][0]["total"] == 2  # a later request asks anew


def test_a_failed_totals_query_fails_those_who_waited_for_it_at_once():
    shared, ran = chart_cache.SharedQuery(), []
    failing = _slow_query(ran, 0.3, TimeoutError("the database did not answer"))

    def ask(_):
        with pytest.raises(TimeoutError):
            shared.get(failing)

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        list(pool.map(ask, range(6)))
    assert len(ran) == 1  # not one failing scan after another, each waiting its full time
    assert shared.get(_slow_query(ran, 0))[0][0]["total"] == 2  # the next request asks anew


def test_with_redis_down_an_answer_is_reused_for_a_moment():
    reusing, ran = chart_cache.SharedQuery(reuse_seconds=60), []
    for _ in range(5):
        reusing.get(_slow_query(ran, 0))
    assert len(ran) == 1
    chart_cache.SharedQuery().get(_slow_query(ran, 0))
    assert len(ran) == 2
