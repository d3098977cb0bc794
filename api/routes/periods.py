"""Accounting periods: finance closes a month; from then on the ledger refuses any posting or
reversal dated in it (enforced by the ledger engine and a database trigger)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response

from activities.db import in_transaction
from activities.ledger import periods
from api.deps import Principal, SessionsDep, require_roles
from api.errors import errors
from schemas import types
from schemas.reversals import PeriodView

router = APIRouter(prefix="/v1/ledger/periods", tags=["ledger"])

Finance = Annotated[Principal, Depends(require_roles("finance"))]
Reader = Annotated[Principal, Depends(require_roles("finance", "branch_manager", "ops"))]
Period = Annotated[types.Period, Path(description="yyyy-mm")]


@router.post(
    "/{period}/close",
    status_code=201,
    responses={
        200: {"model": PeriodView, "description": "closed already"},
        **errors(s422="PeriodNotEnded, or ValidationError"),
    },
)
async def close_period(
    principal: Finance, period: Period, response: Response, sessions: SessionsDep
) -> PeriodView:
    """Close a month that has ended (finance). 201 when this call closed it, 200 when it was
    closed already; 422 `PeriodNotEnded` for the current or a future month. Closing is final."""
    start = periods.parse_period(period)
    closed, created = await in_transaction(
        sessions,
        lambda s: periods.close_period(s, start, user_id=principal.id, username=principal.username),
    )
    response.status_code = 201 if created else 200
    return closed


@router.get("")
async def list_closed_periods(_: Reader, sessions: SessionsDep) -> list[PeriodView]:
    """Closed months, newest first."""
    async with sessions() as session:
        return await periods.closed_periods(session)


@router.get("/{period}")
async def get_period(_: Reader, period: Period, sessions: SessionsDep) -> PeriodView:
    """Whether a month is open or closed, and who closed it when."""
    async with sessions() as session:
        return await periods.period_view(session, periods.parse_period(period))
