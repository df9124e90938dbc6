"""The native dashboards as a person sees them: every console page Prometheus serves (generated
from grafana/dashboards/ by stack/consoles.py) opened in Chromium after real traffic and a
replica outage. A page passes when it loads without one console error or failed request and
every graph drew data with its legend; a screenshot of each is kept in var/<run>/screenshots/."""

import pytest

from stack.consoles import load_dashboards, panels, prometheus_targets

PAGES = ["index.html"] + [name.replace(".json", ".html") for name in load_dashboards()]

GRAPHS_SETTLED = """() => window.PromConsole && PromConsole._graph_registry.every(
  (g) => g.rickshawGraph !== null || g.graphTd.querySelector(".prom_graph_error") !== null)"""
GRAPHS = """() => PromConsole._graph_registry.map((g) => ({
  panel: g.params.node.closest("[data-panel]").dataset.panel,
  error: (g.graphTd.querySelector(".prom_graph_error") || {}).textContent || null,
  points: (g.rendered_data || []).reduce((n, answer) => n + answer.data.result.reduce(
    (m, series) => m + series.values.filter((v) => isFinite(parseFloat(v[1]))).length, 0), 0),
  lines: g.graphTd.querySelectorAll("svg path").length,
  legend: Array.from(g.legendDiv.querySelectorAll(".label")).map((label) => label.textContent),
}))"""


def _graph_panels(page: str) -> list[str]:
    dashboard = load_dashboards().get(page.replace(".html", ".json"), {})
    return [p["title"] for p in panels(dashboard) if p["type"] == "timeseries" and prometheus_targets(p)]


@pytest.mark.parametrize("name", PAGES)
def test_console_page_loads_cleanly_and_every_graph_draws_data(browser, stack, traffic, name):
    prometheus = f"http://127.0.0.1:{stack.settings.ports['PROMETHEUS_PORT']}"
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    problems = []
    page.on("pageerror", lambda error: problems.append(f"script error: {error}"))
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url} ({r.failure})"))
    page.on("response", lambda r: problems.append(f"{r.status} for {r.url}") if r.status >= 400 else None)
    try:
        response = page.goto(f"{prometheus}/consoles/{name}")
        assert response.status == 200, response.text()[:500]
        page.wait_for_function(GRAPHS_SETTLED, timeout=30_000)
        page.wait_for_load_state("networkidle")
        graphs = page.evaluate(GRAPHS)
        screenshots = stack.settings.var / "screenshots"
        screenshots.mkdir(exist_ok=True)
        page.screenshot(path=screenshots / name.replace(".html", ".png"), full_page=True)
        body = page.inner_text("body")
    finally:
        context.close()

    assert not problems, problems
    assert [g["panel"] for g in graphs] == _graph_panels(name)
    empty = [(g["panel"], g["error"]) for g in graphs if g["error"] or not g["points"] or not g["lines"]]
    assert not empty, f"graphs without data: {empty}"
    unnamed = [g["panel"] for g in graphs if not g["legend"] or any(not t or "[[" in t for t in g["legend"])]
    assert not unnamed, f"graphs whose legend lacks names: {unnamed}"
    assert "No data" not in body
    if name == "logs.html":  # Loki's panels are named, with where to look instead
        assert body.count("Not shown here") == 3 and "./init.sh logs --browse" in body
