"""The chart as a PNG bar chart (matplotlib, headless Agg backend)."""

import io

import matplotlib

matplotlib.use("Agg")  # no display on a server; must precede pyplot's import
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402


def render(chart: dict) -> bytes:
    cities = chart["cities"]
    # Figure objects, not pyplot: pyplot keeps global state that threads would share.
    height = max(3.0, 0.35 * len(cities) + 1.5)
    figure = Figure(figsize=(8, height), dpi=100, layout="constrained")
    axes = figure.subplots()
    names = [c["city"] for c in cities][::-1]
    totals = [c["total"] for c in cities][::-1]
    bars = axes.barh(names, totals, color="#2f6db5")
    axes.bar_label(bars, padding=3)
    axes.set_xlabel("Registrations")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))  # people come in whole numbers
    axes.set_title(f"Registrations per city (total {chart['total']})")
    axes.spines[["top", "right"]].set_visible(False)
    if not cities:
        axes.text(0.5, 0.5, "No registrations yet", ha="center", va="center", transform=axes.transAxes)
        axes.set_yticks([])
    out = io.BytesIO()
    figure.savefig(out, format="png")
    return out.getvalue()
