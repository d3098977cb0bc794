"""The alert rules and the dashboard that ship with docker-compose, validated: every expression
parses as PromQL, every metric it reads is one the code defines (with labels the metric has),
every alert has a severity, a summary and a runbook section that exists. Where `promtool` is
installed (Debian's `prometheus` package) it checks the rule file as Prometheus will load it."""

from __future__ import annotations

import re
import shutil
import subprocess

from activities import metrics
from tests.telemetry.rules import ALERTS, RUNBOOK, dashboard_exprs, rules, selectors

REQUIRED_ALERTS = {
    "ActivityFailingRepeatedly",
    "WorkflowStuckPastSla",
    "WorkflowTaskFailing",
    "ScheduleMissedRun",
    "LedgerVerifyFailed",
    "ApiServerErrors",
}
# The Temporal SDK's own metrics (served by the worker's Runtime, counters with `_total`) that
# the rules and the dashboard read; tests/telemetry/test_metrics.py scrapes the first two.
SDK_METRICS = {
    "temporal_workflow_completed_total",
    "temporal_activity_execution_latency_bucket",
    "temporal_workflow_task_execution_failed_total",
}


def runbook_anchors() -> set[str]:
    """GitHub's anchors for the runbook's headings."""
    headings = re.findall(r"^#+ (.+)$", RUNBOOK.read_text(), re.MULTILINE)
    return {re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-") for h in headings}


def check_expression(expr: str, where: str) -> None:
    defined = metrics.metric_names()
    found = selectors(expr)  # raises on anything that is not PromQL
    assert found, f"{where}: reads no metric"
    for name, matchers in found:
        if name.startswith("temporal_"):
            assert name in SDK_METRICS, f"{where}: {name} is not a Temporal SDK metric we serve"
            continue
        assert name in defined, f"{where}: {name} is not defined in activities/metrics.py"
        unknown = set(matchers) - set(defined[name])
        assert not unknown, f"{where}: {name} has no label {unknown}"


def test_every_alert_reads_defined_metrics_and_has_a_runbook_section() -> None:
    found = rules()
    assert set(found) == REQUIRED_ALERTS
    anchors = runbook_anchors()
    for name, rule in found.items():
        check_expression(rule["expr"], name)
        assert rule["labels"]["severity"] in {"page", "ticket"}, name
        assert rule["annotations"]["summary"], name
        path, _, anchor = rule["annotations"]["runbook_url"].partition("#")
        assert path == "docs/runbook.md" and anchor == name.lower() and anchor in anchors, name


def test_the_poison_alert_reads_retryable_failures_by_activity_and_error() -> None:
    expr = rules()["ActivityFailingRepeatedly"]["expr"]
    assert selectors(expr) == [("bankflow_activity_failures_total", {"retryable": "true"})]
    assert "by (activity_type, error_type)" in expr


def test_every_dashboard_panel_reads_defined_metrics() -> None:
    exprs = dashboard_exprs()
    assert len(exprs) >= 15
    for expr in exprs:
        check_expression(expr, f"dashboard: {expr}")
    read = {name for expr in exprs for name, _ in selectors(expr)}
    for wanted in (
        "bankflow_journals_posted_total",  # throughput
        "bankflow_http_request_duration_seconds_bucket",  # latency
        "bankflow_approvals_waiting",  # approvals waiting
        "bankflow_job_items_processed_total",  # job progress
        "bankflow_activity_failures_total",  # failures
    ):
        assert wanted in read, wanted


def test_a_misspelt_metric_or_label_is_caught() -> None:
    """The checks above can fail: a name or a label the code does not define is refused."""
    for bad in (
        "rate(bankflow_journal_posted_total[5m])",
        'bankflow_holds_total{kind="placed"}',
        "temporal_workflow_failed",
    ):
        try:
            check_expression(bad, "probe")
        except AssertionError:
            continue
        raise AssertionError(f"{bad!r} passed the check")


def test_promtool_accepts_the_rules_where_installed() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        print("promtool not installed (apt-get install prometheus): structural checks only")
        return
    checked = subprocess.run(
        [promtool, "check", "rules", str(ALERTS)], capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(REQUIRED_ALERTS)} rules found" in checked.stdout
