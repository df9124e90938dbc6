"""The images' hashed locks: <service>/requirements.lock, every package an image installs (its
requirements.txt and all they pull in) at the repository lock's version, each with the sha256
of the wheel the image's platform (CPython 3.11, manylinux x86_64) downloads. The Dockerfile
installs it with --require-hashes, so a changed or substituted file on the index fails the build.

    python -m stack.image_locks     # after changing a <service>/requirements.txt (asks PyPI)
"""

import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SERVICES = ("instance", "middleware")
# the image's interpreter and platform (Dockerfile: PYTHON_IMAGE)
WHEEL_TAGS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
PLATFORM = ["--python-version", "3.11", "--implementation", "cp", "--abi", "cp311"]
PLATFORM += [arg for tag in WHEEL_TAGS for arg in ("--platform", tag)]


def resolve(service: str) -> list[tuple[str, str, str]]:
    """(name, version, sha256) of every wheel the service's image installs."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet"]
            + ["--only-binary=:all:", *PLATFORM, "--target", str(Path(tmp) / "target"), "--report", str(report)]
            + ["-r", str(ROOT / service / "requirements.txt"), "-c", str(ROOT / "requirements.txt")],
            check=True,
        )
        installs = json.loads(report.read_text())["install"]
    return sorted(
        (i["metadata"]["name"].lower(), i["metadata"]["version"], i["download_info"]["archive_info"]["hash"])
        for i in installs
    )


def write(service: str) -> None:
    lines = [
        f"# The {service} image's packages, with hashes (python -m stack.image_locks; do not edit).\n",
    ]
    for name, version, digest in resolve(service):
        algorithm, value = digest.split("=", 1)
        assert algorithm == "sha256", digest
        lines.append(f"{name}=={version} \\\n    --hash=sha256:{value}\n")
    (ROOT / service / "requirements.lock").write_text("".join(lines))


if __name__ == "__main__":
    for service in SERVICES:
        write(service)
