"""The Disbursement saga's steps. Each is one transaction, takes the loan lock first, and is
idempotent under retry: the disbursement row (found by workflow id), the journal and hold ids
(derived from the workflow id) and the trail's event ids make a repeated step find its own work.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities import loan_book
from activities.disbursement_book import (
    locked,
    mark_compensated,
    reverse_postings,
    void_liens,
)
from activities.disbursement_claim import claim, liens_of
from activities.errors import transaction
from activities.ledger import engine as ledger_engine
from activities.ledger import holds as ledger_holds
from activities.ledger.chart import FEE_INCOME, PAYMENT_CLEARING, SETTLEMENT_BANK, SUSPENSE
from activities.payment_rail import PaymentRailActivities
from activities.tables import LoanTransaction
from domain.money import to_major
from schemas.disbursements import (
    Activation,
    ClaimRequest,
    DisbursementPlan,
    Installment,
    RecordPayout,
    Step,
)
from schemas.ledger import HoldRequest, JournalRequest, PostingLine
from schemas.settings import Settings

T = TypeVar("T")


async def open_account(session: AsyncSession, step: Step) -> int:
    """Step 2: the loan account and the installments, due dates from the disbursement date."""
    loan, row = await locked(session, step.workflow_id, step.loan_number)
    return await loan_book.open_loan_book(session, loan, row.disbursed_on)


def _line(debit: int, credit: int, amount: int, currency: str) -> PostingLine:
    return PostingLine(
        debit_account_id=debit, credit_account_id=credit, amount_minor=amount, currency=currency
    )


async def post_disbursement(session: AsyncSession, step: Step) -> str:
    """Step 3: one journal: Dr loan, Cr savings or payment clearing; the fee Dr savings Cr fee
    income. The loan transaction points at it so a later undo (Reversal) finds it."""
    loan, row = await locked(session, step.workflow_id, step.loan_number)
    assert loan.ledger_account_id is not None, "open_loan_account runs first"
    gl = await loan_book.gl_ids(session, loan.currency, (PAYMENT_CLEARING, FEE_INCOME))
    credit = row.savings_account_id if row.destination == "savings" else gl[PAYMENT_CLEARING.number]
    assert credit is not None
    lines = [_line(loan.ledger_account_id, credit, row.amount_minor, loan.currency)]
    if row.fee_minor:
        assert row.savings_account_id is not None
        fee_income = gl[FEE_INCOME.number]
        lines.append(_line(row.savings_account_id, fee_income, row.fee_minor, loan.currency))
    journal_id = f"{row.workflow_id}:disburse"
    await ledger_engine.post_journal(
        session,
        JournalRequest(
            journal_id=journal_id,
            kind="loan_disbursement",
            value_date=row.disbursed_on,
            postings=lines,
            description=f"Disbursement of {loan.loan_number}",
            process_id=row.workflow_id,
            metadata={"loan_number": loan.loan_number, "attempt": row.attempt},
        ),
    )
    if row.journal_id is None:
        session.add(
            LoanTransaction(
                loan_id=loan.id,
                kind="disbursement",
                value_date=row.disbursed_on,
                amount_minor=row.amount_minor,
                principal_minor=row.amount_minor,
                fee_minor=row.fee_minor,
                journal_id=journal_id,
                workflow_id=row.workflow_id,
            )
        )
        row.journal_id = journal_id
    return journal_id


async def place_liens(session: AsyncSession, step: Step) -> list[str]:
    """Step 4: a hold on each guarantor's savings for the guarantee, until the loan closes."""
    loan, row = await locked(session, step.workflow_id, step.loan_number)
    suspense = (await loan_book.gl_ids(session, loan.currency, (SUSPENSE,)))[SUSPENSE.number]
    ids = []
    for lien in await liens_of(session, loan, check=False):
        hold = await ledger_holds.place_hold(
            session,
            HoldRequest(
                hold_id=f"{row.workflow_id}:lien:{lien.member_number}",
                debit_account_id=lien.account_id,
                credit_account_id=suspense,
                amount_minor=lien.amount_minor,
                currency=loan.currency,
                description=f"Guarantee of {loan.loan_number}",
                process_id=row.workflow_id,
            ),
        )
        ids.append(hold.hold_id)
    return ids


async def record_payout(session: AsyncSession, req: RecordPayout) -> str:
    """Step 5 (external): the rail took the money: clearing to the settlement bank account."""
    loan, row = await locked(session, req.step.workflow_id, req.step.loan_number)
    gl = await loan_book.gl_ids(session, loan.currency, (PAYMENT_CLEARING, SETTLEMENT_BANK))
    journal_id = f"{row.workflow_id}:payout"
    await ledger_engine.post_journal(
        session,
        JournalRequest(
            journal_id=journal_id,
            kind="loan_payout",
            value_date=row.disbursed_on,
            postings=[
                _line(
                    gl[PAYMENT_CLEARING.number],
                    gl[SETTLEMENT_BANK.number],
                    row.amount_minor,
                    loan.currency,
                )
            ],
            description=f"Payout of {loan.loan_number}, rail reference {req.reference}",
            process_id=row.workflow_id,
            metadata={"payout_reference": req.reference},
        ),
    )
    row.payout_reference = req.reference
    return journal_id


async def activate(session: AsyncSession, step: Step) -> Activation:
    """Step 6: the loan is active from the disbursement date; the attempt is completed."""
    loan, row = await locked(session, step.workflow_id, step.loan_number)
    scale = loan_book.product_of(loan).scale
    if row.status == "in_progress":
        data = {"journal_id": row.journal_id, "disbursed_on": str(row.disbursed_on)}
        await loan_book.trail(
            session, loan, row.workflow_id, "disbursed", "disbursed", to_state="active", data=data
        )
        row.status = "completed"
        loan_book.mark_active(loan, row.disbursed_on)
    dues = await loan_book.load_dues(session, loan.id)
    net = row.amount_minor - row.fee_minor if row.destination == "savings" else row.amount_minor
    return Activation(
        member_id=loan.member_id,
        principal=to_major(row.amount_minor, scale),
        fee=to_major(row.fee_minor, scale),
        net=to_major(net, scale),
        disbursed_on=row.disbursed_on,
        installments=[
            Installment(
                number=d.number,
                due_on=d.due_on,
                total=to_major(d.principal + d.interest + d.fee, scale),
            )
            for d in dues
        ],
    )


async def _undo_schedule(session: AsyncSession, step: Step) -> None:
    loan, _ = await locked(session, step.workflow_id, step.loan_number)
    await loan_book.drop_schedule(session, loan)


async def _reverse(session: AsyncSession, step: Step) -> str | None:
    _, row = await locked(session, step.workflow_id, step.loan_number)
    return await reverse_postings(session, row, step.reason)


async def _void(session: AsyncSession, step: Step) -> int:
    await locked(session, step.workflow_id, step.loan_number)
    return await void_liens(session, step.workflow_id, step.reason)


async def _compensated(session: AsyncSession, step: Step) -> None:
    loan, row = await locked(session, step.workflow_id, step.loan_number)
    await mark_compensated(session, loan, row, step.reason)


class DisbursementActivities:
    def __init__(self, settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions
        self.rail = PaymentRailActivities(settings)

    async def _run(self, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
        return await transaction(self.sessions, work)

    @activity.defn(name="claim_disbursement")
    async def claim_disbursement(self, req: ClaimRequest) -> DisbursementPlan:
        return await self._run(lambda s: claim(s, req))

    @activity.defn(name="open_loan_account")
    async def open_loan_account(self, step: Step) -> int:
        return await self._run(lambda s: open_account(s, step))

    @activity.defn(name="post_disbursement")
    async def post_disbursement(self, step: Step) -> str:
        return await self._run(lambda s: post_disbursement(s, step))

    @activity.defn(name="place_guarantor_liens")
    async def place_guarantor_liens(self, step: Step) -> list[str]:
        return await self._run(lambda s: place_liens(s, step))

    @activity.defn(name="record_payout")
    async def record_payout(self, req: RecordPayout) -> str:
        return await self._run(lambda s: record_payout(s, req))

    @activity.defn(name="activate_loan")
    async def activate_loan(self, step: Step) -> Activation:
        return await self._run(lambda s: activate(s, step))

    @activity.defn(name="void_guarantor_liens")
    async def void_guarantor_liens(self, step: Step) -> int:
        return await self._run(lambda s: _void(s, step))

    @activity.defn(name="reverse_disbursement")
    async def reverse_disbursement(self, step: Step) -> str | None:
        return await self._run(lambda s: _reverse(s, step))

    @activity.defn(name="drop_loan_schedule")
    async def drop_loan_schedule(self, step: Step) -> None:
        await self._run(lambda s: _undo_schedule(s, step))

    @activity.defn(name="compensate_disbursement")
    async def compensate_disbursement(self, step: Step) -> None:
        await self._run(lambda s: _compensated(s, step))

    def all(self) -> list[Any]:
        return [
            self.claim_disbursement,
            self.open_loan_account,
            self.post_disbursement,
            self.place_guarantor_liens,
            self.record_payout,
            self.activate_loan,
            self.void_guarantor_liens,
            self.reverse_disbursement,
            self.drop_loan_schedule,
            self.compensate_disbursement,
            *self.rail.all(),
        ]
