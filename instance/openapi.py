"""GET /api/openapi.json: the public API's contract, as nginx answers on the public port.

openapi.json beside this file is the document; tests/cluster/test_api_contract.py runs
Schemathesis against the live stack with it, so a status, header or body it does not describe
fails the suite."""

from pathlib import Path

from flask import Blueprint, Response

bp = Blueprint("openapi", __name__)
DOCUMENT = Path(__file__).with_name("openapi.json")


@bp.get("/api/openapi.json")
def openapi():
    return Response(DOCUMENT.read_bytes(), mimetype="application/json")
