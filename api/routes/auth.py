"""Tokens: password login (OAuth2 password form, so the /docs "Authorize" button works) and whoami."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel

from api.deps import CurrentPrincipal, SessionsDep, SettingsDep
from api.errors import errors
from api.login import TokenForm, TokenResponse, password_login

router = APIRouter(prefix="/v1/auth", tags=["auth"])


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
    return await password_login(request, form, settings, sessions)


@router.get("/me")
async def whoami(principal: CurrentPrincipal) -> Me:
    """The authenticated user and the roles they hold now. Any signed-in user."""
    return Me(id=principal.id, username=principal.username, roles=sorted(principal.roles))
