"""Daily loan job harness: a fresh database per test (the job services every active loan in its
database), the real workers on fresh queues, and active loans made without the Disbursement
workflow: an application registered through LoanKit, then approved and disbursed in one
transaction with the shared loan-book steps and the ledger engine."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio.client import Client, WorkflowHandle

from activities.db import in_transaction
from activities.ledger.chart import (
    INTEREST_INCOME,
    INTEREST_RECEIVABLE,
    PENALTIES_RECEIVABLE,
    PENALTY_INCOME,
)
from activities.ledger.verify import verify_ledger
from activities.tables import LoanInstallment, LoanTransaction
from schemas.daily_loan_job import DailyJobInput, DailyJobSummary
from schemas.settings import Settings
from tests.api.conftest import api_app, api_settings, client, staff  # noqa: F401  (API tests)
from tests.conftest import Factory
from tests.loans.book import disburse
from tests.loans.conftest import LoanKit
from tests.month_end.conftest import _stack
from workflows.daily_loan_job import DailyLoanJobWorkflow

Handle = WorkflowHandle[DailyLoanJobWorkflow, DailyJobSummary]


@dataclass
class Stack:
    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    engine: AsyncEngine
    chart: dict[str, int]
    client: Client
    batch_queue: str
    tag: str

    @property
    def kit(self) -> LoanKit:
        return LoanKit(self.sessions, Factory(self.sessions, self.chart), self.settings)

    async def active_loan(
        self,
        product: str,
        disbursed_on: date,
        principal: str = "1200.00",
        repayments: int = 12,
    ) -> int:
        """An active loan disbursed into the member's savings on `disbursed_on`; its id."""
        kit = self.kit
        officer = await kit.staff("loan_officer")
        member = await kit.member(1_000_00)
        inp = await kit.register(officer, product, member, principal, repayments=repayments)
        await in_transaction(self.sessions, lambda s: disburse(s, inp.loan_number, disbursed_on))
        return inp.loan_id

    async def product(self, **overrides: Any) -> str:
        return await self.kit.product(**overrides)

    async def scalar(self, sql: str, **params: Any) -> Any:
        async with self.sessions() as s:
            return await s.scalar(text(sql), params)

    async def balance(self, gl_number: str) -> int:
        """A GL account's debit balance (debits - credits)."""
        value = await self.scalar(
            "SELECT debits_posted_minor - credits_posted_minor FROM ledger_accounts WHERE id = :id",
            id=self.chart[gl_number],
        )
        return int(value)

    async def installments(self, loan_id: int) -> list[LoanInstallment]:
        async with self.sessions() as s:
            rows = await s.scalars(
                select(LoanInstallment)
                .where(LoanInstallment.loan_id == loan_id)
                .order_by(LoanInstallment.number)
            )
            return list(rows)

    async def transactions(self, loan_id: int, kind: str) -> list[LoanTransaction]:
        async with self.sessions() as s:
            rows = await s.scalars(
                select(LoanTransaction)
                .where(LoanTransaction.loan_id == loan_id, LoanTransaction.kind == kind)
                .order_by(LoanTransaction.value_date)
            )
            return list(rows)

    async def journals(self) -> int:
        return int(await self.scalar("SELECT count(*) FROM journals WHERE kind = 'loan_servicing'"))

    async def books(self) -> dict[str, object]:
        """Everything the job changes, loan by loan, and the four GL balances it moves."""
        loans = await self.scalar(
            "SELECT json_agg(json_build_array(id, serviced_through, days_past_due, "
            "arrears_bucket, overdue_since, penalty_exact, interest_recognized_minor, "
            "interest_receivable_minor, penalty_receivable_minor) ORDER BY id) FROM loans"
        )
        penalties = await self.scalar(
            "SELECT json_agg(json_build_array(loan_id, number, penalty_minor) "
            "ORDER BY loan_id, number) FROM loan_installments"
        )
        gl = {
            gl.number: await self.balance(gl.number)
            for gl in (INTEREST_RECEIVABLE, INTEREST_INCOME, PENALTIES_RECEIVABLE, PENALTY_INCOME)
        }
        return {"loans": loans, "installments": penalties, "gl": gl}

    async def verify(self) -> None:
        async with self.sessions() as s, s.begin():
            report = await verify_ledger(s)
        assert report.ok, report

    async def start(
        self, day: date, run: str = "", task_timeout: timedelta | None = None, **options: Any
    ) -> Handle:
        return await self.client.start_workflow(
            DailyLoanJobWorkflow.run,
            DailyJobInput(business_date=day, **options),
            id=f"{self.tag}-daily-loan-job-{day}{run}",
            task_queue=self.batch_queue,
            task_timeout=task_timeout,
        )

    async def run(self, day: date, run: str = "", **options: Any) -> DailyJobSummary:
        return await (await self.start(day, run, **options)).result()


@pytest.fixture
async def stack(pg_server: str, temporal_client: Client) -> AsyncIterator[Stack]:
    async with _stack(pg_server, temporal_client, with_worker=True, kind=Stack) as s:
        yield s


@pytest.fixture
async def twin(pg_server: str, temporal_client: Client) -> AsyncIterator[Stack]:
    """A second fresh database with its own workers, to compare two histories of one book."""
    async with _stack(pg_server, temporal_client, with_worker=True, kind=Stack) as s:
        yield s


@pytest.fixture
async def bare_stack(pg_server: str, temporal_client: Client) -> AsyncIterator[Stack]:
    """A second fresh database; no worker (the test runs its own, or uses `stack`'s queue)."""
    async with _stack(pg_server, temporal_client, with_worker=False, kind=Stack) as s:
        yield s
