"""How an activity reports a failure to its workflow, and what the API makes of a database error.

Three kinds of failure, told apart in one place:
- a business refusal (`BankflowError`): non-retryable, typed with its ErrorCode;
- the data itself refused by Postgres (a data exception, a check, not-null or, once a retry has
  ruled out a race, a unique or foreign-key violation) or by a model (pydantic): a retry cannot
  cure it, so it is non-retryable `InvalidData` (or `Duplicate`). Without this a poison value is
  retried for ever and the request that started the process never answers;
- anything else from the database (connection lost, serialization failure, deadlock, a server
  restarting): retryable, Temporal tries again with backoff.

Either way the failure Temporal records is a short typed message: never the SQL statement, never
its parameters (they may carry names), never the exception chain (it is raised `from None`).
The detail ops need goes to the log as SQLSTATE, condition, table, column and constraint names,
and the statement text with placeholders only.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)

from activities.db import in_transaction, sqlstate
from schemas.errors import BankflowError, ErrorCode

T = TypeVar("T")
log = logging.getLogger(__name__)

# Violations a concurrent transaction can cause (it inserted the same key, or the parent row was
# not yet committed): the first attempt is retried; if the next one meets it again it is the data.
RACE_SQLSTATES = frozenset({"23505", "23503", "23P01"})
DUPLICATE_SQLSTATES = frozenset({"23505", "23P01"})
# Whole, for the ledger's one statement (2.5 KB: activities/ledger/engine.POST); a failure's log
# line, rare, so its length costs nothing.
STATEMENT_LOG_CHARS = 3000


@dataclass(frozen=True)
class DatabaseFailure:
    """A database error, classified: what to tell the caller, and whether to try again."""

    code: ErrorCode
    message: str
    retryable: bool


def _where(exc: DBAPIError) -> str:
    diag = getattr(exc.orig, "diag", None)
    names = [
        f"{label} {value}"
        for label, value in (
            ("table", getattr(diag, "table_name", None)),
            ("column", getattr(diag, "column_name", None)),
            ("constraint", getattr(diag, "constraint_name", None)),
        )
        if value
    ]
    return f" ({', '.join(names)})" if names else ""


def classify(exc: DBAPIError, *, attempt: int = 2) -> DatabaseFailure:
    """What a database error means. `attempt`: the activity's attempt number; a race-prone
    violation on the first attempt is worth one retry (the API, which cannot wait for a retry,
    passes the default and gets the verdict at once)."""
    state = sqlstate(exc)
    condition = type(exc.orig).__name__ if exc.orig is not None else type(exc).__name__
    where = _where(exc)
    if state is None and "NUL (0x00)" in str(exc.orig):
        # psycopg refuses it before sending: no SQLSTATE, and the value is not in the message.
        return DatabaseFailure(ErrorCode.INVALID_DATA, "text contains a NUL (0x00) byte", False)
    if (
        state is not None
        and state.startswith("23")
        and not (state in RACE_SQLSTATES and attempt < 2)
    ):
        code = ErrorCode.DUPLICATE if state in DUPLICATE_SQLSTATES else ErrorCode.INVALID_DATA
        return DatabaseFailure(code, f"the database refused the row: {condition}{where}", False)
    if (state is not None and state.startswith("22")) or (
        state is None and condition == "DataError"
    ):
        return DatabaseFailure(
            ErrorCode.INVALID_DATA, f"the database refused a value: {condition}{where}", False
        )
    return DatabaseFailure(
        ErrorCode.DATABASE_UNAVAILABLE, f"database failure, will retry: {condition}{where}", True
    )


def log_failure(failure: DatabaseFailure, exc: DBAPIError, context: str) -> None:
    """The detail for ops, without personal data: no parameters, no server message (Postgres
    quotes the refused value in some of them)."""
    statement = " ".join(str(exc.statement or "").split())[:STATEMENT_LOG_CHARS]
    log.log(
        logging.WARNING if failure.retryable else logging.ERROR,
        "%s: %s [sqlstate %s] %s; statement: %s",
        context,
        failure.code.value,
        sqlstate(exc) or "-",
        failure.message,
        statement,
    )


def describe_invalid(exc: ValidationError) -> str:
    """Which fields a model refused and why, without the refused values."""
    parts = [f"{'.'.join(map(str, e['loc']))}: {e['type']}" for e in exc.errors()[:5]]
    return f"{exc.title} refused: " + "; ".join(parts)


def as_application_error(exc: BankflowError) -> ApplicationError:
    """Non-retryable, typed with the ErrorCode, and BENIGN: a declined payment or a refused
    decision is business as usual, not an alert in the worker's log."""
    return ApplicationError(
        exc.detail,
        type=exc.code.value,
        non_retryable=True,
        category=ApplicationErrorCategory.BENIGN,
    )


async def typed(work: Awaitable[T]) -> T:
    """Business failures become non-retryable ApplicationErrors; database failures propagate to
    `ActivityFailures`, which classifies them."""
    try:
        return await work
    except BankflowError as exc:
        raise as_application_error(exc) from exc


async def transaction(
    sessions: async_sessionmaker[AsyncSession], work: Callable[[AsyncSession], Awaitable[T]]
) -> T:
    """One activity, one transaction, its failures typed."""
    return await typed(in_transaction(sessions, work))


class _ClassifyingInbound(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        try:
            return await super().execute_activity(input)
        except BankflowError as exc:
            raise as_application_error(exc) from exc
        except DBAPIError as exc:
            info = activity.info()
            failure = classify(exc, attempt=info.attempt)
            log_failure(
                failure, exc, f"activity {info.activity_type} of {info.workflow_id} #{info.attempt}"
            )
            raise ApplicationError(
                failure.message, type=failure.code.value, non_retryable=not failure.retryable
            ) from None
        except ValidationError as exc:
            info = activity.info()
            message = describe_invalid(exc)
            log.error("activity %s of %s: %s", info.activity_type, info.workflow_id, message)
            raise ApplicationError(
                message, type=ErrorCode.INVALID_DATA.value, non_retryable=True
            ) from None


class ActivityFailures(Interceptor):
    """The worker interceptor that gives every activity the classification above."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _ClassifyingInbound(next)
