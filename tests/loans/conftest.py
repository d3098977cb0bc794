"""Loan test harness: products with three approval tiers, KYC-verified members with savings,
applications registered through the real code path, and LoanApproval started on a test queue."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client, WorkflowHandle

from activities.db import in_transaction
from activities.loan_applications import register_application
from activities.loan_products import create_product
from activities.staff import Principal
from activities.tables import LedgerAccount, Loan, LoanEvent, Member
from schemas.loan_products import LoanProductCreate
from schemas.loans import (
    Actor,
    Decision,
    GuarantorAnswer,
    GuarantorIn,
    LoanApprovalState,
    LoanCreate,
    LoanInput,
)
from schemas.settings import Settings
from tests.api.conftest import Staff, api_settings, idem, new_staff, staff
from tests.conftest import CURRENCY, Factory
from workflows.loan_approval import LoanApprovalWorkflow

Handle = WorkflowHandle[Any, Any]
# The API harness's users and Idempotency-Key maker, shared with the loan API tests.
__all__ = ["api_settings", "idem", "staff"]

# Up to 1,000.00: one loan officer. Up to 10,000.00: a loan officer, then a branch manager.
# Above: a branch manager, then two votes of the credit committee.
TIERS: list[dict[str, Any]] = [
    {"up_to": "1000.00", "levels": [{"role": "loan_officer"}]},
    {"up_to": "10000.00", "levels": [{"role": "loan_officer"}, {"role": "branch_manager"}]},
    {
        "up_to": None,
        "levels": [{"role": "branch_manager"}, {"role": "credit_committee", "quorum": 2}],
    },
]


def product_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "code": f"T{uuid.uuid4().hex[:8].upper()}",
        "name": "Test product",
        "currency": CURRENCY,
        "min_principal": "100.00",
        "max_principal": "50000.00",
        "min_repayments": 3,
        "max_repayments": 36,
        "annual_interest_rate": "12",
        "guarantee": {"min_guaranteed_by_others_pct": "0", "own_savings_pct": "10"},
        "eligibility": {
            "require_kyc_verified": True,
            "min_membership_days": 0,
            "max_savings_multiple": "20",
            "no_loan_in_arrears": True,
        },
        "approval_tiers": TIERS,
    }
    body.update(overrides)
    return body


@dataclass
class LoanKit:
    """Everything a loan test needs, created through the real code paths."""

    sessions: async_sessionmaker[AsyncSession]
    factory: Factory
    settings: Settings

    async def staff(self, *roles: str) -> Staff:
        return await new_staff(self.sessions, self.settings, *roles)

    async def product(self, **overrides: Any) -> str:
        body = LoanProductCreate.model_validate(product_body(**overrides))
        product = await in_transaction(self.sessions, lambda s: create_product(s, body, None))
        return product.code

    async def member(self, savings_minor: int = 1_000_00, *, verified: bool = True) -> str:
        """A member with a savings account holding `savings_minor`, KYC verified or not."""
        account = await self.factory.savings_account(savings_minor)

        async def work(session: AsyncSession) -> str:
            acc = await session.get(LedgerAccount, account.id)
            assert acc is not None and acc.member_id is not None
            await session.execute(
                update(Member)
                .where(Member.id == acc.member_id)
                .values(
                    kyc_status="verified" if verified else "unverified",
                    email=f"member{acc.member_id}@example.org",
                )
            )
            number = await session.scalar(
                select(Member.member_number).where(Member.id == acc.member_id)
            )
            assert number is not None
            return number

        return await in_transaction(self.sessions, work)

    async def register(
        self,
        officer: Staff,
        product: str,
        member: str,
        principal: str,
        *,
        repayments: int = 12,
        guarantors: list[tuple[str, str]] = (),  # type: ignore[assignment]
        timeouts: dict[str, timedelta] | None = None,
    ) -> LoanInput:
        body = LoanCreate(
            member_number=member,
            product=product,
            principal=principal,
            repayments=repayments,
            purpose="working capital",
            guarantors=[GuarantorIn(member_number=m, amount=a) for m, a in guarantors],
            expected_disbursement_on=date(2026, 12, 1),
        )
        who = Principal(officer.id, officer.username, frozenset({"loan_officer"}))
        app = await in_transaction(
            self.sessions, lambda s: register_application(s, body, who, uuid.uuid4().hex)
        )
        times = {
            "guarantor_timeout": timedelta(days=7),
            "reminder_after": timedelta(hours=24),
            "escalate_after": timedelta(hours=72),
            "return_timeout": timedelta(days=30),
            "approval_validity": timedelta(days=30),
            **(timeouts or {}),
        }
        return LoanInput(
            loan_id=app.loan.id,
            loan_number=app.loan.loan_number,
            member_id=app.loan.member_id,
            member_number=app.member_number,
            branch=app.branch,
            product=app.product,
            principal_minor=app.loan.principal_minor,
            repayments=app.loan.repayments,
            purpose=app.loan.purpose,
            expected_disbursement_on=app.loan.expected_disbursement_on,
            guarantors=app.guarantors,
            entered_by_id=officer.id,
            entered_by=officer.username,
            **times,
        )

    async def loan(self, loan_id: int) -> Loan:
        async with self.sessions() as session:
            loan = await session.get(Loan, loan_id)
            assert loan is not None
            return loan

    async def events(self, loan_id: int) -> list[LoanEvent]:
        async with self.sessions() as session:
            rows = await session.scalars(
                select(LoanEvent).where(LoanEvent.loan_id == loan_id).order_by(LoanEvent.seq)
            )
            return list(rows)


async def start(client: Client, queue: str, inp: LoanInput) -> Handle:
    return await client.start_workflow(
        LoanApprovalWorkflow.run, inp, id=f"loan-{inp.loan_number}", task_queue=queue
    )


async def send(handle: Handle, name: str, arg: object = None) -> LoanApprovalState:
    """Run one of LoanApproval's Updates and return the state it answers with."""
    args = [] if arg is None else [arg]
    state: LoanApprovalState = await handle.execute_update(
        name, args=args, result_type=LoanApprovalState
    )
    return state


async def query_state(handle: Handle) -> LoanApprovalState:
    state: LoanApprovalState = await handle.query("state", result_type=LoanApprovalState)
    return state


def consent(
    who: Staff,
    guarantor: str,
    accept: bool = True,
    *,
    role: str = "teller",
    member_ids: list[int] | None = None,
    note: str = "",
) -> GuarantorAnswer:
    """A guarantor's answer as staff user `who` records it (LoanApproval's consent Update)."""
    return GuarantorAnswer(
        member_number=guarantor,
        accept=accept,
        note=note,
        recorded_by_id=who.id,
        recorded_by=who.username,
        recorded_by_roles=[role],
        recorded_by_member_ids=member_ids or [],
    )


def vote(
    who: Staff,
    role: str,
    action: str = "approve",
    *,
    reason: str = "",
    member_ids: list[int] | None = None,
    **terms: int,
) -> Decision:
    return Decision.model_validate(
        {
            "action": action,
            "reason": reason,
            **terms,
            "actor": Actor(
                user_id=who.id,
                username=who.username,
                roles=[role],
                member_ids=member_ids or [],
            ),
        }
    )


@pytest.fixture
def kit(
    sessions: async_sessionmaker[AsyncSession], factory: Factory, settings: Settings
) -> LoanKit:
    return LoanKit(sessions, factory, settings)
