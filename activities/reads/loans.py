"""What a loan route reads before it starts or joins a workflow: a loan and its branch, the
plain-words details of loans in the approvals inbox, and a loan's disbursement history. Snapshots
without locks: the workflow rechecks under the loan lock."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from activities.tables import (
    HOLDING_STATUSES,
    Branch,
    Currency,
    Disbursement,
    Loan,
    LoanEvent,
    Member,
)
from schemas.errors import BankflowError, ErrorCode


async def loan_and_branch(session: AsyncSession, loan_number: str) -> tuple[Loan, str]:
    """The loan and its member's branch code; NotFound if there is no such loan."""
    row = (
        await session.execute(
            select(Loan, Branch.code)
            .join(Member, Member.id == Loan.member_id)
            .join(Branch, Branch.id == Member.branch_id)
            .where(Loan.loan_number == loan_number)
        )
    ).first()
    if row is None:
        raise BankflowError(ErrorCode.NOT_FOUND, f"no loan {loan_number!r}")
    loan, branch = row
    return loan, branch


async def currency_scales(session: AsyncSession) -> dict[str, int]:
    rows = await session.execute(select(Currency.code, Currency.scale))
    return {code: scale for code, scale in rows}


async def loan_details(session: AsyncSession, loan_numbers: Sequence[str]) -> dict[str, str]:
    """Loan number -> the loan's current details in plain words."""
    rows = await session.execute(
        select(Loan.loan_number, Loan.current_details).where(
            Loan.loan_number.in_(list(loan_numbers))
        )
    )
    return {number: details for number, details in rows}


@dataclass(frozen=True)
class DisbursementHistory:
    holder: str | None  # the workflow of an attempt that holds the loan, if any
    attempts: int
    approved_at: datetime | None


async def disbursement_history(session: AsyncSession, loan_id: int) -> DisbursementHistory:
    holder = await session.scalar(
        select(Disbursement.workflow_id).where(
            Disbursement.loan_id == loan_id, Disbursement.status.in_(HOLDING_STATUSES)
        )
    )
    count = await session.scalar(
        select(func.count()).select_from(Disbursement).where(Disbursement.loan_id == loan_id)
    )
    approved_at = await session.scalar(
        select(func.max(LoanEvent.at)).where(
            LoanEvent.loan_id == loan_id, LoanEvent.to_state == "approved"
        )
    )
    return DisbursementHistory(holder=holder, attempts=int(count or 0), approved_at=approved_at)


async def find_currency(session: AsyncSession, code: str) -> Currency | None:
    return await session.get(Currency, code)
