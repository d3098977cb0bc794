"""Reports read by finance and operations."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path

from activities.month_end import summary
from api.deps import Principal, SessionsDep, require_roles
from api.errors import errors
from schemas import types
from schemas.month_end import READER_ROLES, MonthEndSummary

router = APIRouter(prefix="/v1/reports", tags=["reports"])

Reader = Annotated[Principal, Depends(require_roles(*READER_ROLES))]
Period = Annotated[types.Period, Path(description="YYYY-MM")]


@router.get("/month-end/{period}", responses=errors(s404="NotFound: the period never ran"))
async def month_end_report(_: Reader, period: Period, sessions: SessionsDep) -> MonthEndSummary:
    """The month-end interest summary of a period: accounts, gross interest, withholding tax and
    net per currency, and how long the run took. `status` is `running` until the workflow has
    finished. Finance and operations; 404 if the period never ran."""
    async with sessions() as session:
        return await summary(session, period)
