"""Idempotency-Key handling for POSTs, as one ASGI middleware over `idempotency_records`.

Why a middleware and not a dependency: the record must hold the *response* (status and body),
and only a layer around the whole app sees the final response, including error responses made by
exception handlers. Routes opt in with the `IdempotencyKey` dependency, which requires the header
and documents it in OpenAPI; the middleware acts on every POST that carries the header.

Per (key, user id):
- first request: a row is claimed with `status_code` NULL (committed at once, so concurrent
  requests see it), the request runs, and the answer is stored - unless its status is >= 500, it
  raised, or it was refused before the route acted (ValidationError, Unauthenticated, Forbidden,
  RateLimited): then the row is deleted so a retry, corrected or not, can run;
- same key, same request (sha256 of method, path with query, body): the stored answer is
  replayed with `Idempotent-Replayed: true`;
- same key, other request: 409 IdempotencyKeyConflict;
- same key while the first is still running: 409 IdempotencyKeyInProgress. A claim older than
  `IN_PROGRESS_LEASE` is taken to be from a crashed process and is taken over.

The claim and the route's own writes are separate transactions: if the process dies between the
route's commit and storing the answer, the retry after the lease runs the route again. Routes that
start processes stay safe because the workflow id carries the business key (Temporal refuses the
duplicate start); member creation is the one route where that would create a second member.
"""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from typing import Annotated, Any

from fastapi import Depends, Header
from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.datastructures import Headers
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from activities.models import IdempotencyRecord as R
from api.auth import decode_token
from api.errors import error_response
from schemas.errors import BankflowError, ErrorCode
from schemas.settings import Settings
from schemas.types import IdempotencyKeyValue

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_LENGTH = 200
IN_PROGRESS_LEASE = timedelta(minutes=5)


async def _idempotency_key(
    key: Annotated[
        IdempotencyKeyValue,
        Header(
            alias=HEADER,
            description="Client-chosen key (1 to 200 characters); a retry with the same key and "
            "body returns the first answer. Required: without it the request is 422.",
        ),
    ],
) -> str:
    return key


# The marker a process-starting route declares: `key: IdempotencyKey`.
IdempotencyKey = Annotated[str, Depends(_idempotency_key)]


def request_hash(method: str, path: str, query: bytes, body: bytes) -> str:
    digest = hashlib.sha256()
    for part in (method.encode(), path.encode(), query, body):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


class IdempotencyMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        key = headers.get(HEADER)
        if key is None:
            await self.app(scope, receive, send)
            return
        if not key or len(key) > MAX_KEY_LENGTH:
            detail = f"{HEADER} must be 1 to {MAX_KEY_LENGTH} characters"
            await error_response(ErrorCode.VALIDATION, detail, 422)(scope, receive, send)
            return
        state = scope["app"].state
        user_id = _user_id(state.settings, headers.get("authorization", ""))
        if user_id is None:  # no valid token: the route answers 401, nothing to remember
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive)
        digest = request_hash(scope["method"], scope["path"], scope["query_string"], body)
        sessions: async_sessionmaker[AsyncSession] = state.sessions
        stored = await _claim(sessions, key, user_id, digest)
        if stored is not None:
            await stored(scope, receive, send)
            return
        await self._run_and_store(scope, _replay(body, receive), send, sessions, key, user_id)

    async def _run_and_store(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        sessions: async_sessionmaker[AsyncSession],
        key: str,
        user_id: int,
    ) -> None:
        start: Message | None = None
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
            await send(message)

        where = (R.key == key, R.user_id == user_id)
        try:
            await self.app(scope, receive, capture)
        except BaseException:
            async with sessions() as session, session.begin():
                await session.execute(delete(R).where(*where))
            raise
        status = start["status"] if start else 500
        stored_body = _json_or_none(b"".join(chunks))
        async with sessions() as session, session.begin():
            if status >= 500 or stored_body is _NOT_JSON or _refused_unheard(stored_body):
                await session.execute(delete(R).where(*where))
            else:
                await session.execute(
                    update(R).where(*where).values(status_code=status, response_body=stored_body)
                )


_NOT_JSON: Any = object()
# Refusals that happen before a route acts (bad input, no or wrong credentials): nothing was done,
# so the key is released and the client may fix the request and retry under the same key.
_UNHEARD = frozenset(
    {ErrorCode.VALIDATION, ErrorCode.UNAUTHENTICATED, ErrorCode.FORBIDDEN, ErrorCode.RATE_LIMITED}
)


def _refused_unheard(body: Any) -> bool:
    return isinstance(body, dict) and body.get("error") in _UNHEARD


def _json_or_none(body: bytes) -> Any:
    if not body:
        return None
    try:
        return json.loads(body)
    except ValueError:
        return _NOT_JSON


def _user_id(settings: Settings, authorization: str) -> int | None:
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token:
        return None
    try:
        return decode_token(settings, token).id
    except BankflowError:
        return None


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """Hand the already-read body to the app once, then pass through (disconnect events)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _claim(
    sessions: async_sessionmaker[AsyncSession], key: str, user_id: int, digest: str
) -> Response | None:
    """None when this request owns the key now; otherwise the response to send instead."""
    async with sessions() as session, session.begin():
        # ON CONFLICT DO NOTHING waits for a concurrent claim of the same key to commit, so
        # exactly one of two racing requests owns the key.
        claimed = await session.scalar(
            insert(R)
            .values(key=key, user_id=user_id, request_hash=digest)
            .on_conflict_do_nothing(index_elements=["key", "user_id"])
            .returning(R.key)
        )
        if claimed is not None:
            return None
        record = await session.scalar(
            select(R).where(R.key == key, R.user_id == user_id).with_for_update()
        )
        if record is None:  # the owner failed and released it a moment ago
            return error_response(
                ErrorCode.IDEMPOTENCY_IN_PROGRESS, "a request with this key just failed; retry", 409
            )
        if record.request_hash != digest:
            return error_response(
                ErrorCode.IDEMPOTENCY_CONFLICT,
                f"{HEADER} {key!r} was used for a different request",
                409,
            )
        if record.status_code is None:
            taken_over = await session.scalar(
                update(R)
                .where(
                    R.key == key,
                    R.user_id == user_id,
                    R.created_at < func.now() - IN_PROGRESS_LEASE,
                )
                .values(created_at=func.now())
                .returning(R.key)
            )
            if taken_over is not None:
                return None
            return error_response(
                ErrorCode.IDEMPOTENCY_IN_PROGRESS,
                f"a request with {HEADER} {key!r} is still in progress",
                409,
            )
        headers = {REPLAYED_HEADER: "true"}
        if record.response_body is None:
            return Response(status_code=record.status_code, headers=headers)
        return JSONResponse(record.response_body, status_code=record.status_code, headers=headers)
