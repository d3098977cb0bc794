"""Loan portfolio reports: portfolio at risk, from the daily loan job's snapshots."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Query

from activities.daily_loan_par import par_report
from api.deps import Principal, SessionsDep, SettingsDep, require_roles
from api.errors import errors
from schemas import types
from schemas.daily_loan_job import PAR_READER_ROLES, ParReport
from schemas.errors import BankflowError, ErrorCode

router = APIRouter(prefix="/v1/reports", tags=["reports"])

Reader = Annotated[Principal, Depends(require_roles(*PAR_READER_ROLES))]


@router.get(
    "/portfolio-at-risk",
    responses=errors(s404="NotFound: the daily loan job has not run for the date"),
)
async def portfolio_at_risk(
    _: Reader,
    settings: SettingsDep,
    sessions: SessionsDep,
    on: Annotated[types.Day, Query(alias="date", description="business date YYYY-MM-DD")],
) -> ParReport:
    """Portfolio at risk on a business date, per currency: active loans and their outstanding
    principal and overdue amount per arrears bucket (current, 1-30, 31-60, 61-90, over_90 days
    past due), and PAR1/PAR30/PAR60/PAR90, the share of outstanding principal in loans past due
    (any arrears; more than 30, 60, 90 days) as decimal fractions. The figures are those the
    daily loan job stored for that date. Finance, branch managers, the credit committee and
    operations. 404 if the job has not run for the date; 422 for a date in the future."""
    today = datetime.now(UTC).astimezone(ZoneInfo(settings.institution_timezone)).date()
    if on > today:
        raise BankflowError(ErrorCode.VALIDATION, f"{on} is in the future ({today} today)")
    async with sessions() as session:
        return await par_report(session, on)
