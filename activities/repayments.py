"""Posting a loan repayment: one transaction that allocates the amount over the installments,
posts one journal split per component, records the loan transaction and, when the loan is paid
off, closes it and releases the guarantors' liens.

Idempotent under retry: the journal id derives from the workflow id, and the loan transaction row
(keyed by workflow id) is looked for first under the loan lock, so a retry after a lost answer
returns what the first attempt did instead of allocating twice.
"""

from __future__ import annotations

import decimal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities import loan_book
from activities.errors import transaction
from activities.ledger import engine as ledger_engine
from activities.ledger import holds as ledger_holds
from activities.ledger.chart import (
    CASH,
    FEE_INCOME,
    INTEREST_INCOME,
    INTEREST_RECEIVABLE,
    PENALTIES_RECEIVABLE,
    PENALTY_INCOME,
)
from activities.tables import Hold, Loan, LoanTransaction
from domain.allocation import Allocation, allocate, settle
from schemas.errors import BankflowError, ErrorCode
from schemas.ledger import JournalRequest, PostingLine, VoidHoldRequest
from schemas.repayments import InstallmentPortion, RepaymentRequest, RepaymentResult

GLS = (CASH, FEE_INCOME, INTEREST_INCOME, INTEREST_RECEIVABLE, PENALTIES_RECEIVABLE, PENALTY_INCOME)


@dataclass
class Credits:
    """Where each part of the repayment is credited: (account id, amount) in posting order."""

    lines: list[tuple[int, int]] = field(default_factory=list)
    receivable: dict[str, int] = field(default_factory=dict)
    # accrual, on closing: interest accrued beyond what the loan earned in the end, taken back
    written_back: int = 0

    def add(self, account_id: int, amount: int) -> None:
        if amount > 0:
            self.lines.append((account_id, amount))


@dataclass(frozen=True)
class Received:
    """What a repayment brought in, by its source. From savings the bank takes only what the
    loan owes: the rest of the amount asked for is `not_taken` (never debited, so never
    overpaid). In cash the whole amount was handed over: what the loan did not need is
    `overpaid` (credited to the member's savings, and the loan is `overpaid`)."""

    taken: int
    overpaid: int
    not_taken: int


def received(alloc: Allocation, source: str) -> Received:
    if source == "cash":
        return Received(taken=alloc.amount, overpaid=alloc.overpayment, not_taken=0)
    return Received(taken=alloc.amount - alloc.overpayment, overpaid=0, not_taken=alloc.overpayment)


def closed_state(got: Received) -> str:
    """The state a paid-off loan closes in: only cash received beyond the payoff overpays it."""
    return "overpaid" if got.overpaid else "closed_obligations_met"


def rounding_of(loan: Loan) -> str:
    return str(getattr(decimal, f"ROUND_{loan_book.product_of(loan).rounding_mode}"))


async def check_value_date(session: AsyncSession, loan: Loan, on: date) -> None:
    """A repayment dated before the disbursement, or before a later repayment already applied,
    would need the later ones re-allocated: refused, never silently reordered."""
    if loan.disbursed_on is not None and on < loan.disbursed_on:
        raise BankflowError(
            ErrorCode.VALIDATION,
            f"value date {on} is before the disbursement on {loan.disbursed_on}",
        )
    latest = await session.scalar(
        select(func.max(LoanTransaction.value_date)).where(
            LoanTransaction.loan_id == loan.id,
            LoanTransaction.kind == "repayment",
            LoanTransaction.reversed_by_journal_id.is_(None),
        )
    )
    if latest is not None and on < latest:
        raise BankflowError(
            ErrorCode.VALIDATION,
            f"value date {on} is before the loan's latest repayment on {latest}: a back-dated "
            "repayment would need the later ones re-allocated; reverse them first",
        )


def split(loan: Loan, alloc: Allocation, gl: dict[str, int], accrual: bool) -> Credits:
    """The credit side per component. Accrual products settle what was accrued (receivable)
    first and recognise only the rest as income now; cash products recognise it all now."""
    assert loan.ledger_account_id is not None
    credits = Credits()
    interest, penalty = alloc.total("interest"), alloc.total("penalty")
    if accrual:
        from_receivable = min(penalty, loan.penalty_receivable_minor)
        credits.add(gl[PENALTIES_RECEIVABLE.number], from_receivable)
        credits.add(gl[PENALTY_INCOME.number], penalty - from_receivable)
        credits.receivable["penalty"] = from_receivable
    else:
        credits.add(gl[PENALTY_INCOME.number], penalty)
    credits.add(gl[FEE_INCOME.number], alloc.total("fee"))
    if accrual:
        from_receivable = min(interest, loan.interest_receivable_minor)
        credits.add(gl[INTEREST_RECEIVABLE.number], from_receivable)
        credits.add(gl[INTEREST_INCOME.number], interest - from_receivable)
        credits.receivable["interest"] = from_receivable
    else:
        credits.add(gl[INTEREST_INCOME.number], interest)
    credits.add(loan.ledger_account_id, alloc.total("principal"))
    return credits


async def void_liens(session: AsyncSession, loan_number: str) -> list[str]:
    """Release the guarantors' holds placed by the loan's disbursement(s): the loan is repaid."""
    ids = list(
        await session.scalars(
            select(Hold.id)
            .where(Hold.status == "pending", Hold.process_id.like(f"disbursement-{loan_number}-%"))
            .order_by(Hold.id)
        )
    )
    for hold_id in ids:
        await ledger_holds.void_hold(
            session, VoidHoldRequest(hold_id=hold_id, reason="loan closed")
        )
    return ids


def result_of(loan: Loan, row: LoanTransaction, scale: int, outstanding: int) -> RepaymentResult:
    stored = row.allocation
    return RepaymentResult(
        journal_id=row.journal_id,
        loan_number=loan.loan_number,
        member_id=loan.member_id,
        currency=loan.currency,
        scale=scale,
        value_date=row.value_date,
        requested_minor=int(stored.get("requested", row.amount_minor)),
        amount_minor=row.amount_minor,
        not_taken_minor=int(stored.get("not_taken", 0)),
        principal_minor=row.principal_minor,
        interest_minor=row.interest_minor,
        fee_minor=row.fee_minor,
        penalty_minor=row.penalty_minor,
        overpayment_minor=row.overpayment_minor,
        portions=[InstallmentPortion.model_validate(p) for p in stored.get("portions", [])],
        waived=[(int(n), int(a)) for n, a in stored.get("waived", [])],
        refunded=[(int(n), int(a)) for n, a in stored.get("refunded", [])],
        state=loan.state,
        closed=bool(stored.get("closes", False)),
        voided_holds=list(stored.get("voided_holds", [])),
        outstanding_minor=outstanding,
    )


async def outstanding_of(session: AsyncSession, loan: Loan) -> int:
    return sum(d.total_outstanding for d in await loan_book.load_dues(session, loan.id))


async def book(
    session: AsyncSession,
    loan: Loan,
    alloc: Allocation,
    source: str,
    journal_id: str,
    value_date: date,
    **journal: Any,
) -> Credits:
    """Post the allocated repayment as one `loan_repayment` journal (the source debited, each
    component credited; `journal`: description, process id, metadata) and move the loan's
    accrual figures with it."""
    accrual = loan_book.product_of(loan).accounting == "accrual"
    gl = await loan_book.gl_ids(session, loan.currency, GLS)
    savings = await loan_book.member_savings_account(session, loan.member_id, loan.currency)
    credits = split(loan, alloc, gl, accrual)
    debit = savings if source == "savings" else gl[CASH.number]
    income = gl[INTEREST_INCOME.number]
    lines = _debited(credits.lines, debit, income, alloc.refund, loan.currency)
    if accrual:
        loan.interest_receivable_minor -= credits.receivable["interest"]
        loan.interest_recognized_minor += (
            alloc.total("interest") - credits.receivable["interest"] - alloc.refund
        )
        loan.penalty_receivable_minor -= credits.receivable["penalty"]
        if alloc.closes and loan.interest_receivable_minor > 0:
            credits.written_back = loan.interest_receivable_minor
            lines.append(_line(income, gl[INTEREST_RECEIVABLE.number], credits.written_back, loan))
            loan.interest_recognized_minor -= credits.written_back
            loan.interest_receivable_minor = 0
    overpaid = received(alloc, source).overpaid
    if overpaid:  # the excess paid in cash is the member's money
        lines.append(_line(gl[CASH.number], savings, overpaid, loan))
    await ledger_engine.post_journal(
        session,
        JournalRequest(
            journal_id=journal_id,
            kind="loan_repayment",
            value_date=value_date,
            postings=lines,
            **journal,
        ),
    )
    return credits


def _line(debit: int, credit: int, amount: int, loan: Loan) -> PostingLine:
    return PostingLine(
        debit_account_id=debit,
        credit_account_id=credit,
        amount_minor=amount,
        currency=loan.currency,
    )


def _debited(
    credits: list[tuple[int, int]], source: int, income: int, refund: int, currency: str
) -> list[PostingLine]:
    """Each credit taken from the source, except that interest paid in advance and given back by a
    payoff (`refund`) comes out of interest income: it pays principal first (the last credit),
    then the other parts; what is left of it nets off the interest income credit."""
    lines: list[PostingLine] = []
    for account, amount in reversed(credits):
        back = 0 if account == income else min(refund, amount)
        refund -= back
        parts = ((income, back), (source, amount - back))
        lines[:0] = [
            PostingLine(
                debit_account_id=d, credit_account_id=account, amount_minor=a, currency=currency
            )
            for d, a in parts
            if a > 0
        ]
    if refund:
        net = [p for p in lines if p.credit_account_id == income]
        for p in net:
            take = min(refund, p.amount_minor)
            refund -= take
            lines[lines.index(p)] = p.model_copy(update={"amount_minor": p.amount_minor - take})
        lines = [p for p in lines if p.amount_minor > 0]
    return lines


def allocation_record(alloc: Allocation, credits: Credits, source: str) -> dict[str, Any]:
    """What a loan transaction keeps of its allocation: enough to take it off and re-apply it."""
    return {
        "not_taken": received(alloc, source).not_taken,
        "portions": [
            InstallmentPortion(
                number=p.number,
                penalty_minor=p.penalty,
                fee_minor=p.fee,
                interest_minor=p.interest,
                principal_minor=p.principal,
            ).model_dump()
            for p in alloc.portions
        ],
        "waived": [list(w) for w in alloc.waived],
        "refunded": [list(r) for r in alloc.refunded],
        "written_back": credits.written_back,
        "receivable": credits.receivable,
        "closes": alloc.closes,
    }


async def post_repayment(session: AsyncSession, req: RepaymentRequest) -> RepaymentResult:
    loan = await loan_book.lock_loan(session, req.loan_number)
    scale = loan_book.product_of(loan).scale
    done = await session.scalar(
        select(LoanTransaction).where(
            LoanTransaction.workflow_id == req.workflow_id, LoanTransaction.kind == "repayment"
        )
    )
    if done is not None:  # a retry after the first attempt committed
        return result_of(loan, done, scale, await outstanding_of(session, loan))
    if loan.state != "active":
        raise BankflowError(
            ErrorCode.LOAN_STATE, f"loan {loan.loan_number} is {loan.state}, not active"
        )
    await check_value_date(session, loan, req.value_date)
    dues = await loan_book.load_dues(session, loan.id)
    alloc = allocate(dues, req.amount_minor, req.value_date, rounding_of(loan))
    after = settle(dues, alloc)
    if alloc.amount == alloc.overpayment:
        raise BankflowError(ErrorCode.LOAN_STATE, f"loan {loan.loan_number} owes nothing")
    got = received(alloc, req.source)
    journal_id = f"{req.workflow_id}:repayment"
    credits = await book(
        session,
        loan,
        alloc,
        req.source,
        journal_id,
        req.value_date,
        description=f"Repayment of loan {loan.loan_number} ({req.source})",
        process_id=req.workflow_id,
        metadata={"loan_number": loan.loan_number, "requested_by": req.actor},
    )
    await loan_book.save_dues(session, loan.id, dues, after, req.value_date)
    await loan_book.trail(
        session,
        loan,
        req.workflow_id,
        "repayment",
        "repayment",
        actor=req.actor,
        actor_id=req.actor_id,
        at=req.at,
        reason=f"{req.source} repayment",
        data={
            "journal_id": journal_id,
            "amount_minor": got.taken,
            "not_taken_minor": got.not_taken,
        },
    )
    voided: list[str] = []
    if alloc.closes:
        voided = await close(session, loan, req, got)
    row = LoanTransaction(
        loan_id=loan.id,
        kind="repayment",
        value_date=req.value_date,
        amount_minor=got.taken,
        principal_minor=alloc.total("principal"),
        interest_minor=alloc.total("interest"),
        fee_minor=alloc.total("fee"),
        penalty_minor=alloc.total("penalty"),
        overpayment_minor=got.overpaid,
        source=req.source,
        journal_id=journal_id,
        workflow_id=req.workflow_id,
        allocation={
            **allocation_record(alloc, credits, req.source),
            "requested": req.amount_minor,
            "voided_holds": voided,
        },
    )
    session.add(row)
    await session.flush()
    return result_of(loan, row, scale, sum(d.total_outstanding for d in after))


async def close(
    session: AsyncSession, loan: Loan, req: RepaymentRequest, got: Received
) -> list[str]:
    """Paid off: closed (or overpaid by cash received beyond the payoff), liens released, on
    the trail."""
    state = closed_state(got)
    await loan_book.trail(
        session,
        loan,
        req.workflow_id,
        "closed",
        "overpaid" if got.overpaid else "closed",
        actor=req.actor,
        actor_id=req.actor_id,
        at=req.at,
        to_state=state,
        reason="repaid in full",
    )
    loan_book.mark_closed(loan, state, req.value_date, got.overpaid)
    return await void_liens(session, loan.loan_number)


class RepaymentActivities:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions

    @activity.defn(name="post_loan_repayment")
    async def post_loan_repayment(self, req: RepaymentRequest) -> RepaymentResult:
        return await transaction(self.sessions, lambda s: post_repayment(s, req))

    def all(self) -> list[Callable[..., Awaitable[object]]]:
        return [self.post_loan_repayment]
