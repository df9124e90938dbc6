"""What a drill or chaos run looked like from the clients' side, drawn as one PNG: registrations
per second, failures per second and latency p50/p95 over time, each fault's window shaded and
each alert mail marked. Callers pass plain records (the load's requests.jsonl rows), so a drill
and a chaos run draw the same picture."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402 - after the backend is chosen

from common.stats import percentile  # noqa: E402

REGISTRATION = "/api/registrations ["
BUCKET_S = 5  # rates and percentiles per 5 s: enough requests in each at drill load, not spiky


def is_registration(row: dict) -> bool:
    """A registration attempt with a valid form (the load's deliberately bad forms are not)."""
    return row["name"].startswith(REGISTRATION) and "[bad:" not in row["name"]


@dataclass
class Fault:
    label: str  # "kill instance-1"
    start: float  # epoch seconds
    end: float


@dataclass
class MailEvent:
    at: float  # epoch seconds the mail arrived
    status: str  # "FIRING" or "RESOLVED"
    alert: str


def plot(rows: list[dict], faults: list[Fault], mails: list[MailEvent], path: Path, title: str) -> Path:
    """rows: request records with t (epoch seconds at the end), name, ms, ok."""
    origin = min((row["t"] for row in rows), default=min((f.start for f in faults), default=0.0))
    buckets: dict[int, list[dict]] = {}
    for row in rows:
        buckets.setdefault(int((row["t"] - origin) // BUCKET_S), []).append(row)
    order = sorted(buckets)
    middle = [b * BUCKET_S + BUCKET_S / 2 for b in order]

    def rate(keep) -> list[float]:
        return [sum(1 for row in buckets[b] if keep(row)) / BUCKET_S for b in order]

    def latency(q: float) -> list[float]:
        return [percentile([row["ms"] for row in buckets[b]], q) for b in order]

    figure, (top, mid, bottom) = plt.subplots(3, 1, sharex=True, figsize=(11, 7.5), constrained_layout=True)
    top.plot(middle, rate(lambda r: is_registration(r) and r["ok"]), color="tab:blue", label="registered (201)")
    top.set_ylabel("registrations/s")
    # wide and pale: where every failure is a registration try, the two lines coincide
    mid.plot(
        middle, rate(lambda r: not r["ok"]), color="tab:red", linewidth=4, alpha=0.4, label="failed requests, all kinds"
    )
    failed_tries = rate(lambda r: is_registration(r) and not r["ok"])
    mid.plot(middle, failed_tries, color="tab:orange", label="failed registration tries")
    mid.set_ylabel("failures/s")
    bottom.plot(middle, latency(50), label="p50", color="tab:green")
    bottom.plot(middle, latency(95), label="p95", color="tab:purple")
    bottom.set_ylabel("latency (ms)")
    bottom.set_xlabel(f"seconds since the load started ({BUCKET_S} s buckets)")
    for axes in (top, mid, bottom):
        for n, fault in enumerate(faults):
            axes.axvspan(
                fault.start - origin, fault.end - origin, color="grey", alpha=0.2, label=fault.label if n < 9 else None
            )
        for mail in mails:
            color = "tab:red" if mail.status == "FIRING" else "tab:green"
            axes.axvline(mail.at - origin, color=color, linestyle="--", linewidth=1.2)
        axes.set_ylim(bottom=0)
        axes.grid(alpha=0.3)
    for mail in mails:
        top.annotate(
            f"{mail.status.lower()}: {mail.alert}",
            (mail.at - origin, 1),
            xycoords=("data", "axes fraction"),
            rotation=90,
            va="top",
            ha="right",
            fontsize=8,
            color="tab:red" if mail.status == "FIRING" else "tab:green",
        )
    for axes in (top, mid, bottom):
        axes.legend(loc="upper left", fontsize=8)
    top.set_title(title)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
