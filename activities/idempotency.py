"""Idempotency-Key claims in `idempotency_records`: the SQL behind `api.idempotency`.

A key is scoped per (user, method, route template). The first request claims it with a fresh
`owner` and a lease in database time (so API processes need no common clock); while it runs it
renews the lease; when it is done it stores its answer or releases the key. A retry finding the
lease lapsed takes the claim over under a new owner: from then on only the new owner's renewals
and answer count.

Every POST with a key makes at least two of these statements, so the common ones (the claim of
a fresh key, renewing, storing, releasing) are single autocommit statements on the API's
`DirectPool`, which may run one twice: each is keyed by the claim's owner, so a second run
changes nothing the first did not. Only a key already in the table takes a transaction
(`contend`, in its caller's), to decide under the row's lock.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from psycopg.types.json import Jsonb
from sqlalchemy import ColumnElement, Interval, bindparam, delete, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from activities.direct import DirectPool, binds
from activities.tables import IdempotencyRecord as R

_LEASE = func.now() + bindparam("lease", type_=Interval())
_KEY = (
    R.user_id == bindparam("user_id"),
    R.method == bindparam("method"),
    R.route == bindparam("route"),
    R.key == bindparam("key"),
)
_OWNER = R.owner == bindparam("owner")
# ON CONFLICT DO NOTHING waits for a concurrent claim of the same key to commit, so exactly one
# of two racing requests owns the key.
CLAIM = (
    insert(R)
    .values(
        binds("user_id", "method", "route", "key", "owner", request_hash="digest")
        | {"lease_expires_at": _LEASE}
    )
    .on_conflict_do_nothing(index_elements=["user_id", "method", "route", "key"])
    .returning(R.key)
)
RENEW = update(R).where(*_KEY, _OWNER, R.status_code.is_(None)).values(lease_expires_at=_LEASE)
STORE = (
    update(R)
    .where(*_KEY, _OWNER)
    .values(status_code=bindparam("status"), response_body=bindparam("body"))
)
RELEASE = delete(R).where(*_KEY, _OWNER)


@dataclass(frozen=True)
class KeyScope:
    user_id: int
    method: str
    route: str  # the route template, not the concrete path
    key: str

    def params(self, owner: uuid.UUID) -> dict[str, Any]:
        """The values of the key and its owner for the module's statements."""
        return {
            "user_id": self.user_id,
            "method": self.method,
            "route": self.route,
            "key": self.key,
            "owner": owner,
        }

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
    db: DirectPool, scope: KeyScope, digest: str, lease: timedelta, owner: uuid.UUID
) -> Claimed | None:
    """Claim a key nobody holds for `owner`; None when the key is in the table (`contend`)."""
    params = {**scope.params(owner), "digest": digest, "lease": lease}
    return Claimed(owner) if await db.one(CLAIM, params) is not None else None


async def contend(
    session: AsyncSession, scope: KeyScope, digest: str, lease: timedelta, owner: uuid.UUID
) -> Claimed | Answered | Refused:
    """For a key already in the table: its stored answer, a conflict, busy, or the claim when
    its lease lapsed (or `owner` holds it already: `try_claim`'s insert ran twice)."""
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
    if record.owner == owner:
        return Claimed(owner)
    if not lapsed:
        return Refused.BUSY
    await session.execute(
        update(R).where(*scope.where()).values(owner=owner, lease_expires_at=func.now() + lease)
    )
    return Claimed(owner)


async def renew(db: DirectPool, scope: KeyScope, owner: uuid.UUID, lease: timedelta) -> None:
    await db.execute(RENEW, {**scope.params(owner), "lease": lease})


async def store(
    db: DirectPool, scope: KeyScope, owner: uuid.UUID, status_code: int, body: Any
) -> None:
    stored = None if body is None else Jsonb(body)
    await db.execute(STORE, {**scope.params(owner), "status": status_code, "body": stored})


async def release(db: DirectPool, scope: KeyScope, owner: uuid.UUID) -> None:
    await db.execute(RELEASE, scope.params(owner))
