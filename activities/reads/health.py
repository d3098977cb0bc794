"""Whether Postgres answers, for the API's readiness probe."""

from __future__ import annotations

import asyncio

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker


async def postgres_answers(sessions: async_sessionmaker[AsyncSession], within_s: float) -> bool:
    """`SELECT 1` within `within_s` seconds; False on any database or network failure."""
    try:
        async with asyncio.timeout(within_s), sessions() as session:
            await session.execute(text("SELECT 1"))
    except (SQLAlchemyError, OSError, TimeoutError):
        return False
    return True
