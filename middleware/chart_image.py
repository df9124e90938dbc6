"""The chart as a PNG bar chart (matplotlib, headless Agg backend)."""

import io

import matplotlib

matplotlib.use("Agg")  # no display on a server; must precede pyplot's import
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

# thousands of bars are unreadable and slow to draw: the largest cities, the rest as one bar
MAX_BARS = 30
# a long name would take the picture's width from the bars: its start and end are enough
# to tell it apart (the chart JSON and the report keep the whole name)
LABEL_MAX = 40


def short_label(name: str, limit: int = LABEL_MAX) -> str:
    if len(name) <= limit:
        return name
    head = (limit - 1) * 2 // 3
    return f"{name[:head].rstrip()}…{name[-(limit - 1 - head) :].lstrip()}"


def bars(cities: list[dict], limit: int = MAX_BARS) -> list[tuple[str, int]]:
    """(label, total) per bar in the chart's order; past `limit` the smallest become one "Other" bar."""
    if len(cities) <= limit:
        return [(c["city"], c["total"]) for c in cities]
    keep = {id(c) for c in sorted(cities, key=lambda c: -c["total"])[: limit - 1]}
    rest = [c for c in cities if id(c) not in keep]
    return [(c["city"], c["total"]) for c in cities if id(c) in keep] + [
        (f"Other ({len(rest)} cities)", sum(c["total"] for c in rest))
    ]


def figure(chart: dict) -> Figure:
    rows = bars(chart["cities"])[::-1]  # barh draws bottom-up
    # Figure objects, not pyplot: pyplot keeps global state that threads would share.
    height = max(3.0, 0.35 * len(rows) + 1.5)
    fig = Figure(figsize=(8, height), dpi=100, layout="constrained")
    axes = fig.subplots()
    # numeric positions, not categories: two bars never merge, and labels stay plain Text we control
    drawn = axes.barh(range(len(rows)), [total for _, total in rows], color="#2f6db5")
    axes.set_yticks(range(len(rows)), labels=[short_label(name) for name, _ in rows])
    for label in axes.get_yticklabels():
        label.set_parse_math(False)  # a "$" in a city name is text, not mathtext (which can raise)
    axes.bar_label(drawn, padding=3)
    axes.set_xlabel("Registrations")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))  # people come in whole numbers
    axes.set_title(f"Registrations per city (total {chart['total']})")
    axes.spines[["top", "right"]].set_visible(False)
    if not rows:
        axes.text(0.5, 0.5, "No registrations yet", ha="center", va="center", transform=axes.transAxes)
        axes.set_yticks([])
    return fig


def render(chart: dict) -> bytes:
    out = io.BytesIO()
    figure(chart).savefig(out, format="png")
    return out.getvalue()
