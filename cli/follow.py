"""Start or join a batch workflow, then follow its progress until it ends: what `bankflow
month-end run`, `schedules backfill` and `daily-loan-job run` all do.

Joining is the point: the id is the business key (the period, the date), so a second operator
or a retried command attaches to the run already going instead of starting another, and a
finished run's id may be used again (its re-run posts nothing and returns the stored totals).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import TypeVar

from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.service import RPCError
from temporalio.types import MethodAsyncSingleParam, MethodSyncNoParam, ParamType, SelfType

R = TypeVar("R")
P = TypeVar("P")


async def start_or_join(
    client: Client,
    run: MethodAsyncSingleParam[SelfType, ParamType, R],
    arg: ParamType,
    *,
    workflow_id: str,
    task_queue: str,
    progress: MethodSyncNoParam[SelfType, P],
    on_progress: Callable[[P], None],
    poll: timedelta,
) -> R:
    """Start the workflow (or join the one running under its id), report its progress query's
    answer every `poll`, and return its result (its failure raises WorkflowFailureError)."""
    handle = await client.start_workflow(
        run,
        arg,
        id=workflow_id,
        task_queue=task_queue,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
    )
    result = asyncio.ensure_future(handle.result())
    while not result.done():
        try:
            on_progress(await handle.query(progress))
        except RPCError:
            pass  # between runs (continue-as-new) or not started yet: ask again
        await asyncio.wait([result], timeout=poll.total_seconds())
    return result.result()
