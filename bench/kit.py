"""What the benches share: the real workers on a queue of their own, a member account, and a
closed loop of calls that prints its rate and the CPU each process spent per call."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from datetime import date

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client

from activities.accounts import create_member, open_account
from activities.db import in_transaction
from activities.direct import DirectPool
from bench.cpu import children_seconds, named_seconds
from schemas.members import AccountOpen, MemberCreate
from schemas.settings import Settings
from worker import build_workers

AMOUNT = 1_00  # 1.00 USD per journal and per movement
Sessions = async_sessionmaker[AsyncSession]


async def run_workers(
    stack: AsyncExitStack, client: Client, settings: Settings, sessions: Sessions, queue: str
) -> None:
    """worker.py's workers on `queue` (interactive) and `queue`-b (batch), with a DirectPool of
    their own, until `stack` closes."""
    direct = await stack.enter_async_context(DirectPool(settings.sqlalchemy_url, size=10))
    for worker in build_workers(
        client, settings, sessions, direct, interactive_queue=queue, batch_queue=f"{queue}-b"
    ):
        await stack.enter_async_context(worker)


async def new_account(sessions: Sessions) -> int:
    async def work(session: AsyncSession) -> int:
        member = await create_member(
            session,
            MemberCreate(
                first_name="Bench",
                last_name=uuid.uuid4().hex[:8],
                date_of_birth=date(1990, 1, 1),
                branch_code="HQ",
            ),
        )
        return (await open_account(session, member, AccountOpen(currency="USD"))).id

    return await in_transaction(sessions, work)


async def closed_loop(
    label: str, total: int, tasks: int, one: Callable[[int, int], Awaitable[None]]
) -> float:
    """Run one(task, i) `total` times from `tasks` tasks, each waiting for its previous call;
    print and return calls per second of wall time, with the CPU each process spent per call:
    this one (client, engine, worker), the Temporal dev server it started, Postgres."""

    async def run(task: int) -> None:
        for i in range(task, total, tasks):
            await one(task, i)

    def meters() -> tuple[float, ...]:
        return time.perf_counter(), time.process_time(), children_seconds(os.getpid()), \
            named_seconds("postgres")  # fmt: skip

    before = meters()
    await asyncio.gather(*(run(t) for t in range(tasks)))
    wall, cpu, server, postgres = (b - a for a, b in zip(before, meters(), strict=True))
    if label:
        per = [f"{1000 * x / total:.1f}" for x in (cpu, server, postgres)]
        print(
            f"{label}: {total} in {wall:.1f}s, {tasks} in flight: {total / wall:.1f}/s"
            f" (ms CPU each: this process {per[0]}, Temporal server {per[1]}, Postgres {per[2]})",
            flush=True,
        )
    return total / wall
