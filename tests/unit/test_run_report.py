"""The picture and the post-mortem draft of a run, from made-up records (the drill test checks
them on a real run)."""

from datetime import UTC, datetime

from loadtests import postmortem, timeline_plot
from loadtests.timeline_plot import Fault, MailEvent

START = datetime(2026, 5, 1, 10, 0, 0, tzinfo=UTC).timestamp()
COUNTS = {
    "registrations": 40,
    "failed": 0,
    "first_try_failed": 3,
    "worst_total_ms": 4200.0,
    "refused_as_documented": 2,
    "failed_requests": 0,
    "lost": 0,
    "duplicates": 0,
    "ghosts": 0,
    "p95_ms_before": 120.0,
    "p95_ms_during": 900.0,
    "recovered": True,
}


def _rows() -> list[dict]:
    rows = []
    for second in range(90):
        down = 30 <= second < 60
        rows.append(
            {"t": START + second, "name": "/api/registrations [400x300]", "ms": 900 if down else 100, "ok": True}
        )
        rows.append({"t": START + second + 0.5, "name": "/api/chart", "ms": 20, "ok": not (down and second % 10 == 0)})
    return rows


FAULT = Fault("kill instance-2", START + 30, START + 60)
MAILS = [
    MailEvent(START + 52, "FIRING", "ReplicaDown instance-2"),
    MailEvent(START + 75, "RESOLVED", "ReplicaDown instance-2"),
]


def test_the_draft_fills_the_template_with_the_runs_facts_and_leaves_the_judgement_to_a_person():
    draft = postmortem.draft("drill", "Made up.", _rows(), [FAULT], MAILS, COUNTS)
    assert "${" not in draft
    timeline = [line for line in draft.splitlines() if line.startswith("| 10:")]
    assert timeline == [
        "| 10:00:00 | load started |",
        "| 10:00:30 | fault: kill instance-2 |",
        "| 10:00:52 | FIRING mail: ReplicaDown instance-2 |",
        "| 10:01:00 | fault over: kill instance-2 |",
        "| 10:01:00 | first registration stored after kill instance-2 |",
        "| 10:01:15 | RESOLVED mail: ReplicaDown instance-2 |",
        "| 10:01:29 | load stopped |",
    ]
    assert "arrived 22.0 s after the fault began" in draft
    assert "failed at the first try (a client without retries would have seen an error): 3" in draft
    assert "worst wait for one registration, retries included: 4.2 s" in draft
    assert "other requests refused as documented for this fault: 2" in draft
    assert "registration tries that failed (their clients retried): 0" in draft
    for heading in ("## What went well", "## What went wrong", "## Action items"):
        section = draft.split(heading)[1].split("##")[0]
        assert "_" in section and "10:" not in section  # a prompt, no facts
    assert draft.splitlines()[0] == "# Post-mortem: drill"


def test_the_picture_is_a_png(tmp_path):
    path = timeline_plot.plot(_rows(), [FAULT], MAILS, tmp_path / "run.png", "made up")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
