"""How an activity reports an expected business failure to its workflow."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from activities.db import in_transaction
from schemas.errors import BankflowError

T = TypeVar("T")


def as_application_error(exc: BankflowError) -> ApplicationError:
    """Non-retryable, typed with the ErrorCode, and BENIGN: a declined payment or a refused
    decision is business as usual, not an alert in the worker's log."""
    return ApplicationError(
        exc.detail,
        type=exc.code.value,
        non_retryable=True,
        category=ApplicationErrorCategory.BENIGN,
    )


async def transaction(
    sessions: async_sessionmaker[AsyncSession], work: Callable[[AsyncSession], Awaitable[T]]
) -> T:
    """One activity, one transaction: business failures become non-retryable ApplicationErrors,
    infrastructure failures propagate so Temporal retries them."""
    try:
        return await in_transaction(sessions, work)
    except BankflowError as exc:
        raise as_application_error(exc) from exc
