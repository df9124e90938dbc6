"""Everything killed at once under load (supervisord too, as in a power cut), then ./init.sh:
nothing acknowledged is lost, nothing is stored twice, every stored photo is readable."""

import os
import subprocess
import sys
import time
from datetime import UTC, datetime

from PIL import Image

from common import records
from loadtests import drill
from loadtests.bench import data
from stack import supervisor
from stack.settings import ROOT

WARMUP_S = 8  # registrations in flight when the power goes
DARK_S = 3  # while everything is down, the careful clients keep retrying
AFTER_S = 10  # and after the restart, until their retries have landed


def test_everything_killed_at_once_loses_nothing_acknowledged(stack, tmp_path):
    began = datetime.now(UTC)
    load = drill.start_load(stack.settings, tmp_path, users=10, spawn_rate=10)
    try:
        time.sleep(WARMUP_S)
        assert load.poll() is None, (tmp_path / "load.log").read_text()[-2000:]
        killed = supervisor.power_cut(stack.settings, list(stack.parts.values()))
        assert sorted(killed) == sorted(stack.parts)
        assert not any(stack.is_up(name) for name in stack.parts)
        time.sleep(DARK_S)
        up = subprocess.run([sys.executable, "-m", "stack", "up"], cwd=ROOT, env=os.environ, capture_output=True)
        assert up.returncode == 0, up.stdout.decode() + up.stderr.decode()
        time.sleep(AFTER_S)
    finally:
        drill.stop_load(load)
    stack.wait_until_routed()

    acknowledged = sorted(set((tmp_path / "acknowledged.txt").read_text().split()))
    outcomes = drill.registration_outcomes(stack.db, drill.json_lines(tmp_path / "registrations.jsonl"), began)
    print(f"power cut: {len(acknowledged)} acknowledged, {outcomes}")
    assert acknowledged
    assert len(data.stored(stack.db, acknowledged)) == len(acknowledged)  # nothing acknowledged lost
    assert outcomes["duplicates"] == 0
    integrity = drill.integrity(stack.settings, stack.db, began)
    assert integrity["records_without_photo"] == 0
    for doc in stack.db[records.REGISTRATIONS].find({"created_at": {"$gte": began}}, {"photo_key": 1}):
        with Image.open(stack.photo_dir / doc["photo_key"]) as photo:
            photo.verify()  # the whole file is there, not a torn write
