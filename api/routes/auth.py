"""Tokens: password login (OAuth2 password form, so the /docs "Authorize" button works) and whoami."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.security import OAuth2PasswordRequestForm
from pydantic import BaseModel

from activities.db import in_transaction
from activities.staff import authenticate
from api.audit import ATTEMPTED_USERNAME
from api.auth import RateLimiter, issue_token
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

    Attempts are limited per client address and username (`token_rate_limit_per_minute`); over
    the limit the answer is 429 with `Retry-After`. A wrong username and a wrong password get the
    same 401.
    """
    setattr(request.state, ATTEMPTED_USERNAME, form.username)
    limiter: RateLimiter = request.app.state.token_limiter
    client = request.client.host if request.client else "unknown"
    limiter.hit((client, form.username.casefold()))
    principal = await in_transaction(
        sessions, lambda session: authenticate(session, form.username, form.password)
    )
    if principal is None:
        raise BankflowError(ErrorCode.UNAUTHENTICATED, "wrong username or password")
    request.state.principal = principal
    token = issue_token(
        settings, user_id=principal.id, username=principal.username, roles=principal.roles
    )
    return TokenResponse(
        access_token=token,
        expires_in=int(settings.jwt_ttl.total_seconds()),
        username=principal.username,
        roles=sorted(principal.roles),
    )


@router.get("/me")
async def whoami(principal: CurrentPrincipal) -> Me:
    """The authenticated user and the roles their token carries. Any signed-in user."""
    return Me(id=principal.id, username=principal.username, roles=sorted(principal.roles))
