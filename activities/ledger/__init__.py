"""Ledger activities: thin Temporal entry points over the ledger engine, one transaction each.
A journal alone is one statement on the DirectPool, its own transaction (activities/ledger/engine).

Business failures (insufficient funds, conflicts) become non-retryable ApplicationErrors typed
with their ErrorCode; database and network failures propagate so Temporal retries them, which is
safe because every call carries its caller-chosen journal or hold id.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities.db import in_transaction
from activities.direct import DirectPool
from activities.errors import transaction, typed
from activities.ledger import engine as ledger_engine
from activities.ledger import holds as ledger_holds
from activities.ledger.verify import verify_ledger
from schemas.ledger import (
    HoldRequest,
    HoldResult,
    JournalRequest,
    JournalResult,
    PostHoldRequest,
    ReversalRequest,
    VerifyReport,
    VoidHoldRequest,
)

T = TypeVar("T")


class LedgerActivities:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], direct: DirectPool) -> None:
        self.sessions = sessions
        self.direct = direct

    async def _run(self, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
        return await transaction(self.sessions, work)

    @activity.defn(name="post_journal")
    async def post_journal(self, req: JournalRequest) -> JournalResult:
        return await typed(ledger_engine.post_journal(self.direct, req))

    @activity.defn(name="place_hold")
    async def place_hold(self, req: HoldRequest) -> HoldResult:
        return await self._run(lambda s: ledger_holds.place_hold(s, req))

    @activity.defn(name="post_hold")
    async def post_hold(self, req: PostHoldRequest) -> JournalResult:
        return await self._run(lambda s: ledger_holds.post_hold(s, req))

    @activity.defn(name="void_hold")
    async def void_hold(self, req: VoidHoldRequest) -> HoldResult:
        return await self._run(lambda s: ledger_holds.void_hold(s, req))

    @activity.defn(name="reverse_journal")
    async def reverse_journal(self, req: ReversalRequest) -> JournalResult:
        return await self._run(lambda s: ledger_engine.reverse_journal(s, req))

    @activity.defn(name="verify_ledger")
    async def verify_ledger(self) -> VerifyReport:
        return await in_transaction(self.sessions, verify_ledger)

    def all(self) -> list[Callable[..., Awaitable[object]]]:
        return [
            self.post_journal,
            self.place_hold,
            self.post_hold,
            self.void_hold,
            self.reverse_journal,
            self.verify_ledger,
        ]
