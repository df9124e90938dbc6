"""Liveness (/health: the process answers) and readiness (/ready: its dependencies answer)."""

from flask import Blueprint, current_app, jsonify

from instance.photo_store import get_photo_store

bp = Blueprint("health", __name__)


@bp.get("/health")
def health():
    return jsonify(status="ok", instance=current_app.config["INSTANCE_NAME"])


@bp.get("/ready")
def ready():
    checks = {}
    try:
        current_app.extensions["mongo"].admin.command("ping")
        checks["database"] = "ok"
    except Exception as error:
        checks["database"] = f"unreachable: {error.__class__.__name__}"
    try:
        get_photo_store().ping()
        checks["photo_store"] = "ok"
    except Exception as error:
        checks["photo_store"] = f"unreachable: {error}"
    ok = all(value == "ok" for value in checks.values())
    response = jsonify(status="ready" if ok else "not_ready", checks=checks,
                       instance=current_app.config["INSTANCE_NAME"])
    response.status_code = 200 if ok else 503
    return response
