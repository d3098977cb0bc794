"""Property-based tests of the whole API against its own OpenAPI document (issue 11, point 9).

Schemathesis generates requests for every operation, valid ones and deliberately invalid ones
(NUL bytes, out-of-range numbers, missing headers, wrong types), and each is sent as a teller and
as an admin to the real app over a real Temporal dev server, the real worker and Postgres. Any of
these is a failure: a 5xx, a status the document does not list, a content type or a body that does
not match the document.

The stack runs on a throwaway database (admin may close periods, create products, move money:
nothing here may leak into the other tests' ledger) and on an event loop of its own, in a thread,
because Hypothesis drives a synchronous test: the worker must keep polling while a request waits
for its workflow.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Coroutine, Iterator
from contextlib import AsyncExitStack
from typing import Any, TypeVar

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import Case
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.testing import WorkflowEnvironment

from activities.db import in_transaction, make_engine, make_sessionmaker
from activities.direct import DirectPool
from activities.ledger.chart import ensure_branch, ensure_chart
from activities.staff import create_staff_user
from api.app import create_app
from api.auth import issue_token
from api.idempotency import HEADER as IDEMPOTENCY_HEADER
from api.idempotency import MAX_KEY_LENGTH
from schemas import temporal
from schemas.settings import Settings
from tests.api.conftest import PASSWORD, make_client
from tests.conftest import BRANCH, CURRENCY, app_database
from worker import build_workers

T = TypeVar("T")
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
ROLES = ("teller", "admin")
# Per operation and generation phase; 53 operations x 2 roles stay within a few minutes here.
MAX_EXAMPLES = 30
BASE_URL = "http://bankflow.test"
REQUEST_TIMEOUT_S = 120


class Stack:
    """The app, a worker and their database on an event loop in a thread of their own."""

    def __init__(self, settings: Settings, temporal_target: str) -> None:
        self._settings = settings
        self._target = temporal_target
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._exit = AsyncExitStack()
        self.headers: dict[str, dict[str, str]] = {}
        self._client: httpx.AsyncClient | None = None

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(REQUEST_TIMEOUT_S)

    def start(self) -> None:
        self._thread.start()
        self.run(self._start())

    def stop(self) -> None:
        self.run(self._exit.aclose())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    async def _start(self) -> None:
        queue = f"tq-schemathesis-{uuid.uuid4().hex[:8]}"
        settings = self._settings.model_copy(update={"interactive_task_queue": queue})
        # A small pool: the Postgres server is shared with the rest of the suite.
        engine = make_engine(settings, pool_size=4)
        self._exit.push_async_callback(engine.dispose)
        sessions = make_sessionmaker(engine)
        await in_transaction(sessions, self._seed)
        client = await temporal.connect(settings, target=self._target)
        direct = await self._exit.enter_async_context(DirectPool(settings.sqlalchemy_url, size=4))
        for worker in build_workers(
            client, settings, sessions, direct, interactive_queue=queue, batch_queue=f"{queue}-b"
        ):
            await self._exit.enter_async_context(worker)
        app = create_app(settings, temporal_client=client)
        await self._exit.enter_async_context(app.router.lifespan_context(app))
        self._client = await self._exit.enter_async_context(make_client(app))

    async def _seed(self, session: AsyncSession) -> None:
        await ensure_branch(session, BRANCH, "Head office", "UTC")
        await ensure_chart(session, CURRENCY)
        for role in ROLES:
            user = await create_staff_user(
                session, username=f"st-{role}", full_name=role, password=PASSWORD, roles=[role]
            )
            token = issue_token(self._settings, user_id=user.id)
            self.headers[role] = {"Authorization": f"Bearer {token}"}

    def send(self, case: Case[Any], role: str) -> httpx.Response:
        """The request Schemathesis built for `case`, as `role`, through the app's ASGI."""
        kwargs = case.as_transport_kwargs(base_url=BASE_URL, headers=self.headers[role])
        key = kwargs["headers"].get(IDEMPOTENCY_HEADER)
        if isinstance(key, str) and 0 < len(key) <= MAX_KEY_LENGTH:
            # Generation repeats values ("0"), and a key reused with another body is 409 before
            # the route runs: a fresh valid key lets every case reach its route. Malformed keys
            # stay as generated; replays and conflicts are tests/api/test_idempotency.py's.
            kwargs["headers"][IDEMPOTENCY_HEADER] = uuid.uuid4().hex
        wanted = ("method", "url", "headers", "params", "data", "json", "files", "cookies")
        prepared = requests.Request(**{k: v for k, v in kwargs.items() if k in wanted}).prepare()
        assert self._client is not None and prepared.method and prepared.url
        body = prepared.body.encode() if isinstance(prepared.body, str) else prepared.body
        assert body is None or isinstance(body, bytes)
        # Generated header values may be any Latin-1 text: send them as the bytes they are.
        headers = [
            (k.encode("latin-1"), v if isinstance(v, bytes) else v.encode("latin-1"))
            for k, v in prepared.headers.items()
        ]
        return self.run(
            self._client.request(prepared.method, prepared.url, headers=headers, content=body)
        )


@pytest.fixture(scope="module")
def stack(pg_server: str, settings: Settings, temporal_env: WorkflowEnvironment) -> Iterator[Stack]:
    # Its own database, as the runtime role like the app in production: irreversible routes
    # (period close) run here, not in the session's database.
    with app_database(pg_server, "bankflow_schemathesis") as database:
        target = temporal_env.client.service_client.config.target_host
        running = Stack(settings.model_copy(update={"database_url": database.runtime_url}), target)
        running.start()
        yield running
        running.stop()


# The document the app serves; building the app connects to nothing.
schema = schemathesis.openapi.from_dict(
    create_app(Settings()).openapi(),
    config=SchemathesisConfig.from_dict(
        {
            "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True},
            "phases": {"stateful": {"enabled": False}},
        }
    ),
)


@schema.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck), max_examples=MAX_EXAMPLES)
def test_every_operation_conforms_as_teller_and_admin(case: Case[Any], stack: Stack) -> None:
    for role in ROLES:
        response = stack.send(case, role)
        case.validate_response(response, checks=CHECKS, headers=stack.headers[role])
