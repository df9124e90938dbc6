"""The Redis-caching middleware: the chart and the report pass-through (`middleware:create_app()`)."""

from flask import Flask, Response, current_app, jsonify
from pymongo.errors import PyMongoError

from common import errors, logs, metrics, records
from common.errors import ApiError
from common.ready import readiness
from middleware import chart_cache, chart_image, config, report_passthrough


def create_app(test_config: dict | None = None) -> Flask:
    app = Flask(__name__)
    app.config.update(config.from_env())
    if test_config:
        app.config.update(test_config)

    logs.configure("middleware", app.config["INSTANCE_NAME"], app.config["LOG_LEVEL"], app.config["LOKI_URL"])
    errors.init_app(app)
    logs.init_request_logging(app)
    metrics.init_app(app, "middleware")
    app.extensions["mongo"] = records.connect(app.config["MONGO_URL"])
    chart_cache.init_app(app)
    report_passthrough.init_app(app)

    def cached_chart(lookup=chart_cache.get):
        try:
            return lookup()
        except PyMongoError:
            raise ApiError(503, "database_unavailable",
                           "The totals are not cached and the database is unavailable right now.") from None

    @app.get("/api/chart")
    def chart():
        body, source = cached_chart(chart_cache.get_encoded)
        # the cached object with one more member: where it came from
        response = Response(body[:-1] + b',"cache":"' + source.encode() + b'"}', mimetype="application/json")
        response.headers["X-Cache"] = source.upper()
        return response

    @app.get("/api/chart.png")
    def chart_png():
        data, source = cached_chart()
        response = Response(chart_cache.get_png(data, chart_image.render), mimetype="image/png")
        response.headers["X-Cache"] = source.upper()
        response.headers["Cache-Control"] = "no-cache"
        return response

    @app.get("/api/reports/cities.xlsx")
    def report():
        return report_passthrough.pass_through()

    @app.get("/health")
    def health():
        return jsonify(status="ok", instance="middleware")

    @app.get("/ready")
    def ready():
        return readiness("middleware", {
            "database": lambda: current_app.extensions["mongo"].admin.command("ping"),
            "redis": chart_cache.ping,
        })

    @app.after_request
    def _served_by(response):
        response.headers.setdefault("X-Served-By", "middleware")
        return response

    return app
