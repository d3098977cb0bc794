"""The audit trail: one append-only `audit_log` row per command (any non-GET request) and per
read of personal data (a route declaring `ShownMembers`).

An ASGI middleware, outside the other layers, so it also records what they answered on their
own: idempotent replays and conflicts, bodies too large, validation errors, failed logins. The
row is written before the response is sent. A database outage never turns the answer into an
error - money may have moved, and the client must hear so: the row is retried across a restart
and, failing that, spooled locally and flushed later (api/audit_spool.py).

A read route names the members its answer showed through `ShownMembers`; a search records every
member on the page it returned. A command records the member on its path (`{member_number}`).
"""

from __future__ import annotations

import ipaddress
import json
import re
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, Request
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from activities.staff import Principal
from api.audit_spool import AuditTrail
from api.errors import INTERNAL_ERROR
from api.guard import PRINCIPAL, READ_METHODS
from api.idempotency import HEADER as IDEMPOTENCY_HEADER
from api.routing import route_for
from schemas.audit import AuditRecord
from schemas.errors import ErrorCode
from schemas.types import printable

OK = "ok"
# Set by routes that know who tried to act before a token exists (the token endpoint).
ATTEMPTED_USERNAME = "audit_attempted_username"
# Set by a route whose path alone does not say what it acted on (the codec: namespace, workflow).
AUDIT_DETAIL = "audit_detail"
_SHOWN = "audit_shown_members"
_MEMBER_NUMBER = re.compile(r"M[0-9]{1,19}")


class PersonalDataRead:
    """A route's declaration that it reads personal data: every request to it is audited, with
    the members whose data the answer showed."""

    def __init__(self, request: Request) -> None:
        self._shown: set[str] = request.scope.setdefault("state", {}).setdefault(_SHOWN, set())

    def show(self, *member_numbers: str | None) -> None:
        self._shown.update(n for n in member_numbers if n)


async def _shown_members(request: Request) -> PersonalDataRead:
    """A coroutine, not the class itself: FastAPI would construct a class in the thread pool."""
    return PersonalDataRead(request)


ShownMembers = Annotated[PersonalDataRead, Depends(_shown_members)]


class AuditMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (scope["method"] in READ_METHODS and not _reads(scope)):
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        held: list[Message] = []

        async def hold(message: Message) -> None:
            held.append(message)

        trail: AuditTrail = scope["app"].state.audit
        try:
            await self.app(scope, receive, hold)
        except Exception:
            await trail.record(_entry(scope, state, 500, INTERNAL_ERROR))
            raise
        status = next((m["status"] for m in held if m["type"] == "http.response.start"), 500)
        body = b"".join(m.get("body", b"") for m in held if m["type"] == "http.response.body")
        outcome = OK if status < 400 else _error_code(body, status)
        # A request that found the database down is not held back by retrying its audit row.
        await trail.record(
            _entry(scope, state, status, outcome),
            retry=outcome != ErrorCode.DATABASE_UNAVAILABLE,
        )
        for message in held:
            await send(message)


def _reads(scope: Scope) -> bool:
    info = route_for(scope)
    return info is not None and info.depends_on(_shown_members)


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


def _entry(scope: Scope, state: dict[str, Any], status: int, outcome: str) -> AuditRecord:
    headers = Headers(scope=scope)
    route = scope.get("route")
    template = getattr(route, "path", None) or "(no route)"
    principal: Principal | None = state.get(PRINCIPAL)
    resource = scope["path"]
    if scope["method"] in READ_METHODS and scope["query_string"]:
        resource += "?" + scope["query_string"].decode("latin-1")
    if state.get(AUDIT_DETAIL):
        resource += " " + str(state[AUDIT_DETAIL])
    members: set[str] = set(state.get(_SHOWN, ()))
    on_path = scope.get("path_params", {}).get("member_number")
    if isinstance(on_path, str) and _MEMBER_NUMBER.fullmatch(on_path):
        members.add(on_path)
    username = principal.username if principal else state.get(ATTEMPTED_USERNAME, "")
    return AuditRecord(
        entry_id=uuid.uuid4(),
        at=datetime.now(UTC),
        actor_user_id=principal.id if principal else None,
        actor_username=printable(username, 64) or None,
        action=printable(f"{scope['method']} {template}", 100),
        # What the caller sent, recorded even when it was refused: without the control characters
        # (a NUL in a path) that Postgres would refuse.
        resource=printable(resource, 2000),
        client_address=_client_address(scope),
        user_agent=printable(headers.get("user-agent", ""), 500) or None,
        idempotency_key=printable(headers.get(IDEMPOTENCY_HEADER, ""), 200) or None,
        member_numbers=sorted(printable(m, 20) for m in members) or None,
        outcome_status=status,
        outcome=outcome,
    )
