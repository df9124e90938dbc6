"""GET /: the registration form, the chart and the admin's report link."""

from flask import Blueprint, current_app, render_template

bp = Blueprint("web", __name__)


@bp.get("/")
def index():
    max_mib = current_app.config["MAX_PHOTO_BYTES"] / 2**20
    return render_template("index.html", max_mib=f"{max_mib:g}")
