"""The state folder holds secrets (rendered configs, the env file, logs): only its owner reads it.
Secrets have a form that is safe in every template, and the stack's Redis asks for its password."""

import os
import secrets
import shutil
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import redis
from scrape import metric_sum

from stack import parts, supervisor
from stack.render import render
from stack.settings import GENERATED_SECRETS, ROOT, BadSecret, load, read_env_file


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


def test_an_env_file_written_by_hand_is_made_private_too(tmp_path, monkeypatch):
    env_file = tmp_path / ".env"
    chosen = secrets.token_urlsafe(20)
    env_file.write_text(f"ADMIN_PASSWORD={chosen}\n")
    env_file.chmod(0o644)
    monkeypatch.setenv("VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("ENV_FILE", str(env_file))
    for name in GENERATED_SECRETS:
        monkeypatch.delenv(name, raising=False)
    s = load()
    assert _mode(env_file) == 0o600
    assert s.secrets["ADMIN_PASSWORD"] == chosen
    assert set(read_env_file(env_file)) == set(GENERATED_SECRETS)  # the others generated beside it


@pytest.mark.parametrize(
    "password",
    ["short", "has space in it, long enough", "quote'and;semicolon-long", "new\nline-long-enough-x", "é" * 20],
)
def test_a_secret_of_another_form_is_refused_before_any_template(tmp_path, monkeypatch, password):
    monkeypatch.setenv("VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("ENV_FILE", str(tmp_path / ".env"))
    monkeypatch.setenv("PHOTO_STORE_TOKEN", password)
    with pytest.raises(BadSecret, match="PHOTO_STORE_TOKEN"):
        load()


def test_templates_refuse_a_value_that_could_start_another_directive():
    with pytest.raises(ValueError, match="SERVER"):
        render("server_name ${SERVER};", {"SERVER": "example.org;\ninclude /etc/passwd"})


def test_the_stacks_redis_answers_only_with_its_password(stack):
    port = stack.settings.ports["REDIS_PORT"]
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=port, socket_timeout=2).ping()
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=port, password=secrets.token_urlsafe(24), socket_timeout=2).ping()
    assert redis.Redis.from_url(stack.settings.redis_url, socket_timeout=2).ping()
    # its password is in no command line, which every local user can read
    pid = supervisor.running_pid(stack.settings, stack.parts["redis"])
    command_line = Path(f"/proc/{pid}/cmdline").read_bytes()
    assert stack.settings.secrets["REDIS_PASSWORD"].encode() not in command_line


def test_the_redis_exporter_signs_in(stack):
    url = f"http://127.0.0.1:{stack.settings.ports['REDIS_EXPORTER_PORT']}/metrics"
    assert metric_sum(url, "redis_up") == 1
