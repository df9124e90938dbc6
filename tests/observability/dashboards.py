"""The Prometheus queries of the Grafana dashboards, ready to send to a real Prometheus.

Shared by the static checks (valid PromQL, known metric names) and the live-stack test that
asks Prometheus whether each panel would show data. Variables get the values the console
generator gives them (stack/consoles.py): Grafana's for a one-hour dashboard, "All" for a
dashboard variable.
"""

import re

from stack.consoles import (
    PROMETHEUS_UID,
    datasource_uid,
    load_dashboards,
    panels,
    prometheus_targets,
    substitute,
    variable_values,
)

__all__ = ["dashboard_queries", "load_dashboards", "panels"]

LABEL_VALUES = re.compile(r"^\s*label_values\((.*),\s*[A-Za-z_]\w*\s*\)\s*$", re.S)


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
            if expr and datasource_uid(variable.get("datasource")) == PROMETHEUS_UID:
                found.append((name, f"variable {variable['name']}", substitute(expr, values)))
        for panel in panels(dashboard):
            for target in prometheus_targets(panel):
                found.append((name, panel["title"], substitute(target["expr"], values)))
    return found
