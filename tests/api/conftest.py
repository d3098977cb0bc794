"""API test harness: the real app (`create_app`) over httpx's ASGI transport, against the test
database; staff users for each role and bearer tokens for them."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from activities.db import in_transaction
from activities.staff import create_staff_user
from api.app import create_app
from api.auth import issue_token
from schemas.settings import Settings

PASSWORD = "correct horse battery"
# Nothing listens on port 1: the app under test runs as if Temporal were down, which is what
# every route here but /ready should not care about.
NO_TEMPORAL = "127.0.0.1:1"
STAFF_ROLES = ("teller", "branch_manager", "finance", "ops", "admin", "compliance_officer")


@dataclass(frozen=True)
class Staff:
    id: int
    username: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@pytest.fixture(scope="session")
def api_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"temporal_address": NO_TEMPORAL})


@pytest.fixture(scope="session")
async def api_app(api_settings: Settings, chart: dict[str, int]) -> AsyncIterator[FastAPI]:
    app = create_app(api_settings)
    async with app.router.lifespan_context(app):
        yield app


def make_client(app: FastAPI, address: str = "10.0.0.7") -> AsyncClient:
    transport = ASGITransport(app=app, client=(address, 40000))
    return AsyncClient(transport=transport, base_url="http://bankflow.test")


@pytest.fixture
async def client(api_app: FastAPI) -> AsyncIterator[AsyncClient]:
    async with make_client(api_app) as c:
        yield c


async def new_staff(
    sessions: async_sessionmaker[AsyncSession], settings: Settings, *roles: str
) -> Staff:
    username = f"{'-'.join(roles) or 'norole'}-{uuid.uuid4().hex[:6]}"

    async def work(session: AsyncSession) -> Staff:
        user = await create_staff_user(
            session, username=username, full_name=username, password=PASSWORD, roles=roles
        )
        token = issue_token(settings, user_id=user.id)
        return Staff(user.id, username, token)

    return await in_transaction(sessions, work)


@pytest.fixture(scope="session")
async def staff(
    sessions: async_sessionmaker[AsyncSession], api_settings: Settings
) -> dict[str, Staff]:
    """One user per role, and `none` with no role at all."""
    users = {role: await new_staff(sessions, api_settings, role) for role in STAFF_ROLES}
    users["none"] = await new_staff(sessions, api_settings)
    return users


@pytest.fixture
def idem() -> Callable[[], dict[str, str]]:
    return lambda: {"Idempotency-Key": uuid.uuid4().hex}
