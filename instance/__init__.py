"""The registration service: one replica of three behind nginx (`instance:create_app()`)."""

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from common import errors, logs, metrics
from instance import auth, config, db, health, photo_store, photos, registrations, reports, web


def create_app(test_config: dict | None = None) -> Flask:
    app = Flask(__name__)
    app.config.update(config.from_env())
    if test_config:
        app.config.update(test_config)
    if not app.config["ADMIN_PASSWORD"]:
        raise RuntimeError("ADMIN_PASSWORD is not set; ./init.sh generates one into .env")

    logs.configure("instance", app.config["INSTANCE_NAME"], app.config["LOG_LEVEL"], app.config["LOKI_URL"])
    # nginx is the one proxy in front: trust its X-Forwarded-* for links built from the request
    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1, x_host=1, x_port=1)
    errors.init_app(app)
    logs.init_request_logging(app)
    metrics.init_app(app, "instance")
    db.init_app(app)
    photo_store.init_app(app)
    photos.set_pixel_cap(app.config["MAX_PHOTO_PIXELS"])
    auth.init_app(app)

    app.register_blueprint(registrations.bp)
    app.register_blueprint(reports.bp)
    app.register_blueprint(web.bp)
    app.register_blueprint(health.bp)

    @app.after_request
    def _served_by(response):
        response.headers["X-Served-By"] = app.config["INSTANCE_NAME"]
        return response

    return app
