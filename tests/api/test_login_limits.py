"""Login limits: per username across addresses, per address across usernames, the lockout with
backoff (in Postgres, so it holds across API processes), and the client address itself."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from fastapi import FastAPI
from httpx import Response
from pydantic import ValidationError
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from activities.db import in_transaction
from activities.tables import AuditEntry, LoginThrottle
from schemas.settings import Settings
from tests.api.conftest import PASSWORD, make_client, new_staff
from tests.api.limits_kit import running_app

Sessions = async_sessionmaker[AsyncSession]
NO_LOCKOUT = {"login_lockout_after": 1000}


async def attempt(
    app: FastAPI, username: str, password: str = "wrong-password", address: str = "10.0.0.7"
) -> Response:
    async with make_client(app, address) as c:
        return await c.post("/v1/auth/token", data={"username": username, "password": password})


async def audit_of(sessions: Sessions, username: str) -> list[AuditEntry]:
    async with sessions() as session:
        rows = await session.scalars(
            select(AuditEntry)
            .where(func.lower(AuditEntry.actor_username) == username.lower())
            .order_by(AuditEntry.id)
        )
        return list(rows)


async def test_per_username_limit_holds_across_addresses(api_settings: Settings) -> None:
    settings = api_settings.model_copy(
        update={"login_limit_per_username": "3/minute", **NO_LOCKOUT}
    )
    username = f"target-{uuid.uuid4().hex[:6]}"
    async with running_app(settings) as app:
        for i in range(3):
            assert (await attempt(app, username, address=f"10.1.0.{i}")).status_code == 401
        r = await attempt(app, username, address="10.1.0.99")
        assert r.status_code == 429 and r.json()["error"] == "RateLimited"
        assert 1 <= int(r.headers["Retry-After"]) <= 60
        # another username from the same address is not held back by this one's budget
        assert (await attempt(app, "someone-else", address="10.1.0.99")).status_code == 401


async def test_per_address_limit_holds_across_usernames(
    api_settings: Settings, sessions: Sessions
) -> None:
    settings = api_settings.model_copy(update={"login_limit_per_address": "4/minute"})
    real = await new_staff(sessions, settings, "teller")
    async with running_app(settings) as app:
        for i in range(4):
            assert (await attempt(app, f"sprayed-{i}", address="10.2.0.1")).status_code == 401
        r = await attempt(app, real.username, PASSWORD, address="10.2.0.1")
        assert r.status_code == 429 and r.json()["error"] == "RateLimited"
        # the user's own login from elsewhere is unaffected
        assert (await attempt(app, real.username, PASSWORD, address="10.2.0.2")).status_code == 200


async def expire_lock(sessions: Sessions, username: str) -> None:
    async def work(session: AsyncSession) -> None:
        await session.execute(
            update(LoginThrottle)
            .where(LoginThrottle.username_key == username.casefold())
            .values(locked_until=None)
        )

    await in_transaction(sessions, work)


async def test_lockout_after_repeated_failures_backs_off_and_is_audited(
    api_settings: Settings, sessions: Sessions
) -> None:
    settings = api_settings.model_copy(
        update={
            "login_lockout_after": 3,
            "login_lockout_base": timedelta(minutes=1),
            "login_lockout_max": timedelta(minutes=3),
        }
    )
    user = await new_staff(sessions, settings, "teller")
    async with running_app(settings) as app:
        assert (await attempt(app, user.username)).status_code == 401
        assert (await attempt(app, user.username, address="10.3.0.2")).status_code == 401
        locking = await attempt(app, user.username, address="10.3.0.3")
        assert locking.status_code == 429 and locking.json()["error"] == "LoginLocked"
        assert locking.headers["Retry-After"] == "60"
        # while locked even the right password is refused, unchecked
        r = await attempt(app, user.username, PASSWORD)
        assert r.status_code == 429 and r.json()["error"] == "LoginLocked"
        assert 1 <= int(r.headers["Retry-After"]) <= 60

        await expire_lock(sessions, user.username)  # a minute later, as far as the lock goes
        again = await attempt(app, user.username.upper())  # usernames lock casefolded
        assert again.status_code == 429 and again.headers["Retry-After"] == "120"
        await expire_lock(sessions, user.username)
        capped = await attempt(app, user.username)
        assert capped.status_code == 429 and capped.headers["Retry-After"] == "180"

        await expire_lock(sessions, user.username)
        assert (await attempt(app, user.username, PASSWORD)).status_code == 200
        # a success clears the count: the next failure is an ordinary 401 again
        assert (await attempt(app, user.username)).status_code == 401

    rows = await audit_of(sessions, user.username)
    outcomes = [(row.outcome, str(row.client_address)) for row in rows]
    assert outcomes[:4] == [
        ("Unauthenticated", "10.0.0.7"),
        ("Unauthenticated", "10.3.0.2"),
        ("LoginLocked", "10.3.0.3"),
        ("LoginLocked", "10.0.0.7"),
    ]
    assert [row.outcome_status for row in rows].count(429) == 4


async def test_unknown_usernames_lock_like_real_ones(api_settings: Settings) -> None:
    """Otherwise a lockout would tell an attacker which usernames exist."""
    settings = api_settings.model_copy(update={"login_lockout_after": 2})
    ghost = f"ghost-{uuid.uuid4().hex[:6]}"
    async with running_app(settings) as app:
        assert (await attempt(app, ghost)).status_code == 401
        assert (await attempt(app, ghost)).json()["error"] == "LoginLocked"


async def test_lockout_holds_across_api_processes(
    api_settings: Settings, sessions: Sessions
) -> None:
    settings = api_settings.model_copy(update={"login_lockout_after": 2})
    user = await new_staff(sessions, settings, "teller")
    async with running_app(settings) as first, running_app(settings) as second:
        assert (await attempt(first, user.username)).status_code == 401
        assert (await attempt(second, user.username)).json()["error"] == "LoginLocked"
        r = await attempt(first, user.username, PASSWORD)
        assert r.status_code == 429 and r.json()["error"] == "LoginLocked"


async def test_forwarded_for_is_believed_only_from_a_trusted_proxy(
    api_settings: Settings, sessions: Sessions
) -> None:
    spoofed = {"X-Forwarded-For": "203.0.113.50"}
    direct = f"direct-{uuid.uuid4().hex[:6]}"
    async with running_app(api_settings) as app, make_client(app, "10.4.0.1") as c:
        await c.post("/v1/auth/token", data={"username": direct, "password": "x"}, headers=spoofed)
    proxied = f"proxied-{uuid.uuid4().hex[:6]}"
    behind_proxy = api_settings.model_copy(update={"trusted_proxies": ["10.4.0.0/24"]})
    async with running_app(behind_proxy) as app:
        async with make_client(app, "10.4.0.1") as via_proxy:
            await via_proxy.post(
                "/v1/auth/token", data={"username": proxied, "password": "x"}, headers=spoofed
            )
        async with make_client(app, "10.9.0.1") as not_a_proxy:
            await not_a_proxy.post(
                "/v1/auth/token", data={"username": proxied, "password": "x"}, headers=spoofed
            )
    assert [str(r.client_address) for r in await audit_of(sessions, direct)] == ["10.4.0.1"]
    assert [str(r.client_address) for r in await audit_of(sessions, proxied)] == [
        "203.0.113.50",
        "10.9.0.1",
    ]


@pytest.mark.parametrize("proxies", ["*", "proxy.internal", "10.0.0.1,*", "10.0.0.300"])
def test_trusted_proxies_are_addresses_or_networks_only(
    proxies: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A name or a wildcard would let whoever resolves or reaches it claim any address."""
    monkeypatch.setenv("BANKFLOW_TRUSTED_PROXIES", proxies)
    with pytest.raises(ValidationError, match="IP addresses or networks"):
        Settings()
    monkeypatch.setenv("BANKFLOW_TRUSTED_PROXIES", " 10.0.0.1, 192.168.4.0/24 ")
    assert Settings().trusted_proxies == ["10.0.0.1/32", "192.168.4.0/24"]
