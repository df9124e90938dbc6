"""`./init.sh test` checks first: a missing program or a ruff finding fails the run before any stack starts."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUFF = Path(sys.executable).with_name("ruff")

SOURCES = {
    "clean": "import os\n\nprint(os.sep)\n",
    "unused import": "import os\nimport sys\n\nprint(os.sep)\n",
    "unformatted": "import os\n\nprint( os.sep )\n",
}


@pytest.fixture
def checkout(tmp_path):
    """A checkout with one module, our ruff settings, and a venv whose python only records that
    it was asked to start the stack."""
    (tmp_path / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    venv = tmp_path / ".venv" / "bin"
    venv.mkdir(parents=True)
    (venv / "ruff").symlink_to(RUFF)
    (venv / "python").write_text('#!/bin/sh\necho "stack started: $*"\n')
    (venv / "python").chmod(0o755)
    return tmp_path


@pytest.mark.parametrize("source", SOURCES)
def test_init_sh_test_lints_before_it_starts_a_stack(checkout, source):
    (checkout / "module.py").write_text(SOURCES[source])
    script = (
        f"source {ROOT / 'init.sh'}; install_debian_packages() {{ :; }}; install_python() {{ :; }}; "
        f"cd {checkout}; main test -q"
    )
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60)
    if source == "clean":
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "stack started: -m stack test -q"
    else:
        assert result.returncode != 0
        assert "stack started" not in result.stdout
        assert "lint failed" in result.stderr and "module.py" in result.stdout + result.stderr


def test_a_missing_program_stops_init_sh_test_before_a_stack_starts(checkout):
    (checkout / "module.py").write_text(SOURCES["clean"])
    script = (
        f"source {ROOT / 'init.sh'}; install_debian_packages() {{ :; }}; install_python() {{ :; }}; "
        f"PROGRAMS+=(no-such-program:its-package); cd {checkout}; main test -q"
    )
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "stack started" not in result.stdout
    assert "missing programs: no-such-program (Debian package its-package)" in result.stderr
