"""The registration service: one replica of three behind nginx (`instance:create_app()`)."""

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from common import service
from instance import auth, config, db, openapi, photo_store, photos, registrations, reports, web


def create_app(test_config: dict | None = None) -> Flask:
    app = service.create_app(
        __name__,
        "instance",
        config.from_env(),
        test_config,
        {"photo_store": lambda: photo_store.get_photo_store().ping()},
    )
    if not app.config["ADMIN_PASSWORD"]:
        raise RuntimeError("ADMIN_PASSWORD is not set; ./init.sh generates one into .env")
    # nginx is the one proxy in front: trust its X-Forwarded-* for links built from the request
    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1, x_host=1, x_port=1)
    db.init_app(app)
    photo_store.init_app(app)
    photos.set_pixel_cap(app.config["MAX_PHOTO_PIXELS"])
    auth.init_app(app)

    app.register_blueprint(registrations.bp)
    app.register_blueprint(reports.bp)
    app.register_blueprint(web.bp)
    app.register_blueprint(openapi.bp)
    return app
