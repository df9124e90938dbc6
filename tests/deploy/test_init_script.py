"""init.sh's first run on a Debian machine, with apt, dpkg and systemctl replaced by fakes that
record what they were asked: the distribution's daemons must neither start nor stay enabled,
and a policy-rc.d that was there before must be there after, whatever happens."""

import subprocess
from pathlib import Path

import pytest
from deploytools import repo_file

FAKES = {
    "id": "echo 0",  # root, so it installs
    # one package asked about: not installed yet; the whole list: what apt has installed so far
    "dpkg-query": """
[ $# -ge 3 ] && exit 1
echo "installed bash"
grep -q "install with policy" "$RECORD" 2>/dev/null || exit 0
printf 'installed nginx-common\\ninstalled nginx-light\\ninstalled prometheus\\ninstalled redis-server\\n'""",
    "apt-get": """
echo "apt-get $*" >> "$RECORD"
case " $* " in *" install "*) ;; *) exit 0 ;; esac
{ echo "install with policy:"; cat "$POLICY_RC_D"; } >> "$RECORD"
[ -z "$FAIL_INSTALL" ]""",
    "dpkg": """
for package in "$@"; do
  case $package in
    nginx-common) printf '/usr/lib/systemd/system/nginx.service\\n/etc/nginx/nginx.conf\\n' ;;
    nginx-light) printf '/usr/sbin/nginx\\n' ;;
    prometheus) printf '/lib/systemd/system/prometheus.service\\n/etc/default/prometheus\\n' ;;
    redis-server) printf '/lib/systemd/system/redis-server.service\\n/lib/systemd/system/redis-server@.service\\n' ;;
    bash) printf '/lib/systemd/system/not-ours.service\\n' ;;
  esac
done""",
    "systemctl": 'echo "systemctl $*" >> "$RECORD"',
}


@pytest.fixture
def machine(tmp_path) -> dict:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in FAKES.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    return {
        "bin": bin_dir,
        "policy": tmp_path / "policy-rc.d",
        "systemd": tmp_path / "systemd",
        "record": tmp_path / "record",
    }


def _install(machine, fail: bool = False) -> subprocess.CompletedProcess:
    script = (
        f"source {repo_file('init.sh')}; POLICY_RC_D={machine['policy']}; "
        f"SYSTEMD_DIR={machine['systemd']}; export POLICY_RC_D; install_debian_packages"
    )
    env = {
        "PATH": f"{machine['bin']}:/usr/bin:/bin",
        "RECORD": str(machine["record"]),
        "FAIL_INSTALL": "1" if fail else "",
    }
    return subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=30)


def _record(machine) -> str:
    path = Path(machine["record"])
    return path.read_text() if path.exists() else ""


def test_daemons_are_installed_without_starting_and_an_existing_policy_comes_back(machine):
    machine["policy"].write_text("#!/bin/sh\n# the image's own\nexit 0\n")
    machine["policy"].chmod(0o750)
    result = _install(machine)
    assert result.returncode == 0, result.stderr
    assert "install with policy:\n#!/bin/sh\nexit 101\n" in _record(machine)
    assert machine["policy"].read_text() == "#!/bin/sh\n# the image's own\nexit 0\n"
    assert machine["policy"].stat().st_mode & 0o777 == 0o750


def test_a_failed_install_still_puts_the_policy_back(machine):
    machine["policy"].write_text("original\n")
    result = _install(machine, fail=True)
    assert result.returncode != 0
    assert machine["policy"].read_text() == "original\n"


def test_without_a_policy_before_there_is_none_after(machine):
    assert _install(machine).returncode == 0
    assert not machine["policy"].exists()


def test_under_systemd_the_installed_units_are_disabled_and_stopped(machine):
    machine["systemd"].mkdir()
    assert _install(machine).returncode == 0
    # nginx.service comes with a dependency (nginx-common); a package the machine had is left alone
    assert "systemctl disable --now nginx.service prometheus.service redis-server.service\n" in _record(machine)


def test_without_systemd_nothing_is_asked_of_it(machine):
    assert _install(machine).returncode == 0
    assert "systemctl" not in _record(machine)


def test_python3_venv_is_installed_and_a_venv_without_pip_is_not_trusted():
    packages = subprocess.run(
        ["bash", "-c", f'source {repo_file("init.sh")}; echo "${{DEBIAN_PACKAGES[@]}}"'],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert "python3-venv" in packages  # Debian's python3 has no ensurepip without it
    assert "-x $VENV/bin/pip" in repo_file("init.sh").read_text()


def test_apt_waits_for_another_install_instead_of_failing_on_its_lock(machine):
    assert _install(machine).returncode == 0
    calls = [line for line in _record(machine).splitlines() if line.startswith("apt-get ")]
    assert len(calls) == 2 and all("-o DPkg::Lock::Timeout=600" in call for call in calls), calls


def _init_sh(command: str, path: str) -> subprocess.CompletedProcess:
    script = f"source {repo_file('init.sh')}; {command}"
    return subprocess.run(["bash", "-c", script], env={"PATH": path}, capture_output=True, text=True, timeout=30)


def test_every_package_init_sh_installs_is_checked_by_a_program_the_suite_runs():
    listed = _init_sh('printf "%s\\n" "${PROGRAMS[@]}"; echo --; echo "${DEBIAN_PACKAGES[@]}"', "/usr/bin:/bin")
    programs, packages = listed.stdout.split("--\n")
    # a package added without its program in PROGRAMS would be missed by the preflight
    assert {line.split(":", 1)[1] for line in programs.split()} == set(packages.split())


def test_the_preflight_names_each_missing_program_and_its_package_in_one_line(tmp_path):
    # a PATH with bash and nothing else (the sbin folders are added: iptables may be there)
    for tool in ("bash", "dirname"):
        (tmp_path / tool).symlink_to(f"/usr/bin/{tool}")
    result = _init_sh("preflight", str(tmp_path))
    assert result.returncode != 0
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "promtool (Debian package prometheus)" in lines[0]
    assert "git (Debian package git)" in lines[0]
