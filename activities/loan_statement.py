"""Read models of a disbursed loan: the payoff quote and the statement. Read-only, no lock: a
quote is a snapshot, and the repayment that acts on it recomputes under the loan lock."""

from __future__ import annotations

import decimal
from datetime import date

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from activities import loan_book
from activities.loan_book_models import LoanInstallment, LoanTransaction
from activities.loan_models import Loan
from activities.models import Member
from domain.allocation import Due, arrears, payoff
from domain.money import to_major
from schemas.errors import BankflowError, ErrorCode
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


def _installment(row: LoanInstallment, due: Due, scale: int) -> StatementInstallment:
    paid = due.principal_paid + due.interest_paid + due.fee_paid + due.penalty_paid
    return StatementInstallment(
        number=row.number,
        from_on=row.from_on,
        due_on=row.due_on,
        principal=to_major(row.principal_minor, scale),
        interest=to_major(row.interest_minor, scale),
        fee=to_major(row.fee_minor, scale),
        penalty=to_major(row.penalty_minor, scale),
        interest_waived=to_major(row.interest_waived_minor, scale),
        paid=to_major(paid, scale),
        outstanding=to_major(due.total_outstanding, scale),
        completed_on=row.completed_on,
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
    rows = list(
        await session.scalars(
            select(LoanInstallment)
            .where(LoanInstallment.loan_id == loan.id)
            .order_by(LoanInstallment.number)
        )
    )
    dues = await loan_book.load_dues(session, loan.id)
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
        schedule=[_installment(r, d, scale) for r, d in zip(rows, dues, strict=True)],
        transactions=_transactions(list(transactions), scale),
    )
