"""The audit trail: one append-only `audit_log` row per command (any non-GET request).

An ASGI middleware, outermost, so it also records what other layers answered on their own:
idempotent replays and conflicts, validation errors, failed logins. The row is written before the
response is sent; if it cannot be written the client gets an error, never an unaudited success
(a retry with the same Idempotency-Key then replays the stored answer).
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from activities.models import AuditEntry
from activities.staff import Principal
from api.errors import INTERNAL_ERROR
from api.idempotency import HEADER as IDEMPOTENCY_HEADER
from schemas.types import printable

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
OK = "ok"
# Set by routes that know who tried to act before a token exists (the token endpoint).
ATTEMPTED_USERNAME = "audit_attempted_username"


class AuditMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in READ_METHODS:
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        held: list[Message] = []

        async def hold(message: Message) -> None:
            held.append(message)

        try:
            await self.app(scope, receive, hold)
        except Exception:
            await _write(scope, state, 500, INTERNAL_ERROR)
            raise
        status = next((m["status"] for m in held if m["type"] == "http.response.start"), 500)
        body = b"".join(m.get("body", b"") for m in held if m["type"] == "http.response.body")
        await _write(scope, state, status, OK if status < 400 else _error_code(body, status))
        for message in held:
            await send(message)


def _error_code(body: bytes, status: int) -> str:
    try:
        payload: Any = json.loads(body)
    except ValueError:
        return str(status)
    code = payload.get("error") if isinstance(payload, dict) else None
    return str(code)[:64] if code else str(status)


def _client_address(scope: Scope) -> str | None:
    client = scope.get("client")
    if not client:
        return None
    try:
        return str(ipaddress.ip_address(client[0]))
    except ValueError:
        return None


async def _write(scope: Scope, state: dict[str, Any], status: int, outcome: str) -> None:
    headers = Headers(scope=scope)
    route = scope.get("route")
    template = getattr(route, "path", None) or "(no route)"
    principal: Principal | None = state.get("principal")
    sessions: async_sessionmaker[AsyncSession] = scope["app"].state.sessions
    async with sessions() as session, session.begin():
        session.add(
            AuditEntry(
                actor_user_id=principal.id if principal else None,
                actor_username=(
                    principal.username
                    if principal
                    else printable(state.get(ATTEMPTED_USERNAME, ""), 64)
                )
                or None,
                action=f"{scope['method']} {template}"[:100],
                # What the caller sent, recorded even when it was refused: without the control
                # characters (a NUL in a path) that Postgres would refuse.
                resource=printable(scope["path"], 2000),
                client_address=_client_address(scope),
                user_agent=printable(headers.get("user-agent", ""), 500) or None,
                idempotency_key=printable(headers.get(IDEMPOTENCY_HEADER, ""), 200) or None,
                outcome_status=status,
                outcome=outcome,
            )
        )
