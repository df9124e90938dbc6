"""Prometheus console pages generated from grafana/dashboards/, so each panel's query is written
once and the native stack, which has no Grafana, still has its dashboards.

Written at every start of a native Prometheus (like its target files), not kept in the tree:
only Debian's Prometheus 2 serves the classic assets they load; the containers run Prometheus 3
and Grafana. A graph panel becomes a PromConsole.Graph; stats, tables and bar gauges become
values Prometheus fills in as it serves the page; a Loki panel is named with where to look instead.
"""

import html
import json
import re
import sys
from pathlib import Path

from stack.settings import ROOT

DASHBOARD_DIR = ROOT / "grafana" / "dashboards"
LIBRARY_DIR = ROOT / "prometheus" / "console_libraries"
PROMETHEUS_UID = "prometheus"

# What Grafana substitutes for its built-ins with the dashboards' one-hour range; a dashboard
# variable gets its "All" value (a console page has no variable pickers).
BUILTINS = {"__rate_interval": "1m", "__interval": "15s", "__range": "1h", "__range_s": "3600"}
# `$name`, `${name}`, `${name:format}`, `[[name]]`: the forms Grafana expands in a query.
VARIABLE = re.compile(r"\$\{([A-Za-z_]\w*)(?::\w+)?\}|\$([A-Za-z_]\w*)|\[\[([A-Za-z_]\w*)\]\]")
LEGEND_LABEL = re.compile(r"\{\{\s*(\w+)\s*\}\}")

# Grafana unit: (how numbers are scaled, what follows them)
UNITS = {
    None: ("plain", ""),
    "none": ("plain", ""),
    "short": ("plain", ""),
    "percentunit": ("percent", ""),
    "s": ("si", "s"),
    "bytes": ("1024", "B"),
    "Bps": ("1024", "B/s"),
    "reqps": ("plain", " req/s"),
    "ops": ("plain", " ops/s"),
    "pps": ("plain", " packets/s"),
}
ELSEWHERE = {"loki": "Loki is not part of the native stack: ./init.sh logs --browse opens every log in lnav"}


def load_dashboards() -> dict[str, dict]:
    return {path.name: json.loads(path.read_text()) for path in sorted(DASHBOARD_DIR.glob("*.json"))}


def panels(dashboard: dict):
    """Every panel, including those inside collapsed rows."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def datasource_uid(datasource) -> str | None:
    return datasource.get("uid") if isinstance(datasource, dict) else datasource


def variable_values(dashboard: dict) -> dict[str, str]:
    values = dict(BUILTINS)
    for variable in dashboard.get("templating", {}).get("list", []):
        values[variable["name"]] = variable.get("allValue") or ".*"
    return values


def substitute(expr: str, values: dict[str, str]) -> str:
    def value(match: re.Match) -> str:
        name = next(group for group in match.groups() if group)
        if name not in values:
            raise KeyError(f"unknown Grafana variable ${name} in {expr!r}")
        return values[name]

    return VARIABLE.sub(value, expr)


def prometheus_targets(panel: dict) -> list[dict]:
    return [
        target
        for target in panel.get("targets", [])
        if target.get("expr") and datasource_uid(target.get("datasource") or panel.get("datasource")) == PROMETHEUS_UID
    ]


def _unit(panel: dict) -> tuple[str, str, int | None]:
    defaults = panel.get("fieldConfig", {}).get("defaults", {})
    unit = defaults.get("unit")
    if unit not in UNITS:
        raise KeyError(f"panel {panel['title']!r}: no console formatting for Grafana unit {unit!r}")
    return (*UNITS[unit], defaults.get("decimals"))


def _go_string(text: str) -> str:
    if "`" in text:
        raise ValueError(f"a backquote cannot be put in a Go raw string: {text!r}")
    return f"`{text}`"


def _go_value(panel: dict) -> str:
    """How Prometheus writes one series' value (.Value) when it serves the page."""
    kind, suffix, decimals = _unit(panel)
    if decimals is not None and kind != "percent":
        number = f'{{{{ printf "%.{decimals}f" .Value }}}}'
    else:
        function = {"percent": "humanizePercentage", "1024": "humanize1024"}.get(kind, "humanize")
        number = f"{{{{ {function} .Value }}}}"
    for mapping in panel.get("fieldConfig", {}).get("defaults", {}).get("mappings") or []:
        if mapping.get("type") == "value":
            texts = "".join(
                f"{{{{ if eq .Value {float(value)!r} }}}}{html.escape(option['text'])}{{{{ else }}}}"
                for value, option in mapping["options"].items()
            )
            return texts + number + suffix + "{{ end }}" * len(mapping["options"])
    return number + html.escape(suffix)


def _go_color(panel: dict) -> str:
    """The threshold colour of a value (Grafana's steps, lowest first), as a CSS class."""
    steps = panel.get("fieldConfig", {}).get("defaults", {}).get("thresholds", {}).get("steps") or []
    mappings = panel.get("fieldConfig", {}).get("defaults", {}).get("mappings") or []
    for mapping in mappings:
        if mapping.get("type") == "value":
            return "".join(
                f"{{{{ if eq .Value {float(value)!r} }}}}dash-{option.get('color', 'none')}{{{{ else }}}}"
                for value, option in mapping["options"].items()
            ) + "{{ end }}" * len(mapping["options"])
    chosen = ""
    for step in reversed(steps):
        if step.get("value") is None:
            chosen += f"dash-{step['color']}"
        else:
            chosen += f"{{{{ if ge .Value {float(step['value'])!r} }}}}dash-{step['color']}{{{{ else }}}}"
    return chosen + "{{ end }}" * sum(1 for step in steps if step.get("value") is not None)


def _go_legend(format_: str | None) -> str:
    if not format_:
        return ""
    return LEGEND_LABEL.sub(lambda m: f"{{{{ .Labels.{m.group(1)} }}}}", html.escape(format_))


def _sorted(target: dict) -> str:
    labels = LEGEND_LABEL.findall(target.get("legendFormat") or "")
    return f" | sortByLabel {_go_string(labels[0])}" if labels else ""


def _values(panel: dict, values: dict[str, str]) -> str:
    """Stat and bar gauge: each series' last value, with its legend and threshold colour."""
    cells = []
    for target in prometheus_targets(panel):
        expr = substitute(target["expr"], values)
        cells.append(
            f"{{{{ range query {_go_string(expr)}{_sorted(target)} }}}}"
            f'<span class="dash-stat"><span class="value {_go_color(panel)}">{_go_value(panel)}</span>'
            f'<span class="name">{_go_legend(target.get("legendFormat"))}</span></span>'
            '{{ else }}<span class="dash-stat"><span class="value">No data</span></span>{{ end }}'
        )
    return "".join(cells)


def _table(panel: dict, values: dict[str, str]) -> str:
    """A table of series: one row each, its labels (Grafana's table hides time, value, name)."""
    rows = []
    for target in prometheus_targets(panel):
        expr = substitute(target["expr"], values)
        rows.append(
            f"{{{{ range query {_go_string(expr)} }}}}<tr><td>"
            '{{ range $name, $value := .Labels }}{{ if ne $name "__name__" }}'
            '<span class="mr-2"><b>{{ $name }}</b>={{ $value }}</span>{{ end }}{{ end }}'
            '</td></tr>{{ else }}<tr><td class="text-muted">none</td></tr>{{ end }}'
        )
    return f'<table class="table table-sm">{"".join(rows)}</table>'


def _graph(panel: dict, values: dict[str, str], node_id: str) -> str:
    kind, suffix, decimals = _unit(panel)
    targets = prometheus_targets(panel)
    params = {
        "exprs": [substitute(target["expr"], values) for target in targets],
        # [[label]]: a double brace would open a template action when Prometheus serves the page
        "legends": [LEGEND_LABEL.sub(r"[[\1]]", target.get("legendFormat") or panel["title"]) for target in targets],
    }
    formatter = f"Dash.formatter({json.dumps(kind)}, {json.dumps(suffix)}, {json.dumps(decimals)})"
    title = {"percent": "%"}.get(kind, suffix.strip())
    return (
        f'<div id="{node_id}"></div>\n<script>\nnew PromConsole.Graph({{\n'
        f'  node: document.getElementById("{node_id}"),\n'
        f"  expr: {json.dumps(params['exprs'])},\n"
        f"  name: {json.dumps(params['legends'])}.map(Dash.legend),\n"
        f"  min: 0,\n"
        f"  yAxisFormatter: {formatter},\n"
        f"  yHoverFormatter: {formatter},\n"
        f"  yTitle: {json.dumps(title)},\n"
        "});\n</script>"
    )


def _elsewhere(panel: dict) -> str | None:
    uid = datasource_uid(panel.get("datasource"))
    if prometheus_targets(panel) or panel["type"] == "row":
        return None
    return ELSEWHERE.get(uid, f"data source {uid!r} is not queried by Prometheus")


def not_shown(dashboard: dict) -> list[tuple[str, str]]:
    """(panel title, where to look instead) for every panel a console cannot draw."""
    return [(panel["title"], reason) for panel in panels(dashboard) if (reason := _elsewhere(panel))]


def console(file_name: str, dashboard: dict, all_dashboards: dict[str, dict]) -> str:
    values = variable_values(dashboard)
    nav = "".join(
        f'<li class="nav-item{" active" if name == file_name else ""}">'
        f'<a class="nav-link" href="{Path(name).stem}.html">{html.escape(other["title"])}</a></li>'
        for name, other in all_dashboards.items()
    )
    body = [
        f"{{{{ template {_go_string('dashboard_head')} {_go_string(dashboard['title'])} }}}}",
        '<nav class="navbar navbar-expand navbar-dark bg-dark fixed-top">'
        '<a class="navbar-brand" href="index.html">Dashboards</a>'
        f'<ul class="navbar-nav mr-auto">{nav}</ul>'
        '<a class="nav-link text-light" href="../graph">Prometheus</a></nav>',
        '<div class="container-fluid">',
        f'<h1 class="h3">{html.escape(dashboard["title"])}</h1>',
        "{{ template `prom_graph_timecontrol` }}",
        '<div class="row">',
    ]
    for n, panel in enumerate(panels(dashboard)):
        if panel["type"] == "row":
            body.append(f'</div><div class="dash-row">{html.escape(panel["title"])}</div><div class="row">')
            continue
        width = max(3, min(12, round(panel.get("gridPos", {}).get("w", 12) / 2)))
        reason = _elsewhere(panel)
        if reason:
            content = f'<div class="dash-elsewhere">Not shown here: {html.escape(reason)}.</div>'
        elif panel["type"] == "timeseries":
            content = _graph(panel, values, f"panel-{n}")
        elif panel["type"] in ("stat", "bargauge"):
            content = _values(panel, values)
        elif panel["type"] == "table":
            content = _table(panel, values)
        else:
            raise ValueError(f"{file_name}: no console form for a {panel['type']} panel ({panel['title']!r})")
        description = panel.get("description")
        if "$__range" in json.dumps(panel.get("targets", [])):
            description = ((description or "") + " Range: the last hour.").strip()
        body.append(
            f'<div class="col-lg-{width} dash-panel" data-panel="{html.escape(panel["title"])}">'
            f"<h3>{html.escape(panel['title'])}</h3>"
            + (f'<div class="dash-description">{html.escape(description)}</div>' if description else "")
            + f"{content}</div>"
        )
    body += ["</div>", "</div>", "{{ template `dashboard_tail` }}"]
    return "\n".join(body) + "\n"


def index(all_dashboards: dict[str, dict]) -> str:
    items = "".join(
        f'<li><a href="{Path(name).stem}.html">{html.escape(dashboard["title"])}</a></li>'
        for name, dashboard in all_dashboards.items()
    )
    return (
        "{{ template `dashboard_head` `Dashboards` }}\n"
        '<div class="container-fluid"><h1 class="h3">Dashboards</h1>\n'
        f"<p>Generated from grafana/dashboards/ when Prometheus starts.</p><ul>{items}</ul></div>\n"
        "{{ template `dashboard_tail` }}\n"
    )


def write_consoles(out_dir: Path) -> list[Path]:
    """Every dashboard's console page and an index, in out_dir (emptied of old pages first)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("*.html"):
        old.unlink()
    dashboards = load_dashboards()
    written = [out_dir / "index.html"]
    written[0].write_text(index(dashboards))
    for name, dashboard in dashboards.items():
        path = out_dir / f"{Path(name).stem}.html"
        path.write_text(console(name, dashboard, dashboards))
        written.append(path)
    return written


if __name__ == "__main__":
    for path in write_consoles(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("consoles")):
        print(path)
