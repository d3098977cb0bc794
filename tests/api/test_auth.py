"""Token endpoint, whoami and token validity: key rings, roles read at each request."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from httpx import AsyncClient
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from activities.db import in_transaction
from activities.direct import DirectPool
from activities.staff import authenticate, create_staff_user, staff_status
from activities.tables import AuditEntry, StaffRole, StaffUser
from api.auth import TokenVerifier, decode_token, issue_token
from schemas.errors import BankflowError, ErrorCode
from schemas.keyring import KeyRing
from schemas.settings import Settings
from tests.api.conftest import PASSWORD, Staff, make_client, new_staff
from tests.api.limits_kit import running_app


def ring(*entries: str) -> KeyRing:
    return KeyRing.parse(",".join(entries))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_token_then_me(client: AsyncClient, staff: dict[str, Staff]) -> None:
    teller = staff["teller"]
    r = await client.post(
        "/v1/auth/token", data={"username": teller.username, "password": PASSWORD}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"] == "bearer" and body["roles"] == ["teller"]
    me = await client.get("/v1/auth/me", headers=bearer(body["access_token"]))
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


async def test_missing_form_fields_is_422(client: AsyncClient) -> None:
    r = await client.post("/v1/auth/token", data={"username": "x"})
    assert r.status_code == 422
    assert r.json()["error"] == "ValidationError" and "password" in r.json()["detail"]


async def test_bad_tokens_are_401(
    client: AsyncClient, api_settings: Settings, staff: dict[str, Staff]
) -> None:
    admin = staff["admin"].id
    expired = issue_token(
        api_settings.model_copy(update={"jwt_ttl": timedelta(seconds=-5)}), user_id=admin
    )
    other_key_same_kid = api_settings.model_copy(
        update={"jwt_keys": ring(KeyRing.generate_entry(api_settings.jwt_keys.newest.kid))}
    )
    forged = issue_token(other_key_same_kid, user_id=admin)
    unknown_kid = issue_token(
        api_settings.model_copy(update={"jwt_keys": ring(KeyRing.generate_entry("k-nobody"))}),
        user_id=admin,
    )
    no_kid = jwt.encode(
        {"iss": "bankflow", "sub": str(admin), "exp": datetime.now(UTC) + timedelta(hours=1)},
        api_settings.jwt_keys.newest.secret,
        algorithm="HS256",
    )
    cases = [
        (expired, "expired"),
        (forged, "not valid"),
        (unknown_kid, "not valid"),
        (no_kid, "not valid"),
        ("garbage", "not valid"),
    ]
    for token, detail in cases:
        r = await client.get("/v1/auth/me", headers=bearer(token))
        assert r.status_code == 401, token
        assert detail in r.json()["detail"]
        assert r.headers["WWW-Authenticate"] == "Bearer"
    r = await client.get("/v1/auth/me")
    assert r.status_code == 401 and r.json()["error"] == "Unauthenticated"


async def test_token_signed_with_the_former_default_secret_is_refused(
    client: AsyncClient, staff: dict[str, Staff]
) -> None:
    """The attack of issue 11: a teller's id signed with the constant that used to be the
    default, claiming branch_manager. It must name no user at all."""
    claims = {
        "iss": "bankflow",
        "sub": str(staff["teller"].id),
        "roles": ["branch_manager"],
        "exp": datetime.now(UTC) + timedelta(hours=1),
    }
    for headers in ({}, {"kid": "default"}, {"kid": "dev"}):
        token = jwt.encode(
            claims,
            "dev-only-secret-change-me-in-production-32b",
            algorithm="HS256",
            headers=headers,
        )
        r = await client.get("/v1/auth/me", headers=bearer(token))
        assert r.status_code == 401, (headers, r.text)


async def test_roles_in_a_validly_signed_token_grant_nothing(
    client: AsyncClient, api_settings: Settings, staff: dict[str, Staff]
) -> None:
    """The token names the user, not its powers: a roles claim, even signed with our key, is
    ignored in favour of the roles the database holds."""
    key = api_settings.jwt_keys.newest
    claims = {
        "iss": api_settings.jwt_issuer,
        "sub": str(staff["teller"].id),
        "roles": ["admin", "branch_manager"],
        "exp": datetime.now(UTC) + timedelta(hours=1),
    }
    token = jwt.encode(claims, key.secret, algorithm="HS256", headers={"kid": key.kid})
    me = await client.get("/v1/auth/me", headers=bearer(token))
    assert me.status_code == 200 and me.json()["roles"] == ["teller"]
    trial = await client.get("/v1/ledger/trial-balance?currency=USD", headers=bearer(token))
    assert trial.status_code == 403


async def test_tokens_carry_a_key_id_and_survive_a_rotation_until_the_key_is_dropped(
    api_settings: Settings, staff: dict[str, Staff]
) -> None:
    old, new = KeyRing.generate_entry("2026-01"), KeyRing.generate_entry("2026-07")
    before = api_settings.model_copy(update={"jwt_keys": ring(old)})
    rotated = api_settings.model_copy(update={"jwt_keys": ring(new, old)})
    retired = api_settings.model_copy(update={"jwt_keys": ring(new)})
    user = staff["teller"]

    async with running_app(before) as app, make_client(app) as c:
        r = await c.post("/v1/auth/token", data={"username": user.username, "password": PASSWORD})
        old_token = r.json()["access_token"]
    assert jwt.get_unverified_header(old_token)["kid"] == "2026-01"

    async with running_app(rotated) as app, make_client(app) as c:
        assert (await c.get("/v1/auth/me", headers=bearer(old_token))).status_code == 200
        r = await c.post("/v1/auth/token", data={"username": user.username, "password": PASSWORD})
        new_token = r.json()["access_token"]
        assert jwt.get_unverified_header(new_token)["kid"] == "2026-07"
        assert (await c.get("/v1/auth/me", headers=bearer(new_token))).status_code == 200

    async with running_app(retired) as app, make_client(app) as c:
        assert (await c.get("/v1/auth/me", headers=bearer(old_token))).status_code == 401
        assert (await c.get("/v1/auth/me", headers=bearer(new_token))).status_code == 200


async def test_a_removed_role_is_gone_at_once_and_an_added_one_applies_at_once(
    client: AsyncClient, sessions: async_sessionmaker[AsyncSession], api_settings: Settings
) -> None:
    user = await new_staff(sessions, api_settings, "teller", "finance")
    trial = "/v1/ledger/trial-balance?currency=USD"
    assert (await client.get(trial, headers=user.headers)).status_code == 200

    async def remove_finance(session: AsyncSession) -> None:
        await session.execute(
            delete(StaffRole).where(StaffRole.user_id == user.id, StaffRole.role == "finance")
        )

    await in_transaction(sessions, remove_finance)
    r = await client.get(trial, headers=user.headers)  # the same token
    assert r.status_code == 403 and r.json()["error"] == "Forbidden"
    assert (await client.get("/v1/auth/me", headers=user.headers)).json()["roles"] == ["teller"]

    async def add_ops(session: AsyncSession) -> None:
        session.add(StaffRole(user_id=user.id, role="ops"))

    await in_transaction(sessions, add_ops)
    me = await client.get("/v1/auth/me", headers=user.headers)
    assert me.json()["roles"] == ["ops", "teller"]


async def test_deactivated_or_deleted_user_is_refused_at_once(
    client: AsyncClient, sessions: async_sessionmaker[AsyncSession], api_settings: Settings
) -> None:
    user = await new_staff(sessions, api_settings, "teller")
    assert (await client.get("/v1/auth/me", headers=user.headers)).status_code == 200

    async def deactivate(session: AsyncSession) -> None:
        (await session.get_one(StaffUser, user.id)).is_active = False

    await in_transaction(sessions, deactivate)
    r = await client.get("/v1/auth/me", headers=user.headers)
    assert r.status_code == 401 and r.json()["detail"] == "this user is disabled"

    ghost = issue_token(api_settings, user_id=2_000_000_000)
    r = await client.get("/v1/auth/me", headers=bearer(ghost))
    assert r.status_code == 401 and r.json()["detail"] == "this user does not exist"


async def test_staff_creation_rules(
    sessions: async_sessionmaker[AsyncSession], api_settings: Settings
) -> None:
    user = await new_staff(sessions, api_settings, "teller", "kyc_reviewer")
    assert decode_token(api_settings, user.token).id == user.id
    direct = DirectPool(api_settings.sqlalchemy_url, size=1)
    try:
        status = await staff_status(direct, user.id)
    finally:
        await direct.close()
    assert status is not None and status.is_active
    assert status.principal.roles == frozenset({"teller", "kyc_reviewer"})

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


async def test_a_remembered_token_is_refused_once_it_expires(
    api_settings: Settings, staff: dict[str, Staff]
) -> None:
    """The app remembers a token it verified (api.auth.TokenVerifier) only until the token's
    own expiry: the same string is refused from then on, as PyJWT would refuse it."""
    short = api_settings.model_copy(update={"jwt_ttl": timedelta(seconds=2)})
    token = issue_token(short, user_id=staff["teller"].id)
    async with running_app(api_settings) as app, make_client(app) as c:
        assert (await c.get("/v1/auth/me", headers=bearer(token))).status_code == 200
        assert (await c.get("/v1/auth/me", headers=bearer(token))).status_code == 200
        expires = jwt.decode(token, options={"verify_signature": False})["exp"]
        await asyncio.sleep(max(0.0, expires - time.time()) + 0.1)
        late = await c.get("/v1/auth/me", headers=bearer(token))
        assert late.status_code == 401 and "expired" in late.json()["detail"]


def test_the_verifier_keeps_a_bounded_number_of_tokens_and_no_refusal(
    api_settings: Settings,
) -> None:
    verifier = TokenVerifier(api_settings, capacity=3)
    tokens = [issue_token(api_settings, user_id=n) for n in range(1, 6)]
    assert [verifier.subject(t).id for t in tokens] == [1, 2, 3, 4, 5]
    assert len(verifier._known) == 3 and tokens[0] not in verifier._known
    for _ in range(2):
        with pytest.raises(BankflowError) as err:
            verifier.subject("garbage")
        assert err.value.code == ErrorCode.UNAUTHENTICATED
    assert "garbage" not in verifier._known
