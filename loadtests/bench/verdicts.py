"""The figures' goals, ratios and verdicts: pure functions of the measured numbers."""

from __future__ import annotations

import math
import statistics

# name: (comparison, goal). Throughputs are cluster / baseline (higher is better); times are
# cluster / baseline (lower is better); first byte and memory are absolute.
GOALS: dict[str, tuple[str, float | None]] = {
    "chart": ("≥", 0.8),
    "registration": ("≥", 0.25),
    "report": ("≤", 0.7),
    "during_report_p99_ms": ("≤", 300),
    "during_report_worst_ms": ("≤", 1000),
    "first_byte_s": ("≤", 2.0),
    "report_memory_mb": ("<", 150),
    "png": ("", None),
    "latency": ("", None),
}
_COMPARE = {
    "≥": lambda value, goal: value >= goal,
    "≤": lambda value, goal: value <= goal,
    "<": lambda value, goal: value < goal,
}


def median(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


def ratio(cluster: float, baseline: float) -> float:
    """cluster / baseline; NaN when the baseline measured nothing (no verdict can come of it)."""
    if not baseline or math.isnan(baseline) or math.isnan(cluster):
        return math.nan
    return cluster / baseline


def met(name: str, value: float) -> bool | None:
    """Whether `value` meets the goal named `name`; None when that figure has no goal.
    NaN (nothing measured) never meets a goal."""
    op, goal = GOALS[name]
    if goal is None:
        return None
    return not math.isnan(value) and _COMPARE[op](value, goal)


def goal_text(name: str, unit: str = "×") -> str:
    op, goal = GOALS[name]
    return f"{op} {goal:g}{unit}" if goal is not None else "(reported)"


def summarize(name: str, cluster: list[float], baseline: list[float]) -> dict:
    """The runs were measured in pairs (cluster, baseline, cluster, baseline, ...): each pair's
    ratio, their median (the figure and its verdict) and range, and each side's median."""
    pairs = [ratio(c, b) for c, b in zip(cluster, baseline, strict=True)]
    measured = [r for r in pairs if not math.isnan(r)]
    r = median(measured)
    return {
        "cluster": median(cluster),
        "baseline": median(baseline),
        "ratio": r,
        "pairs": [round(v, 3) for v in pairs],
        "range": [round(min(measured), 3), round(max(measured), 3)] if measured else [math.nan, math.nan],
        "goal": goal_text(name),
        "met": met(name, r),
        "runs": {"cluster": [round(v, 3) for v in cluster], "baseline": [round(v, 3) for v in baseline]},
    }


def lost_registrations(acknowledged_ids: list[str], stored_ids: set[str]) -> list[str]:
    """The acknowledged registrations the database does not hold (lost): must be none."""
    return [i for i in acknowledged_ids if i not in stored_ids]
