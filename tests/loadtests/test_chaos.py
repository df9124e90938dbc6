"""A short chaos run with a fixed seed against the real stack: faults one at a time under load,
and the run's own verdict (exit status) says nothing was lost, doubled or left unreported."""

import json
import subprocess
import sys
from pathlib import Path

from loadtests.chaos import VICTIM, victims
from stack.settings import PAIR

ROOT = Path(__file__).resolve().parents[2]


def test_victims_come_from_the_part_list(stack):
    names = {part.name for part in victims(stack.settings)}
    assert names == {name for name in stack.parts if VICTIM.match(name)}
    pairs = {f"{kind}-{n}" for kind in ("prometheus", "alertmanager") for n in PAIR}
    assert {"instance-1", "middleware", "redis", "mongodb", "photo-store", *pairs} <= names
    assert not names & {"redis-exporter", "nginx", "mail-sink", "restart-exporter"}


def test_a_one_minute_chaos_run_loses_nothing_and_tells_of_every_kill(stack, tmp_path):
    # quiet-after: a kill in the run's last seconds resolves its PartRestarted 2 minutes later
    command = [sys.executable, "-m", "loadtests.chaos", "--minutes", "1", "--seed", "17", "--users", "12"]
    command += ["--quiet-after", "120", "--out", str(tmp_path)]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    verdict = json.loads(result.stdout.strip().splitlines()[-1])
    assert verdict["faults"] and verdict["registrations"] > 0
    assert verdict["failed"] == verdict["lost"] == verdict["duplicates"] == verdict["ghosts"] == 0
    assert verdict["chart_matches_report"] and verdict["firing_after_quiet"] == []
    assert (tmp_path / "timeline.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    draft = (tmp_path / "postmortem.md").read_text()
    assert f"registrations finished by clients: {verdict['registrations']}" in draft
    assert all(f"fault: {f['fault']} {f['victim']}" in draft for f in verdict["faults"])
