"""in_transaction on an engine without pre-ping (the worker's): a pooled connection found gone
while the transaction runs is replaced and the transaction run again, once; a connection lost at
the commit is never retried (whether it committed is unknown)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from activities.db import db_unavailable, in_transaction, make_engine, make_sessionmaker
from schemas.settings import Settings

Sessions = async_sessionmaker[AsyncSession]
PID = text("SELECT pg_backend_pid()")
TERMINATE = text("SELECT pg_terminate_backend(:pid)")
# A row a transaction leaves behind only if it committed (the audit table takes any text).
MARK = text(
    "INSERT INTO audit_log (entry_id, at, action, resource, outcome_status, outcome) "
    "VALUES (:id, now(), 'TEST reconnect', '/test', 200, 'ok')"
)
MARKED = text("SELECT count(*) FROM audit_log WHERE entry_id = :id")


@pytest.fixture
async def no_ping(settings: Settings) -> AsyncIterator[Sessions]:
    engine = make_engine(settings, pool_size=1, pre_ping=False)
    try:
        yield make_sessionmaker(engine)
    finally:
        await engine.dispose()


async def terminate(sessions: Sessions, pid: int) -> None:
    async with sessions() as other:
        assert await other.scalar(TERMINATE, {"pid": pid})


async def test_a_connection_gone_from_the_pool_is_replaced_and_the_work_runs_again(
    no_ping: Sessions, sessions: Sessions
) -> None:
    stale = await in_transaction(no_ping, lambda s: s.scalar(PID))
    await terminate(sessions, stale)  # what a Postgres restart does to the pooled connection
    entry, pids = uuid.uuid4(), []

    async def work(session: AsyncSession) -> None:
        await session.execute(MARK, {"id": entry})
        pids.append(await session.scalar(PID))

    await in_transaction(no_ping, work)
    assert len(pids) == 1 and pids[0] != stale  # the first try failed at its first statement
    async with sessions() as session:
        assert await session.scalar(MARKED, {"id": entry}) == 1


async def test_the_work_runs_again_only_once(no_ping: Sessions, sessions: Sessions) -> None:
    tries = []

    async def work(session: AsyncSession) -> None:
        pid = await session.scalar(PID)
        tries.append(pid)
        await terminate(sessions, pid)
        await session.execute(PID)

    with pytest.raises(DBAPIError) as raised:
        await in_transaction(no_ping, work)
    assert len(tries) == 2 and tries[0] != tries[1]
    assert raised.value.connection_invalidated and db_unavailable(raised.value)


async def test_a_connection_lost_at_the_commit_is_not_run_again(
    no_ping: Sessions, sessions: Sessions
) -> None:
    entry, tries = uuid.uuid4(), []

    async def work(session: AsyncSession) -> None:
        await session.execute(MARK, {"id": entry})
        pid = await session.scalar(PID)
        tries.append(pid)
        await terminate(sessions, pid)  # after the last statement: the COMMIT meets it

    with pytest.raises(DBAPIError) as raised:
        await in_transaction(no_ping, work)
    assert len(tries) == 1
    assert raised.value.connection_invalidated
    async with sessions() as session:
        assert await session.scalar(MARKED, {"id": entry}) == 0
