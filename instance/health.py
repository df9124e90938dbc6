"""Liveness (/health: the process answers) and readiness (/ready: its dependencies answer)."""

from flask import Blueprint, current_app, jsonify

from common.ready import readiness
from instance.photo_store import get_photo_store

bp = Blueprint("health", __name__)


@bp.get("/health")
def health():
    return jsonify(status="ok", instance=current_app.config["INSTANCE_NAME"])


@bp.get("/ready")
def ready():
    return readiness(current_app.config["INSTANCE_NAME"], {
        "database": lambda: current_app.extensions["mongo"].admin.command("ping"),
        "photo_store": lambda: get_photo_store().ping(),
    })
