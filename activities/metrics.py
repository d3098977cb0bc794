"""Every product metric bankflow exposes to Prometheus, defined once (prometheus-client).

The worker serves them on `worker_metrics_port`, next to the Temporal SDK's own metrics (task
latencies, workflow completions, schedule-to-start) on `worker_sdk_metrics_port`; the API serves
its request metrics on `/metrics`. The alert rules and the dashboard under `ops/` read these
names, and a test checks that every name they use is defined here.

Where a figure is counted, and why there:
- ledger movements (journals, postings, amounts, holds, idempotent replays) in the ledger engine,
  but only once its transaction has committed (`after_commit`): a rolled-back or retried
  attempt must not count money twice;
- activity failures, job progress, notifications and the ledger verification in
  `ActivityMetrics`, a worker interceptor that sees every activity's outcome in one place;
- approvals waiting, from Temporal's visibility store (`ApprovalsGauge`), the same source as
  the approvals inbox.

Labels carry kinds, currencies, process types, roles and error types: never an id, a name or an
amount, so no personal data reaches a metric and the series stay few.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.exposition import start_http_server
from sqlalchemy import event
from sqlalchemy.orm import Session
from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

from activities.direct import Db, DirectPool
from schemas import search_attributes as sa
from schemas.daily_loan_job import BatchResult as LoanBatchResult
from schemas.daily_loan_job import DailyJobSummary
from schemas.daily_loan_job import PlanResult as LoanPlanResult
from schemas.ledger import PostingLine, VerifyReport
from schemas.month_end import BatchResult as InterestBatchResult
from schemas.month_end import MonthEndSummary
from schemas.month_end import PlanResult as InterestPlanResult
from schemas.notifications import NotificationResult

log = logging.getLogger(__name__)

MONTH_END = "month_end"
DAILY_LOAN_JOB = "daily_loan_job"
LEDGER_VERIFY = "ledger_verify"

# ---- ledger ----------------------------------------------------------------------------------
JOURNALS = Counter("bankflow_journals_posted", "Journals committed to the ledger", ["kind"])
POSTINGS = Counter("bankflow_postings", "Postings committed to the ledger", ["kind"])
AMOUNT = Counter(
    "bankflow_posted_amount_minor",
    "Amounts posted, in the currency's minor unit (sum of posting amounts)",
    ["currency", "kind"],
)
HOLDS = Counter("bankflow_holds", "Holds by what happened to them", ["event"])
REPLAYS = Counter(
    "bankflow_idempotent_replays",
    "Requests answered from an earlier identical one instead of acting again",
    ["operation"],
)
# ---- activities ------------------------------------------------------------------------------
ACTIVITY_FAILURES = Counter(
    "bankflow_activity_failures",
    "Activity attempts that failed, by activity type, error type and whether Temporal retries",
    ["activity_type", "error_type", "retryable"],
)
# ---- approvals ---------------------------------------------------------------------------------
APPROVALS_WAITING = Gauge(
    "bankflow_approvals_waiting",
    "Running processes waiting for a decision, by process type and assigned role",
    ["process", "role"],
)
APPROVALS_OLDEST = Gauge(
    "bankflow_approvals_oldest_age_seconds",
    "Age of the oldest process waiting for a decision, by process type and assigned role",
    ["process", "role"],
)
APPROVALS_REFRESHED = Gauge(
    "bankflow_approvals_refreshed_timestamp_seconds",
    "When the approvals figures were last read from Temporal visibility",
)
# ---- notifications -----------------------------------------------------------------------------
NOTIFICATIONS = Counter(
    "bankflow_notifications",
    "Notifications by outcome (sent, stored, duplicate, failed)",
    ["outcome"],
)
# ---- recurring jobs ----------------------------------------------------------------------------
JOB_ITEMS_PLANNED = Gauge(
    "bankflow_job_items_planned", "Accounts or loans the job's current run has to process", ["job"]
)
JOB_ITEMS_DONE = Counter(
    "bankflow_job_items_processed",
    "Accounts or loans the job processed for the first time",
    ["job"],
)
JOB_RUNS = Counter("bankflow_job_runs", "Job runs finished, by outcome", ["job", "outcome"])
JOB_DURATION = Histogram(
    "bankflow_job_duration_seconds",
    "Wall time of a finished job run, start to finish across continue-as-new",
    ["job"],
    buckets=(1, 5, 15, 60, 300, 900, 1800, 3600, 7200, 14400, 28800),
)
JOB_LAST_SUCCESS = Gauge(
    "bankflow_job_last_success_timestamp_seconds",
    "When the job last finished successfully (Unix time); the schedule-missed alert reads it",
    ["job"],
)
LEDGER_VERIFY_OK = Gauge(
    "bankflow_ledger_verify_ok", "1 when the last ledger verification passed, 0 when it failed"
)
LEDGER_VERIFY_FAILED_CHECKS = Gauge(
    "bankflow_ledger_verify_failed_checks", "Checks the last ledger verification found breached"
)
# ---- API ---------------------------------------------------------------------------------------
HTTP_REQUESTS = Counter(
    "bankflow_http_requests",
    "API requests by method, route template and status code",
    ["method", "route", "status"],
)
HTTP_LATENCY = Histogram(
    "bankflow_http_request_duration_seconds",
    "API request latency by method and route template",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)


ALL: tuple[Counter | Gauge | Histogram, ...] = (
    JOURNALS, POSTINGS, AMOUNT, HOLDS, REPLAYS, ACTIVITY_FAILURES, APPROVALS_WAITING,
    APPROVALS_OLDEST, APPROVALS_REFRESHED, NOTIFICATIONS, JOB_ITEMS_PLANNED, JOB_ITEMS_DONE,
    JOB_RUNS, JOB_DURATION, JOB_LAST_SUCCESS, LEDGER_VERIFY_OK, LEDGER_VERIFY_FAILED_CHECKS,
    HTTP_REQUESTS, HTTP_LATENCY,
)  # fmt: skip
_SUFFIXES = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_count", "_sum")}


def metric_names() -> dict[str, tuple[str, ...]]:
    """Every sample name bankflow's metrics expose (`_total`, `_bucket`, ... as Prometheus sees
    them, whether or not a series exists yet), with the metric's label names."""
    names: dict[str, tuple[str, ...]] = {}
    for metric in ALL:
        labels = tuple(metric._labelnames)  # prometheus-client keeps them only there
        for family in metric.describe():
            for suffix in _SUFFIXES[family.type]:
                names[family.name + suffix] = labels
    return names


# ---- counted only once the transaction commits --------------------------------------------------
_PENDING = "bankflow_metrics_pending"


def after_commit(db: Db, record: Callable[[], None]) -> None:
    """Run `record` when the session's transaction commits; drop it if it rolls back. On a
    DirectPool the statement that called this has committed already: run it now."""
    if isinstance(db, DirectPool):
        record()
        return
    db.sync_session.info.setdefault(_PENDING, []).append(record)


@event.listens_for(Session, "after_commit")
def _record_committed(session: Session) -> None:
    for record in session.info.pop(_PENDING, []):
        record()


@event.listens_for(Session, "after_rollback")
def _forget_rolled_back(session: Session) -> None:
    session.info.pop(_PENDING, None)


def journal_posted(db: Db, kind: str, postings: Iterable[PostingLine]) -> None:
    lines = [(p.currency, p.amount_minor) for p in postings]

    def record() -> None:
        JOURNALS.labels(kind).inc()
        POSTINGS.labels(kind).inc(len(lines))
        for currency, amount in lines:
            AMOUNT.labels(currency, kind).inc(amount)

    after_commit(db, record)


def hold_event(db: Db, what: str) -> None:
    after_commit(db, HOLDS.labels(what).inc)


def replayed(db: Db, operation: str) -> None:
    after_commit(db, REPLAYS.labels(operation).inc)


# ---- activity outcomes ---------------------------------------------------------------------------


def _error_type(exc: BaseException) -> tuple[str, bool]:
    if isinstance(exc, ApplicationError):
        return exc.type or type(exc).__name__, not exc.non_retryable
    return type(exc).__name__, True


def _record_result(result: Any) -> None:
    """What a finished activity's result says about the jobs, notifications and the ledger."""
    if isinstance(result, InterestPlanResult):
        JOB_ITEMS_PLANNED.labels(MONTH_END).set(result.accounts_total)
    elif isinstance(result, LoanPlanResult):
        JOB_ITEMS_PLANNED.labels(DAILY_LOAN_JOB).set(result.loans_total)
    elif isinstance(result, InterestBatchResult):
        JOB_ITEMS_DONE.labels(MONTH_END).inc(result.posted_now)
        if result.journal_id and result.posted_now:
            for currency, amount in result.interest_minor.items():
                AMOUNT.labels(currency, "savings_interest").inc(amount)
    elif isinstance(result, LoanBatchResult):
        JOB_ITEMS_DONE.labels(DAILY_LOAN_JOB).inc(result.serviced_now)
    elif isinstance(result, MonthEndSummary):
        JOB_RUNS.labels(MONTH_END, result.status).inc()
        if result.duration_s is not None:
            JOB_DURATION.labels(MONTH_END).observe(result.duration_s)
        if result.finished_at is not None:
            JOB_LAST_SUCCESS.labels(MONTH_END).set(result.finished_at.timestamp())
    elif isinstance(result, DailyJobSummary):
        JOB_RUNS.labels(DAILY_LOAN_JOB, "completed").inc()
        JOB_LAST_SUCCESS.labels(DAILY_LOAN_JOB).set(time.time())
    elif isinstance(result, VerifyReport):
        failed = sum(1 for check in result.checks if not check.ok)
        LEDGER_VERIFY_OK.set(1 if result.ok else 0)
        LEDGER_VERIFY_FAILED_CHECKS.set(failed)
        JOB_RUNS.labels(LEDGER_VERIFY, "passed" if result.ok else "breached").inc()
        if result.ok:
            JOB_LAST_SUCCESS.labels(LEDGER_VERIFY).set(time.time())
    elif isinstance(result, NotificationResult):
        NOTIFICATIONS.labels(result.status).inc()


class _MeasuringInbound(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        try:
            result = await super().execute_activity(input)
        except Exception as exc:
            info = activity.info()
            error_type, retryable = _error_type(exc)
            ACTIVITY_FAILURES.labels(info.activity_type, error_type, str(retryable).lower()).inc()
            if info.activity_type == "send_notification":
                NOTIFICATIONS.labels("failed").inc()
            raise
        _record_result(result)
        return result


class ActivityMetrics(Interceptor):
    """Worker interceptor: every activity's failure by type, every result's figures. Put it
    before `ActivityFailures` so it sees the failure as Temporal will record it (typed,
    retryable or not)."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _MeasuringInbound(next)


# ---- approvals waiting, read from Temporal visibility ---------------------------------------------


@dataclass
class ApprovalsGauge:
    """Refreshes the approvals gauges every `interval` seconds from Temporal visibility: the
    running processes that have an assigned role, grouped by process type and role. `scope`
    narrows the query (tests pass their task queue)."""

    client: Client
    interval: float = 30.0
    scope: str = ""
    limit: int = 10_000

    async def refresh(self) -> None:
        query = f"ExecutionStatus = 'Running' AND {sa.ASSIGNED_ROLE.name} IS NOT NULL"
        if self.scope:
            query += f" AND {self.scope}"
        counts: dict[tuple[str, str], int] = {}
        oldest: dict[tuple[str, str], float] = {}
        now = time.time()
        async for wf in self.client.list_workflows(query, limit=self.limit):
            role = wf.typed_search_attributes.get(sa.ASSIGNED_ROLE)
            if not role:
                continue
            key = (wf.workflow_type, role)
            counts[key] = counts.get(key, 0) + 1
            oldest[key] = max(oldest.get(key, 0.0), now - wf.start_time.timestamp())
        APPROVALS_WAITING.clear()
        APPROVALS_OLDEST.clear()
        for key, count in counts.items():
            APPROVALS_WAITING.labels(*key).set(count)
            APPROVALS_OLDEST.labels(*key).set(oldest[key])
        APPROVALS_REFRESHED.set(now)

    async def run(self) -> None:
        while True:
            try:
                await self.refresh()
            except Exception as exc:  # Temporal briefly unavailable: keep the last figures
                log.warning("approvals gauge not refreshed: %s", type(exc).__name__)
            await asyncio.sleep(self.interval)


def serve(host: str, port: int) -> Callable[[], None]:
    """Serve the product metrics over HTTP (prometheus-client's own server, on a thread);
    returns a function that stops it."""
    server, thread = start_http_server(port, addr=host)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(5)

    return stop
