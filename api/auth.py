"""JWT bearer tokens (PyJWT, HS256, signed from a key ring) and the token endpoint's rate limits.

A token names its user (`sub`) and the key that signed it (`kid`), nothing more: roles are read
from the database at each request (api.deps), so a role removed is a role gone at once.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import jwt
from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from schemas.errors import BankflowError, ErrorCode
from schemas.settings import Settings

ALGORITHM = "HS256"


@dataclass(frozen=True)
class TokenSubject:
    """Who a valid token names. Not yet a principal: the user may be disabled since."""

    id: int


def issue_token(settings: Settings, *, user_id: int) -> str:
    """A token for `user_id`, signed with the newest key of the ring."""
    key = settings.jwt_keys.newest
    now = datetime.now(UTC)
    claims = {
        "iss": settings.jwt_issuer,
        "sub": str(user_id),
        "iat": now,
        "exp": now + settings.jwt_ttl,
    }
    return jwt.encode(claims, key.secret, algorithm=ALGORITHM, headers={"kid": key.kid})


def decode_token(settings: Settings, token: str) -> TokenSubject:
    """The user a valid, unexpired token of ours names; Unauthenticated otherwise.

    Any key of the ring verifies, so tokens signed before a rotation stay valid until they expire;
    a token whose key was dropped from the ring, or that names none, is not valid.
    """
    return _verified(settings, token)[0]


def _verified(settings: Settings, token: str) -> tuple[TokenSubject, float]:
    """decode_token, and the token's expiry (seconds since the epoch)."""
    try:
        kid = jwt.get_unverified_header(token).get("kid")
        key = settings.jwt_keys.get(kid) if isinstance(kid, str) else None
        if key is None:
            raise jwt.InvalidTokenError("unknown key id")
        claims = jwt.decode(
            token,
            key.secret,
            algorithms=[ALGORITHM],
            issuer=settings.jwt_issuer,
            options={"require": ["exp", "iss", "sub"]},
        )
        return TokenSubject(id=int(claims["sub"])), float(claims["exp"])
    except jwt.ExpiredSignatureError as exc:
        raise BankflowError(ErrorCode.UNAUTHENTICATED, "the token has expired") from exc
    except (jwt.InvalidTokenError, ValueError) as exc:
        raise BankflowError(ErrorCode.UNAUTHENTICATED, "the token is not valid") from exc


class TokenVerifier:
    """decode_token, remembering each token it verified until the token expires.

    A token is the same string on every request of a session, and its signature, issuer and
    subject cannot change, nor can this process's key ring: what a check said once holds until
    `exp`, and only the clock is looked at again. Verifying (PyJWT: two base64 and JSON decodes,
    an HMAC) was about a tenth of the API's CPU for an account read (bench/api.py, py-spy).
    Refusals are not remembered: a bad token costs its check each time. At most `capacity`
    tokens are kept; past that the oldest goes first.
    """

    def __init__(self, settings: Settings, capacity: int = 10_000) -> None:
        self._settings = settings
        self._capacity = capacity
        self._known: dict[str, tuple[TokenSubject, float]] = {}

    def subject(self, token: str) -> TokenSubject:
        known = self._known.get(token)
        if known is not None:
            if time.time() < known[1]:
                return known[0]
            del self._known[token]
        subject, expires = _verified(self._settings, token)
        if len(self._known) >= self._capacity:
            del self._known[next(iter(self._known))]
        self._known[token] = (subject, expires)
        return subject


class LoginLimiter:
    """Login attempts per username across all addresses, and per address across all usernames.

    Moving windows from the `limits` library, in this process's memory: a cheap first line that
    turns a flood away before any password hash or database work. With N API processes each
    allows its own budget; the lockout after repeated failures (activities.staff) lives in
    Postgres and holds across processes.
    """

    def __init__(self, per_username: str, per_address: str) -> None:
        self._window = MovingWindowRateLimiter(MemoryStorage())
        self._rules: list[tuple[str, list[RateLimitItem]]] = [
            ("username", parse_many(per_username)),
            ("address", parse_many(per_address)),
        ]

    def hit(self, *, username: str, address: str) -> None:
        """Count one attempt; RateLimited, with the seconds to wait, when any window is full.

        A refused attempt counts against no window, so one exhausted budget does not drain the
        other (an address over its limit does not use up a username's attempts).
        """
        keys = {"username": username, "address": address}
        checks = [(item, scope, keys[scope]) for scope, items in self._rules for item in items]
        full = [
            (item, scope, key)
            for item, scope, key in checks
            if not self._window.test(item, scope, key)
        ]
        if full:
            reset = max(self._window.get_window_stats(i, s, k).reset_time for i, s, k in full)
            raise RateLimitedError(math.ceil(reset - time.time()))
        for item, scope, key in checks:
            self._window.hit(item, scope, key)


class RateLimitedError(BankflowError):
    def __init__(
        self,
        retry_after: int,
        code: ErrorCode = ErrorCode.RATE_LIMITED,
        detail: str = "too many attempts; try again later",
    ) -> None:
        super().__init__(code, detail)
        self.retry_after = max(retry_after, 1)
