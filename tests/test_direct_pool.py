"""activities.direct: the API's pool of autocommit psycopg connections. Rows come back, driver
errors come out as SQLAlchemy's (without the parameters), a batch of audit entries is one
statement, a statement alone runs again after a serialization failure or a deadlock and after
nothing else, a full pool times out, a cancelled statement's connection is not reused, and
against a private Postgres: a restart costs no request, and Postgres down fails at once.
`pipeline`, the ledger engine's statements on a session's own connection: in order, in the
session's transaction, the first error aborts the rest, a cancel or a dead backend drops the
connection."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict
from sqlalchemy import bindparam, func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import DataError, IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from activities.audit_trail import write_entries
from activities.db import db_unavailable, retry_conflicts, sqlstate
from activities.direct import DirectPool, conninfo, fetch, pipeline
from activities.staff import _STATUS
from activities.tables import AuditEntry, StaffUser
from schemas.audit import AuditRecord
from schemas.settings import Settings
from scripts.local_postgres import with_database
from tests.api.conftest import new_staff
from tests.api.test_database_faults import PrivatePostgres, private_pg, until  # noqa: F401  (fixture)

Sessions = async_sessionmaker[AsyncSession]

BACKEND_PID = text("SELECT pg_backend_pid()")
DIVIDE = text("SELECT 1 / :divisor")
SLEEP_THEN_PID = text("SELECT pg_backend_pid() FROM pg_sleep(:seconds)")
# A plain insert, without audit_trail's ON CONFLICT DO NOTHING: a repeated entry_id violates
# the unique constraint.
PLAIN_AUDIT_INSERT = insert(AuditEntry).values(
    {name: bindparam(name) for name in AuditRecord.model_fields}
)
# Bounds that prove a call did not wait out a timeout or a sleep; not performance targets.
PROMPTLY = 5.0


@asynccontextmanager
async def direct_pool(url: str, *, size: int, wait: float = 30.0) -> AsyncIterator[DirectPool]:
    pool = DirectPool(url, size=size, timeout=wait)
    try:
        yield pool
    finally:
        await pool.close()


def audit_row(**changes: Any) -> dict[str, Any]:
    """One audit entry as the API writes it; the personal fields carry recognisable values."""
    record = AuditRecord(
        entry_id=uuid.uuid4(),
        at=datetime.now(UTC),
        actor_user_id=None,
        actor_username="jane.personal",
        action="GET /v1/test-direct-pool",
        resource="/v1/test-direct-pool?surname=Personalname",
        client_address="10.9.8.7",
        user_agent="agent-personal-42",
        idempotency_key=None,
        member_numbers=None,
        outcome_status=200,
        outcome="ok",
    )
    return record.model_copy(update=changes).model_dump()


async def audit_entries(sessions: Sessions, *entry_ids: uuid.UUID) -> int:
    """How many of these entries audit_log holds, read through the app's engine."""
    async with sessions() as session:
        count = await session.scalar(
            select(func.count()).select_from(AuditEntry).where(AuditEntry.entry_id.in_(entry_ids))
        )
    return int(count or 0)


async def pid_of(pool: DirectPool) -> int:
    row = await pool.one(BACKEND_PID, {})
    assert row is not None
    return int(row[0])


# --- on the test database -----------------------------------------------------------------------


async def test_one_returns_the_first_row_or_none(settings: Settings, sessions: Sessions) -> None:
    teller = await new_staff(sessions, settings, "teller")
    async with direct_pool(settings.sqlalchemy_url, size=2) as pool:
        assert await pool.one(_STATUS, {"user_id": teller.id}) == (
            teller.username,
            True,
            ["teller"],
        )
        assert await pool.one(_STATUS, {"user_id": -1}) is None


async def test_values_bound_in_the_statement_are_sent_and_expanding_ones_refused(
    settings: Settings, sessions: Sessions
) -> None:
    teller = await new_staff(sessions, settings, "teller")
    by_literal = select(StaffUser.username).where(StaffUser.id == teller.id)
    with_default = select(StaffUser.username).where(
        StaffUser.id == bindparam("user_id", value=teller.id)
    )
    async with direct_pool(settings.sqlalchemy_url, size=1) as pool:
        assert await pool.one(by_literal, {}) == (teller.username,)
        assert await pool.one(with_default, {}) == (teller.username,)
        assert await pool.one(with_default, {"user_id": -1}) is None  # the caller's value wins
        with pytest.raises(ValueError, match="expanding"):
            await pool.one(select(StaffUser.username).where(StaffUser.id.in_([teller.id])), {})


async def test_a_unique_violation_is_an_integrity_error_without_the_parameters(
    settings: Settings, sessions: Sessions
) -> None:
    row = audit_row()
    async with direct_pool(settings.sqlalchemy_url, size=1) as pool:
        before = await pid_of(pool)
        with pytest.raises(IntegrityError) as raised:
            await pool.execute(PLAIN_AUDIT_INSERT, row)
            await pool.execute(PLAIN_AUDIT_INSERT, row)
        exc = raised.value
        assert sqlstate(exc) == "23505"  # unique_violation
        assert isinstance(exc.orig, psycopg.errors.UniqueViolation)
        assert not db_unavailable(exc)
        message = str(exc)
        assert "INSERT INTO audit_log" in message
        # Postgres's own DETAIL names the duplicate key (entry_id); no other value may appear.
        for value in ("jane.personal", "Personalname", "agent-personal-42", "10.9.8.7"):
            assert value not in message
        assert "[parameters:" not in message
        # Nothing was wrong with the connection: the next statement runs on the same one.
        assert await pid_of(pool) == before
    assert await audit_entries(sessions, row["entry_id"]) == 1  # the first one stands


async def test_a_division_by_zero_is_a_data_error_and_the_connection_is_kept(
    settings: Settings,
) -> None:
    async with direct_pool(settings.sqlalchemy_url, size=1) as pool:
        before = await pid_of(pool)
        with pytest.raises(DataError) as raised:
            await pool.one(DIVIDE, {"divisor": 0})
        assert sqlstate(raised.value) == "22012"  # division_by_zero
        assert not db_unavailable(raised.value)
        assert not raised.value.connection_invalidated
        assert await pool.one(DIVIDE, {"divisor": 1}) == (1,)
        assert await pid_of(pool) == before


async def write_entries_rows(pool: DirectPool, rows: list[dict[str, Any]]) -> None:
    """audit_trail.write_entries, the statement the API batches its audit rows with."""
    await write_entries(pool, [AuditRecord.model_validate(row) for row in rows])


async def test_a_batch_of_audit_entries_is_one_statement(
    settings: Settings, sessions: Sessions
) -> None:
    first = audit_row(member_numbers=["M000001", "M000002"], idempotency_key="k-1")
    too_long = audit_row(outcome="x" * 65)  # outcome is varchar(64)
    async with direct_pool(settings.sqlalchemy_url, size=1) as pool:
        with pytest.raises(DataError) as raised:
            await write_entries_rows(pool, [first, too_long])
        assert sqlstate(raised.value) == "22001"  # string_data_right_truncation
        assert await audit_entries(sessions, first["entry_id"], too_long["entry_id"]) == 0

        # The same entry alone is written, and once only when written again (ON CONFLICT).
        await write_entries_rows(pool, [first])
        await write_entries_rows(pool, [first])
        assert await audit_entries(sessions, first["entry_id"]) == 1
    async with sessions() as session:
        stored = await session.scalar(
            select(AuditEntry).where(AuditEntry.entry_id == first["entry_id"])
        )
    assert stored is not None
    assert {name: getattr(stored, name) for name in first} | {
        "client_address": str(stored.client_address)
    } == first  # every field as it was sent, the member numbers an array


async def test_a_full_pool_times_out(settings: Settings) -> None:
    async with direct_pool(settings.sqlalchemy_url, size=1, wait=0.2) as pool:
        holder = asyncio.create_task(pool.one(SLEEP_THEN_PID, {"seconds": 1}))

        async def held() -> bool:
            return pool._slots.locked()

        await until(held, "the first statement to take the connection")
        with pytest.raises(PoolTimeout) as raised:
            await pool.one(BACKEND_PID, {})
        assert db_unavailable(raised.value)
        assert not holder.done()  # the connection was busy, nothing else failed
        held_by = await holder
        assert held_by is not None
        # The timed-out wait took no slot: the one connection serves the next statement.
        assert await pid_of(pool) == held_by[0]


async def test_a_cancelled_statement_does_not_leave_its_connection_in_the_pool(
    settings: Settings, sessions: Sessions
) -> None:
    async with direct_pool(settings.sqlalchemy_url, size=1, wait=PROMPTLY) as pool:
        first = await pid_of(pool)
        sleeper = asyncio.create_task(pool.one(SLEEP_THEN_PID, {"seconds": 5}))

        async def sleeping() -> bool:
            async with sessions() as session:
                state = await session.scalar(
                    text(
                        "SELECT state FROM pg_stat_activity "
                        "WHERE pid = :pid AND query LIKE '%pg_sleep%'"
                    ),
                    {"pid": first},
                )
            return bool(state == "active")

        await until(sleeping, "the pooled connection to run pg_sleep")
        started = time.monotonic()
        sleeper.cancel()
        with pytest.raises(asyncio.CancelledError):
            await sleeper
        after = await pid_of(pool)
        assert time.monotonic() - started < PROMPTLY  # did not wait out the sleep
        assert after != first  # a new connection, not the one the cancel interrupted
        assert await pool.one(DIVIDE, {"divisor": 1}) == (1,)


def test_conninfo_is_a_libpq_url_with_the_password() -> None:
    assert (
        conninfo("postgresql+psycopg://app:s3cret@db.internal:6543/bankflow")
        == "postgresql://app:s3cret@db.internal:6543/bankflow"
    )
    odd = conninfo("postgresql+psycopg://app:p%40ss%3Aw%2Frd@127.0.0.1:5432/bank?sslmode=require")
    assert conninfo_to_dict(odd) == {
        "user": "app",
        "password": "p@ss:w/rd",
        "host": "127.0.0.1",
        "port": "5432",
        "dbname": "bank",
        "sslmode": "require",
    }


# --- on a private Postgres, stopped and started ---------------------------------------------------


def private_url(pg: PrivatePostgres) -> str:
    """The private cluster's own `postgres` database: no migrations needed for these statements."""
    return with_database(pg.server_url, "postgres")


async def test_a_postgres_restart_costs_no_statement(private_pg: PrivatePostgres) -> None:  # noqa: F811
    async with direct_pool(private_url(private_pg), size=2) as pool:
        rows = await asyncio.gather(
            pool.one(SLEEP_THEN_PID, {"seconds": 0.2}), pool.one(SLEEP_THEN_PID, {"seconds": 0.2})
        )
        old_pids = {row[0] for row in rows if row is not None}
        assert len(old_pids) == 2
        stale = list(pool._idle)
        assert len(stale) == 2

        await asyncio.to_thread(private_pg.stop)
        await asyncio.to_thread(private_pg.start)

        new_pid = await pid_of(pool)  # no error: retried once on a new connection
        assert new_pid not in old_pids
        # Both stale connections were dropped, not only the one that failed.
        await asyncio.sleep(0)  # the closes scheduled by the pool
        assert all(conn.closed for conn in stale)
        assert len(pool._idle) == 1 and pool._idle[0] not in stale
        assert await pid_of(pool) == new_pid


async def test_postgres_down_fails_at_once_as_unavailable(private_pg: PrivatePostgres) -> None:  # noqa: F811
    url = private_url(private_pg)
    async with direct_pool(url, size=1) as pooled, direct_pool(url, size=1) as fresh:
        await pid_of(pooled)  # one idle connection, which the stop breaks
        await asyncio.to_thread(private_pg.stop)
        try:
            for pool in (pooled, fresh):
                started = time.monotonic()
                with pytest.raises(OperationalError) as raised:
                    await pool.one(BACKEND_PID, {})
                assert time.monotonic() - started < PROMPTLY
                assert db_unavailable(raised.value)
        finally:
            await asyncio.to_thread(private_pg.start)
        # The failures held no slot: each one-connection pool works again.
        assert await pid_of(pooled) != await pid_of(fresh)


# --- pipeline: statements in a session's own transaction (the ledger engine's hot path) --------

ADVISORY_LOCK_THEN_SLEEP = text("SELECT pg_advisory_xact_lock(:key), pg_sleep(:seconds)")
TRY_ADVISORY_LOCK = text("SELECT pg_try_advisory_xact_lock(:key)")
COUNT_AUDIT = (
    select(func.count()).select_from(AuditEntry).where(AuditEntry.entry_id == bindparam("entry_id"))
)


async def test_a_pipeline_runs_in_order_inside_the_sessions_transaction(
    sessions: Sessions,
) -> None:
    kept, undone = audit_row(), audit_row()
    async with sessions() as session, session.begin():
        pid = await session.scalar(BACKEND_PID)
        rows = await pipeline(
            session,
            (PLAIN_AUDIT_INSERT, kept),
            (COUNT_AUDIT, {"entry_id": kept["entry_id"]}),  # sees the insert before it
            (BACKEND_PID, {}),
        )
        assert rows == [[], [(1,)], [(pid,)]]  # one connection: the session's own
    assert await audit_entries(sessions, kept["entry_id"]) == 1

    with pytest.raises(RuntimeError):
        async with sessions() as session, session.begin():
            await pipeline(session, (PLAIN_AUDIT_INSERT, [undone]))
            raise RuntimeError("the caller's transaction rolls back")
    assert await audit_entries(sessions, undone["entry_id"]) == 0


async def test_a_failing_statement_aborts_the_pipeline_as_an_integrity_error(
    sessions: Sessions,
) -> None:
    first, after = audit_row(), audit_row()
    with pytest.raises(IntegrityError) as raised:
        async with sessions() as session, session.begin():
            await pipeline(
                session,
                (PLAIN_AUDIT_INSERT, [first, first]),  # a unique violation on the second
                (PLAIN_AUDIT_INSERT, after),  # never runs
            )
    exc = raised.value
    assert sqlstate(exc) == "23505"
    assert not exc.connection_invalidated and not db_unavailable(exc)
    message = str(exc)
    for value in ("jane.personal", "Personalname", "agent-personal-42", "10.9.8.7"):
        assert value not in message
    assert "[parameters:" not in message
    assert await audit_entries(sessions, first["entry_id"], after["entry_id"]) == 0
    async with sessions() as session:  # the pooled connection left the pipeline cleanly
        assert await session.scalar(DIVIDE, {"divisor": 1}) == 1


async def test_a_cancelled_pipeline_releases_its_transaction_at_once(sessions: Sessions) -> None:
    key = int(uuid.uuid4().int % 2**62)

    async def hold_the_lock() -> None:
        async with sessions() as session, session.begin():
            await pipeline(session, (ADVISORY_LOCK_THEN_SLEEP, {"key": key, "seconds": 30}))

    async def lock_free() -> bool:
        async with sessions() as session, session.begin():
            return bool(await session.scalar(TRY_ADVISORY_LOCK, {"key": key}))

    holder = asyncio.create_task(hold_the_lock())

    async def held() -> bool:
        return not await lock_free()

    await until(held, "the pipeline to take the lock")
    started = time.monotonic()
    holder.cancel()
    with pytest.raises(asyncio.CancelledError):
        await holder
    await until(lock_free, "the cancelled pipeline's lock to go")
    assert time.monotonic() - started < PROMPTLY  # its backend did not sleep on with the lock


async def test_a_pipeline_on_a_terminated_backend_is_unavailable(sessions: Sessions) -> None:
    with pytest.raises(OperationalError) as raised:
        async with sessions() as session, session.begin():
            pid = await session.scalar(BACKEND_PID)
            async with sessions() as other:
                await other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            await pipeline(session, (DIVIDE, {"divisor": 1}))
    assert raised.value.connection_invalidated
    assert db_unavailable(raised.value)
    async with sessions() as session:  # the pool did not keep the dead connection
        assert await session.scalar(BACKEND_PID) != pid


# Fails with `state` on its first `failures` calls on this connection, then answers how many
# calls there were: a conflict Postgres raises, as a concurrent transaction would make it.
FLAKY = [
    text("CREATE TEMP SEQUENCE tries"),
    text(
        """
        CREATE FUNCTION pg_temp.flaky(failures int, state text) RETURNS bigint
        LANGUAGE plpgsql AS $$
        DECLARE n bigint := nextval('pg_temp.tries');
        BEGIN
            IF n <= failures THEN
                RAISE EXCEPTION 'conflict %', n USING ERRCODE = state;
            END IF;
            RETURN n;
        END $$
        """
    ),
]


@pytest.mark.parametrize("state", ["40001", "40P01"])  # serialization failure, deadlock
async def test_a_statement_alone_runs_again_after_a_conflict(
    settings: Settings, state: str
) -> None:
    """fetch on a DirectPool (the ledger's journal alone): the failed statement did nothing, so
    it runs again; any other error is the caller's at once, and so is a conflict that outlasts
    the attempts."""
    async with direct_pool(settings.sqlalchemy_url, size=1) as pool:  # one connection: one sequence
        for statement in FLAKY:
            await pool.execute(statement, {})
        flaky = text("SELECT pg_temp.flaky(:failures, :state)")
        assert await fetch(pool, flaky, {"failures": 2, "state": state}) == [(3,)]
        with pytest.raises(DataError) as other:
            await fetch(pool, flaky, {"failures": 4, "state": "22012"})
        assert sqlstate(other.value) == "22012"  # tried once: the sequence moved by one
        with pytest.raises(OperationalError) as lasting:
            await retry_conflicts(
                lambda: pool.rows(flaky, {"failures": 100, "state": state}), attempts=3
            )
        assert sqlstate(lasting.value) == state
        assert await pool.one(text("SELECT currval('pg_temp.tries')"), {}) == (7,)
