"""Read models of a disbursed loan: the payoff quote and the statement. Read-only, no lock: a
quote is a snapshot, and the repayment that acts on it recomputes under the loan lock."""

from __future__ import annotations

import decimal
from collections.abc import Callable
from datetime import date

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from activities import loan_book
from activities.tables import Disbursement, Journal, Loan, LoanInstallment, LoanTransaction, Member
from domain.allocation import Due, arrears, payoff
from domain.money import to_major
from schemas.disbursements import DisbursementView, ExternalAccount
from schemas.errors import BankflowError, ErrorCode
from schemas.loans import LoanScheduleView
from schemas.repayments import (
    Outstanding,
    PayoffQuoteView,
    StatementInstallment,
    StatementTransaction,
    StatementView,
)

UNDISBURSED = frozenset({"submitted_and_pending_approval", "approved", "rejected", "withdrawn"})


async def disbursed_loan(session: AsyncSession, loan_number: str) -> Loan:
    loan = await session.scalar(select(Loan).where(Loan.loan_number == loan_number))
    if loan is None:
        raise BankflowError(ErrorCode.NOT_FOUND, f"no loan {loan_number!r}")
    if loan.state in UNDISBURSED or loan.disbursed_on is None:
        raise BankflowError(
            ErrorCode.LOAN_STATE, f"loan {loan_number} is {loan.state}: it has no loan book yet"
        )
    return loan


def _rounding(loan: Loan) -> str:
    return str(getattr(decimal, f"ROUND_{loan_book.product_of(loan).rounding_mode}"))


async def payoff_quote(session: AsyncSession, loan_number: str, on: date) -> PayoffQuoteView:
    """The amount that closes the loan at the end of `on` (a closed loan's quote is zero)."""
    loan = await disbursed_loan(session, loan_number)
    if loan.disbursed_on is not None and on < loan.disbursed_on:
        raise BankflowError(
            ErrorCode.VALIDATION, f"{on} is before the disbursement on {loan.disbursed_on}"
        )
    quote = payoff(await loan_book.load_dues(session, loan.id), on, _rounding(loan))
    scale = loan_book.product_of(loan).scale

    def m(minor: int) -> str:
        return to_major(minor, scale)

    return PayoffQuoteView(
        loan_number=loan.loan_number,
        on=on,
        currency=loan.currency,
        amount=m(quote.amount),
        principal=m(quote.principal),
        interest=m(quote.interest),
        fees=m(quote.fee),
        penalties=m(quote.penalty),
        interest_waived=m(sum(cut for _, cut in quote.waived)),
        interest_refunded=m(quote.refund),
    )


def _charged(due: Due) -> int:
    return due.principal + due.interest - due.interest_waived + due.fee + due.penalty


def _paid(due: Due) -> int:
    return due.principal_paid + due.interest_paid + due.fee_paid + due.penalty_paid


def _installment(due: Due, completed_on: date | None, scale: int) -> StatementInstallment:
    return StatementInstallment(
        number=due.number,
        from_on=due.from_on,
        due_on=due.due_on,
        principal=to_major(due.principal, scale),
        interest=to_major(due.interest, scale),
        fee=to_major(due.fee, scale),
        penalty=to_major(due.penalty, scale),
        interest_waived=to_major(due.interest_waived, scale),
        total=to_major(_charged(due), scale),
        paid=to_major(_paid(due), scale),
        outstanding=to_major(due.total_outstanding, scale),
        completed_on=completed_on,
    )


async def _book(session: AsyncSession, loan_id: int) -> list[tuple[Due, date | None]]:
    """The loan book's installments with the day each was paid in full."""
    rows = await session.scalars(
        select(LoanInstallment)
        .where(LoanInstallment.loan_id == loan_id)
        .order_by(LoanInstallment.number)
    )
    return [(loan_book.due_of(r), r.completed_on) for r in rows]


def _proposed(loan: Loan) -> list[tuple[Due, date | None]]:
    """The schedule the loan's current terms make from its expected disbursement date."""
    schedule = loan_book.loan_schedule(loan, loan.expected_disbursement_on)
    return [
        (Due(i.number, i.from_date, i.due_date, i.principal_minor, i.interest_minor), None)
        for i in schedule.installments
    ]


async def loan_schedule(session: AsyncSession, loan: Loan) -> LoanScheduleView:
    """The loan's current schedule: the loan book's once disbursed, else the proposed one."""
    scale = loan_book.product_of(loan).scale
    rows = await _book(session, loan.id) if loan.disbursed_on is not None else []
    dues = rows or _proposed(loan)

    def total(amount: Callable[[Due], int]) -> str:
        return to_major(sum(amount(d) for d, _ in dues), scale)

    return LoanScheduleView(
        basis="disbursed" if rows else "proposed",
        starts_on=loan.disbursed_on
        if rows and loan.disbursed_on
        else loan.expected_disbursement_on,
        currency=loan.currency,
        installments=[_installment(d, on, scale) for d, on in dues],
        total_principal=total(lambda d: d.principal),
        total_interest=total(lambda d: d.interest - d.interest_waived),
        total_due=total(_charged),
        total_paid=total(_paid),
        total_outstanding=total(lambda d: d.total_outstanding),
    )


def _transactions(rows: list[LoanTransaction], scale: int) -> list[StatementTransaction]:
    """Oldest first, with the principal outstanding after each (a reversed one moves nothing)."""
    balance = 0
    out: list[StatementTransaction] = []
    for t in rows:
        reversed_ = t.reversed_by_journal_id is not None
        if not reversed_:
            if t.kind == "disbursement":
                balance += t.amount_minor
            else:
                balance -= t.principal_minor
        out.append(
            StatementTransaction(
                kind=t.kind,
                value_date=t.value_date,
                amount=to_major(t.amount_minor, scale),
                principal=to_major(t.principal_minor, scale),
                interest=to_major(t.interest_minor, scale),
                fee=to_major(t.fee_minor, scale),
                penalty=to_major(t.penalty_minor, scale),
                overpayment=to_major(t.overpayment_minor, scale),
                source=t.source,
                journal_id=t.journal_id,
                reversed=reversed_,
                principal_balance=to_major(balance, scale),
            )
        )
    return out


async def statement(session: AsyncSession, loan_number: str, as_of: date) -> StatementView:
    """Header, schedule with paid/outstanding per installment, and the loan's transactions."""
    loan = await disbursed_loan(session, loan_number)
    product = loan_book.product_of(loan)
    scale = product.scale
    book = await _book(session, loan.id)
    dues = [d for d, _ in book]
    transactions = await session.scalars(
        select(LoanTransaction)
        .where(LoanTransaction.loan_id == loan.id)
        .order_by(LoanTransaction.value_date, LoanTransaction.id)
    )
    member_number = await session.scalar(
        select(Member.member_number).where(Member.id == loan.member_id)
    )
    late = arrears(dues, as_of) if loan.state == "active" else None
    parts = {c: sum(d.outstanding(c) for d in dues) for c in ("principal", "interest", "fee")}
    penalty = sum(d.outstanding("penalty") for d in dues)
    return StatementView(
        loan_number=loan.loan_number,
        member_number=member_number or "",
        product=product.code,
        currency=loan.currency,
        principal=to_major(loan.principal_minor, scale),
        state=loan.state,
        disbursed_on=loan.disbursed_on,
        closed_on=loan.closed_on,
        as_of=as_of,
        outstanding=Outstanding(
            principal=to_major(parts["principal"], scale),
            interest=to_major(parts["interest"], scale),
            fee=to_major(parts["fee"], scale),
            penalty=to_major(penalty, scale),
            total=to_major(sum(parts.values()) + penalty, scale),
        ),
        days_past_due=late.days_past_due if late else 0,
        arrears_bucket=late.bucket if late else "current",
        overpaid=to_major(loan.overpaid_minor, scale),
        schedule=[_installment(d, on, scale) for d, on in book],
        transactions=_transactions(list(transactions), scale),
    )


async def disbursement_views(session: AsyncSession, loan_number: str) -> list[DisbursementView]:
    """Every disbursement attempt of the loan, oldest first, with the journal that undid it (its
    compensation, or a reversal that took the loan back to approved)."""
    loan = await session.scalar(select(Loan).where(Loan.loan_number == loan_number))
    if loan is None:
        raise BankflowError(ErrorCode.NOT_FOUND, f"no loan {loan_number!r}")
    scale = loan_book.product_of(loan).scale
    rows = list(
        await session.scalars(
            select(Disbursement)
            .where(Disbursement.loan_id == loan.id)
            .order_by(Disbursement.attempt)
        )
    )
    posted = [r.journal_id for r in rows if r.journal_id]
    found = await session.execute(
        select(Journal.reverses_journal_id, Journal.id).where(
            Journal.reverses_journal_id.in_(posted)
        )
    )
    undone = {original: reversal for original, reversal in found}
    return [
        _disbursement(row, loan.currency, scale, undone.get(row.journal_id or "")) for row in rows
    ]


def _disbursement(
    row: Disbursement, currency: str, scale: int, undone_by: str | None
) -> DisbursementView:
    paid_out = row.payout_reference is not None
    return DisbursementView(
        workflow_id=row.workflow_id,
        attempt=row.attempt,
        status=row.status,
        destination=row.destination,
        external_account=ExternalAccount.model_validate(row.external_account)
        if row.external_account
        else None,
        amount=to_major(row.amount_minor, scale),
        fee=to_major(row.fee_minor, scale),
        currency=currency,
        disbursed_on=row.disbursed_on,
        journal_id=row.journal_id,
        payout_journal_id=f"{row.workflow_id}:payout" if paid_out else None,
        compensation_journal_id=f"{row.workflow_id}:compensate"
        if row.status == "compensated" and row.journal_id
        else None,
        payout_reference=row.payout_reference,
        failure_reason=row.failure_reason,
        requested_by=row.requested_by,
        reversal_journal_id=undone_by,
        created_at=row.created_at,
    )
