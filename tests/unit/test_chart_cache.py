"""The chart cache's compare-and-set write fails open: Redis down means not cached, never an error.
(Which of two racing refills wins is tested against the real Redis in tests/cluster/test_chart.py.)"""

from flask import Flask

from middleware import chart_cache


def test_storing_with_redis_down_is_not_an_error():
    app = Flask(__name__)
    app.config.update(REDIS_URL="redis://127.0.0.1:9/0", CHART_CACHE_TTL_SECONDS=60)  # nothing listens
    chart_cache.init_app(app)
    with app.app_context():
        assert chart_cache.store({"cities": [], "total": 0, "generated_at": "x"}, filled=1) is False
