"""Disbursement test harness: an approved loan (LoanApproval on the real worker, a guarantor
who consented), the saga's input, workers pointed at a fake rail, and ledger look-ups."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from sqlalchemy import func, select
from temporalio.client import Client

from activities.direct import DirectPool
from activities.ledger.chart import FEE_INCOME
from activities.ledger.verify import verify_ledger
from activities.loan_book import member_savings_account
from activities.tables import Disbursement, Hold, Journal, LedgerAccount, LoanInstallment, Member
from schemas.disbursements import (
    DisbursementInput,
    DisbursementState,
    ExternalAccount,
    disbursement_workflow_id,
)
from schemas.loans import LoanInput, Stage
from schemas.settings import Settings
from tests.conftest import CURRENCY
from tests.loans.conftest import Handle, LoanKit, consent, send, start, vote
from worker import build_workers

FEE = {"kind": "flat", "value": "10.00"}
BANK = ExternalAccount(bank_code="EXBANK01", account_number="0012345678", account_name="A Member")


@dataclass
class Approved:
    inp: LoanInput
    approval: Handle
    savings_id: int
    guarantor: str
    guarantor_savings_id: int


async def savings_of(kit: LoanKit, member_number: str) -> int:
    async with kit.sessions() as s:
        member_id = await s.scalar(select(Member.id).where(Member.member_number == member_number))
        assert member_id is not None
        return await member_savings_account(s, member_id, CURRENCY)


async def approved_loan(
    kit: LoanKit,
    client: Client,
    queue: str,
    *,
    principal: str = "800.00",
    timeouts: dict[str, timedelta] | None = None,
    **product: Any,
) -> Approved:
    """A 12-month loan approved by a loan officer, guaranteed 300.00 by a consenting member."""
    code = await kit.product(**{"disbursement_fee": FEE, **product})
    officer, approver = await kit.staff("loan_officer"), await kit.staff("loan_officer")
    member, guarantor = await kit.member(1_000_00), await kit.member(500_00)
    inp = await kit.register(
        officer, code, member, principal, guarantors=[(guarantor, "300.00")], timeouts=timeouts
    )
    handle = await start(client, queue, inp)
    assert (await send(handle, "initial_outcome")).stage == Stage.AWAITING_GUARANTORS
    teller = await kit.staff("teller")  # not the officer who entered it: four-eyes
    consented = await send(handle, "guarantor_consent", consent(teller, guarantor))
    assert consented.stage == Stage.AWAITING_APPROVAL, consented
    state = await send(handle, "decide", vote(approver, "loan_officer"))
    assert state.stage == Stage.APPROVED, state
    return Approved(
        inp, handle, await savings_of(kit, member), guarantor, await savings_of(kit, guarantor)
    )


def saga_input(
    loan: Approved, attempt: int = 1, *, on: date | None = None, **extra: object
) -> DisbursementInput:
    return DisbursementInput.model_validate(
        {
            "loan_number": loan.inp.loan_number,
            "attempt": attempt,
            "disbursed_on": on or date.today(),
            "requested_by": "tester",
            "branch": loan.inp.branch,
            "product": loan.inp.product.code,
            "currency": CURRENCY,
            "amount_minor": loan.inp.principal_minor,
            **extra,
        }
    )


async def start_saga(client: Client, queue: str, inp: DisbursementInput) -> Handle:
    return await client.start_workflow(
        "Disbursement",
        inp,
        id=disbursement_workflow_id(inp.loan_number, inp.attempt),
        task_queue=queue,
        result_type=DisbursementState,
    )


@asynccontextmanager
async def rail_worker(
    client: Client, settings: Settings, kit: LoanKit, rail_url: str
) -> AsyncIterator[str]:
    """The real workers on a fresh queue, their payment rail at `rail_url`."""
    queue = f"tq-rail-{uuid.uuid4().hex[:10]}"
    mine = settings.model_copy(update={"payment_rail_url": rail_url})
    async with AsyncExitStack() as stack:
        direct = await stack.enter_async_context(DirectPool(settings.sqlalchemy_url, size=5))
        workers = build_workers(
            client, mine, kit.sessions, direct, interactive_queue=queue, batch_queue=f"{queue}-b"
        )
        for w in workers:
            await stack.enter_async_context(w)
        yield queue


class Books:
    """Read-only views of the ledger and the loan book for assertions."""

    def __init__(self, kit: LoanKit) -> None:
        self.sessions = kit.sessions
        self.chart = kit.factory.chart

    async def account(self, account_id: int) -> LedgerAccount:
        async with self.sessions() as s:
            account = await s.get(LedgerAccount, account_id)
            assert account is not None
            return account

    async def balance(self, account_id: int) -> int:
        """Credits less debits, posted."""
        a = await self.account(account_id)
        return a.credits_posted_minor - a.debits_posted_minor

    async def fee_income(self) -> int:
        return await self.balance(self.chart[FEE_INCOME.number])

    async def disbursements(self, loan_id: int) -> list[Disbursement]:
        async with self.sessions() as s:
            rows = await s.scalars(
                select(Disbursement)
                .where(Disbursement.loan_id == loan_id)
                .order_by(Disbursement.attempt)
            )
            return list(rows)

    async def installments(self, loan_id: int) -> list[LoanInstallment]:
        async with self.sessions() as s:
            rows = await s.scalars(
                select(LoanInstallment)
                .where(LoanInstallment.loan_id == loan_id)
                .order_by(LoanInstallment.number)
            )
            return list(rows)

    async def holds(self, workflow_id: str) -> list[Hold]:
        async with self.sessions() as s:
            rows = await s.scalars(
                select(Hold).where(Hold.process_id == workflow_id).order_by(Hold.id)
            )
            return list(rows)

    async def journal(self, journal_id: str) -> Journal | None:
        async with self.sessions() as s:
            return await s.get(Journal, journal_id)

    async def count_journals(self, process_id: str, kind: str) -> int:
        async with self.sessions() as s:
            n = await s.scalar(
                select(func.count())
                .select_from(Journal)
                .where(Journal.process_id == process_id, Journal.kind == kind)
            )
            return int(n or 0)

    async def verified(self) -> bool:
        async with self.sessions() as s:
            report = await verify_ledger(s)
        assert report.ok, [c for c in report.checks if not c.ok]
        return report.ok
