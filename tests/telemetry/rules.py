"""The alert rules shipped with docker-compose, as tests read them."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "scripts/compose/prometheus/alerts.yml"
DASHBOARD = ROOT / "scripts/compose/grafana/dashboards/bankflow.json"
SELECTOR = re.compile(r"\b((?:bankflow|temporal)_[a-z0-9_]+)(\{[^}]*\})?")
MATCHER = re.compile(r'(\w+)\s*=\s*"([^"]*)"')


def rules() -> dict[str, dict[str, Any]]:
    loaded = yaml.safe_load(ALERTS.read_text())
    return {rule["alert"]: rule for group in loaded["groups"] for rule in group["rules"]}


def metric_names(expr: str) -> set[str]:
    return {m.group(1) for m in SELECTOR.finditer(expr)}


def alert_expression(alert: str) -> tuple[str, dict[str, str]]:
    """The first metric an alert's expression reads, with its equality label matchers."""
    found = SELECTOR.search(rules()[alert]["expr"])
    assert found is not None, alert
    return found.group(1), dict(MATCHER.findall(found.group(2) or ""))
