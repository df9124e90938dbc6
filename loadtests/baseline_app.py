"""The benchmark's baseline service: the cheapest Flask view, served exactly like the real ones.

`python -m loadtests.bench` runs it under gunicorn with the services' own settings module
(`common/gunicorn_conf.py`, same worker class, workers and threads) behind an nginx rendered from
the public entrypoint's own template, so the bench compares our code with the framework and the
layout it runs on. The one view answers every path; it parses the form (a registration's
multipart upload is received and parsed, as any Flask view reading `request.form` must) and
answers a small JSON: 201 to a POST, 200 otherwise.
"""

from flask import Flask, request

app = Flask(__name__)


@app.route("/", defaults={"path": ""}, methods=["GET", "POST"])
@app.route("/<path:path>", methods=["GET", "POST"])
def answer(path: str):
    return {"ok": True, "fields": len(request.form) + len(request.files)}, 201 if request.method == "POST" else 200
