"""KYC reads for the API."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from activities.tables import KycCase


async def case_by_number(session: AsyncSession, case_number: str) -> KycCase | None:
    return await session.scalar(select(KycCase).where(KycCase.case_number == case_number))
