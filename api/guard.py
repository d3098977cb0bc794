"""The first gate of every request: a body limit per route, enforced while the body streams in,
and for a command to a route that needs a signed-in user, the token checked before one body byte
is read, so an anonymous or disabled caller cannot make the API hold a large upload.

Limits: a route taking a file upload accepts `kyc_upload_max_bytes` plus a small allowance for
the multipart framing and the form fields; every other body `request_max_bytes` (1 MB). An honest
Content-Length above the limit is refused before reading; a body that grows past it is cut off.
Either way the answer is 413 in the error shape and nothing behind this layer acts on the body.
"""

from __future__ import annotations

from typing import get_args

from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from activities.db import db_unavailable
from activities.direct import DirectPool
from activities.staff import Principal
from api.auth import TokenVerifier
from api.deps import CurrentPrincipal, authenticate
from api.errors import bankflow_error_response, error_response, unavailable_response
from api.routing import RouteInfo, route_for
from schemas.errors import BankflowError, ErrorCode
from schemas.settings import Settings

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Multipart boundaries, part headers and the short form fields sent beside the file.
UPLOAD_FORM_ALLOWANCE = 64 * 1024
# Keys in the request's scope state, read by the idempotency layer and the audit log.
PRINCIPAL = "principal"
ROUTE = "route_info"

_NEEDS_PRINCIPAL = get_args(CurrentPrincipal)[1].dependency


async def authenticated(tokens: TokenVerifier, direct: DirectPool, authorization: str) -> Principal:
    """The caller of a command, checked as the routes' CurrentPrincipal checks it, before the
    body is read."""
    scheme, _, token = authorization.partition(" ")
    return await authenticate(tokens, direct, token if scheme.lower() == "bearer" else None)


def _limit(info: RouteInfo | None, settings: Settings) -> tuple[int, ErrorCode, str]:
    """What a body of the route may hold, and how a body above it is refused (code, detail):
    a 413 built only for the request it refuses."""
    if info is not None and info.uploads:
        limit = settings.kyc_upload_max_bytes
        detail = f"the upload is larger than the {limit}-byte limit"
        return limit + UPLOAD_FORM_ALLOWANCE, ErrorCode.DOCUMENT_TOO_LARGE, detail
    limit = settings.request_max_bytes
    return (
        limit,
        ErrorCode.REQUEST_TOO_LARGE,
        f"the request body is larger than the {limit}-byte limit",
    )


def _content_length(headers: Headers) -> int | None:
    try:
        return int(headers["content-length"])
    except (KeyError, ValueError):
        return None


class _BodyTooLarge(Exception):
    """Raised from `receive` once the body passes its limit; the guard answers 413."""


class RequestGuardMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        info = state[ROUTE] = route_for(scope)
        app_state = scope["app"].state
        allowed, code, detail = _limit(info, app_state.settings)
        headers = Headers(scope=scope)
        length = _content_length(headers)
        if length is not None and length > allowed:
            await error_response(code, detail, 413)(scope, receive, send)
            return
        if (
            info is not None
            and scope["method"] not in READ_METHODS
            and info.depends_on(_NEEDS_PRINCIPAL)
        ):
            try:
                state[PRINCIPAL] = await authenticated(
                    app_state.tokens, app_state.direct, headers.get("authorization", "")
                )
            except BankflowError as exc:
                await bankflow_error_response(exc)(scope, receive, send)
                return
            except (DBAPIError, PoolTimeout) as exc:
                if not db_unavailable(exc):
                    raise
                await unavailable_response()(scope, receive, send)
                return
        if length is not None or (
            scope.get("http_version") in ("1.0", "1.1") and "transfer-encoding" not in headers
        ):
            # The server reads no more than Content-Length (checked above), and in HTTP/1 a
            # request with neither header has no body: nothing to count as it streams in.
            await self.app(scope, receive, send)
            return
        await self._limited(scope, receive, send, allowed, error_response(code, detail, 413))

    async def _limited(
        self, scope: Scope, receive: Receive, send: Send, allowed: int, too_large: JSONResponse
    ) -> None:
        received = 0
        cut = started = False

        async def receive_limited() -> Message:
            nonlocal received, cut
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > allowed:
                    cut = True
                    raise _BodyTooLarge
            return message

        async def send_unless_cut(message: Message) -> None:
            nonlocal started
            if cut:  # the app's own answer to a body it could not finish reading
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive_limited, send_unless_cut)
        except Exception:
            if not cut:  # anything the app raised after we cut its body off is that cut's echo
                raise
        if cut and not started:
            await too_large(scope, receive, send)
