"""The logs as a person queries them: lnav, headless, with the repository's format installed in
a private configuration folder, run against the live stack's log files."""

import csv
import io
import re
import subprocess

from polling import wait_for
from stack import logview


def lnav_sql(stack, config_home, query: str) -> list[dict]:
    files = sorted(str(path) for path in stack.settings.log_dir.glob("*.log"))
    result = subprocess.run(
        ["lnav", "-n", "-c", f";{query}", "-c", ":write-csv-to -", *files],
        env=logview.lnav_env(config_home),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return list(csv.DictReader(io.StringIO(result.stdout)))


def test_lnav_finds_one_request_in_the_lines_of_nginx_the_middleware_and_a_replica(stack, http, tmp_path):
    # a report goes nginx -> middleware (pass-through) -> a replica: three parts log one request
    response = http.get(f"{stack.url}/api/reports/cities.xlsx", auth=stack.admin)
    assert response.status_code == 200
    request_id = response.headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", request_id)  # nginx's $request_id: safe to quote in SQL
    query = f"SELECT DISTINCT instance FROM vaccination_log WHERE request_id = '{request_id}'"  # noqa: S608

    def parts() -> set[str]:
        return {row["instance"] for row in lnav_sql(stack, tmp_path, query)}

    wait_for(lambda: len(parts()) >= 3, timeout=15, every=1)
    found = parts()
    assert {"nginx", "middleware"} <= found, found
    assert found & {"instance-1", "instance-2", "instance-3"}, found

    by_level = lnav_sql(
        stack,
        tmp_path,
        "SELECT instance, count(*) AS lines FROM vaccination_log "
        "WHERE log_level >= 'info' AND log_time > datetime('now', '-10 minutes') GROUP BY instance",
    )
    assert {"nginx", "middleware"} <= {row["instance"] for row in by_level}
    assert all(int(row["lines"]) > 0 for row in by_level)
