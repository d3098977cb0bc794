"""One error shape for every failure: `{"error": "<Code>", "detail": "<human message>"}`.

Status rules, applied everywhere:
- every input that fails validation is 422 `ValidationError`, whether the JSON is malformed or
  not UTF-8, a field is unknown or invalid, a query parameter is out of range or a required
  header is missing (one code, one status);
- business failures carry their `ErrorCode`, mapped to a status in `STATUS` below;
- a database error is classified once (`activities.errors.classify`): a value or row Postgres
  refuses is 422 `InvalidData` / 409 `Duplicate`, a database that is down or busy 503;
- 500 `InternalError` is reserved for bugs and is logged with its traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException
from temporalio.service import RPCError, RPCStatusCode

from activities.db import db_unavailable
from activities.errors import classify, log_failure
from schemas.errors import BankflowError, ErrorCode

log = logging.getLogger(__name__)

# HTTP-level codes that are not business errors, defined once here.
METHOD_NOT_ALLOWED = "MethodNotAllowed"
INTERNAL_ERROR = "InternalError"
HTTP_ERROR = "HttpError"

E = ErrorCode
STATUS: dict[ErrorCode, int] = {
    E.NOT_FOUND: 404,
    E.ACCOUNT_NOT_FOUND: 404,
    E.JOURNAL_NOT_FOUND: 404,
    E.HOLD_NOT_FOUND: 404,
    E.UNAUTHENTICATED: 401,
    E.FORBIDDEN: 403,
    E.FOUR_EYES: 403,
    E.JOURNAL_CONFLICT: 409,
    E.HOLD_CONFLICT: 409,
    E.IDEMPOTENCY_CONFLICT: 409,
    E.IDEMPOTENCY_IN_PROGRESS: 409,
    E.DUPLICATE: 409,
    E.ALREADY_REVERSED: 409,
    E.HOLD_ALREADY_RESOLVED: 409,
    E.NOT_AWAITING_DECISION: 409,
    E.ACCOUNT_NOT_EMPTY: 409,
    E.INSUFFICIENT_FUNDS: 422,
    E.INVALID_AMOUNT: 422,
    E.CURRENCY_MISMATCH: 422,
    E.ACCOUNT_CLOSED: 422,
    E.INVALID_POSTING: 422,
    E.NOT_REVERSIBLE: 422,
    E.VALIDATION: 422,
    E.INVALID_DATA: 422,
    E.DATABASE_UNAVAILABLE: 503,
    E.RATE_LIMITED: 429,
    E.LOGIN_LOCKED: 429,
    E.PROCESS_UNAVAILABLE: 503,
    E.PERIOD_CLOSED: 409,
    E.PERIOD_NOT_ENDED: 422,
    E.OVERRIDE_REQUIRED: 403,
    E.DOCUMENT_REJECTED: 422,
    E.DOCUMENT_TOO_LARGE: 413,
    E.REQUEST_TOO_LARGE: 413,
    E.NOTIFICATION_REJECTED: 422,
    E.ALREADY_VOTED: 409,
    E.LOAN_NOT_ELIGIBLE: 422,
    E.GUARANTEE_NOT_MET: 422,
    E.INVALID_SCHEDULE: 422,
    E.LOAN_STATE: 409,
    E.PAYOUT_REJECTED: 422,
    E.KYC_TIER_LIMIT: 422,
}


class ErrorBody(BaseModel):
    """The one error shape of every 4xx and 5xx answer."""

    error: str = Field(description="the error code, e.g. InsufficientFunds or ValidationError")
    detail: str = Field(description="what went wrong, for people")


def errors(*statuses: int, **codes: str) -> dict[int | str, dict[str, Any]]:
    """`responses=` for the errors a route answers with, each in the error shape, described in
    general or, for `s<status>=...`, by the codes it answers with: `errors(404,
    s409="AlreadyReversed or PeriodClosed")`. Authentication, roles, validation, idempotency
    and availability are added to every route that has them by `api.openapi`."""
    documented: dict[int | str, dict[str, Any]] = {
        status: {"model": ErrorBody, "description": DESCRIPTIONS[status]} for status in statuses
    }
    for name, description in codes.items():
        documented[int(name.removeprefix("s"))] = {"model": ErrorBody, "description": description}
    return documented


DESCRIPTIONS: dict[int, str] = {
    401: "Unauthenticated: no bearer token, a bad or expired one, or a disabled user",
    403: "Forbidden (the caller's roles do not allow this) or FourEyesViolation",
    404: "NotFound, or what was not found (AccountNotFound, JournalNotFound, ...)",
    409: "a conflict with the current state, or IdempotencyKeyConflict / IdempotencyKeyInProgress",
    413: "RequestTooLarge, or DocumentTooLarge for an upload",
    422: "ValidationError (the request is malformed; nothing was done), or the business rule "
    "that refused it (InsufficientFunds, InvalidAmount, InvalidData, ...)",
    429: "RateLimited: see Retry-After",
    503: "ProcessUnavailable or DatabaseUnavailable: nothing is known to be done; retry",
}

# Temporal failures that mean "the process engine is unreachable right now", not a bug.
_UNAVAILABLE_RPC = frozenset({RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED})


def engine_unreachable(exc: RPCError) -> bool:
    """True when a call to Temporal failed on the way, not at the server: nothing is known to be
    done. A connection broken mid-call (the server killed under an update-with-start) comes back
    from the SDK's transport as UNKNOWN "transport error", not as UNAVAILABLE."""
    if exc.status in _UNAVAILABLE_RPC:
        return True
    return exc.status == RPCStatusCode.UNKNOWN and "transport error" in exc.message


# A 503 is worth retrying soon: Postgres restarts in seconds, Temporal reconnects as fast.
RETRY_AFTER_SECONDS = "1"


def error_response(
    code: str, detail: str, status: int, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": str(code), "detail": detail}, status_code=status, headers=headers)


def bankflow_error_response(
    exc: BankflowError, headers: dict[str, str] | None = None
) -> JSONResponse:
    status = STATUS.get(exc.code, 422)
    if status == 401:
        headers = {"WWW-Authenticate": "Bearer", **(headers or {})}
    elif status == 503:
        headers = {"Retry-After": RETRY_AFTER_SECONDS, **(headers or {})}
    return error_response(exc.code, exc.detail, status, headers)


def unavailable_response() -> JSONResponse:
    """503 for a request the database could not serve: nothing was done, retry it."""
    return bankflow_error_response(
        BankflowError(
            ErrorCode.DATABASE_UNAVAILABLE,
            "the database is unavailable; retry shortly (with the same Idempotency-Key)",
        )
    )


def describe_validation(errors: Sequence[Any]) -> str:
    """`body.first_name: Field required; query.limit: ...` - names each offending field."""
    parts = []
    for err in errors:
        loc = ".".join(str(p) for p in err.get("loc", ()))
        if err.get("type") == "json_invalid":
            parts.append(f"request body is not valid JSON: {err.get('ctx', {}).get('error', '')}")
        else:
            parts.append(f"{loc}: {err.get('msg', 'invalid')}" if loc else str(err.get("msg")))
    return "; ".join(parts) or "invalid request"


async def _bankflow(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, BankflowError)
    retry_after = getattr(exc, "retry_after", None)
    return bankflow_error_response(
        exc, {"Retry-After": str(retry_after)} if retry_after is not None else None
    )


async def _validation(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return error_response(E.VALIDATION, describe_validation(exc.errors()), 422)


async def _http(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 400:
        # FastAPI's answer to a body it cannot parse at all (not UTF-8, a broken multipart form):
        # malformed input, so the one validation status and code.
        cause = exc.__cause__
        detail = (
            "request body is not valid UTF-8"
            if isinstance(cause, UnicodeDecodeError)
            else f"request body cannot be parsed: {exc.detail}"
        )
        return error_response(E.VALIDATION, detail, 422)
    if exc.status_code == 404:
        code = str(E.NOT_FOUND)
    elif exc.status_code == 405:
        code = METHOD_NOT_ALLOWED
    elif exc.status_code == 401:
        code = str(E.UNAUTHENTICATED)
    elif exc.status_code == 403:
        code = str(E.FORBIDDEN)
    else:
        code = HTTP_ERROR
    return error_response(code, str(exc.detail), exc.status_code, dict(exc.headers or {}))


async def _rpc(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RPCError)
    if engine_unreachable(exc):
        return bankflow_error_response(
            BankflowError(E.PROCESS_UNAVAILABLE, "the process engine is unavailable")
        )
    return await _unexpected(request, exc)


async def _database(request: Request, exc: Exception) -> JSONResponse:
    if db_unavailable(exc):
        # The error's text carries the SQL and its parameters (personal data): only its type.
        cause = type(getattr(exc, "orig", None) or exc).__name__
        log.warning("database unavailable on %s %s (%s)", request.method, request.url.path, cause)
        return unavailable_response()
    assert isinstance(exc, DBAPIError)
    failure = classify(exc)
    log_failure(failure, exc, f"{request.method} {request.url.path}")
    if failure.retryable:
        return unavailable_response()
    return error_response(failure.code, failure.message, STATUS[failure.code])


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(INTERNAL_ERROR, "internal error", 500)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(BankflowError, _bankflow)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(HTTPException, _http)
    app.add_exception_handler(RPCError, _rpc)
    app.add_exception_handler(DBAPIError, _database)
    app.add_exception_handler(PoolTimeout, _database)
    app.add_exception_handler(Exception, _unexpected)
