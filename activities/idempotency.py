"""Idempotency-Key claims in `idempotency_records`: the SQL behind `api.idempotency`.

A key is scoped per (user, method, route template). The first request claims it with a fresh
`owner` and a lease in database time (so API processes need no common clock); while it runs it
renews the lease; when it is done it stores its answer or releases the key. A retry finding the
lease lapsed takes the claim over under a new owner: from then on only the new owner's renewals
and answer count. Each function runs in its caller's transaction.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import ColumnElement, delete, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from activities.tables import IdempotencyRecord as R


@dataclass(frozen=True)
class KeyScope:
    user_id: int
    method: str
    route: str  # the route template, not the concrete path
    key: str

    def where(self) -> tuple[ColumnElement[bool], ...]:
        return (
            R.user_id == self.user_id,
            R.method == self.method,
            R.route == self.route,
            R.key == self.key,
        )


@dataclass(frozen=True)
class Claimed:
    owner: uuid.UUID


@dataclass(frozen=True)
class Answered:
    status_code: int
    body: Any


class Refused(enum.Enum):
    CONFLICT = "another request was made under this key"
    BUSY = "the request under this key is still running"


async def try_claim(
    session: AsyncSession, scope: KeyScope, digest: str, lease: timedelta
) -> Claimed | Answered | Refused:
    """Claim the key for this request, or say why not: its stored answer, a conflict, busy."""
    owner = uuid.uuid4()
    # ON CONFLICT DO NOTHING waits for a concurrent claim of the same key to commit, so exactly
    # one of two racing requests owns the key.
    claimed = await session.scalar(
        insert(R)
        .values(
            user_id=scope.user_id,
            method=scope.method,
            route=scope.route,
            key=scope.key,
            request_hash=digest,
            owner=owner,
            lease_expires_at=func.now() + lease,
        )
        .on_conflict_do_nothing(index_elements=["user_id", "method", "route", "key"])
        .returning(R.key)
    )
    if claimed is not None:
        return Claimed(owner)
    row = (
        await session.execute(
            select(R, R.lease_expires_at < func.now()).where(*scope.where()).with_for_update()
        )
    ).first()
    if row is None:  # its owner released it a moment ago: the next try claims it
        return Refused.BUSY
    record, lapsed = row
    if record.request_hash != digest:
        return Refused.CONFLICT
    if record.status_code is not None:
        return Answered(record.status_code, record.response_body)
    if not lapsed:
        return Refused.BUSY
    await session.execute(
        update(R).where(*scope.where()).values(owner=owner, lease_expires_at=func.now() + lease)
    )
    return Claimed(owner)


async def renew(session: AsyncSession, scope: KeyScope, owner: uuid.UUID, lease: timedelta) -> None:
    await session.execute(
        update(R)
        .where(*scope.where(), R.owner == owner, R.status_code.is_(None))
        .values(lease_expires_at=func.now() + lease)
    )


async def store(
    session: AsyncSession, scope: KeyScope, owner: uuid.UUID, status_code: int, body: Any
) -> None:
    await session.execute(
        update(R)
        .where(*scope.where(), R.owner == owner)
        .values(status_code=status_code, response_body=body)
    )


async def release(session: AsyncSession, scope: KeyScope, owner: uuid.UUID) -> None:
    await session.execute(delete(R).where(*scope.where(), R.owner == owner))
