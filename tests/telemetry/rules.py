"""The alert rules and the dashboard shipped with docker-compose, as tests read them: PromQL is
parsed with promql-parser (the Prometheus parser's grammar, ported to Rust), not by regex."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import promql_parser
import yaml  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "scripts/compose/prometheus/alerts.yml"
DASHBOARD = ROOT / "scripts/compose/grafana/dashboards/bankflow.json"
RUNBOOK = ROOT / "docs/runbook.md"

Selector = tuple[str, dict[str, str]]


def rules() -> dict[str, dict[str, Any]]:
    loaded = yaml.safe_load(ALERTS.read_text())
    return {rule["alert"]: rule for group in loaded["groups"] for rule in group["rules"]}


def dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]


def selectors(expr: str) -> list[Selector]:
    """Every metric an expression reads, in order, with its equality matchers."""
    found: list[Selector] = []

    def walk(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            matchers = {
                m.name: m.value
                for m in node.matchers.matchers
                if m.op == promql_parser.MatchOp.Equal
            }
            found.append((node.name or "", matchers))
            return
        for attr in ("lhs", "rhs", "expr", "param", "vector_selector"):
            child = getattr(node, attr, None)
            if child is not None:
                walk(child)
        for arg in getattr(node, "args", None) or []:
            walk(arg)

    walk(promql_parser.parse(expr))
    return found


def alert_expression(alert: str) -> Selector:
    """The first metric an alert's expression reads, with its equality label matchers."""
    return selectors(rules()[alert]["expr"])[0]
