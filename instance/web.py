"""GET /: the registration form, the chart and the admin's report link."""

from flask import Blueprint, current_app, render_template

bp = Blueprint("web", __name__)

# The page's own files only, and no inline script or style: injected markup cannot run or
# restyle anything. The form posts and the script fetches to this origin only; no one may frame it.
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "form-action 'self'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    )
)


@bp.get("/")
def index():
    max_mib = current_app.config["MAX_PHOTO_BYTES"] / 2**20
    response = current_app.make_response(render_template("index.html", max_mib=f"{max_mib:g}"))
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    return response
