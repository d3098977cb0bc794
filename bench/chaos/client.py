"""The chaos clients' HTTP side: every command retried under its Idempotency-Key until it gets a
definitive answer, and every attempt recorded for the recovery figures.

Definitive: a 2xx, or a 4xx that is the product's answer (a business refusal such as
InsufficientFunds, a 404, a 403). Not definitive, so retried with the same key and body: a
connection error or timeout, any 5xx (503 ProcessUnavailable included), 429, and 409
IdempotencyKeyInProgress (the first attempt's claim is still held).
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

RETRYABLE_CODES = frozenset({"IdempotencyKeyInProgress", "RateLimited"})
ATTEMPT_TIMEOUT = 45.0  # above the API's own 30 s wait for a workflow's answer
BACKOFF_MAX = 2.0
SETTLE_POLL = 0.5  # how often a running process is read until it settles


class Undetermined(Exception):
    """A command got no definitive answer within its bound: the client cannot know its outcome."""


@dataclass(frozen=True)
class Attempt:
    started: float
    ended: float
    status: int | None  # None: no HTTP answer (connection refused, reset, timeout)
    error: str | None


@dataclass
class Answer:
    """A command's definitive answer and how it got there."""

    label: str
    method: str
    path: str
    key: str | None
    status: int
    body: Any
    first_try: float
    answered: float
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def error(self) -> str | None:
        return self.body.get("error") if isinstance(self.body, dict) else None

    @property
    def blocked_s(self) -> float:
        return self.answered - self.first_try


def definitive(status: int, body: Any) -> bool:
    if status >= 500 or status == 429:
        return False
    return not (isinstance(body, dict) and body.get("error") in RETRYABLE_CODES)


@dataclass
class Api:
    """One HTTP client for all chaos clients; tokens by username, answers kept for the report."""

    base_url: str
    request_bound: float
    epoch: float = field(default_factory=time.monotonic)
    tokens: dict[str, str] = field(default_factory=dict)
    answers: list[Answer] = field(default_factory=list)  # commands (POSTs)
    attempts: list[Attempt] = field(default_factory=list)  # every attempt, reads included
    http: httpx.AsyncClient = field(init=False)

    def __post_init__(self) -> None:
        self.http = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=ATTEMPT_TIMEOUT,
            headers={"User-Agent": "bankflow-chaos"},
        )

    def now(self) -> float:
        """Seconds since the run began: the one clock of every figure printed."""
        return time.monotonic() - self.epoch

    async def close(self) -> None:
        await self.http.aclose()

    async def login(self, username: str, password: str) -> None:
        """Once per user (the token endpoint is rate limited); tokens outlive API restarts."""
        answer = await self._until_definitive(
            "login",
            "POST",
            "/v1/auth/token",
            None,
            {"data": {"username": username, "password": password}},
        )
        if answer.status != 200:
            raise RuntimeError(f"login of {username} failed: {answer.status} {answer.body}")
        self.tokens[username] = answer.body["access_token"]

    async def command(
        self, label: str, user: str, path: str, body: dict[str, Any] | None = None, **files: Any
    ) -> Answer:
        """A POST under a fresh Idempotency-Key, retried with that key until definitive."""
        key = str(uuid.uuid4())
        headers = {"Authorization": f"Bearer {self.tokens[user]}", "Idempotency-Key": key}
        kwargs: dict[str, Any] = {"headers": headers}
        if files:
            kwargs["files"] = files.pop("files")
            kwargs["data"] = files.pop("data", None)
        else:
            kwargs["json"] = body or {}
        answer = await self._until_definitive(label, "POST", path, key, kwargs)
        self.answers.append(answer)
        return answer

    async def read(self, user: str, path: str, **params: Any) -> Answer:
        """A GET retried until definitive (reads also wait out a fault)."""
        headers = {"Authorization": f"Bearer {self.tokens[user]}"}
        return await self._until_definitive(
            "read", "GET", path, None, {"headers": headers, "params": params or None}
        )

    async def poll(self, user: str, path: str, settled: Callable[[Any], bool], now: Any) -> Any:
        """Read `path` until `settled` holds; `now` is what the last answer already showed."""
        first = self.now()
        while not settled(now):
            if self.now() - first > self.request_bound:
                raise Undetermined(f"{path} did not settle in {self.request_bound:.0f} s")
            await asyncio.sleep(SETTLE_POLL)
            now = (await self.read(user, path)).body
        return now

    async def _until_definitive(
        self, label: str, method: str, path: str, key: str | None, kwargs: dict[str, Any]
    ) -> Answer:
        first = self.now()
        tries: list[Attempt] = []
        delay = 0.2
        while True:
            started = self.now()
            status: int | None = None
            body: Any = None
            error: str | None = None
            try:
                response = await self.http.request(method, path, **kwargs)
                status = response.status_code
                try:
                    body = response.json()
                except ValueError:
                    body = response.text
            except httpx.HTTPError as exc:
                error = type(exc).__name__
            attempt = Attempt(started, self.now(), status, error or _code(body))
            tries.append(attempt)
            self.attempts.append(attempt)
            if status is not None and definitive(status, body):
                return Answer(label, method, path, key, status, body, first, attempt.ended, tries)
            if self.now() - first > self.request_bound:
                raise Undetermined(
                    f"{label} {method} {path}: no definitive answer in {self.request_bound:.0f} s "
                    f"after {len(tries)} attempts (last: {status or error})"
                )
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, BACKOFF_MAX)


def _code(body: Any) -> str | None:
    return body.get("error") if isinstance(body, dict) else None
