"""Tokens: password login (OAuth2 password form, so the /docs "Authorize" button works) and whoami."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.security import OAuth2PasswordRequestForm
from pydantic import BaseModel

from activities.db import in_transaction
from activities.staff import LockoutPolicy, login, username_key
from api.audit import ATTEMPTED_USERNAME
from api.auth import LoginLimiter, RateLimitedError, issue_token
from api.deps import CurrentPrincipal, SessionsDep, SettingsDep
from api.errors import errors
from schemas import types
from schemas.errors import BankflowError, ErrorCode

router = APIRouter(prefix="/v1/auth", tags=["auth"])


class TokenForm(OAuth2PasswordRequestForm):
    """The OAuth2 password form (so /docs can log in), with bounded fields: a username is one line
    of text, a password at most 256 characters."""

    def __init__(
        self,
        *,
        username: Annotated[types.Username, Form()],
        password: Annotated[types.Password, Form(json_schema_extra={"format": "password"})],
        grant_type: Annotated[str | None, Form(pattern="^password$")] = None,
        scope: Annotated[types.Search, Form()] = "",
    ) -> None:
        super().__init__(grant_type=grant_type, username=username, password=password, scope=scope)


class TokenResponse(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int
    username: str
    roles: list[str]


class Me(BaseModel):
    id: int
    username: str
    roles: list[str]


@router.post(
    "/token",
    responses=errors(
        s401="Unauthenticated: wrong username or password", s429="RateLimited: see Retry-After"
    ),
)
async def obtain_token(
    request: Request,
    form: Annotated[TokenForm, Depends()],
    settings: SettingsDep,
    sessions: SessionsDep,
) -> TokenResponse:
    """Exchange a username and password (form fields `username`, `password`) for a bearer token.

    Attempts are limited per username across all addresses and per client address across all
    usernames (`login_limit_per_username`, `login_limit_per_address`): over a limit the answer is
    429 `RateLimited` with `Retry-After`. After `login_lockout_after` consecutive failures the
    username is locked (429 `LoginLocked`, `Retry-After`), for longer after each further failure;
    while locked, no password is checked. A wrong username and a wrong password get the same 401.
    The token names the user only: roles are read at each request, so a change applies at once.
    """
    setattr(request.state, ATTEMPTED_USERNAME, form.username)
    limiter: LoginLimiter = request.app.state.login_limiter
    address = request.client.host if request.client else "unknown"
    limiter.hit(username=username_key(form.username), address=address)
    policy = LockoutPolicy(
        settings.login_lockout_after, settings.login_lockout_base, settings.login_lockout_max
    )
    result = await in_transaction(
        sessions, lambda session: login(session, form.username, form.password, policy)
    )
    if result.locked_now:
        raise RateLimitedError(
            result.locked_for,
            ErrorCode.LOGIN_LOCKED,
            f"wrong username or password; after {settings.login_lockout_after} or more failures "
            f"in a row this username is locked for {result.locked_for} s",
        )
    if result.locked_for:
        raise RateLimitedError(
            result.locked_for,
            ErrorCode.LOGIN_LOCKED,
            f"too many failed logins: this username is locked for {result.locked_for} s more",
        )
    principal = result.principal
    if principal is None:
        raise BankflowError(ErrorCode.UNAUTHENTICATED, "wrong username or password")
    request.state.principal = principal
    return TokenResponse(
        access_token=issue_token(settings, user_id=principal.id),
        expires_in=int(settings.jwt_ttl.total_seconds()),
        username=principal.username,
        roles=sorted(principal.roles),
    )


@router.get("/me")
async def whoami(principal: CurrentPrincipal) -> Me:
    """The authenticated user and the roles they hold now. Any signed-in user."""
    return Me(id=principal.id, username=principal.username, roles=sorted(principal.roles))
