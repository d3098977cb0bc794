"""Talking to workflows from routes: decisions (Updates) with the workflow's refusals turned into
the API's error codes."""

from __future__ import annotations

from typing import Any, TypeVar

from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError
from temporalio.runtime import Runtime, TelemetryConfig
from temporalio.service import RPCError, RPCStatusCode

from schemas.errors import BankflowError, ErrorCode, known_code
from schemas.settings import Settings

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


async def connect_short_lived(settings: Settings) -> Client:
    """A client for a command that exits when done (the CLI).

    It gets a Runtime of its own instead of the process-wide default: the default one lives in a
    module global and is torn down during interpreter finalization, when its Rust threads can
    still be releasing the GIL (a "Fatal Python error: PyGILState_Release" at exit). A private
    runtime is dropped with the client, before the interpreter finalizes.
    """
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=pydantic_data_converter,
        runtime=Runtime(telemetry=TelemetryConfig()),
    )
