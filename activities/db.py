"""Engine and transaction helpers. Each write runs in one transaction owned by its caller."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from schemas.settings import Settings

T = TypeVar("T")
log = logging.getLogger(__name__)

# serialization_failure and deadlock_detected: the transaction did nothing and may run again.
RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})


def make_engine(settings: Settings, *, pool_size: int = 10) -> AsyncEngine:
    # hide_parameters: an error's text (logged, or recorded by Temporal) never carries the
    # statement's parameters, which may be names or e-mail addresses.
    return create_async_engine(
        settings.sqlalchemy_url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        hide_parameters=True,
    )


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def sqlstate(exc: BaseException) -> str | None:
    orig = getattr(exc, "orig", None)
    return getattr(orig, "sqlstate", None)


async def in_transaction(
    sessions: async_sessionmaker[AsyncSession],
    work: Callable[[AsyncSession], Awaitable[T]],
    *,
    attempts: int = 8,
) -> T:
    """Run `work` in one transaction, again from the start on a deadlock or serialization failure.

    Lock order is fixed, so deadlocks should not happen; the retry is the safety net that keeps a
    rare one from surfacing as a failed payment.
    """
    for attempt in range(1, attempts + 1):
        try:
            async with sessions() as session, session.begin():
                return await work(session)
        except DBAPIError as exc:
            if sqlstate(exc) not in RETRYABLE_SQLSTATES or attempt == attempts:
                raise
            log.warning("retrying transaction after %s (attempt %d)", sqlstate(exc), attempt)
            await asyncio.sleep(0.005 * 2**attempt)
    raise AssertionError("unreachable")
