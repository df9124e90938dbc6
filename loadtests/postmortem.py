"""A post-mortem draft of a drill or chaos run: docs/postmortem-template.md (the same template a
person fills after a real incident) with the facts of the run filled in; the judgement sections
keep their prompts for a person."""

from __future__ import annotations

from datetime import UTC, datetime

from loadtests.timeline_plot import Fault, MailEvent, is_registration
from stack.render import render
from stack.settings import ROOT

TEMPLATE = ROOT / "docs" / "postmortem-template.md"


def _clock(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%H:%M:%S")


def _recovered_at(rows: list[dict], after: float) -> float | None:
    """The first registration that succeeded after the fault ended."""
    return min((r["t"] for r in rows if r["t"] >= after and is_registration(r) and r["ok"]), default=None)


def draft(title: str, origin: str, rows: list[dict], faults: list[Fault], mails: list[MailEvent], counts: dict) -> str:
    """counts: the run's result (registrations, failed, first_try_failed, worst_total_ms,
    refused_as_documented, failed_requests, lost, duplicates, ghosts, p95_ms_before/_during)."""
    began = min((r["t"] for r in rows), default=faults[0].start if faults else 0.0)
    ended = max((r["t"] for r in rows), default=began)
    events = [(began, "load started")]
    for fault in faults:
        events += [(fault.start, f"fault: {fault.label}"), (fault.end, f"fault over: {fault.label}")]
        recovered = _recovered_at(rows, fault.end)
        if recovered is not None:
            events.append((recovered, f"first registration stored after {fault.label}"))
    events += [(mail.at, f"{mail.status} mail: {mail.alert}") for mail in mails]
    events.append((ended, "load stopped"))
    timeline = "| time | event |\n|---|---|\n" + "\n".join(
        f"| {_clock(at)} | {what} |" for at, what in sorted(events, key=lambda e: e[0])
    )

    worst = counts.get("worst_total_ms")
    impact = "\n".join(
        [
            f"- registrations finished by clients: {counts['registrations']}",
            f"- failed (no registration after every retry): {counts['failed']}",
            f"- failed at the first try (a client without retries would have seen an error): "
            f"{counts['first_try_failed']}",
            f"- worst wait for one registration, retries included: {'-' if worst is None else f'{worst / 1000:.1f} s'}",
            f"- registration tries that failed (their clients retried): "
            f"{sum(1 for r in rows if is_registration(r) and not r['ok'])}",
            f"- other requests refused as documented for this fault: {counts['refused_as_documented']}",
            f"- requests that failed in an undocumented way: {counts['failed_requests']}",
            f"- acknowledged but lost: {counts['lost']}; stored twice: {counts['duplicates']}; "
            f"stored but never acknowledged: {counts['ghosts']}",
            f"- latency p95 before / during the fault: {counts.get('p95_ms_before')} / "
            f"{counts.get('p95_ms_during')} ms",
        ]
    )
    fault = faults[0] if faults else None
    firing = [m for m in mails if m.status == "FIRING"]
    resolved = [m for m in mails if m.status == "RESOLVED"]
    if fault and firing:
        detection = (
            f"The {firing[0].alert} alert mail (firing) arrived {firing[0].at - fault.start:.1f} s after the fault "
            f"began ({_clock(firing[0].at)})."
        )
    elif fault:
        detection = "No firing alert mail arrived during the run."
    else:
        detection = "No fault was injected."
    resolution = "\n".join(
        [f"- The fault ({f.label}) ended at {_clock(f.end)}, {f.end - f.start:.1f} s after it began." for f in faults]
        + [
            f"- The resolved mail ({m.alert}) arrived {m.at - fault.end:.1f} s after the fault ended."
            for m in resolved
            if fault
        ]
        + [f"- Every request after the recovery succeeded: {'yes' if counts.get('recovered') else 'no'}."]
    )
    summary = (
        f"{', '.join(f.label for f in faults).capitalize() or 'No fault'} for "
        f"{sum(f.end - f.start for f in faults):.0f} s under steady load. "
        f"{counts['registrations']} registrations finished, {counts['failed']} failed, "
        f"{counts['lost']} lost; {len(firing)} firing and {len(resolved)} resolved alert mails."
    )
    return render(
        TEMPLATE.read_text(),
        {
            "TITLE": title,
            "ORIGIN": origin,
            "SUMMARY": summary,
            "IMPACT": impact,
            "TIMELINE": timeline,
            "DETECTION": detection,
            "RESOLUTION": resolution,
        },
        prose=True,
    )
