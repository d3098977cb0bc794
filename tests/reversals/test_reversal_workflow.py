"""Reversal on a real Temporal dev server, the real worker and Postgres: decisions are sent to
the workflow's Update directly, so every rule is proven inside the workflow itself."""

from __future__ import annotations

import asyncio
from datetime import date

import pytest
from sqlalchemy import select
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError

from activities.db import in_transaction
from activities.ledger import engine as ledger_engine
from activities.ledger.chart import CASH, FEE_INCOME, INTEREST_EXPENSE, gl_code
from activities.ledger.verify import verify_ledger
from activities.reversals import OVERDRAFT_RECEIVABLE, execute
from activities.tables import ReversalEvent
from schemas.errors import BankflowError, ErrorCode
from schemas.reversals import DecisionInput, ExecuteRequest, ReversalState, Stage
from tests.conftest import CURRENCY, Factory, Sessions
from tests.reversals.conftest import (
    FINANCE_ID,
    MANAGER2_ID,
    REQUESTER_ID,
    balances,
    decide,
    decision,
    gl_balance,
    initial,
    post,
    reversal_input,
    start,
)
from tests.workflows.conftest import record_history
from workflows.reversal import ReversalWorkflow

Handle = WorkflowHandle[ReversalWorkflow, ReversalState]


async def refused(handle: Handle, bad: DecisionInput) -> str:
    with pytest.raises(WorkflowUpdateFailedError) as err:
        await decide(handle, bad)
    cause = err.value.cause
    assert isinstance(cause, ApplicationError) and cause.type
    return cause.type


async def verified(sessions: Sessions) -> None:
    async with sessions() as s:
        report = await verify_ledger(s)
    assert report.ok, [c for c in report.checks if not c.ok]


async def test_deposit_reversal_holds_the_funds_and_needs_another_person(
    temporal_client: Client, worker: str, factory: Factory, sessions: Sessions
) -> None:
    acc = await factory.savings_account()
    original = await post(sessions, "deposit", (factory.gl(CASH.number), acc.id, 400_00))
    handle = await start(temporal_client, worker, reversal_input(original.journal_id))
    state = await initial(handle)
    assert state.stage == Stage.AWAITING_APPROVAL and not state.needs_override
    assert [c.name for c in state.checks if c.ok][:4] == [
        "journal exists",
        "not a reversal",
        "not yet reversed",
        "period open",
    ]
    assert await balances(factory, acc.id) == (400_00, 400_00)  # held: nothing left to spend

    assert await refused(handle, decision(approver_id=REQUESTER_ID)) == ErrorCode.FOUR_EYES
    assert await refused(handle, decision(roles=("teller", "ops"))) == ErrorCode.FORBIDDEN
    assert await refused(handle, decision(roles=("admin",))) == ErrorCode.FORBIDDEN
    assert await refused(handle, decision(override=True)) == ErrorCode.FORBIDDEN

    done = await decide(handle, decision())
    assert done.reversal_journal_id == f"{handle.id}:reverse"  # answered once it is posted
    assert (await handle.result()).stage == Stage.COMPLETED
    assert await balances(factory, acc.id) == (0, 0)
    async with sessions() as s:
        mirror = await ledger_engine.load_journal(s, done.reversal_journal_id)
        again = await ledger_engine.load_journal(s, original.journal_id)
        events = (
            await s.scalars(
                select(ReversalEvent.event)
                .where(ReversalEvent.reversal_id == handle.id)
                .order_by(ReversalEvent.id)
            )
        ).all()
    assert mirror.reverses_journal_id == original.journal_id
    assert again.reversed_by_journal_id == mirror.journal_id
    assert [(p.debit_account_id, p.credit_account_id, p.amount_minor) for p in mirror.postings] == [
        (acc.id, factory.gl(CASH.number), 400_00)
    ]
    assert events == ["requested", "held", "approved", "completed"]
    with pytest.raises((WorkflowUpdateFailedError, RPCError)):
        await decide(handle, decision(approver_id=MANAGER2_ID))
    await verified(sessions)
    await record_history(handle, "reversal_deposit")


@pytest.mark.parametrize("kind", ["withdrawal", "transfer", "fee", "interest"])
async def test_each_generic_kind_is_mirrored(
    temporal_client: Client,
    worker: str,
    factory: Factory,
    sessions: Sessions,
    kind: str,
) -> None:
    a = await factory.savings_account(1_000_00)
    b = await factory.savings_account(50_00)
    lines = {
        "withdrawal": (a.id, factory.gl(CASH.number), 300_00),
        "transfer": (a.id, b.id, 300_00),
        "fee": (a.id, factory.gl(FEE_INCOME.number), 300_00),
        "interest": (factory.gl(INTEREST_EXPENSE.number), a.id, 300_00),
    }[kind]
    before = (await balances(factory, a.id), await balances(factory, b.id))
    original = await post(sessions, kind, lines)
    handle = await start(temporal_client, worker, reversal_input(original.journal_id))
    waiting = await initial(handle)
    assert waiting.stage == Stage.AWAITING_APPROVAL and waiting.kind == kind
    # Only what the original credited to a member account is held.
    assert [h.amount_minor for h in waiting.holds] == (
        [300_00] if kind in ("transfer", "interest") else []
    )
    assert (await decide(handle, decision())).reversal_journal_id is not None
    assert (await handle.result()).stage == Stage.COMPLETED
    assert (await balances(factory, a.id), await balances(factory, b.id)) == before
    await verified(sessions)


async def test_amount_tiers_need_two_approvers_and_the_right_role(
    temporal_client: Client, worker: str, factory: Factory, sessions: Sessions
) -> None:
    acc = await factory.savings_account()
    mid = await post(sessions, "deposit", (factory.gl(CASH.number), acc.id, 5_000_00))
    handle = await start(temporal_client, worker, reversal_input(mid.journal_id))
    state = await initial(handle)
    assert state.tier is not None and state.tier.approvers == 2
    first = await decide(handle, decision())
    assert first.stage == Stage.AWAITING_APPROVAL and first.history[-1].note == "1 of 2 approvals"
    assert await refused(handle, decision()) == ErrorCode.DUPLICATE
    done = await decide(handle, decision(approver_id=MANAGER2_ID, name="manager2"))
    assert done.reversal_journal_id and await balances(factory, acc.id) == (0, 0)
    assert (await handle.result()).stage == Stage.COMPLETED

    big = await post(sessions, "deposit", (factory.gl(CASH.number), acc.id, 20_000_00))
    handle = await start(temporal_client, worker, reversal_input(big.journal_id))
    await initial(handle)
    assert await refused(handle, decision()) == ErrorCode.FORBIDDEN  # finance only above 10,000
    await decide(handle, decision(approver_id=FINANCE_ID, roles=("finance",)))
    done = await decide(
        handle,
        decision(approver_id=FINANCE_ID + 1, roles=("finance",), name="finance2"),
    )
    assert (await handle.result()).stage == Stage.COMPLETED
    await verified(sessions)


async def test_a_reversal_that_would_overdraw_waits_for_an_override(
    temporal_client: Client, worker: str, factory: Factory, sessions: Sessions
) -> None:
    acc = await factory.savings_account()
    original = await post(sessions, "deposit", (factory.gl(CASH.number), acc.id, 1_000_00))
    await post(sessions, "withdrawal", (acc.id, factory.gl(CASH.number), 700_00))
    receivable = gl_code(OVERDRAFT_RECEIVABLE, CURRENCY)
    owed_before = await gl_balance(sessions, receivable)
    handle = await start(temporal_client, worker, reversal_input(original.journal_id))
    state = await initial(handle)
    assert state.needs_override and state.assigned_role == "finance"
    assert [(s.account, s.amount_minor) for s in state.shortfalls] == [(acc.code, 700_00)]
    assert await balances(factory, acc.id) == (300_00, 300_00)  # what is left is held

    assert await refused(handle, decision()) == ErrorCode.OVERRIDE_REQUIRED
    assert await refused(handle, decision(override=True)) == ErrorCode.FORBIDDEN
    done = await decide(handle, decision(approver_id=FINANCE_ID, roles=("finance",), override=True))
    assert done.cover_journal_id == f"{handle.id}:cover"
    assert (await handle.result()).stage == Stage.COMPLETED
    assert await balances(factory, acc.id) == (0, 0)
    assert await gl_balance(sessions, receivable) - owed_before == 700_00
    await verified(sessions)
    await record_history(handle, "reversal_override")


async def test_rejection_releases_the_hold(
    temporal_client: Client, worker: str, factory: Factory, sessions: Sessions
) -> None:
    acc = await factory.savings_account()
    original = await post(sessions, "deposit", (factory.gl(CASH.number), acc.id, 250_00))
    handle = await start(temporal_client, worker, reversal_input(original.journal_id))
    await initial(handle)
    done = await decide(handle, decision(approve=False))
    assert done.stage == Stage.REJECTED and done.reversal_journal_id is None
    assert await balances(factory, acc.id) == (250_00, 0)
    async with sessions() as s:
        assert (
            await ledger_engine.load_journal(s, original.journal_id)
        ).reversed_by_journal_id is None
    await verified(sessions)
    await record_history(handle, "reversal_rejected")


@pytest.mark.parametrize(
    ("kind", "code"),
    [
        ("loan_repayment", ErrorCode.NOT_REVERSIBLE),
        ("loan_disbursement", ErrorCode.NOT_REVERSIBLE),
        ("opening_balance", ErrorCode.NOT_REVERSIBLE),
    ],
)
async def test_kinds_this_process_does_not_reverse_are_refused(
    temporal_client: Client,
    worker: str,
    factory: Factory,
    sessions: Sessions,
    kind: str,
    code: ErrorCode,
) -> None:
    acc = await factory.savings_account()
    original = await post(sessions, kind, (factory.gl(CASH.number), acc.id, 10_00))
    handle = await start(temporal_client, worker, reversal_input(original.journal_id))
    result = await handle.result()
    assert result.stage == Stage.REFUSED and result.error == code
    assert result.checks[-1].name == "kind reversible" and not result.checks[-1].ok
    if kind != "opening_balance":  # a loan journal must belong to a loan transaction
        assert "belongs to no loan transaction" in (result.error_detail or "")
    assert await balances(factory, acc.id) == (10_00, 0)
    if kind == "loan_repayment":
        await record_history(handle, "reversal_refused")


async def test_a_reversal_and_a_reversed_journal_are_refused(
    temporal_client: Client, worker: str, factory: Factory, sessions: Sessions
) -> None:
    acc = await factory.savings_account()
    original = await post(sessions, "deposit", (factory.gl(CASH.number), acc.id, 20_00))
    first = await start(temporal_client, worker, reversal_input(original.journal_id))
    await initial(first)
    done = await decide(first, decision())
    assert done.reversal_journal_id is not None
    await first.result()  # the same workflow id would otherwise meet the finishing case
    again = await (
        await start(temporal_client, worker, reversal_input(original.journal_id))
    ).result()
    assert again.stage == Stage.REFUSED and again.error == ErrorCode.ALREADY_REVERSED
    mirror = await (
        await start(temporal_client, worker, reversal_input(done.reversal_journal_id))
    ).result()
    assert mirror.stage == Stage.REFUSED and mirror.error == ErrorCode.NOT_REVERSIBLE
    assert await balances(factory, acc.id) == (0, 0)


async def test_concurrent_executions_reverse_the_original_once(
    factory: Factory, sessions: Sessions
) -> None:
    """Even two cases racing past every check (which the workflow id prevents) post one
    reversal: the unique link to the original decides, and the loser changes nothing."""
    acc = await factory.savings_account()
    original = await post(sessions, "deposit", (factory.gl(CASH.number), acc.id, 60_00))

    async def run(case: str) -> str:
        req = ExecuteRequest(
            reversal_id=f"reversal-race-{case}-{original.journal_id}",
            journal_id=original.journal_id,
            hold_ids=[],
            value_date=date.today(),
            description="race",
            override=False,
        )
        try:
            return (await in_transaction(sessions, lambda s: execute(s, req))).reversal_journal_id
        except BankflowError as exc:
            return exc.code.value

    outcomes = await asyncio.gather(*(run(str(n)) for n in range(8)))
    assert sorted(outcomes).count(ErrorCode.ALREADY_REVERSED.value) == 7, outcomes
    assert await balances(factory, acc.id) == (0, 0)
    await verified(sessions)
