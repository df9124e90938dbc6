"""The Redis-caching middleware: the chart and the report pass-through (`middleware:create_app()`)."""

from flask import Flask

from common import records, service
from middleware import chart, chart_cache, config, report_passthrough


def create_app(test_config: dict | None = None) -> Flask:
    app = service.create_app(__name__, "middleware", config.from_env(), test_config, {"redis": chart_cache.ping})
    app.extensions["mongo"] = records.connect(app.config["MONGO_URL"])
    chart_cache.init_app(app)
    report_passthrough.init_app(app)

    app.register_blueprint(chart.bp)
    app.register_blueprint(report_passthrough.bp)
    return app
