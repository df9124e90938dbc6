"""checkov (pinned, in a venv of its own) on both rendered overlays and the Dockerfile: every
finding is either in checkov-skips.yaml, reviewed and with its reason, or a failure; an entry
there that no longer fails must go."""

import json
from pathlib import Path

import pytest
import yaml
from deploytools import OVERLAYS, repo_file
from tool_venvs import run_tool

CHECKOV = "import sys; from checkov.main import Checkov; sys.exit(Checkov().run())"
SKIPS = Path(__file__).resolve().parent / "checkov-skips.yaml"


def reviewed() -> dict[str, dict[str, str]]:
    skips = yaml.safe_load(SKIPS.read_text())
    for check, resources in skips.items():
        for resource, reason in resources.items():
            assert len(reason.split()) >= 5, f"{check} {resource}: say why it is skipped"
    return skips


def _resource(result: dict) -> str:
    """checkov's resource name without the namespace: Deployment.vaccination.nginx -> Deployment.nginx"""
    parts = result["resource"].split(".")
    return f"{parts[0]}.{parts[-1]}" if len(parts) == 3 else result["resource"].lstrip("/")


@pytest.fixture(scope="module")
def findings(rendered, tmp_path_factory) -> set[tuple[str, str]]:
    scan = tmp_path_factory.mktemp("checkov")
    for overlay in OVERLAYS:
        (scan / f"{overlay}.yaml").write_text(yaml.safe_dump_all(rendered[overlay]))
    (scan / "Dockerfile").write_text(repo_file("Dockerfile").read_text())
    # --skip-download: no guidelines or policies from the vendor's API, offline and the same every run
    args = ["-d", str(scan), "--framework", "kubernetes", "dockerfile", "--skip-download", "--quiet", "--compact"]
    result = run_tool("checkov", CHECKOV, [*args, "-o", "json"], timeout=300)
    assert result.stdout.strip(), result.stderr[-3000:]
    reports = json.loads(result.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    assert {r["check_type"] for r in reports} == {"kubernetes", "dockerfile"}, "a file checkov did not read"
    for report in reports:
        assert report["summary"]["parsing_errors"] == 0, report["check_type"]
        assert report["summary"]["passed"] > 50, f"checkov ran almost nothing on {report['check_type']}"
    return {(r["check_id"], _resource(r)) for report in reports for r in report["results"]["failed_checks"]}


def _skipped(check: str, resource: str, skips: dict) -> bool:
    return resource in skips.get(check, {}) or "*" in skips.get(check, {})


def test_checkov_finds_nothing_unreviewed(findings):
    skips = reviewed()
    new = sorted(f for f in findings if not _skipped(*f, skips))
    assert not new, f"checkov findings not in {SKIPS.name} (fix them, or add them with a reason): {new}"


def test_every_skip_still_matters(findings):
    stale = [
        (check, resource)
        for check, resources in reviewed().items()
        for resource in resources
        if not any(c == check and (resource == "*" or r == resource) for c, r in findings)
    ]
    assert not stale, f"checkov no longer finds these: take them out of {SKIPS.name}: {stale}"
