"""HTTP Basic authentication for admins (reports and personal data)."""

import base64
import binascii
import hmac
from functools import wraps

from flask import Flask, current_app, request

from common.errors import ApiError

ADMIN_USER = "admin"
REALM = 'Basic realm="Vaccination admin", charset="UTF-8"'


def _credentials_ok() -> bool:
    header = request.headers.get("Authorization", "")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return False
    try:
        user, _, password = base64.b64decode(encoded, validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return False
    # compare both in constant time, and always both, so timing tells nothing about either
    user_ok = hmac.compare_digest(user.encode(), ADMIN_USER.encode())
    password_ok = hmac.compare_digest(password.encode(), current_app.config["ADMIN_PASSWORD"].encode())
    return user_ok & password_ok


def admin_required(view):
    @wraps(view)
    def wrapper(*args, **kwargs):
        if not _credentials_ok():
            raise ApiError(401, "unauthorized", "Admin credentials are required (HTTP Basic, user 'admin').")
        return view(*args, **kwargs)

    return wrapper


def init_app(app: Flask) -> None:
    @app.after_request
    def _challenge(response):
        if response.status_code == 401:
            response.headers["WWW-Authenticate"] = REALM
        return response
