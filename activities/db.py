"""Engine and transaction helpers. Each write runs in one transaction owned by its caller."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import date
from decimal import Decimal
from typing import TypeVar

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from schemas import telemetry
from schemas.settings import Settings

T = TypeVar("T")
log = logging.getLogger(__name__)

# serialization_failure and deadlock_detected: the transaction did nothing and may run again.
RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})
# The server is shutting down, crashed or still starting up, or has no connection slot left.
_UNAVAILABLE_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "53300"})


def make_engine(
    settings: Settings, *, pool_size: int | None = None, pre_ping: bool = True
) -> AsyncEngine:
    """The process's engine: `settings.db_pool_size` connections kept (unless `pool_size`), as
    many again in a burst.

    Pre-ping (a `SELECT 1` round trip on every checkout) is on by default: the API reads outside
    `in_transaction` too, and after a Postgres restart a stale pooled connection then costs one
    round trip instead of a request answered 503. The worker turns it off: every activity runs
    in `in_transaction`, which runs a transaction again on a new connection when its connection
    turns out to be gone before the commit, and the ping was about 0.6 ms of a movement's
    worker CPU (bench/ledger.py, py-spy)."""
    pool_size = pool_size or settings.db_pool_size
    # hide_parameters: an error's text (logged, or recorded by Temporal) never carries the
    # statement's parameters, which may be names or e-mail addresses.
    engine = create_async_engine(
        settings.sqlalchemy_url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=pre_ping,
        hide_parameters=True,
    )
    telemetry.instrument_engine(engine)  # SQL spans when tracing is on
    return engine


async def without_jit(session: AsyncSession) -> None:
    """Switch JIT compilation off for the rest of this transaction. A batch's statements cover
    a bounded id range (thousands of rows), but the planner's cost for them crosses
    `jit_above_cost`, and compiling took longer than running: 8-180 ms a statement for an
    installments read of 10 ms, 3.5 s for month-end's 30 ms pricing."""
    await session.execute(text("SET LOCAL jit = off"))


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


# What an element of an array literal may not hold unquoted: a brace, quote, backslash or white
# space (commas are checked by count, a string reading NULL by counting the NULLs).
_ARRAY_UNSAFE = re.compile(r'[{}"\\\s]')
_ARRAY_NULL = re.compile(r"(?:^|,)null(?=,|$)", re.IGNORECASE)


def pg_array(values: Iterable[int | str | date | Decimal | None]) -> str:
    """`values` as one Postgres array literal, for `CAST(:p AS bigint[])` and the like in the
    batch jobs' unnest statements. psycopg dumps a list element by element in Python (quoting
    each), which costs a batch more than its SQL; one `str.join` is a fifth of that. For values
    whose text needs no quoting (numbers, dates, Decimals, codes): anything else is refused, and
    None is NULL."""
    items = list(values)
    parts = ["NULL" if v is None else str(v) for v in items]
    literal = ",".join(parts)
    if (
        _ARRAY_UNSAFE.search(literal)
        or literal.count(",") != max(len(parts) - 1, 0)
        or "" in parts
        or len(_ARRAY_NULL.findall(literal)) != items.count(None)
    ):
        raise ValueError("a value that would need quoting in an array literal")
    return "{" + literal + "}"


def sqlstate(exc: BaseException) -> str | None:
    orig = getattr(exc, "orig", None)
    return getattr(orig, "sqlstate", None)


def db_unavailable(exc: BaseException) -> bool:
    """True when the database could not be reached or lost the connection (a restart, a
    terminated backend, an exhausted pool): nothing is wrong with the request, it may be retried.
    """
    if isinstance(exc, PoolTimeout):
        return True
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    state = sqlstate(exc)
    if state is None:  # refused or broken before the server said anything
        return isinstance(exc, OperationalError | InterfaceError)
    return state.startswith("08") or state in _UNAVAILABLE_SQLSTATES


async def while_unavailable(work: Callable[[], Awaitable[T]], *, window: float) -> T:
    """Run `work`, again with backoff while the database is unavailable, for up to `window`
    seconds (a Postgres restart takes one to three); then its last error propagates."""
    deadline = time.monotonic() + window
    delay = 0.05
    while True:
        try:
            return await work()
        except (DBAPIError, PoolTimeout) as exc:
            if not db_unavailable(exc) or time.monotonic() + delay > deadline:
                raise
        await asyncio.sleep(delay)
        delay = min(delay * 2, 1.0)


async def retry_conflicts(work: Callable[[], Awaitable[T]], *, attempts: int = 8) -> T:
    """Run `work` again from the start on a deadlock or serialization failure.

    Lock order is fixed, so deadlocks should not happen; the retry is the safety net that keeps a
    rare one from surfacing as a failed payment. `work` must be a whole transaction (or a
    statement that is one): what failed so did nothing."""
    attempt = 1
    while True:
        try:
            return await work()
        except DBAPIError as exc:
            if sqlstate(exc) not in RETRYABLE_SQLSTATES or attempt == attempts:
                raise
            log.warning("retrying transaction after %s (attempt %d)", sqlstate(exc), attempt)
        await asyncio.sleep(0.005 * 2**attempt)
        attempt += 1


async def in_transaction(
    sessions: async_sessionmaker[AsyncSession],
    work: Callable[[AsyncSession], Awaitable[T]],
    *,
    attempts: int = 8,
) -> T:
    """Run `work` in one transaction, again from the start on a deadlock or serialization failure
    (retry_conflicts).

    A connection found gone while `work` runs (a pooled connection from before a Postgres
    restart, when the engine does not pre-ping) also runs it again, once, on a new connection:
    nothing of it was committed. A connection lost during the commit is not retried: whether the
    commit happened is unknown, and the caller's own retry (an activity's, under its idempotency
    key) finds out.
    """
    reconnected = False

    async def once() -> T:
        nonlocal reconnected
        while True:
            committing = False
            try:
                async with sessions() as session, session.begin():
                    result = await work(session)
                    committing = True
                return result
            except DBAPIError as exc:
                if not exc.connection_invalidated or committing or reconnected:
                    raise
                reconnected = True
                log.warning(
                    "running a transaction again on a new connection: its connection was gone"
                )

    return await retry_conflicts(once, attempts=attempts)
