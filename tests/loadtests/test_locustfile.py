"""Checks of the load-test scripts that need no running stack.

The locustfile itself is only imported in a subprocess: importing locust monkey-patches
the whole interpreter (gevent), which must not leak into the rest of the test session.
"""

from __future__ import annotations

import io
import json
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image, UnidentifiedImageError

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from common.cities import city_key  # noqa: E402
from loadtests import run, workload  # noqa: E402

LOCUST = Path(sys.executable).with_name("locust")


def test_locustfile_loads_and_defines_the_user_kinds(tmp_path):
    # From another working directory, as an operator might start it by hand.
    out = subprocess.run(
        [str(LOCUST), "-f", str(ROOT / "loadtests" / "locustfile.py"), "--list"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert {"Admin", "Registrant", "Visitor"} <= set(out.stdout.split())

    probe = (
        "import json, loadtests.locustfile as lf; "
        "print(json.dumps({c: getattr(lf, c).weight for c in ('Visitor', 'Registrant', 'Admin')}))"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    weights = json.loads(out.stdout.strip().splitlines()[-1])
    assert weights["Admin"] < weights["Registrant"] < weights["Visitor"]


@pytest.mark.parametrize(("width", "height"), [(w, h) for w, h, _ in workload.PHOTO_SIZES])
def test_photos_are_decodable_jpegs_of_the_stated_size(width, height):
    data = workload.make_jpeg(width, height)
    assert data is workload.make_jpeg(width, height)  # built once per process, reused
    assert len(data) <= 5 * 1024 * 1024  # the service's photo limit
    with Image.open(io.BytesIO(data)) as img:
        assert img.format == "JPEG"
        assert img.size == (width, height)
        img.load()  # decodes the whole image, not just the header


def test_random_photo_label_matches_the_bytes():
    rng = random.Random(3)
    labels = set()
    for _ in range(50):
        label, data = workload.random_photo(rng)
        labels.add(label)
        with Image.open(io.BytesIO(data)) as img:
            assert label == f"{img.width}x{img.height}"
    assert labels == {f"{w}x{h}" for w, h, _ in workload.PHOTO_SIZES}


def test_city_distribution_is_skewed_and_uses_several_spellings():
    rng = random.Random(42)
    draws = [workload.random_city(rng) for _ in range(30_000)]
    by_city = Counter(city_key(c) for c in draws)
    assert len(by_city) == len(workload.CITIES)
    (_, most), (_, least) = by_city.most_common()[0], by_city.most_common()[-1]
    assert most >= 10 * least, by_city.most_common()
    assert by_city.most_common(1)[0][0] == "quito"
    quito_spellings = {c for c in draws if city_key(c) == "quito"}
    assert {"Quito", " quito ", "QUITO"} <= quito_spellings


def test_spellings_of_a_city_share_one_key_and_cities_differ():
    keys = []
    for variants in workload.CITIES:
        assert len({city_key(v) for v in variants}) == 1, variants
        keys.append(city_key(variants[0]))
    assert len(set(keys)) == len(keys)
    assert city_key("Dura\u0301n") == city_key("DURÁN")  # NFD vs NFC


def test_names_are_realistic_and_sometimes_accented():
    rng = random.Random(7)
    names = [workload.random_name(rng) for _ in range(200)]
    assert all(2 <= len(n.split()) <= 4 for n in names)
    assert any(not n.isascii() for n in names)
    assert any(n.isascii() for n in names)


@pytest.mark.parametrize("kind", list(workload.BAD_REQUEST_KINDS))
def test_bad_requests_are_multipart_and_bad_in_the_stated_way(kind):
    parts = workload.bad_request(kind, random.Random(1))
    if kind == "missing photo":
        assert "photo" not in parts
        assert {"name", "city"} <= set(parts)  # still a multipart form
    elif kind == "text as .jpg":
        filename, data, _ = parts["photo"]
        assert filename.endswith(".jpg")
        with pytest.raises(UnidentifiedImageError):
            Image.open(io.BytesIO(data))
    else:
        assert parts["name"] == (None, "")


def _error(field):
    return {"error": {"code": "invalid_photo", "message": "not an image", "field": field}}


@pytest.mark.parametrize(
    ("status", "ctype", "body", "ok"),
    [
        (422, "application/json", _error("photo"), True),
        (400, "application/json; charset=utf-8", _error(None), True),
        (413, "application/json", _error("photo"), True),
        (201, "application/json", {"id": "x"}, False),  # accepted junk
        (500, "application/json", _error("photo"), False),  # server error is no rejection
        (422, "text/html", None, False),  # not the JSON error format
        (422, "application/json", {"message": "bad"}, False),  # no "error" object
        (422, "application/json", {"error": {"message": "m", "field": "photo"}}, False),
        (422, "application/json", _error("name"), False),  # blames the wrong field
    ],
)
def test_bad_request_answers_are_classified(status, ctype, body, ok):
    assert (workload.check_rejection(status, ctype, body, "photo") is None) is ok


def test_admin_password_comes_from_env_then_dotenv(tmp_path):
    dotenv = tmp_path / ".env"
    dotenv.write_text("GRAFANA_ADMIN_PASSWORD=no\n# comment\nADMIN_PASSWORD='from-file'\n")
    assert workload.admin_password({"ADMIN_PASSWORD": "from-env"}, dotenv) == "from-env"
    assert workload.admin_password({}, dotenv) == "from-file"
    dotenv.write_text("ADMIN_PASSWORD=\n")
    assert workload.admin_password({}, dotenv) is None
    assert workload.admin_password({}, tmp_path / "missing") is None


def test_run_help_works():
    out = subprocess.run(
        [sys.executable, "-m", "loadtests.run", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    for option in ("--users", "--spawn-rate", "--duration", "--host", "--p95-ms", "--ui", "--out"):
        assert option in out.stdout


def test_run_builds_a_headless_locust_command_with_reports(tmp_path):
    args, extra = run.parse_args(["--out", str(tmp_path), "-u", "7", "--", "--exclude-tags", "bad"])
    cmd = run.locust_command(args, extra)
    assert Path(cmd[0]) == LOCUST
    assert "--headless" in cmd and cmd[cmd.index("-u") + 1] == "7"
    assert cmd[cmd.index("--csv") + 1] == str(tmp_path / "locust")
    assert cmd[cmd.index("--html") + 1] == str(tmp_path / "report.html")
    assert cmd[-2:] == ["--exclude-tags", "bad"]
    ui = run.locust_command(run.parse_args(["--ui", "--out", str(tmp_path)])[0], [])
    assert "--headless" not in ui and ui[ui.index("--web-host") + 1] == "127.0.0.1"


def _entry(name, times, failures=0):
    return {
        "method": "GET",
        "name": name,
        "num_requests": sum(times.values()),
        "num_failures": failures,
        "response_times": {str(ms): n for ms, n in times.items()},  # as JSON has them
        "start_time": 100.0,
        "last_request_timestamp": 110.0,
    }


def test_run_verdict_fails_on_failed_requests_and_on_slow_p95():
    fast = _entry("/api/chart", {10: 90, 20: 10})
    slow = _entry("/api/chart.png", {3000: 10})
    rows, total = run.summarize([fast])
    assert total["count"] == 100 and total["p95"] == 20 and total["rps"] == 10
    assert run.judge(total, 1000) == []

    _, total = run.summarize([fast, slow])  # 10 of 110 at 3 s: p95 is 3000
    assert total["p95"] == 3000
    assert any("p95" in r for r in run.judge(total, 1000))
    assert run.judge(total, 0) == []  # 0 disables the latency check

    _, total = run.summarize([_entry("/", {10: 5}, failures=1)])
    assert any("failed" in r for r in run.judge(total, 1000))
    assert run.judge(None, 1000)  # no statistics at all is a failure
