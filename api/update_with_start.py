"""Start a process and wait for its first answer in one call (update-with-start), the way every
money route does it: the workflow id derives from the caller and the Idempotency-Key, a running
workflow with that id is joined, and the three ways the call can end are one vocabulary.

- `Answered`: the workflow ran the update and answered within the API's wait;
- `Pending`: the workflow may have started but did not answer in time (no worker free): the
  route answers 202 or 503 as its contract says;
- `Finished`: the id belongs to a workflow that has already closed (a retry long after): its
  recorded state is the answer.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Generic, TypeVar

from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import (
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.types import MethodAsyncSingleParam, ParamType, SelfType

from schemas.settings import Settings

T = TypeVar("T")
R = TypeVar("R")


def key_digest(user_id: int, key: str) -> str:
    """16 hex digits of the caller and their Idempotency-Key: the part of a workflow id that
    makes a retry, even one that outlives the idempotency record, meet the same workflow."""
    return hashlib.sha256(f"{user_id}:{key}".encode()).hexdigest()[:16]


def update_id(user_id: int, route: str, key: str) -> str:
    """The id of the Update a decision sends (api.idempotency.UpdateId): from the caller, the
    route and the Idempotency-Key, so a retry asks for the same Update and Temporal answers with
    its outcome instead of deciding again."""
    return "upd-" + key_digest(user_id, f"{route}:{key}")


@dataclass(frozen=True)
class Answered(Generic[T]):
    state: T


@dataclass(frozen=True)
class Pending:
    pass


@dataclass(frozen=True)
class Finished:
    pass


async def update_with_start(
    client: Client,
    settings: Settings,
    run: MethodAsyncSingleParam[SelfType, ParamType, R],
    arg: ParamType,
    *,
    workflow_id: str,
    update: str,
    result_type: type[T],
    search_attributes: TypedSearchAttributes,
    summary: str,
    id_reuse_policy: WorkflowIDReusePolicy = WorkflowIDReusePolicy.REJECT_DUPLICATE,
) -> Answered[T] | Pending | Finished:
    """Start `run(arg)` on the interactive queue under `workflow_id` (or join it running), run
    `update` on it and wait up to the API's wait timeout for its answer."""
    start = WithStartWorkflowOperation(
        run,
        arg,
        id=workflow_id,
        task_queue=settings.interactive_task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        id_reuse_policy=id_reuse_policy,
        search_attributes=search_attributes,
        static_summary=summary,
    )
    try:
        state: T = await client.execute_update_with_start_workflow(
            update,
            start_workflow_operation=start,
            result_type=result_type,
            rpc_timeout=settings.api_wait_timeout,
        )
    except WorkflowAlreadyStartedError:
        return Finished()
    except WorkflowUpdateRPCTimeoutOrCancelledError:
        return Pending()
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise
        return Finished()
    return Answered(state)
