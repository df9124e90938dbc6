"""Third-party analysis tools (checkov, network-config-analyzer) in virtualenvs of their own.

Their dependencies (checkov's alone are ~100 packages) must never share the services'
environment, so each tool gets a venv under var/tools/, named after the hash of its lock file
in tools/: a changed pin builds a new one, an unchanged one is reused. The lock lists every
package with `==` and is installed with --no-deps, so nothing unpinned comes in.
"""

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from deploytools import REPO

LOCKS = Path(__file__).resolve().parent / "tools"
# the first build downloads and installs the tool (checkov: a few minutes); later runs reuse it
INSTALL_TIMEOUT_S = 1200


def run_tool(tool: str, entry: str, args: list[str], timeout: int) -> subprocess.CompletedProcess:
    """`entry` (a Python statement that runs the tool) with these arguments, in the tool's venv.

    Through the venv's interpreter, not its scripts: those name the interpreter by the path
    the venv was built at, and it is built beside its final place, then renamed."""
    python = tool_python(tool)
    return subprocess.run([str(python), "-c", entry, *args], capture_output=True, text=True, timeout=timeout)


def tool_python(tool: str) -> Path:
    """The interpreter of a tool's own venv, built from tools/<tool>.txt when missing."""
    lock = LOCKS / f"{tool}.txt"
    digest = hashlib.sha256(lock.read_bytes()).hexdigest()[:12]
    venv = REPO / "var" / "tools" / f"{tool}-{digest}"
    found = venv / "bin" / "python"
    if found.exists():
        return found
    building = venv.with_name(f"{venv.name}.building-{os.getpid()}")
    shutil.rmtree(building, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(building)], check=True, timeout=120)
    result = subprocess.run(
        [
            str(building / "bin" / "pip"),
            "install",
            "--quiet",
            "--no-deps",
            "--disable-pip-version-check",
            "-r",
            str(lock),
        ],
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT_S,
    )
    if result.returncode != 0:
        shutil.rmtree(building, ignore_errors=True)
        pytest.fail(f"installing {tool} from {lock.relative_to(REPO)} failed:\n{result.stderr[-3000:]}")
    try:
        building.rename(venv)
    except OSError:  # another run finished first: use its venv
        shutil.rmtree(building, ignore_errors=True)
    return found
