"""Token endpoint, whoami, token validity and the rate limit."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from activities.db import in_transaction
from activities.models import AuditEntry, StaffUser
from activities.staff import authenticate, create_staff_user
from api.auth import decode_token, issue_token
from schemas.errors import BankflowError, ErrorCode
from schemas.settings import Settings
from tests.api.conftest import PASSWORD, Staff, make_client, new_staff


async def test_token_then_me(client: AsyncClient, staff: dict[str, Staff]) -> None:
    teller = staff["teller"]
    r = await client.post(
        "/v1/auth/token", data={"username": teller.username, "password": PASSWORD}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"] == "bearer" and body["roles"] == ["teller"]
    me = await client.get(
        "/v1/auth/me", headers={"Authorization": f"Bearer {body['access_token']}"}
    )
    assert me.status_code == 200
    assert me.json() == {"id": teller.id, "username": teller.username, "roles": ["teller"]}


async def test_bad_password_is_401_and_audited(
    client: AsyncClient, staff: dict[str, Staff], sessions: async_sessionmaker[AsyncSession]
) -> None:
    user = staff["finance"]
    r = await client.post(
        "/v1/auth/token", data={"username": user.username, "password": "nope-nope"}
    )
    assert r.status_code == 401
    assert r.json() == {"error": "Unauthenticated", "detail": "wrong username or password"}
    unknown = await client.post("/v1/auth/token", data={"username": "ghost", "password": "x" * 9})
    assert unknown.status_code == 401 and unknown.json() == r.json()
    async with sessions() as session:
        rows = (
            await session.scalars(
                select(AuditEntry).where(AuditEntry.actor_username == user.username)
            )
        ).all()
    failed = [a for a in rows if a.outcome == "Unauthenticated"]
    assert len(failed) == 1
    assert failed[0].action == "POST /v1/auth/token"
    assert failed[0].outcome_status == 401 and failed[0].actor_user_id is None
    assert str(failed[0].client_address) == "10.0.0.7"


async def test_rate_limit(
    api_app: FastAPI, staff: dict[str, Staff], api_settings: Settings
) -> None:
    user = staff["ops"]
    limit = api_settings.token_rate_limit_per_minute
    async with make_client(api_app, "10.9.9.9") as c:
        for _ in range(limit):
            r = await c.post(
                "/v1/auth/token", data={"username": user.username, "password": "bad-pass"}
            )
            assert r.status_code == 401
        r = await c.post("/v1/auth/token", data={"username": user.username, "password": PASSWORD})
        assert r.status_code == 429
        assert r.json()["error"] == "RateLimited"
        assert 1 <= int(r.headers["Retry-After"]) <= 60
    # Another address is not limited by this one's attempts.
    async with make_client(api_app, "10.9.9.10") as other:
        r = await other.post(
            "/v1/auth/token", data={"username": user.username, "password": PASSWORD}
        )
        assert r.status_code == 200


async def test_missing_form_fields_is_422(client: AsyncClient) -> None:
    r = await client.post("/v1/auth/token", data={"username": "x"})
    assert r.status_code == 422
    assert r.json()["error"] == "ValidationError" and "password" in r.json()["detail"]


async def test_bad_tokens_are_401(
    client: AsyncClient, api_settings: Settings, staff: dict[str, Staff]
) -> None:
    expired = issue_token(
        api_settings.model_copy(update={"jwt_ttl": timedelta(seconds=-5)}),
        user_id=staff["admin"].id,
        username="admin",
        roles=["admin"],
    )
    forged = issue_token(
        api_settings.model_copy(
            update={"jwt_secret": SecretStr("another-secret-of-enough-length-x")}
        ),
        user_id=staff["admin"].id,
        username="admin",
        roles=["admin"],
    )
    for token, detail in ((expired, "expired"), (forged, "not valid"), ("garbage", "not valid")):
        r = await client.get("/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 401, token
        assert detail in r.json()["detail"]
        assert r.headers["WWW-Authenticate"] == "Bearer"
    r = await client.get("/v1/auth/me")
    assert r.status_code == 401 and r.json()["error"] == "Unauthenticated"


async def test_deactivated_user_is_refused_at_once(
    client: AsyncClient, sessions: async_sessionmaker[AsyncSession], api_settings: Settings
) -> None:
    user = await new_staff(sessions, api_settings, "teller")
    assert (await client.get("/v1/auth/me", headers=user.headers)).status_code == 200

    async def deactivate(session: AsyncSession) -> None:
        (await session.get_one(StaffUser, user.id)).is_active = False

    await in_transaction(sessions, deactivate)
    r = await client.get("/v1/auth/me", headers=user.headers)
    assert r.status_code == 401 and r.json()["detail"] == "this user is disabled"


async def test_staff_creation_rules(
    sessions: async_sessionmaker[AsyncSession], api_settings: Settings
) -> None:
    user = await new_staff(sessions, api_settings, "teller", "kyc_reviewer")
    principal = decode_token(api_settings, user.token)
    assert principal.roles == frozenset({"teller", "kyc_reviewer"})

    async def duplicate(session: AsyncSession) -> None:
        await create_staff_user(
            session, username=user.username, full_name="x", password=PASSWORD, roles=[]
        )

    with pytest.raises(BankflowError) as dup:
        await in_transaction(sessions, duplicate)
    assert dup.value.code == ErrorCode.DUPLICATE

    async def bad_role(session: AsyncSession) -> None:
        await create_staff_user(
            session, username="someone-new", full_name="x", password=PASSWORD, roles=["king"]
        )

    with pytest.raises(BankflowError) as bad:
        await in_transaction(sessions, bad_role)
    assert bad.value.code == ErrorCode.VALIDATION

    async with sessions() as session:
        assert await authenticate(session, user.username, "wrong-password") is None
        found = await authenticate(session, user.username, PASSWORD)
        assert found is not None and found.id == user.id
        stored = await session.get_one(StaffUser, user.id)
        assert (
            stored.password_hash.startswith("$argon2id$") and PASSWORD not in stored.password_hash
        )
