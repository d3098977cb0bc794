"""A month-end run on the real stack moves the job metrics on the worker's /metrics by exactly
what it did: accounts planned and processed, interest posted, the run, its duration and the
last-success time the ScheduleMissedRun alert reads."""

from __future__ import annotations

import time
from datetime import date

from tests.metrics_kit import scrape, value, worker_metrics
from tests.month_end.conftest import Stack
from tests.telemetry.rules import rules

JOB = {"job": "month_end"}


async def test_a_month_end_run_moves_the_job_metrics(stack: Stack) -> None:
    assert "bankflow_job_last_success_timestamp_seconds" in rules()["ScheduleMissedRun"]["expr"]
    product = await stack.product(annual_rate="0.0365", withholding_tax_rate="0", min_balance="0")
    for _ in range(3):  # 3650.00 all October: 11.32 each (see test_month_end_interest)
        await stack.account(product, date(2026, 9, 1), [(date(2026, 9, 1), 365000)])
    with worker_metrics() as url:
        before = await scrape(url)
        started = time.time()
        summary = await stack.run("2026-10")
        after = await scrape(url)
    assert summary.accounts == 3 and summary.status == "completed"

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert value(after, "bankflow_job_items_planned", **JOB) == 3
    assert moved("bankflow_job_items_processed_total", **JOB) == 3
    amount = {"currency": "USD", "kind": "savings_interest"}
    assert moved("bankflow_posted_amount_minor_total", **amount) == 3 * 1132
    assert moved("bankflow_job_runs_total", **JOB, outcome="completed") == 1
    assert moved("bankflow_job_duration_seconds_count", **JOB) == 1
    last = value(after, "bankflow_job_last_success_timestamp_seconds", **JOB)
    assert started - 1 <= last <= time.time()
