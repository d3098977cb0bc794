"""The bankflow worker: every workflow and activity, on an interactive and a batch task queue.

Interactive processes (approvals, movements) and heavy batch jobs poll separate task queues so a
month-end run can never starve a teller waiting on a withdrawal. SIGINT/SIGTERM stop polling and
let running activities finish (graceful shutdown) before the process exits.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import socket
from collections.abc import Callable
from datetime import timedelta
from typing import Any, NamedTuple

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.worker import Interceptor, Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities import metrics
from activities.daily_loan_job import DailyLoanJobActivities
from activities.db import make_engine, make_sessionmaker
from activities.direct import DirectPool
from activities.disbursements import DisbursementActivities
from activities.errors import ActivityFailures
from activities.kyc import KycActivities
from activities.ledger import LedgerActivities
from activities.loans import LoanActivities
from activities.metrics import ActivityMetrics, ApprovalsGauge
from activities.month_end import MonthEndActivities
from activities.movements import MovementActivities
from activities.notifications import NotificationActivities
from activities.repayments import RepaymentActivities
from activities.reversals import ReversalActivities
from schemas import telemetry, temporal
from schemas.settings import Settings, service_settings
from workflows.daily_loan_job import DailyLoanJobWorkflow
from workflows.disbursement import DisbursementWorkflow
from workflows.kyc_review import KycReviewWorkflow
from workflows.ledger_verify import LedgerVerifyWorkflow
from workflows.loan_approval import LoanApprovalWorkflow
from workflows.money_movement import MoneyMovementWorkflow
from workflows.month_end_interest import MonthEndInterestWorkflow
from workflows.repayment import LoanRepaymentWorkflow
from workflows.reversal import ReversalWorkflow

INTERACTIVE_WORKFLOWS: list[type] = [MoneyMovementWorkflow]
INTERACTIVE_WORKFLOWS.append(ReversalWorkflow)
INTERACTIVE_WORKFLOWS.append(LoanApprovalWorkflow)
INTERACTIVE_WORKFLOWS.append(KycReviewWorkflow)
INTERACTIVE_WORKFLOWS.append(DisbursementWorkflow)
INTERACTIVE_WORKFLOWS.append(LoanRepaymentWorkflow)
BATCH_WORKFLOWS: list[type] = [LedgerVerifyWorkflow]
BATCH_WORKFLOWS.append(MonthEndInterestWorkflow)
BATCH_WORKFLOWS.append(DailyLoanJobWorkflow)
GRACEFUL_SHUTDOWN = timedelta(seconds=60)

log = logging.getLogger("bankflow.worker")


class QueueActivities(NamedTuple):
    interactive: list[Callable[..., Any]]
    batch: list[Callable[..., Any]]


def interceptors(settings: Settings) -> list[Interceptor]:
    """Metrics outermost, so they see each failure as classified (typed, retryable or not)."""
    measured: list[Interceptor] = [ActivityMetrics()] if settings.metrics_enabled else []
    return [*measured, ActivityFailures()]


def activities_for(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], direct: DirectPool
) -> QueueActivities:
    """The activities each queue's workflows call, bound to this process's database sessions, its
    DirectPool (a journal alone: activities/ledger/engine) and settings. A workflow schedules its
    activities on its own queue, so each worker offers only what its workflows use: the batch
    worker's slots never go to a teller's posting, and an interactive worker never picks up a
    month-end batch."""
    ledger = LedgerActivities(sessions, direct)
    notifications = NotificationActivities(settings, sessions)
    interactive = [
        *(a for a in ledger.all() if a != ledger.verify_ledger),
        *MovementActivities(settings, sessions, direct).all(),
        *notifications.all(),
        *ReversalActivities(sessions).all(),
        *LoanActivities(settings, sessions).all(),
        *KycActivities(sessions).all(),
        *DisbursementActivities(settings, sessions).all(),
        *RepaymentActivities(sessions).all(),
    ]
    batch = [
        ledger.verify_ledger,  # LedgerVerify
        *MonthEndActivities(sessions).all(),
        *DailyLoanJobActivities(sessions).all(),
        notifications.send_notification,  # MonthEndInterest e-mails finance its summary
    ]
    return QueueActivities(interactive, batch)


# Modules every workflow run takes from the worker instead of importing afresh in its sandbox.
# The sandbox still guards every call a workflow makes (time, randomness, I/O); what it would
# otherwise give each run is its own copy of these modules' globals. Ours hold only constants,
# helpers and classes (tests/workflows/test_sandbox_passthrough.py refuses module state a run
# could change), so a copy per run bought nothing and cost each run the import of its workflow
# module and of `workflows.*` it imports: about 1.4 ms of CPU (worker and client in one process)
# for a one-line workflow.
# email_validator: pydantic imports it on the first validation of an EmailStr (a notification's
# recipient), which may come inside a run; passed through, it is never imported per run.
PASSTHROUGH = ("workflows", "email_validator")


def workflow_runner(*modules: str) -> SandboxedWorkflowRunner:
    """The sandbox every worker runs workflows in; `modules` are passed through as well (the
    benchmarks' own workflows)."""
    restrictions = SandboxRestrictions.default.with_passthrough_modules(*PASSTHROUGH, *modules)
    return SandboxedWorkflowRunner(restrictions=restrictions)


def build_workers(
    client: Client,
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    direct: DirectPool,
    *,
    interactive_queue: str | None = None,
    batch_queue: str | None = None,
) -> list[Worker]:
    """The two workers of one process; tests pass their own task queues."""
    activities = activities_for(settings, sessions, direct)
    return [
        Worker(
            client,
            task_queue=interactive_queue or settings.interactive_task_queue,
            workflows=INTERACTIVE_WORKFLOWS,
            activities=activities.interactive,
            interceptors=interceptors(settings),
            graceful_shutdown_timeout=GRACEFUL_SHUTDOWN,
            workflow_runner=workflow_runner(),
        ),
        Worker(
            client,
            task_queue=batch_queue or settings.batch_task_queue,
            workflows=BATCH_WORKFLOWS,
            activities=activities.batch,
            interceptors=interceptors(settings),
            graceful_shutdown_timeout=GRACEFUL_SHUTDOWN,
            max_concurrent_activities=4,
            workflow_runner=workflow_runner(),
        ),
    ]


# CPython's collector defaults suit scripts: a young collection every 700 new container objects,
# and the older generations walked again and again over the hundreds of thousands of long-lived
# objects a worker keeps (modules, models, the SDK). A batch activity builds tens of thousands
# of objects in a moment (a daily-loan batch's loans, installments and results), and the
# collector took about a fifth of its time. Frozen after start-up, the long-lived objects are
# not walked again; a larger first generation makes young collections rarer (what a batch
# builds is freed by reference counting when it ends, so memory stays bounded).
GC_THRESHOLD = (10_000, 10, 10)


def settle_heap() -> None:
    """Once, after start-up and before the workers poll (the benchmarks call it too)."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)


def _free(host: str, port: int) -> bool:
    """Whether the port can be bound. A worker whose metrics port is taken (a second worker on
    one host) still processes money: it logs the error, and Prometheus shows the target down."""
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError as exc:
            log.error("Temporal SDK metrics not served on %s:%d: %s", host, port, exc)
            return False
    return True


async def main(settings: Settings) -> None:
    telemetry.install_tracing(settings, "worker")
    # No pre-ping: every activity runs in in_transaction, which reconnects (activities.db).
    engine = make_engine(settings, pre_ping=False)
    host = settings.metrics_host
    sdk_metrics = None
    if settings.metrics_enabled and _free(host, settings.worker_sdk_metrics_port):
        sdk_metrics = f"{host}:{settings.worker_sdk_metrics_port}"
    client = await temporal.connect(settings, sdk_metrics=sdk_metrics)
    direct = DirectPool(settings.sqlalchemy_url, size=settings.db_pool_size)
    workers = build_workers(client, settings, make_sessionmaker(engine), direct)
    background: list[asyncio.Task[None]] = []
    stop_metrics = None
    if settings.metrics_enabled:
        port = settings.worker_metrics_port
        try:
            stop_metrics = metrics.serve(host, port)
            log.info("product metrics on http://%s:%d/metrics", host, port)
        except OSError as exc:
            log.error("product metrics not served on %s:%d: %s", host, port, exc)
        if sdk_metrics:
            log.info("Temporal SDK metrics on http://%s/metrics", sdk_metrics)
        background.append(asyncio.create_task(ApprovalsGauge(client).run()))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    settle_heap()
    runs = [asyncio.create_task(w.run()) for w in workers]
    log.info("worker polling %s and %s", settings.interactive_task_queue, settings.batch_task_queue)
    done, _ = await asyncio.wait(
        [*runs, asyncio.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED
    )
    for task in done:
        if task in runs and task.exception():
            log.error("a worker stopped: %s", task.exception())
    log.info("shutting down: letting running activities finish")
    await asyncio.gather(*(w.shutdown() for w in workers), return_exceptions=True)
    for task in background:
        task.cancel()
    if stop_metrics is not None:
        stop_metrics()
    await direct.close()
    await engine.dispose()
    telemetry.shutdown_tracing()


if __name__ == "__main__":
    worker_settings = service_settings("worker")
    telemetry.configure_logging(worker_settings, "worker")
    asyncio.run(main(worker_settings))
