"""JWT bearer tokens (PyJWT, HS256) and the token endpoint's rate limiter."""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Iterable
from datetime import UTC, datetime

import jwt

from activities.staff import Principal
from schemas.errors import BankflowError, ErrorCode
from schemas.settings import Settings

ALGORITHM = "HS256"


def issue_token(settings: Settings, *, user_id: int, username: str, roles: Iterable[str]) -> str:
    now = datetime.now(UTC)
    claims = {
        "iss": settings.jwt_issuer,
        "sub": str(user_id),
        "username": username,
        "roles": sorted(set(roles)),
        "iat": now,
        "exp": now + settings.jwt_ttl,
    }
    return jwt.encode(claims, settings.jwt_secret.get_secret_value(), algorithm=ALGORITHM)


def decode_token(settings: Settings, token: str) -> Principal:
    """The principal a valid, unexpired token of ours names; Unauthenticated otherwise."""
    try:
        claims = jwt.decode(
            token,
            settings.jwt_secret.get_secret_value(),
            algorithms=[ALGORITHM],
            issuer=settings.jwt_issuer,
            options={"require": ["exp", "iss", "sub"]},
        )
        roles = claims.get("roles", [])
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise jwt.InvalidTokenError("malformed roles claim")
        return Principal(
            id=int(claims["sub"]), username=str(claims.get("username", "")), roles=frozenset(roles)
        )
    except jwt.ExpiredSignatureError as exc:
        raise BankflowError(ErrorCode.UNAUTHENTICATED, "the token has expired") from exc
    except (jwt.InvalidTokenError, ValueError) as exc:
        raise BankflowError(ErrorCode.UNAUTHENTICATED, "the token is not valid") from exc


class RateLimiter:
    """A sliding one-minute window per key, in memory.

    It is per API process: with N processes an attacker gets N times the budget. That still
    turns password guessing from thousands per second into a handful per minute; a shared limit
    would live in Postgres or a proxy in front of the API.
    """

    def __init__(self, per_minute: int, window_seconds: float = 60.0) -> None:
        self.per_minute = per_minute
        self.window = window_seconds
        self._hits: dict[tuple[str, str], deque[float]] = {}

    def hit(self, key: tuple[str, str]) -> None:
        """Count one attempt; RateLimited (with the seconds to wait) when over the budget."""
        now = time.monotonic()
        hits = self._hits.setdefault(key, deque())
        while hits and hits[0] <= now - self.window:
            hits.popleft()
        if len(hits) >= self.per_minute:
            raise RateLimitedError(math.ceil(hits[0] + self.window - now))
        hits.append(now)
        if len(self._hits) > 100_000:
            self._forget_idle(now)

    def _forget_idle(self, now: float) -> None:
        for key in [k for k, v in self._hits.items() if not v or v[-1] <= now - self.window]:
            del self._hits[key]


class RateLimitedError(BankflowError):
    def __init__(self, retry_after: int) -> None:
        super().__init__(ErrorCode.RATE_LIMITED, "too many attempts; try again later")
        self.retry_after = max(retry_after, 1)
