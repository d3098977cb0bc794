"""Talking to workflows from routes: decisions (Updates) with the workflow's refusals turned into
the API's error codes."""

from __future__ import annotations

from typing import Any, TypeVar

from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from schemas.errors import BankflowError, ErrorCode, known_code

T = TypeVar("T")


async def execute_decision(
    handle: WorkflowHandle[Any, Any], update: str, arg: Any, result_type: type[T]
) -> T:
    """Run a decision Update. The validator's typed refusal (FourEyesViolation, Forbidden, ...)
    becomes that error; a process that has finished is NotAwaitingDecision; none is NotFound."""
    try:
        result: T = await handle.execute_update(update, arg, result_type=result_type)
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
