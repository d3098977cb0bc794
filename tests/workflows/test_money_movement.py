"""MoneyMovement on a real Temporal dev server and a real Postgres."""

from __future__ import annotations

import asyncio
import uuid
from datetime import date, timedelta

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowFailureError, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError

from activities.accounts import close_account
from activities.db import in_transaction
from activities.ledger.chart import CASH
from activities.tables import Journal
from schemas import search_attributes as sa
from schemas.errors import ErrorCode
from schemas.movements import DecisionInput, MovementInput, MovementState, Stage
from tests.conftest import CURRENCY, Factory, Sessions
from tests.workflows.conftest import record_history
from workflows.money_movement import MoneyMovementWorkflow

TELLER_ID, MANAGER_ID = 9001, 9002


def movement(
    debit: int,
    credit: int,
    amount: int,
    *,
    timeout: timedelta = timedelta(hours=1),
    kind: str = "withdrawal",
) -> MovementInput:
    return MovementInput(
        movement_id=f"MV{uuid.uuid4().hex[:12].upper()}",
        kind=kind,
        debit_account_id=debit,
        credit_account_id=credit,
        debit_account=str(debit),
        credit_account=str(credit),
        amount_minor=amount,
        currency=CURRENCY,
        scale=2,
        value_date=date(2026, 11, 23),
        branch="HQ",
        requested_by_id=TELLER_ID,
        requested_by="teller1",
        approval_threshold_minor=500_00,
        approval_timeout=timeout,
    )


async def start(client: Client, queue: str, inp: MovementInput):  # type: ignore[no-untyped-def]
    return await client.start_workflow(
        MoneyMovementWorkflow.run,
        inp,
        id=f"movement-{inp.movement_id}",
        task_queue=queue,
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
    )


def decision(
    approve: bool, approver_id: int = MANAGER_ID, roles: tuple[str, ...] = ("branch_manager",)
) -> DecisionInput:
    return DecisionInput(
        approve=approve,
        reason="checked ID",
        approver_id=approver_id,
        approver="manager1",
        approver_roles=list(roles),
    )


async def balance(factory: Factory, account_id: int) -> tuple[int, int]:
    acc = await factory.account(account_id)
    return acc.credits_posted_minor - acc.debits_posted_minor, acc.debits_pending_minor


async def test_small_withdrawal_posts_at_once(
    temporal_client: Client, worker: str, factory: Factory
) -> None:
    acc = await factory.savings_account(1_000_00)
    handle = await start(temporal_client, worker, movement(acc.id, factory.gl(CASH.number), 200_00))
    result = await handle.result()
    assert result.stage == Stage.COMPLETED and result.journal_id == f"{handle.id}:post"
    assert await balance(factory, acc.id) == (800_00, 0)
    # Posted as a local activity, in the workflow task that started the movement: no activity
    # task for the server to schedule and dispatch, one workflow task in all.
    events = [e async for e in handle.fetch_history_events()]
    kinds = {EventType.Name(e.event_type) for e in events}
    assert "EVENT_TYPE_ACTIVITY_TASK_SCHEDULED" not in kinds
    assert [EventType.Name(e.event_type) for e in events].count(
        "EVENT_TYPE_WORKFLOW_TASK_COMPLETED"
    ) == 1
    await record_history(handle, "money_movement_small_one_marker")


async def test_a_deposit_started_as_the_api_starts_it_writes_one_marker_and_one_upsert(
    temporal_client: Client, worker: str, factory: Factory
) -> None:
    """Beyond its posting, a deposit records one patch marker (with the SDK's own upsert of
    TemporalChangeVersion that comes with it) and one upsert of its stage, `completed`: the API
    starts it at stage `posting` already. Each marker and upsert is an event the server writes;
    a deposit had two patches and two stage upserts (bench/ledger.py)."""
    acc = await factory.savings_account()
    inp = movement(factory.gl(CASH.number), acc.id, 50_00, kind="deposit")
    handle = await temporal_client.start_workflow(
        MoneyMovementWorkflow.run,
        inp,
        id=f"movement-{inp.movement_id}",
        task_queue=worker,
        search_attributes=sa.at_start(
            "MoneyMovement",
            Stage.POSTING.value,
            branch="HQ",
            amount_minor=inp.amount_minor,
            currency=inp.currency,
            business_id=inp.movement_id,
        ),
    )
    assert (await handle.result()).stage == Stage.COMPLETED
    assert await balance(factory, acc.id) == (50_00, 0)
    events = [e async for e in handle.fetch_history_events()]
    markers = [
        e.marker_recorded_event_attributes.marker_name
        for e in events
        if e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED
    ]
    assert sorted(markers) == ["core_local_activity", "core_patch"], markers
    upserted = [
        sorted(
            e.upsert_workflow_search_attributes_event_attributes.search_attributes.indexed_fields
        )
        for e in events
        if e.event_type == EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES
    ]
    assert upserted == [["TemporalChangeVersion"], [sa.STAGE.name]], upserted
    desc = await handle.describe()
    assert desc.typed_search_attributes.get(sa.STAGE) == Stage.COMPLETED.value
    await record_history(handle, "money_movement_deposit_one_marker")


async def test_large_withdrawal_waits_for_a_supervisor(
    temporal_client: Client, worker: str, factory: Factory
) -> None:
    acc = await factory.savings_account(1_000_00)
    handle = await start(temporal_client, worker, movement(acc.id, factory.gl(CASH.number), 700_00))
    state = await handle.execute_update(MoneyMovementWorkflow.initial_outcome)
    assert state.stage == Stage.AWAITING_APPROVAL and state.assigned_role == "branch_manager"
    assert await balance(factory, acc.id) == (1_000_00, 700_00)  # held, not yet posted

    for bad, code in [
        (decision(True, approver_id=TELLER_ID), ErrorCode.FOUR_EYES),
        (decision(True, roles=("teller", "finance")), ErrorCode.FORBIDDEN),
    ]:
        with pytest.raises(WorkflowUpdateFailedError) as err:
            await handle.execute_update(MoneyMovementWorkflow.decide, bad)
        assert isinstance(err.value.cause, ApplicationError) and err.value.cause.type == code

    done = await handle.execute_update(MoneyMovementWorkflow.decide, decision(True))
    assert done.stage == Stage.COMPLETED and done.decided_by == "manager1"
    assert await balance(factory, acc.id) == (300_00, 0)
    # Decided already: refused by the validator, or by the server once the workflow has ended.
    with pytest.raises((WorkflowUpdateFailedError, RPCError)):
        await handle.execute_update(MoneyMovementWorkflow.decide, decision(False))
    assert (await handle.result()).stage == Stage.COMPLETED
    await record_history(handle, "money_movement_approved_one_marker")


async def test_rejection_releases_the_hold(
    temporal_client: Client, worker: str, factory: Factory
) -> None:
    acc = await factory.savings_account(1_000_00)
    handle = await start(temporal_client, worker, movement(acc.id, factory.gl(CASH.number), 900_00))
    await handle.execute_update(MoneyMovementWorkflow.initial_outcome)
    done = await handle.execute_update(MoneyMovementWorkflow.decide, decision(False))
    assert done.stage == Stage.REJECTED and done.journal_id is None
    assert await balance(factory, acc.id) == (1_000_00, 0)
    await record_history(handle, "money_movement_rejected_one_marker")


async def test_no_decision_expires_and_releases_the_hold(
    temporal_client: Client, worker: str, factory: Factory
) -> None:
    acc = await factory.savings_account(1_000_00)
    inp = movement(acc.id, factory.gl(CASH.number), 600_00, timeout=timedelta(seconds=1))
    handle = await start(temporal_client, worker, inp)
    result = await handle.result()
    assert result.stage == Stage.EXPIRED
    assert await balance(factory, acc.id) == (1_000_00, 0)
    await record_history(handle, "money_movement_expired_one_marker")


async def test_insufficient_funds_is_declined_not_retried(
    temporal_client: Client, worker: str, factory: Factory
) -> None:
    acc = await factory.savings_account(100_00)
    handle = await start(temporal_client, worker, movement(acc.id, factory.gl(CASH.number), 200_00))
    result: MovementState = await handle.result()
    assert result.stage == Stage.DECLINED and result.error == ErrorCode.INSUFFICIENT_FUNDS
    assert await balance(factory, acc.id) == (100_00, 0)
    big = await start(temporal_client, worker, movement(acc.id, factory.gl(CASH.number), 600_00))
    assert (await big.result()).stage == Stage.DECLINED  # the hold itself is refused
    await record_history(handle, "money_movement_declined_one_marker")


async def test_a_deposit_into_an_account_closed_since_is_declined_at_once(
    temporal_client: Client, worker: str, factory: Factory, sessions: Sessions
) -> None:
    """A deposit posts alone on the worker's DirectPool; the ledger's refusal there is as typed
    and as final as in a transaction: declined on the first attempt, nothing written."""
    acc = await factory.savings_account()
    await in_transaction(sessions, lambda s: close_account(s, acc.code))  # after the API looked
    inp = movement(factory.gl(CASH.number), acc.id, 25_00, kind="deposit")
    handle = await start(temporal_client, worker, inp)
    result = await asyncio.wait_for(handle.result(), timeout=60)  # a retried refusal never ends
    assert result.stage == Stage.DECLINED and result.error == ErrorCode.ACCOUNT_CLOSED
    assert result.journal_id is None and await balance(factory, acc.id) == (0, 0)
    async with sessions() as session:
        assert await session.get(Journal, f"{handle.id}:post") is None


async def test_a_duplicate_start_is_refused_by_temporal(
    temporal_client: Client, worker: str, factory: Factory
) -> None:
    acc = await factory.savings_account(1_000_00)
    inp = movement(acc.id, factory.gl(CASH.number), 10_00)
    handle = await start(temporal_client, worker, inp)
    await handle.result()
    with pytest.raises(WorkflowAlreadyStartedError):
        await start(temporal_client, worker, inp)
    assert await balance(factory, acc.id) == (990_00, 0)


async def test_unknown_account_declines(
    temporal_client: Client, worker: str, factory: Factory
) -> None:
    acc = await factory.savings_account(1_000_00)
    handle = await start(
        temporal_client, worker, movement(acc.id, 987_654_321, 10_00, kind="transfer")
    )
    result = await handle.result()
    assert result.stage == Stage.DECLINED and result.error == ErrorCode.ACCOUNT_NOT_FOUND
    assert not isinstance(result, WorkflowFailureError)


async def test_the_basic_kyc_tier_is_checked_by_the_workflow_itself(
    temporal_client: Client, worker: str, factory: Factory
) -> None:
    """Started straight on Temporal, bypassing the API: the workflow's own posting and holding
    steps refuse a member who is not KYC-verified past the basic tier's 1,500.00 a day."""
    acc = await factory.savings_account(3_000_00)  # the factory's members are not verified
    small = await start(temporal_client, worker, movement(acc.id, factory.gl(CASH.number), 400_00))
    assert (await small.result()).stage == Stage.COMPLETED
    await record_history(small, "money_movement_tier_checked_one_marker")
    big = await start(temporal_client, worker, movement(acc.id, factory.gl(CASH.number), 1_200_00))
    result: MovementState = await big.result()
    assert result.stage == Stage.DECLINED and result.error == ErrorCode.KYC_TIER_LIMIT
    assert result.hold_id is None and "1500.00 USD a day" in (result.error_detail or "")
    assert await balance(factory, acc.id) == (2_600_00, 0)  # nothing held for the refused one
    await record_history(big, "money_movement_tier_limit_one_marker")
