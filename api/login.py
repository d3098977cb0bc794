"""Password login, shared by the token route and the codec's sign-in: the OAuth2 password form,
the rate limits and the lockout, and the token it answers with."""

from __future__ import annotations

from typing import Annotated

from fastapi import Form, Request
from fastapi.security import OAuth2PasswordRequestForm
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from activities.db import in_transaction
from activities.staff import LockoutPolicy, login, username_key
from api.audit import ATTEMPTED_USERNAME
from api.auth import LoginLimiter, RateLimitedError, issue_token
from schemas import types
from schemas.errors import BankflowError, ErrorCode
from schemas.settings import Settings


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


async def password_login(
    request: Request,
    form: TokenForm,
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
) -> TokenResponse:
    """Check the password under the limits and the lockout; the token, or the typed refusal."""
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
