"""Idempotency-Key: replay, conflict, in progress, failures released, claims left by a crash."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import timedelta

import pytest
from httpx import AsyncClient
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from activities import idempotency as claims
from activities.db import in_transaction
from activities.direct import DirectPool
from activities.idempotency import Answered, Claimed, KeyScope, Refused
from activities.tables import IdempotencyRecord, LedgerAccount, Member
from api.app import create_app
from api.idempotency import request_hash
from schemas.settings import Settings
from tests.api.conftest import Staff, make_client, new_staff
from tests.api.test_members_accounts import member_body

Idem = Callable[[], dict[str, str]]
# What a request that died after acting leaves: its claim, unanswered, the lease still running.
LEAVE_AS_CRASHED = text(
    "UPDATE idempotency_records SET status_code = NULL, response_body = NULL, "
    "owner = gen_random_uuid(), lease_expires_at = now() + make_interval(secs => :lease) "
    "WHERE user_id = :user_id AND key = :key"
)


async def leave_as_crashed(
    sessions: async_sessionmaker[AsyncSession], user_id: int, key: str, lease: float
) -> int:
    """Turn the answered records of this user's key back into claims of dead requests."""
    async with sessions() as session, session.begin():
        done = await session.execute(
            LEAVE_AS_CRASHED, {"user_id": user_id, "key": key, "lease": lease}
        )
        return int(done.rowcount)  # type: ignore[attr-defined]


async def held_elsewhere(
    sessions: async_sessionmaker[AsyncSession], who: Staff, key: str, content: bytes
) -> None:
    """A member registration under `key` running in another, live, API process."""
    async with sessions() as session, session.begin():
        session.add(
            IdempotencyRecord(
                user_id=who.id,
                method="POST",
                route="/v1/members",
                key=key,
                request_hash=request_hash("POST", "/v1/members", b"", content),
                owner=uuid.uuid4(),
                lease_expires_at=func.now() + timedelta(minutes=5),
            )
        )


@pytest.fixture
async def short_lease(api_settings: Settings) -> AsyncIterator[AsyncClient]:
    """The app with a one-second lease, so a crashed claim lapses while a retry waits."""
    app = create_app(
        api_settings.model_copy(
            update={
                "idempotency_lease": timedelta(seconds=1),
                "idempotency_wait": timedelta(seconds=10),
            }
        )
    )
    async with app.router.lifespan_context(app), make_client(app) as client:
        yield client


async def members_named(sessions: async_sessionmaker[AsyncSession], last_name: str) -> int:
    async with sessions() as session:
        return int(
            await session.scalar(
                select(func.count()).select_from(Member).where(Member.last_name == last_name)
            )
            or 0
        )


async def test_same_key_same_body_replays_one_member(
    client: AsyncClient,
    staff: dict[str, Staff],
    idem: Idem,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    headers = staff["teller"].headers | idem()
    body = member_body()
    first = await client.post("/v1/members", json=body, headers=headers)
    second = await client.post("/v1/members", json=body, headers=headers)
    assert first.status_code == second.status_code == 201
    assert second.json() == first.json()
    assert "Idempotent-Replayed" not in first.headers
    assert second.headers["Idempotent-Replayed"] == "true"
    assert await members_named(sessions, body["last_name"]) == 1

    conflict = await client.post("/v1/members", json=member_body(), headers=headers)
    assert conflict.status_code == 409 and conflict.json()["error"] == "IdempotencyKeyConflict"


async def test_keys_are_per_user(
    client: AsyncClient,
    staff: dict[str, Staff],
    idem: Idem,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    key = idem()
    body = member_body()
    a = await client.post("/v1/members", json=body, headers=staff["teller"].headers | key)
    b = await client.post("/v1/members", json=body, headers=staff["branch_manager"].headers | key)
    assert a.status_code == b.status_code == 201 and a.json()["id"] != b.json()["id"]
    assert await members_named(sessions, body["last_name"]) == 2


async def test_concurrent_duplicates_create_one(
    client: AsyncClient,
    staff: dict[str, Staff],
    idem: Idem,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    headers = staff["teller"].headers | idem()
    body = member_body()
    answers = await asyncio.gather(
        *(client.post("/v1/members", json=body, headers=headers) for _ in range(5))
    )
    statuses = sorted(r.status_code for r in answers)
    assert statuses.count(201) >= 1 and set(statuses) <= {201, 409}
    for r in answers:
        if r.status_code == 409:
            assert r.json()["error"] == "IdempotencyKeyInProgress"
    assert await members_named(sessions, body["last_name"]) == 1


async def test_a_running_request_makes_its_retry_wait_for_the_answer(
    client: AsyncClient, staff: dict[str, Staff], sessions: async_sessionmaker[AsyncSession]
) -> None:
    """The first request runs in another API process: its retry waits and replays its answer."""
    key = uuid.uuid4().hex
    body = member_body()
    content = client.build_request("POST", "/v1/members", json=body).content
    teller = staff["teller"]
    where = (IdempotencyRecord.user_id == teller.id, IdempotencyRecord.key == key)
    await held_elsewhere(sessions, teller, key, content)
    retry = asyncio.create_task(
        client.post("/v1/members", json=body, headers=teller.headers | {"Idempotency-Key": key})
    )
    await asyncio.sleep(0.3)  # the retry is waiting by now; the first request answers
    async with sessions() as session, session.begin():
        record = await session.scalar(select(IdempotencyRecord).where(*where))
        assert record is not None and record.status_code is None
        record.status_code, record.response_body = 201, {"member_number": "M0000001"}
    r = await retry
    assert r.status_code == 201 and r.json() == {"member_number": "M0000001"}
    assert r.headers["Idempotent-Replayed"] == "true"
    assert await members_named(sessions, body["last_name"]) == 0


async def test_a_request_still_running_after_the_wait_is_409_with_retry_after(
    api_settings: Settings, staff: dict[str, Staff], sessions: async_sessionmaker[AsyncSession]
) -> None:
    key = uuid.uuid4().hex
    body = member_body()
    teller = staff["teller"]
    app = create_app(api_settings.model_copy(update={"idempotency_wait": timedelta(0)}))
    async with app.router.lifespan_context(app), make_client(app) as c:
        content = c.build_request("POST", "/v1/members", json=body).content
        await held_elsewhere(sessions, teller, key, content)
        r = await c.post(
            "/v1/members", json=body, headers=teller.headers | {"Idempotency-Key": key}
        )
    assert r.status_code == 409 and r.json()["error"] == "IdempotencyKeyInProgress"
    assert r.headers["Retry-After"] == "1"
    assert await members_named(sessions, body["last_name"]) == 0


async def test_a_claim_left_by_a_crash_after_creating_does_not_block_or_duplicate(
    short_lease: AsyncClient,
    staff: dict[str, Staff],
    idem: Idem,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """The API died after creating the member and its account, before keeping the answers:
    retries wait for the lapsed claims, run again, and find what was created."""
    teller = staff["teller"]
    headers = teller.headers | idem()
    key = headers["Idempotency-Key"]
    body = member_body()
    first = await short_lease.post("/v1/members", json=body, headers=headers)
    assert first.status_code == 201, first.text
    number = first.json()["member_number"]
    path = f"/v1/members/{number}/accounts"
    opened = await short_lease.post(path, json={"currency": "USD"}, headers=headers)
    assert opened.status_code == 201, opened.text
    assert await leave_as_crashed(sessions, teller.id, key, lease=1.0) == 2  # one per route

    again = await short_lease.post("/v1/members", json=body, headers=headers)
    assert again.status_code == 201, again.text
    assert "Idempotent-Replayed" not in again.headers  # it ran again, and found the member
    assert again.json() == first.json()
    assert await members_named(sessions, body["last_name"]) == 1
    reopened = await short_lease.post(path, json={"currency": "USD"}, headers=headers)
    assert reopened.status_code == 201 and reopened.json() == opened.json()
    async with sessions() as session:
        accounts = await session.scalar(
            select(func.count())
            .select_from(LedgerAccount)
            .join(Member, Member.id == LedgerAccount.member_id)
            .where(Member.member_number == number)
        )
    assert accounts == 1


async def test_validation_failure_releases_the_key(
    client: AsyncClient,
    staff: dict[str, Staff],
    idem: Idem,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    headers = staff["teller"].headers | idem()
    bad = await client.post("/v1/members", json=member_body(first_name=""), headers=headers)
    assert bad.status_code == 422
    fixed = await client.post("/v1/members", json=member_body(), headers=headers)
    assert fixed.status_code == 201, fixed.text


async def test_business_failure_is_stored_and_replayed(
    client: AsyncClient, staff: dict[str, Staff], idem: Idem
) -> None:
    headers = staff["teller"].headers | idem()
    body = member_body(branch_code="NOWHERE")
    first = await client.post("/v1/members", json=body, headers=headers)
    again = await client.post("/v1/members", json=body, headers=headers)
    assert first.status_code == again.status_code == 404
    assert again.json() == first.json() and again.headers["Idempotent-Replayed"] == "true"


# --- the claim's statements, each run twice as the DirectPool may run one -------------------------


async def record_of(
    sessions: async_sessionmaker[AsyncSession], scope: KeyScope
) -> tuple[object, ...] | None:
    async with sessions() as session:
        row = (
            await session.execute(
                select(
                    IdempotencyRecord.owner,
                    IdempotencyRecord.status_code,
                    IdempotencyRecord.response_body,
                ).where(*scope.where())
            )
        ).first()
    return None if row is None else tuple(row)


async def test_each_claim_statement_run_twice_changes_nothing_more(
    settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """A claim whose insert ran twice (its first reply lost) is still its owner's, and a second
    store or release leaves the row as the first did; another owner's store changes nothing."""
    who = await new_staff(sessions, settings, "teller")
    scope = KeyScope(who.id, "POST", "/v1/test-claims", uuid.uuid4().hex)
    lease, digest, owner = timedelta(seconds=30), "d" * 64, uuid.uuid4()
    pool = DirectPool(settings.sqlalchemy_url, size=2)

    async def contend(owner: uuid.UUID, digest: str = digest) -> object:
        return await in_transaction(
            sessions, lambda s: claims.contend(s, scope, digest, lease, owner)
        )

    try:
        assert await claims.try_claim(pool, scope, digest, lease, owner) == Claimed(owner)
        assert await claims.try_claim(pool, scope, digest, lease, owner) is None
        assert await contend(owner) == Claimed(owner)
        assert await contend(uuid.uuid4()) is Refused.BUSY
        assert await contend(uuid.uuid4(), "e" * 64) is Refused.CONFLICT

        await claims.store(pool, scope, uuid.uuid4(), 201, {"by": "someone else"})
        assert await record_of(sessions, scope) == (owner, None, None)
        for _ in range(2):
            await claims.store(pool, scope, owner, 201, {"member_number": "M1"})
            assert await record_of(sessions, scope) == (owner, 201, {"member_number": "M1"})
        assert await contend(uuid.uuid4()) == Answered(201, {"member_number": "M1"})
        await claims.renew(pool, scope, owner, lease)  # answered: nothing left to renew
        assert await record_of(sessions, scope) == (owner, 201, {"member_number": "M1"})

        for _ in range(2):
            await claims.release(pool, scope, owner)
            assert await record_of(sessions, scope) is None
        assert await contend(owner) is Refused.BUSY  # released: the next try claims it afresh
    finally:
        await pool.close()
