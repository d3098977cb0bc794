"""Talking to workflows from routes: decisions (Updates) with the workflow's refusals turned into
the API's error codes."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, TypeVar

from temporalio.client import (
    Client,
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from schemas.errors import BankflowError, ErrorCode, known_code

T = TypeVar("T")


async def earlier_update(
    client: Client,
    workflow_id: str,
    update_id: str | None,
    result_type: type[T],
    rpc_timeout: timedelta,
) -> T | None:
    """The outcome of the Update `update_id` on `workflow_id`, when this request's own first
    attempt sent it (it died before its answer was kept, and this is its retry); None when no
    Update has that id (another request, or no key)."""
    if update_id is None:
        return None
    handle = client.get_workflow_handle(workflow_id).get_update_handle(
        update_id, result_type=result_type
    )
    try:
        result: T = await handle.result(rpc_timeout=rpc_timeout)
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
    return result


async def execute_decision(
    handle: WorkflowHandle[Any, Any],
    update: str,
    arg: Any,
    result_type: type[T],
    update_id: str | None = None,
) -> T:
    """Run a decision Update. The validator's typed refusal (FourEyesViolation, Forbidden, ...)
    becomes that error; a process that has finished is NotAwaitingDecision; none is NotFound.
    An `update_id` already used on this workflow answers that Update's outcome (a retry)."""
    try:
        result: T = await handle.execute_update(update, arg, id=update_id, result_type=result_type)
        return result
    except WorkflowUpdateFailedError as exc:
        cause = exc.cause
        code = known_code(cause.type) if isinstance(cause, ApplicationError) else None
        if code is None or not isinstance(cause, ApplicationError):
            raise
        raise BankflowError(code, cause.message) from exc
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise
        try:
            described = await handle.describe()
        except RPCError as missing:
            if missing.status == RPCStatusCode.NOT_FOUND:
                raise BankflowError(ErrorCode.NOT_FOUND, f"no process {handle.id}") from exc
            raise
        status = described.status.name.lower() if described.status else "closed"
        raise BankflowError(
            ErrorCode.NOT_AWAITING_DECISION, f"{handle.id} is {status}, not awaiting a decision"
        ) from exc


STATE_QUERY = "state"  # every interactive workflow answers its state under this query name


async def describe(
    handle: WorkflowHandle[Any, Any], missing: ErrorCode = ErrorCode.NOT_FOUND
) -> WorkflowExecutionDescription:
    """The workflow's description; an unknown id is `missing` (NotFound unless told otherwise)."""
    try:
        return await handle.describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise BankflowError(missing, f"no process {handle.id}") from exc
        raise


async def process_state(handle: WorkflowHandle[Any, Any], result_type: type[T]) -> T:
    """A finished process's result from history (no worker needed), else its `state` query.

    A running process whose workflow task is failing cannot answer: ProcessUnavailable (503),
    and operations see why in the Temporal UI.
    """
    described = await describe(handle)
    if described.status == WorkflowExecutionStatus.COMPLETED:
        result: T = await handle.result()  # the handle carries its result type
        return result
    try:
        state: T = await handle.query(STATE_QUERY, result_type=result_type)
    except RPCError as exc:
        raise BankflowError(
            ErrorCode.PROCESS_UNAVAILABLE, f"{handle.id} cannot answer now: {exc.message}"
        ) from exc
    return state
