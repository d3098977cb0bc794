"""Money movements beside the bare workflow, on the real workers (bench/ledger.py's c. and d.)."""

from __future__ import annotations

import uuid
from contextlib import AsyncExitStack
from datetime import date, timedelta

from temporalio.client import Client
from temporalio.common import TypedSearchAttributes
from temporalio.worker import Worker

from activities.direct import DirectPool
from bench.bare import BareWorkflow, noop
from bench.kit import AMOUNT, Sessions, closed_loop, new_account
from schemas import search_attributes as sa
from schemas.movements import MovementInput, Stage
from schemas.settings import Settings
from worker import GRACEFUL_SHUTDOWN, build_workers, workflow_runner
from workflows.money_movement import MoneyMovementWorkflow

# A broken workflow retries its task forever; a bench run fails instead of hanging.
RUN_LIMIT = timedelta(minutes=5)


def deposit(i: int, cash: int, account: int) -> MovementInput:
    return MovementInput(
        movement_id=f"BENCH{i:07d}",
        kind="deposit",
        debit_account_id=cash,
        credit_account_id=account,
        debit_account=str(cash),
        credit_account=str(account),
        amount_minor=AMOUNT,
        currency="USD",
        scale=2,
        value_date=date.today(),
        branch="HQ",
        requested_by_id=1,
        requested_by="bench",
        approval_threshold_minor=500_00,
        approval_timeout=timedelta(hours=1),
    )


async def measure_workflows(
    client: Client,
    settings: Settings,
    sessions: Sessions,
    direct: DirectPool,
    cash: int,
    m: int,
    c: int,
) -> tuple[float, float, list[int]]:
    """c. and d., each after an untimed warm-up of C runs (the sandbox's first imports)."""
    accounts = [await new_account(sessions) for _ in range(c)]
    queue = f"bench-{uuid.uuid4().hex[:8]}"
    workers = build_workers(
        client,
        settings,
        sessions,
        direct,
        interactive_queue=queue,
        batch_queue=queue + "b",
    )
    workers.append(  # configured like the interactive worker of build_workers
        Worker(
            client,
            task_queue=queue + "-bare",
            workflows=[BareWorkflow],
            activities=[noop],
            graceful_shutdown_timeout=GRACEFUL_SHUTDOWN,
            workflow_runner=workflow_runner("bench.bare"),
        )
    )
    incomplete: list[int] = []

    def started_as_the_api_does(i: int) -> TypedSearchAttributes:
        """The search attributes the API starts a movement with (both kinds of run get them)."""
        return sa.at_start(
            "MoneyMovement", Stage.POSTING.value, branch="HQ", amount_minor=AMOUNT,
            currency="USD", business_id=f"BENCH{i:07d}",
        )  # fmt: skip

    async def movement(task: int, i: int) -> None:
        state = await client.execute_workflow(
            MoneyMovementWorkflow.run,
            deposit(i, cash, accounts[task]),
            id=f"movement-BENCH{i:07d}",
            task_queue=queue,
            execution_timeout=RUN_LIMIT,
            search_attributes=started_as_the_api_does(i),
        )
        if state.stage != Stage.COMPLETED:
            incomplete.append(i)

    async def bare(task: int, i: int) -> None:
        await client.execute_workflow(
            BareWorkflow.run,
            i,
            id=f"bare-{i}",
            task_queue=queue + "-bare",
            execution_timeout=RUN_LIMIT,
            search_attributes=started_as_the_api_does(i),
        )

    async with AsyncExitStack() as stack:
        for w in workers:
            await stack.enter_async_context(w)
        await closed_loop("", c, c, lambda t, i: movement(t, m + i))
        movements = await closed_loop("c. money movements (deposits)", m, c, movement)
        await closed_loop("", c, c, lambda t, i: bare(t, m + i))
        bares = await closed_loop("d. bare workflows (one no-op local activity)", m, c, bare)
    if incomplete:
        print(f"   {len(incomplete)} movements did not complete, e.g. {incomplete[:3]}")
    return movements, bares, accounts
