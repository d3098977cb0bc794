"""Repayment-schedule preview for any terms, without a product: the calculator behind loan
products, offered to staff who want to show a member what a loan would cost. Writes nothing."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends

from activities.reads.loans import find_currency
from api.deps import ANY_STAFF, Principal, SessionsDep, require_roles
from api.errors import errors
from domain.schedule import ScheduleError, generate_schedule
from schemas.errors import BankflowError, ErrorCode
from schemas.schedule import SchedulePreviewRequest, ScheduleView

router = APIRouter(prefix="/v1/loans", tags=["loans"])

Staff = Annotated[Principal, Depends(require_roles(*ANY_STAFF))]


@router.post(
    "/schedule-preview",
    responses=errors(s422="InvalidSchedule, CurrencyMismatch or ValidationError"),
)
async def schedule_preview(
    _: Staff, body: SchedulePreviewRequest, sessions: SessionsDep
) -> ScheduleView:
    """The repayment schedule for the given terms, as Apache Fineract's classic generator would
    compute it: due dates, principal, interest, installment total and the balance after each
    installment, in major units of the currency (which must be set up, for its scale). Terms
    that make no schedule are 422 `InvalidSchedule` with the reason. Any staff role; no
    Idempotency-Key, since nothing is stored."""
    async with sessions() as session:
        currency = await find_currency(session, body.currency)
    if currency is None:
        raise BankflowError(ErrorCode.CURRENCY_MISMATCH, f"unknown currency {body.currency!r}")
    try:
        terms = body.terms(currency.scale, datetime.now(UTC).date())
        schedule = generate_schedule(terms)
    except ScheduleError as exc:
        raise BankflowError(ErrorCode.INVALID_SCHEDULE, str(exc)) from exc
    return ScheduleView.of(schedule, currency.code)
