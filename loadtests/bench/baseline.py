"""The baselines the cluster is measured against, in the same run.

* service: the one-line Flask view of `loadtests/baseline_app.py` under gunicorn with the
  services' own settings (`common/gunicorn_conf.py`, same worker class, workers and threads as
  the running replicas), laid out like the cluster (three "replicas" and one "middleware", one
  gunicorn each) behind an nginx rendered from the public entrypoint's own template;
* report: `loadtests/baseline_report.py`, openpyxl alone writing the report's sheets, rows and
  values in write-only mode, in its own process.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

from common import records
from stack import supervisor
from stack.parts import gunicorn, public_nginx
from stack.settings import DEFAULT_PORTS, INSTANCES, ROOT, Settings

BASE_PORT = 38000  # moved by the stack's own PORT_OFFSET, so benches of two stacks never meet


def ports(s: Settings) -> dict:
    base = BASE_PORT + s.ports["PUBLIC_PORT"] - DEFAULT_PORTS["PUBLIC_PORT"]
    if base + 80 > 65535:  # a large PORT_OFFSET: wrap around above the privileged ports, still one to one
        base = (base - 1024) % (65535 - 80 - 1024) + 1024
    return {
        "instances": [base + 1 + n for n in range(INSTANCES)],
        "middleware": base + 10,
        "public": base + 80,
        "status": base + 79,
    }


class BaselineService:
    """The one-line app on the cluster's layout, started and stopped by the bench (state in var/bench/)."""

    def __init__(self, s: Settings, shapes: dict[str, dict[str, str]]):
        self.settings = dataclasses.replace(s, var=s.var / "bench")
        bs, at = self.settings, ports(s)
        app = "loadtests.baseline_app:app"
        self.parts = [
            gunicorn(bs, f"baseline-instance-{n}", app, port, dict(shapes["instance"]))
            for n, port in enumerate(at["instances"], start=1)
        ]
        self.parts.append(gunicorn(bs, "baseline-middleware", app, at["middleware"], dict(shapes["middleware"])))
        self.parts.append(
            public_nginx(bs, "baseline-nginx", at["instances"], at["middleware"], at["public"], at["status"])
        )
        self.url = f"http://127.0.0.1:{at['public']}"

    def __enter__(self) -> BaselineService:
        self.stop()  # leftovers of an interrupted run
        try:
            for part in self.parts:
                supervisor.start(self.settings, part)
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        for part in reversed(self.parts):
            supervisor.stop(self.settings, part)


def report(s: Settings) -> dict:
    """openpyxl alone writing the report's workbook: {"rows", "seconds", "bytes"}."""
    command = [
        sys.executable,
        "-m",
        "loadtests.baseline_report",
        "--mongo-url",
        s.mongo_url,
        "--db",
        s.get("MONGO_DB", records.DATABASE),
        "--link-prefix",
        f"{s.public_url}/api/registrations/",
    ]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(f"baseline report failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout.splitlines()[-1])
