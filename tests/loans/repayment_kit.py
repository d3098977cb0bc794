"""An active loan for repayment tests, set up exactly as the disbursement saga's activities do
(loan book opened, disbursement journal to the member's savings, the loan transaction, state
active), without depending on the Disbursement workflow."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date
from typing import Any

from httpx import AsyncClient, Response
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client

from activities import loan_book
from activities.db import in_transaction
from activities.ledger import holds as ledger_holds
from activities.ledger.chart import SUSPENSE
from activities.ledger.verify import verify_ledger
from activities.tables import (
    Hold,
    LedgerAccount,
    Loan,
    LoanEvent,
    LoanInstallment,
    LoanTransaction,
    Member,
    Notification,
)
from schemas.ledger import HoldRequest
from tests.api.conftest import Staff
from tests.conftest import CURRENCY
from tests.loans.book import disburse
from tests.loans.conftest import LoanKit


@dataclass(frozen=True)
class ActiveLoan:
    loan_id: int
    loan_number: str
    member_number: str
    member_id: int
    savings_id: int
    loan_account_id: int
    disbursed_on: date
    lien_id: str | None


async def active_loan(
    kit: LoanKit,
    officer: Staff,
    *,
    principal: str = "1200.00",
    repayments: int = 12,
    disbursed_on: date,
    savings_minor: int = 2_000_00,
    product: dict[str, Any] | None = None,
    lien_minor: int = 0,
) -> ActiveLoan:
    """A disbursed loan whose principal went into the member's savings; with `lien_minor`, a
    guarantor's pending hold placed under the disbursement's process id."""
    code = await kit.product(**(product or {}))
    member = await kit.member(savings_minor)
    inp = await kit.register(officer, code, member, principal, repayments=repayments)
    guarantor = (await kit.factory.savings_account(lien_minor)).id if lien_minor else None
    process = f"disbursement-{inp.loan_number}-1"

    async def work(session: AsyncSession) -> ActiveLoan:
        await disburse(session, inp.loan_number, disbursed_on)
        loan = await loan_book.lock_loan(session, inp.loan_number)
        assert loan.ledger_account_id is not None
        account = loan.ledger_account_id
        savings = await loan_book.member_savings_account(session, loan.member_id, loan.currency)
        lien = None
        if guarantor is not None:
            lien = f"{process}:lien:{guarantor}"
            gl = await loan_book.gl_ids(session, CURRENCY, [SUSPENSE])
            await ledger_holds.place_hold(
                session,
                HoldRequest(
                    hold_id=lien,
                    debit_account_id=guarantor,
                    credit_account_id=gl[SUSPENSE.number],
                    amount_minor=lien_minor,
                    currency=CURRENCY,
                    process_id=process,
                ),
            )
        return ActiveLoan(
            loan.id, loan.loan_number, member, loan.member_id, savings, account, disbursed_on, lien
        )

    return await in_transaction(kit.sessions, work)


async def balance(kit: LoanKit, account_id: int) -> int:
    """Credits minus debits posted (a savings or income account's balance; an asset's is the
    negative of what it holds)."""
    async with kit.sessions() as session:
        account = await session.get(LedgerAccount, account_id)
        assert account is not None
        return account.credits_posted_minor - account.debits_posted_minor


async def installments(kit: LoanKit, loan_id: int) -> list[LoanInstallment]:
    async with kit.sessions() as session:
        return list(
            await session.scalars(
                select(LoanInstallment)
                .where(LoanInstallment.loan_id == loan_id)
                .order_by(LoanInstallment.number)
            )
        )


async def set_penalty(kit: LoanKit, loan_id: int, number: int, penalty_minor: int) -> None:
    """A penalty charged on an installment, as the daily job would (cash accounting)."""

    async def work(session: AsyncSession) -> None:
        await session.execute(
            update(LoanInstallment)
            .where(LoanInstallment.loan_id == loan_id, LoanInstallment.number == number)
            .values(penalty_minor=penalty_minor)
        )

    await in_transaction(kit.sessions, work)


async def set_loan(kit: LoanKit, loan_id: int, **values: Any) -> None:
    async def work(session: AsyncSession) -> None:
        await session.execute(update(Loan).where(Loan.id == loan_id).values(**values))

    await in_transaction(kit.sessions, work)


async def hold_status(kit: LoanKit, hold_id: str) -> str:
    async with kit.sessions() as session:
        hold = await session.get(Hold, hold_id)
        assert hold is not None
        return hold.status


async def trail(kit: LoanKit, loan_id: int) -> list[tuple[str, str | None]]:
    async with kit.sessions() as session:
        rows = await session.scalars(
            select(LoanEvent).where(LoanEvent.loan_id == loan_id).order_by(LoanEvent.seq)
        )
        return [(e.event, e.to_state) for e in rows]


async def member_email(kit: LoanKit, member_id: int) -> str:
    async with kit.sessions() as session:
        email = await session.scalar(select(Member.email).where(Member.id == member_id))
        assert email is not None
        return email


def key() -> dict[str, str]:
    return {"Idempotency-Key": uuid.uuid4().hex}


async def repay(
    api: AsyncClient,
    who: Staff,
    loan: ActiveLoan,
    amount: str,
    *,
    source: str = "savings",
    on: date | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    body: dict[str, Any] = {"amount": amount, "source": source}
    if on is not None:
        body["value_date"] = on.isoformat()
    return await api.post(
        f"/v1/loans/{loan.loan_number}/repayments",
        json=body,
        headers=who.headers | (headers or key()),
    )


async def finished(client: Client, workflow_id: str) -> None:
    """Wait for the workflow to end (its e-mails are sent after the API has answered)."""
    await client.get_workflow_handle(workflow_id).result()


async def repayments_of(kit: LoanKit, loan_id: int) -> list[LoanTransaction]:
    async with kit.sessions() as session:
        return list(
            await session.scalars(
                select(LoanTransaction)
                .where(LoanTransaction.loan_id == loan_id, LoanTransaction.kind == "repayment")
                .order_by(LoanTransaction.id)
            )
        )


async def outbox(kit: LoanKit, workflow_id: str) -> list[tuple[str, str]]:
    async with kit.sessions() as session:
        rows = await session.execute(
            select(Notification.template, Notification.recipient)
            .where(Notification.process_id == workflow_id)
            .order_by(Notification.id)
        )
        return [(t, r) for t, r in rows]


async def ledger_ok(kit: LoanKit) -> None:
    async with kit.sessions() as session:
        report = await verify_ledger(session)
    assert report.ok, [c for c in report.checks if not c.ok]
