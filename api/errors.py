"""One error shape for every failure: `{"error": "<Code>", "detail": "<human message>"}`.

Status rules, applied everywhere:
- every input that fails validation is 422 `ValidationError`, whether the JSON is malformed, a
  field is unknown or invalid, a query parameter is out of range or a required header is missing
  (one code, one status);
- business failures carry their `ErrorCode`, mapped to a status in `STATUS` below;
- 500 `InternalError` is reserved for bugs and is logged with its traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from temporalio.service import RPCError, RPCStatusCode

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
    E.RATE_LIMITED: 429,
    E.PROCESS_UNAVAILABLE: 503,
    E.PERIOD_CLOSED: 409,
    E.PERIOD_NOT_ENDED: 422,
    E.OVERRIDE_REQUIRED: 403,
    E.DOCUMENT_REJECTED: 422,
    E.DOCUMENT_TOO_LARGE: 413,
    E.NOTIFICATION_REJECTED: 422,
    E.ALREADY_VOTED: 409,
    E.LOAN_NOT_ELIGIBLE: 422,
    E.GUARANTEE_NOT_MET: 422,
    E.INVALID_SCHEDULE: 422,
    E.LOAN_STATE: 409,
    E.PAYOUT_REJECTED: 422,
    E.KYC_TIER_LIMIT: 422,
}

# Temporal failures that mean "the process engine is unreachable right now", not a bug.
_UNAVAILABLE_RPC = frozenset({RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED})


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
    return error_response(exc.code, exc.detail, status, headers)


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
    if exc.status in _UNAVAILABLE_RPC:
        return error_response(E.PROCESS_UNAVAILABLE, "the process engine is unavailable", 503)
    return await _unexpected(request, exc)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(INTERNAL_ERROR, "internal error", 500)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(BankflowError, _bankflow)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(HTTPException, _http)
    app.add_exception_handler(RPCError, _rpc)
    app.add_exception_handler(Exception, _unexpected)
