"""Request dependencies: settings, sessions, the Temporal client and the authenticated principal.

Everything comes from `app.state`, filled by the lifespan in `api.app`; nothing here connects at
import time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Annotated

from fastapi import Depends, Path, Request
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.service import RPCError

from activities import staff
from activities.direct import DirectPool
from activities.staff import Principal
from activities.tables import ROLES
from api.auth import TokenVerifier
from schemas import telemetry, temporal, types
from schemas.errors import BankflowError, ErrorCode
from schemas.loans import REQUESTER_ROLES
from schemas.settings import Settings

__all__ = [
    "ANY_STAFF",
    "APPROVER_ROLES",
    "CurrentPrincipal",
    "DirectDep",
    "LoanNumber",
    "LoanReader",
    "Principal",
    "Session",
    "SessionsDep",
    "SettingsDep",
    "TemporalConnector",
    "TemporalDep",
    "require_roles",
]

log = logging.getLogger(__name__)

ADMIN = "admin"
ANY_STAFF: tuple[str, ...] = ROLES


class TemporalConnector:
    """Holds the Temporal client; connects on first use when Temporal was down at start-up.

    After a failed attempt it refuses for `retry_after` instead of making every request wait for
    a connect timeout while Temporal is down.
    """

    def __init__(
        self,
        settings: Settings,
        client: Client | None = None,
        *,
        connect_timeout: timedelta = timedelta(seconds=3),
        retry_after: timedelta = timedelta(seconds=2),
    ) -> None:
        self._settings = settings
        self._client = client
        self._timeout = connect_timeout.total_seconds()
        self._retry_after = retry_after.total_seconds()
        self._failed_at: float | None = None
        self._lock = asyncio.Lock()

    async def get(self) -> Client:
        if self._client is not None:
            return self._client
        async with self._lock:
            if self._client is None:
                self._client = await self._connect()
            return self._client

    async def _connect(self) -> Client:
        if self._failed_at is not None and time.monotonic() - self._failed_at < self._retry_after:
            raise BankflowError(ErrorCode.PROCESS_UNAVAILABLE, "the process engine is unavailable")
        try:
            client = await asyncio.wait_for(
                temporal.connect(self._settings),
                self._timeout,
            )
        except (RuntimeError, OSError, TimeoutError, RPCError) as exc:
            self._failed_at = time.monotonic()
            log.warning("cannot reach Temporal at %s: %s", self._settings.temporal_address, exc)
            raise BankflowError(
                ErrorCode.PROCESS_UNAVAILABLE, "the process engine is unavailable"
            ) from exc
        self._failed_at = None
        return client


# Every dependency is a coroutine: a plain function would run in the thread pool, a thread
# hand-off on every request for what is an attribute read.
async def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def _sessions(request: Request) -> async_sessionmaker[AsyncSession]:
    sessions: async_sessionmaker[AsyncSession] = request.app.state.sessions
    return sessions


async def _direct(request: Request) -> DirectPool:
    direct: DirectPool = request.app.state.direct
    return direct


async def _temporal(request: Request) -> Client:
    connector: TemporalConnector = request.app.state.temporal
    return await connector.get()


SettingsDep = Annotated[Settings, Depends(_settings)]
SessionsDep = Annotated[async_sessionmaker[AsyncSession], Depends(_sessions)]
# For the statements of every request (the caller, the account view): activities.direct.
DirectDep = Annotated[DirectPool, Depends(_direct)]
# The type of the session a route's transaction hands to activity helpers (`in_transaction`):
# routes name it, and build no SQL with it (tests/test_layout.py).
Session = AsyncSession
TemporalDep = Annotated[Client, Depends(_temporal)]

# auto_error=False: a missing token becomes our own 401 body instead of FastAPI's.
_bearer = OAuth2PasswordBearer(tokenUrl="/v1/auth/token", auto_error=False)


async def authenticate(tokens: TokenVerifier, direct: DirectPool, token: str | None) -> Principal:
    """The user a valid bearer token names, with the roles they hold now, if still active.

    The token names the user, not their powers: a removed role or a disabled user must take
    effect at once (a dismissed teller must not keep working for eight hours), so every request
    pays one query - the user's row by primary key and its roles by index, in one round trip.
    """
    if not token:
        raise BankflowError(ErrorCode.UNAUTHENTICATED, "a bearer token is required")
    subject = tokens.subject(token)
    status = await staff.staff_status(direct, subject.id)
    if status is None:
        raise BankflowError(ErrorCode.UNAUTHENTICATED, "this user does not exist")
    if not status.is_active:
        raise BankflowError(ErrorCode.UNAUTHENTICATED, "this user is disabled")
    return status.principal


async def _current_principal(
    request: Request, token: Annotated[str | None, Depends(_bearer)]
) -> Principal:
    """The authenticated caller; the request guard (api.guard) has already looked a command's
    caller up before reading its body, and that lookup is not repeated."""
    known: Principal | None = getattr(request.state, "principal", None)
    if known is None:
        state = request.app.state
        known = await authenticate(state.tokens, state.direct, token)
        request.state.principal = known  # for the audit log
    telemetry.USER_ID.set(known.id)  # log lines name the staff user by id, never by name
    return known


CurrentPrincipal = Annotated[Principal, Depends(_current_principal)]


def require_roles(*roles: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency that lets through a user holding any of `roles`, or `admin`."""
    unknown = set(roles) - set(ROLES)
    if not roles or unknown:
        raise ValueError(f"require_roles needs known roles, got {roles!r}")
    wanted = frozenset(roles)

    async def check(principal: CurrentPrincipal) -> Principal:
        if ADMIN in principal.roles or principal.roles & wanted:
            return principal
        raise BankflowError(
            ErrorCode.FORBIDDEN, f"this needs one of the roles: {', '.join(sorted(wanted))}"
        )

    return check


# Shared by the loan, disbursement and repayment routes: who decides a loan (any approval level),
# who reads one, and its path parameter.
APPROVER_ROLES = (
    "loan_officer",
    "branch_manager",
    "credit_committee",
    "compliance_officer",
    "finance",
)
LoanReader = Annotated[
    Principal,
    Depends(require_roles(*REQUESTER_ROLES, *APPROVER_ROLES, "ops", "compliance_officer")),
]
LoanNumber = Annotated[types.LoanNumber, Path(description="e.g. LN000123")]
