"""Idempotency-Key: replay, conflict, in progress, failures released."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

from httpx import AsyncClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from activities.models import IdempotencyRecord, Member
from api.idempotency import request_hash
from tests.api.conftest import Staff
from tests.api.test_members_accounts import member_body

Idem = Callable[[], dict[str, str]]


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


async def test_in_progress_key_is_409(
    client: AsyncClient, staff: dict[str, Staff], sessions: async_sessionmaker[AsyncSession]
) -> None:
    key = uuid.uuid4().hex
    body = member_body()
    content = client.build_request("POST", "/v1/members", json=body).content
    async with sessions() as session, session.begin():
        session.add(
            IdempotencyRecord(
                key=key,
                user_id=staff["teller"].id,
                request_hash=request_hash("POST", "/v1/members", b"", content),
            )
        )
    r = await client.post(
        "/v1/members", json=body, headers=staff["teller"].headers | {"Idempotency-Key": key}
    )
    assert r.status_code == 409 and r.json()["error"] == "IdempotencyKeyInProgress"
    assert await members_named(sessions, body["last_name"]) == 0


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
