"""The state folder holds secrets (rendered configs, the env file, logs): only its owner reads it."""

import os
import shutil
import stat
import subprocess
import sys
import uuid

from stack import parts
from stack.settings import ROOT, load


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_stack_command_creates_its_state_private(tmp_path):
    var = tmp_path / "var"
    env = {**os.environ, "VAR_DIR": str(var), "ENV_FILE": str(var / ".env"), "PORT_OFFSET": "31000"}
    result = subprocess.run(
        [sys.executable, "-m", "stack", "status"], cwd=ROOT, env=env, capture_output=True, text=True, umask=0o022
    )
    assert result.returncode == 3, result.stderr  # nothing runs there: every part is down
    assert _mode(var) == 0o700
    assert _mode(var / ".env") == 0o600


def _existing_folder(var, monkeypatch):
    var.mkdir(parents=True)
    var.chmod(0o755)  # whatever the umask of the run
    monkeypatch.setenv("VAR_DIR", str(var))
    monkeypatch.setenv("ENV_FILE", str(var / ".env"))


def test_an_existing_state_folder_in_the_checkout_is_made_private(monkeypatch):
    var = ROOT / "var" / f"private-state-test-{uuid.uuid4().hex}"
    _existing_folder(var, monkeypatch)
    try:
        load()
        assert _mode(var) == 0o700
    finally:
        shutil.rmtree(var)


def test_an_existing_state_folder_elsewhere_is_the_operators_to_protect(tmp_path, monkeypatch):
    var = tmp_path / "srv" / "var"
    _existing_folder(var, monkeypatch)
    load()
    assert _mode(var) == 0o755


def test_nginx_workers_run_as_whoever_started_the_stack():
    directive = parts._nginx_user()
    if os.geteuid() == 0:
        assert directive.startswith("user root ")  # not www-data: it could not enter a private var/
    else:
        assert directive == ""


def test_the_running_stack_keeps_its_state_private(stack):
    s = stack.settings
    assert _mode(s.var) == 0o700
    written = [*s.run_dir.glob("*.conf"), *s.log_dir.glob("*.log"), s.run_dir / "alertmanager" / "alertmanager.yml"]
    exposed = [str(path) for path in written if path.exists() and _mode(path) & 0o077]
    assert not exposed, f"readable by others: {exposed}"
