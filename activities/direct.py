"""The statements the API makes on every request, on plain psycopg connections.

Through SQLAlchemy's async engine a one-row read by primary key costs the API process about
0.75 ms of CPU (the pool checkout with its pre-ping, the greenlet hand-offs, result processing);
on a psycopg connection of its own the same statement costs 0.11 ms. An authenticated read makes
three such statements (the caller's user and roles, the account, the audit row), so they come
here: together they were half the API's CPU per read (bench/api.py).

The statements are still SQLAlchemy Core, compiled once for psycopg: one definition of each
query, and the casts SQLAlchemy renders for psycopg's parameters. Errors come out as SQLAlchemy's
(`DBAPIError`, `TimeoutError` for a full pool), so the 503s, the audit spool and every retry treat
them as they treat any other database error.

Why not psycopg_pool: it waits up to its timeout for a connection while it reconnects in the
background, so with Postgres down every request would hang before its 503; this pool, like
SQLAlchemy's, fails at once when Postgres refuses the connection. A connection found broken
(Postgres restarted since it was pooled) drops every idle one, which is as old, and the
statement runs once more on a new connection; that replaces SQLAlchemy's pre-ping, a round
trip on every checkout. Only statements that may run twice come here: reads, inserts that
ignore a row already written, and writes a second run leaves as the first did (the idempotency
claims', keyed by their owner).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from functools import lru_cache
from typing import Any, TypeVar, cast

import psycopg
from sqlalchemy import BindParameter, bindparam
from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import ClauseElement, Insert
from sqlalchemy.sql.compiler import SQLCompiler

from activities.db import retry_conflicts
from schemas import telemetry

_DIALECT = PGDialect_psycopg()  # type: ignore[no-untyped-call]
T = TypeVar("T")
Connection = psycopg.AsyncConnection[Any]
Params = dict[str, Any]
# A statement and its parameters; a list of parameter sets runs the statement once per set.
Step = tuple[ClauseElement, Params | list[Params]]


@lru_cache(maxsize=256)  # the statements are module constants; a bound keeps any other in check
def compiled(statement: ClauseElement) -> tuple[str, dict[str, Any]]:
    """The statement as psycopg runs it (`%(name)s` placeholders) and the values bound in it
    (`col == 5`, `bindparam(..., value=...)`), compiled once per statement. A statement SQLAlchemy
    would finish at execution (`in_` over an expanding bind) has no place here. An INSERT returns
    only what it asks for: SQLAlchemy would add its new key, for an engine's inserted_primary_key.
    """
    if isinstance(statement, Insert):
        statement = statement.inline()
    compiled = statement.compile(dialect=_DIALECT)
    assert isinstance(compiled, SQLCompiler)
    if compiled.post_compile_params:
        raise ValueError("a statement with expanding parameters cannot run on a DirectPool")
    bound = {k: v for k, v in compiled.params.items() if v is not None}
    return str(compiled), bound


def binds(*names: str, **renamed: str) -> dict[str, BindParameter[Any]]:
    """Column -> a parameter of the same name (or of the name `renamed` gives), for the
    `.values()` of a statement compiled once and run with its values as parameters."""
    return {name: bindparam(name) for name in names} | {
        column: bindparam(param) for column, param in renamed.items()
    }


def conninfo(sqlalchemy_url: str) -> str:
    """The libpq connection string of a `postgresql+psycopg://` URL."""
    return make_url(sqlalchemy_url).set(drivername="postgresql").render_as_string(False)


class DirectPool:
    """At most `size` autocommit connections; a request beyond waits up to `timeout` seconds."""

    def __init__(self, sqlalchemy_url: str, *, size: int, timeout: float = 30.0) -> None:
        self._conninfo = conninfo(sqlalchemy_url)
        self._idle: list[Connection] = []
        self._slots = asyncio.Semaphore(size)
        self._closing: set[asyncio.Future[None]] = set()
        self._timeout = timeout

    async def one(self, statement: ClauseElement, params: dict[str, Any]) -> tuple[Any, ...] | None:
        """The first row the statement returns, or None."""
        found = await self.rows(statement, params)
        return found[0] if found else None

    async def rows(self, statement: ClauseElement, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        """Every row the statement returns."""

        async def work(conn: Connection) -> list[tuple[Any, ...]]:
            cursor = await conn.execute(sql, params)
            return await cursor.fetchall()

        sql, bound = compiled(statement)
        params = {**bound, **params}
        return await self._run(sql, work)

    async def execute(self, statement: ClauseElement, params: dict[str, Any]) -> int:
        """A statement that returns no rows; how many rows it changed."""

        async def work(conn: Connection) -> int:
            return (await conn.execute(sql, params)).rowcount

        sql, bound = compiled(statement)
        params = {**bound, **params}
        return await self._run(sql, work)

    async def _run(self, sql: str, work: Callable[[Connection], Awaitable[T]]) -> T:
        if self._slots.locked():  # wait_for wraps the wait in a task: only when there is one
            try:
                await asyncio.wait_for(self._slots.acquire(), self._timeout)
            except TimeoutError as exc:
                raise PoolTimeout(f"no database connection free after {self._timeout} s") from exc
        else:
            await self._slots.acquire()  # a free slot: taken at once, without a task
        try:
            for attempt in (1, 2):
                conn = await self._checkout(sql)
                try:
                    with telemetry.sql_span(sql):
                        result = await work(conn)
                except psycopg.Error as exc:
                    if not conn.broken:
                        self._checkin(conn)
                        raise _wrapped(sql, exc) from exc
                    self._drop_idle()  # as old as this one: Postgres restarted since
                    await conn.close()
                    if attempt == 2:
                        raise _wrapped(sql, exc, invalidated=True) from exc
                    continue
                except BaseException:  # cancelled mid-statement: the connection is not reusable
                    self._close_later(conn)
                    raise
                self._checkin(conn)
                return result
            raise AssertionError("unreachable")
        finally:
            self._slots.release()

    async def _checkout(self, sql: str) -> Connection:
        if self._idle:
            return self._idle.pop()
        try:
            return await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)
        except psycopg.Error as exc:
            raise _wrapped(sql, exc) from exc

    def _checkin(self, conn: Connection) -> None:
        if conn.broken or conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            self._close_later(conn)
        else:
            self._idle.append(conn)

    def _drop_idle(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            self._close_later(conn)

    def _close_later(self, conn: Connection) -> None:
        task = asyncio.ensure_future(conn.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            await conn.close()

    async def __aenter__(self) -> DirectPool:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def pipeline(session: AsyncSession, *steps: Step) -> list[list[tuple[Any, ...]]]:
    """Run the statements in order inside the session's transaction, on its connection, in one
    round trip (psycopg's pipeline mode; a single statement runs as it is, which costs less),
    and return the rows each returned (none: []).

    The ledger engine's hot path: through the session, each statement is a round trip and about
    0.3 ms of the caller's CPU. The first error aborts the rest and the transaction, as any
    failed statement does, and comes out as SQLAlchemy's DBAPIError, so deadlock retries,
    trigger errors and constraint checks read it as they read the session's.
    """
    connection = await session.connection()
    driver = cast(Connection, (await connection.get_raw_connection()).driver_connection)
    runs = [(*compiled(statement), params) for statement, params in steps]
    text = ";\n".join(sql for sql, _, _ in runs)
    try:
        with telemetry.sql_span(text):
            [(sql, bound, first), *more] = runs
            if not more and isinstance(first, dict):
                cursor = await driver.execute(sql, {**bound, **first})
                return [await cursor.fetchall() if cursor.description else []]
            cursors = []
            async with driver.pipeline():
                for sql, bound, params in runs:
                    cursor = driver.cursor()
                    if isinstance(params, dict):
                        await cursor.execute(sql, {**bound, **params})
                    else:
                        await cursor.executemany(sql, [{**bound, **p} for p in params])
                    cursors.append(cursor)
            return [await c.fetchall() if c.description else [] for c in cursors]
    except psycopg.Error as exc:
        if driver.broken:
            await connection.invalidate(exc)
        raise _wrapped(text, exc, invalidated=driver.broken) from exc
    except BaseException:  # cancelled mid-statement: what the server did is unknown
        await connection.invalidate()
        raise


# Where a statement of the ledger runs: inside a caller's transaction (its session), or on its
# own, committed as it ends (a DirectPool's autocommit connection).
Db = AsyncSession | DirectPool


async def fetch(db: Db, statement: ClauseElement, params: Params) -> list[tuple[Any, ...]]:
    """The rows of one statement, in the session's transaction or on its own. On its own, a
    deadlock or serialization failure left nothing done, and the statement runs again (in a
    session, the whole transaction does: in_transaction)."""
    if isinstance(db, DirectPool):
        pool = db
        return await retry_conflicts(lambda: pool.rows(statement, params))
    [rows] = await pipeline(db, (statement, params))
    return rows


def _wrapped(sql: str, exc: psycopg.Error, *, invalidated: bool = False) -> BaseException:
    """SQLAlchemy's exception for a driver error, as its engine would raise it: without the
    statement's parameters, which may be personal data (Postgres's own DETAIL may still name a
    key or a failing row, as it does through the engine)."""
    return DBAPIError.instance(
        sql, None, exc, psycopg.Error, hide_parameters=True, connection_invalidated=invalidated
    )
