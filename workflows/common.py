"""Helpers every workflow shares: calling activities and telling business failures apart."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from schemas.errors import ErrorCode

# Ledger and database activities: short, idempotent, retried with backoff until they succeed or
# fail for a business reason (non-retryable). Operations see a stuck retry in the UI.
# Each is one transaction of milliseconds; the timeout is how long a request waits when the worker
# running it dies (SIGKILL, OOM, a lost host) before another worker retries it, so it bounds the
# recovery a teller feels (issue 13: <= 15 s). Longer work uses its own options.
DB_ACTIVITY: dict[str, Any] = {
    "start_to_close_timeout": timedelta(seconds=10),
    "retry_policy": RetryPolicy(maximum_interval=timedelta(seconds=30)),
}


def refuse(code: ErrorCode, message: str) -> ApplicationError:
    """A request the workflow refuses (in a validator or handler): typed, never retried."""
    return ApplicationError(message, type=code.value, non_retryable=True)


class BusinessFailure(Exception):
    """An activity refused for a business reason (its ErrorCode in `code`)."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


def business_failure(exc: ActivityError) -> BusinessFailure | None:
    """The typed business failure behind an activity error, or None for anything else."""
    cause = exc.cause
    if isinstance(cause, ApplicationError) and cause.non_retryable and cause.type:
        return BusinessFailure(cause.type, cause.message)
    return None


# send_notification: an e-mail provider's 429/5xx is retried with exponential backoff for up to a
# day (a reminder that arrives late is still worth sending); a 400 fails at once (non-retryable).
NOTIFY_ACTIVITY: dict[str, Any] = {
    "start_to_close_timeout": timedelta(seconds=60),
    "retry_policy": RetryPolicy(
        initial_interval=timedelta(seconds=1),
        backoff_coefficient=2.0,
        maximum_interval=timedelta(minutes=10),
    ),
    "schedule_to_close_timeout": timedelta(days=1),
}
