"""Idempotency-Key handling for POSTs, as one ASGI middleware over `idempotency_records`.

Why a middleware and not a dependency: the record must hold the *response* (status and body),
and only a layer around the whole app sees the final response, including error responses made by
exception handlers. Routes opt in with the `IdempotencyKey` dependency, which requires the header
and documents it in OpenAPI; the middleware acts on every POST that carries the header, once the
request guard (api/guard.py) has authenticated the caller and bounded the body.

Per (user, method, route template, key) - the same key on another route is another request:
- first request: it claims the key (see activities/idempotency.py), renews the claim's lease
  while it runs, and stores its answer - unless its status is >= 500, it raised, or it was
  refused before the route acted (ValidationError, Unauthenticated, Forbidden, RateLimited): then
  it releases the key so a retry, corrected or not, can run;
- same key, same request (sha256 of method, path with query, body): the stored answer is
  replayed with `Idempotent-Replayed: true`;
- same key, other request: 409 IdempotencyKeyConflict;
- same key while the first still runs: the retry waits up to `idempotency_wait` for its answer,
  then 409 IdempotencyKeyInProgress with Retry-After.

A claim whose lease lapsed - its API process died, or Postgres was down when it had to store its
answer - is taken over by the next retry, which runs the route again. That is safe for every
route taking a key: process-starting routes derive their workflow id from the user and the key,
so the retry attaches to the workflow and answers from it; member creation and account opening
record the key on the row they create. A lease is `idempotency_lease` (10 s), renewed every third
of it, and never beyond the request's own bound (`api_wait_timeout` plus a margin), so no stale
claim blocks a retry longer than the request itself could have taken.

The answer goes to the client even if it cannot be stored: a retry then runs the route again.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import uuid
from datetime import timedelta
from typing import Annotated, Any

from fastapi import Depends, Header, Request
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.datastructures import Headers
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from activities import idempotency as claims
from activities.db import db_unavailable, in_transaction, while_unavailable
from activities.direct import DirectPool
from activities.idempotency import Answered, Claimed, KeyScope, Refused
from activities.staff import Principal
from api.errors import error_response, unavailable_response
from api.guard import PRINCIPAL, ROUTE
from api.routing import RouteInfo
from api.update_with_start import update_id
from schemas.errors import ErrorCode
from schemas.settings import Settings
from schemas.types import IdempotencyKeyValue

log = logging.getLogger(__name__)

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_LENGTH = 200
# Beyond api_wait_timeout: the route's own reads and writes around its wait for the workflow.
REQUEST_MARGIN = timedelta(seconds=5)
# How long the answer's store is retried across a database restart before the claim may lapse.
SETTLE_WINDOW_SECONDS = 1.5


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


async def _update_id(
    request: Request,
    key: Annotated[
        IdempotencyKeyValue | None,
        Header(
            alias=HEADER,
            description="Optional client-chosen key (1 to 200 characters); a retry with the same "
            "key and body returns the first answer, even after the API died mid-request.",
        ),
    ] = None,
) -> str | None:
    """A decision's Update id. With a key, a retry whose first attempt died after the workflow
    accepted the Update (the answer never stored) asks for the same Update, and Temporal answers
    with its outcome instead of deciding again; without one, each request is a new Update."""
    if key is None:
        return None
    principal: Principal = getattr(request.state, PRINCIPAL)
    info: RouteInfo = getattr(request.state, ROUTE)
    return update_id(principal.id, info.template, key)


# A decision route's Update id: `update: UpdateId`.
UpdateId = Annotated[str | None, Depends(_update_id)]


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
        key = Headers(scope=scope).get(HEADER)
        if key is None:
            await self.app(scope, receive, send)
            return
        if not key or len(key) > MAX_KEY_LENGTH:
            detail = f"{HEADER} must be 1 to {MAX_KEY_LENGTH} characters"
            await error_response(ErrorCode.VALIDATION, detail, 422)(scope, receive, send)
            return
        state = scope.get("state", {})
        principal: Principal | None = state.get(PRINCIPAL)
        info: RouteInfo | None = state.get(ROUTE)
        if principal is None or info is None:  # the route answers 401 or 404: nothing to keep
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive)
        key_scope = KeyScope(principal.id, scope["method"], info.template, key)
        digest = request_hash(scope["method"], scope["path"], scope["query_string"], body)
        state = scope["app"].state
        claim = _Claim(state.settings, state.direct, state.sessions, key_scope)
        try:
            answer = await claim.acquire(digest)
        except (DBAPIError, PoolTimeout) as exc:
            if not db_unavailable(exc):
                raise
            answer = unavailable_response()
        if answer is not None:
            await answer(scope, receive, send)
            return
        await claim.run(self.app, scope, _replay(body, receive), send)


class _Claim:
    """One request's claim on its key: acquire it (or the answer to send instead), run the
    route while renewing the lease, then store the answer or release the key."""

    def __init__(
        self,
        settings: Settings,
        db: DirectPool,
        sessions: async_sessionmaker[AsyncSession],
        key: KeyScope,
    ) -> None:
        self.db = db
        self.sessions = sessions
        self.key = key
        self.lease = settings.idempotency_lease
        self.wait = settings.idempotency_wait.total_seconds()
        self.bound = (settings.api_wait_timeout + REQUEST_MARGIN).total_seconds()
        self.owner: uuid.UUID | None = None

    async def acquire(self, digest: str) -> Response | None:
        """None when this request owns the key now; otherwise the response to send instead."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait
        delay = 0.05
        while True:
            verdict = await self._verdict(digest)
            if isinstance(verdict, Claimed):
                self.owner = verdict.owner
                return None
            if isinstance(verdict, Answered):
                headers = {REPLAYED_HEADER: "true"}
                if verdict.body is None:
                    return Response(status_code=verdict.status_code, headers=headers)
                return JSONResponse(verdict.body, status_code=verdict.status_code, headers=headers)
            if verdict is Refused.CONFLICT:
                detail = f"{HEADER} {self.key.key!r} was used for a different request"
                return error_response(ErrorCode.IDEMPOTENCY_CONFLICT, detail, 409)
            left = deadline - loop.time()
            if left <= 0:
                detail = f"a request with {HEADER} {self.key.key!r} is still in progress"
                retry = {"Retry-After": "1"}
                return error_response(ErrorCode.IDEMPOTENCY_IN_PROGRESS, detail, 409, retry)
            await asyncio.sleep(min(delay, left))
            delay = min(delay * 2, 0.5)

    async def _verdict(self, digest: str) -> Claimed | Answered | Refused:
        owner = uuid.uuid4()
        claimed = await claims.try_claim(self.db, self.key, digest, self.lease, owner)
        if claimed is not None:
            return claimed
        return await in_transaction(
            self.sessions, lambda s: claims.contend(s, self.key, digest, self.lease, owner)
        )

    async def run(self, app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
        start: Message | None = None
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
            await send(message)

        renewal = asyncio.create_task(self._renew())
        try:
            await app(scope, receive, capture)
        except BaseException:
            renewal.cancel()
            await self._settle(None, None)
            raise
        renewal.cancel()
        status = start["status"] if start else 500
        stored_body = _json_or_none(b"".join(chunks))
        if status >= 500 or stored_body is _NOT_JSON or _refused_unheard(stored_body):
            await self._settle(None, None)
        else:
            await self._settle(status, stored_body)

    async def _renew(self) -> None:
        """Keep the claim alive while the request runs, up to the request's own bound."""
        assert self.owner is not None
        owner, interval = self.owner, self.lease.total_seconds() / 3
        loop = asyncio.get_running_loop()
        until = loop.time() + self.bound
        while loop.time() + interval < until:
            await asyncio.sleep(interval)
            try:
                await claims.renew(self.db, self.key, owner, self.lease)
            except (DBAPIError, PoolTimeout) as exc:  # best effort: the lease is the backstop
                log.warning("cannot renew an idempotency claim (%s)", type(exc).__name__)

    async def _settle(self, status: int | None, body: Any) -> None:
        """Store the answer (or release the key when `status` is None), retrying briefly across
        a database restart; if that fails the claim simply lapses and a retry runs again."""
        assert self.owner is not None
        owner = self.owner

        async def work() -> None:
            if status is None:
                await claims.release(self.db, self.key, owner)
            else:
                await claims.store(self.db, self.key, owner, status, body)

        try:
            await while_unavailable(work, window=SETTLE_WINDOW_SECONDS)
        except (DBAPIError, PoolTimeout) as exc:
            if not db_unavailable(exc):
                raise
            log.warning(
                "database unavailable: answer under an idempotency key not kept; its claim "
                "lapses in %s and a retry runs the route again",
                self.lease,
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


async def _read_body(receive: Receive) -> bytes:
    """The whole body; the request guard has already bounded it (and cuts it off past that)."""
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
