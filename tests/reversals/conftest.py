"""Reversal test helpers: original journals of each kind, cases started on the real worker."""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from decimal import Decimal

from sqlalchemy import select
from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy

from activities.db import in_transaction
from activities.ledger import engine as ledger_engine
from activities.tables import LedgerAccount
from schemas.ledger import JournalRequest, JournalResult, PostingLine
from schemas.reversals import DecisionInput, ReversalInput, ReversalState, ReversalTier
from tests.api.conftest import api_settings, idem, staff  # noqa: F401  (fixtures)
from tests.conftest import CURRENCY, Factory, Sessions
from workflows.reversal import DECIDE, INITIAL_OUTCOME, ReversalWorkflow

REQUESTER_ID, MANAGER_ID, MANAGER2_ID, FINANCE_ID = 9101, 9102, 9103, 9104
TIERS = [
    ReversalTier(up_to=Decimal("1000"), roles=["branch_manager", "finance"], approvers=1),
    ReversalTier(up_to=Decimal("10000"), roles=["branch_manager", "finance"], approvers=2),
    ReversalTier(up_to=None, roles=["finance"], approvers=2),
]


async def post(
    sessions: Sessions,
    kind: str,
    *lines: tuple[int, int, int],
    value_date: date | None = None,
) -> JournalResult:
    req = JournalRequest(
        journal_id=f"test-{kind}-{uuid.uuid4().hex[:12]}",
        kind=kind,
        value_date=value_date or date.today(),
        postings=[
            PostingLine(debit_account_id=d, credit_account_id=c, amount_minor=a, currency=CURRENCY)
            for d, c, a in lines
        ],
    )
    return await in_transaction(sessions, lambda s: ledger_engine.post_journal(s, req))


def reversal_input(journal_id: str, *, timeout: timedelta = timedelta(hours=72)) -> ReversalInput:
    return ReversalInput(
        journal_id=journal_id,
        request_id=f"RV{uuid.uuid4().hex[:16].upper()}",
        reason_code="wrong_account",
        reason="posted to the wrong member",
        requested_by_id=REQUESTER_ID,
        requested_by="teller1",
        tiers=TIERS,
        override_roles=["finance"],
        approval_timeout=timeout,
    )


async def start(
    client: Client, queue: str, inp: ReversalInput
) -> WorkflowHandle[ReversalWorkflow, ReversalState]:
    return await client.start_workflow(
        ReversalWorkflow.run,
        inp,
        id=f"reversal-{inp.journal_id}",
        task_queue=queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
    )


def decision(
    approve: bool = True,
    *,
    approver_id: int = MANAGER_ID,
    roles: tuple[str, ...] = ("branch_manager",),
    override: bool = False,
    name: str = "manager1",
) -> DecisionInput:
    return DecisionInput(
        approve=approve,
        reason="checked the voucher",
        override_overdraft=override,
        approver_id=approver_id,
        approver=name,
        approver_roles=list(roles),
    )


async def balances(factory: Factory, account_id: int) -> tuple[int, int]:
    """(posted balance credits - debits, pending debits)."""
    acc = await factory.account(account_id)
    return acc.credits_posted_minor - acc.debits_posted_minor, acc.debits_pending_minor


async def gl_balance(sessions: Sessions, code: str) -> int:
    """Debit-side balance of a GL account by code (0 if it does not exist)."""
    async with sessions() as s:
        acc = await s.scalar(select(LedgerAccount).where(LedgerAccount.code == code))
        return 0 if acc is None else acc.debits_posted_minor - acc.credits_posted_minor


async def decide(
    handle: WorkflowHandle[ReversalWorkflow, ReversalState], d: DecisionInput
) -> ReversalState:
    """The `decide` Update by name: typed, and the same call the API makes."""
    state: ReversalState = await handle.execute_update(DECIDE, d, result_type=ReversalState)
    return state


async def initial(handle: WorkflowHandle[ReversalWorkflow, ReversalState]) -> ReversalState:
    state: ReversalState = await handle.execute_update(INITIAL_OUTCOME, result_type=ReversalState)
    return state
