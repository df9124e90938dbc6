"""`./init.sh logs`: the parts' JSON log lines, filtered by part, level and request id; with
--browse, every log in lnav, the JSON ones read by the format in stack/lnav/."""

import json
import os
import shutil
import subprocess
import time
from collections import deque
from pathlib import Path

LNAV_FORMAT = Path(__file__).parent / "lnav" / "vaccination_log.json"
LEVELS = {"debug": 10, "info": 20, "warning": 30, "warn": 30, "error": 40, "critical": 50}


def _keep(line: str, level: str | None, request_id: str | None) -> bool:
    try:
        record = json.loads(line)
    except ValueError:
        record = None
    if not isinstance(record, dict):  # a plain line (a crash trace, nginx's error log)
        if request_id:
            return request_id in line
        return not level or LEVELS.get(level, 0) <= LEVELS["warning"]
    if request_id and record.get("request_id") != request_id:
        return False
    return not level or LEVELS.get(str(record.get("level", "info")).lower(), 20) >= LEVELS.get(level.lower(), 0)


def _files(log_dir: Path, names: list[str]) -> list[tuple[str, Path]]:
    found = []
    for name in names:
        for path in sorted(log_dir.glob(f"{name}.log")) + sorted(log_dir.glob(f"{name}.error.log")):
            found.append((name, path))
    return found


def show(log_dir: Path, names: list[str], level=None, request_id=None, follow=False, lines=50) -> int:
    files = _files(log_dir, names)
    if not files:
        print(f"no logs yet in {log_dir}")
        return 1
    width = max(len(name) for name, _ in files)
    offsets = {}
    for name, path in files:
        with open(path, errors="replace") as handle:
            tail = deque((line for line in handle if _keep(line, level, request_id)), maxlen=lines)
            offsets[path] = handle.tell()
        for line in tail:
            print(f"{name:<{width}} | {line.rstrip()}")
    while follow:
        time.sleep(0.5)
        for name, path in files:
            with open(path, errors="replace") as handle:
                if path.stat().st_size < offsets[path]:
                    offsets[path] = 0  # truncated or rotated
                handle.seek(offsets[path])
                for line in handle:
                    if _keep(line, level, request_id):
                        print(f"{name:<{width}} | {line.rstrip()}", flush=True)
                offsets[path] = handle.tell()
    return 0


def lnav_env(config_home: Path) -> dict[str, str]:
    """lnav with the repository's log format installed in a private configuration folder, so
    the person's own lnav settings are neither needed nor changed."""
    env = {**os.environ, "XDG_CONFIG_HOME": str(config_home)}
    subprocess.run(["lnav", "-i", str(LNAV_FORMAT)], env=env, check=True, capture_output=True)
    return env


def browse(log_dir: Path, names: list[str], config_home: Path) -> int:
    files = [str(path) for _, path in _files(log_dir, names)]
    if not files:
        print(f"no logs yet in {log_dir}")
        return 1
    if not shutil.which("lnav"):
        print("lnav is not installed; ./init.sh installs it (Debian package lnav)")
        return 2
    return subprocess.call(["lnav", *files], env=lnav_env(config_home))
