"""The Prometheus queries of the Grafana dashboards, ready to send to a real Prometheus.

Shared by the static checks (valid PromQL, known metric names) and the live-stack test that
asks Prometheus whether each panel would show data. Grafana's own variables get the values
Grafana would give them for a one-hour dashboard; a dashboard variable gets its "All" value.
"""

import json
import re
from pathlib import Path

DASHBOARD_DIR = Path(__file__).resolve().parents[2] / "grafana" / "dashboards"
PROMETHEUS_UID = "prometheus"

# What Grafana substitutes for its built-ins with a 1 h range and the data source's 5 s interval.
BUILTINS = {
    "__rate_interval": "1m",
    "__interval": "15s",
    "__range": "1h",
    "__range_s": "3600",
}
# `$name`, `${name}`, `${name:format}`, `[[name]]`: the forms Grafana expands in a query.
VARIABLE = re.compile(r"\$\{([A-Za-z_]\w*)(?::\w+)?\}|\$([A-Za-z_]\w*)|\[\[([A-Za-z_]\w*)\]\]")
LABEL_VALUES = re.compile(r"^\s*label_values\((.*),\s*[A-Za-z_]\w*\s*\)\s*$", re.S)


def load_dashboards() -> dict[str, dict]:
    return {path.name: json.loads(path.read_text()) for path in sorted(DASHBOARD_DIR.glob("*.json"))}


def panels(dashboard: dict):
    """Every panel, including those inside collapsed rows."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def _uid(datasource) -> str | None:
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


def _variable_expr(variable: dict) -> str | None:
    query = variable.get("query")
    query = query.get("query") if isinstance(query, dict) else query
    match = LABEL_VALUES.match(query or "")
    return match.group(1) if match else None


def dashboard_queries() -> list[tuple[str, str, str]]:
    """(dashboard file, panel title, PromQL) for every Prometheus query, variables substituted.

    Query variables (`label_values(<expr>, label)`) count too, as "variable <name>".
    """
    found = []
    for name, dashboard in load_dashboards().items():
        values = variable_values(dashboard)
        for variable in dashboard.get("templating", {}).get("list", []):
            expr = _variable_expr(variable)
            if expr and _uid(variable.get("datasource")) == PROMETHEUS_UID:
                found.append((name, f"variable {variable['name']}", substitute(expr, values)))
        for panel in panels(dashboard):
            for target in panel.get("targets", []):
                uid = _uid(target.get("datasource") or panel.get("datasource"))
                if uid == PROMETHEUS_UID and target.get("expr"):
                    found.append((name, panel["title"], substitute(target["expr"], values)))
    return found
