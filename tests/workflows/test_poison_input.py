"""In depth (issue 11 point 3, issue 13 point 5): data that Postgres refuses fails the activity
non-retryably with a short typed message, so a workflow never retries a poison input for ever,
its caller gets the typed code, and neither Temporal nor the log carries the SQL's parameters.

The poison here is one no request type sees: a staff username (written by the CLI) holding a NUL,
which the movement puts into its journal's JSON metadata; Postgres refuses `\\u0000` in jsonb.
"""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
from sqlalchemy.exc import DBAPIError
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from activities.db import make_engine, make_sessionmaker
from activities.errors import classify
from activities.ledger.chart import CASH
from api.app import create_app
from schemas.movements import MovementState, Stage
from schemas.settings import Settings
from tests.api.conftest import make_client, new_staff
from tests.conftest import Factory, Sessions
from tests.workflows.test_money_movement import movement, start

POISON_NAME = "teller\x00Okafor"
MAX_MESSAGE = 200


async def test_a_value_postgres_refuses_fails_at_once_with_a_short_typed_error(
    temporal_client: Client,
    worker: str,
    factory: Factory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    account = await factory.savings_account()
    inp = movement(factory.gl(CASH.number), account.id, 10_00, kind="deposit")
    inp = inp.model_copy(update={"requested_by": POISON_NAME})
    handle = await start(temporal_client, worker, inp)
    with caplog.at_level(logging.INFO, logger="activities.errors"):
        # Before, the activity was retried for ever and the movement never ended.
        state: MovementState = await asyncio.wait_for(handle.result(), 60)
    assert state.stage == Stage.DECLINED
    assert state.error == "InvalidData"
    assert state.error_detail and len(state.error_detail) < MAX_MESSAGE
    assert (await factory.account(account.id)).credits_posted_minor == 0

    # The posting runs as a local activity: its one attempt is a marker in the history, with
    # the failure it ended in.
    (posting,) = [
        e.marker_recorded_event_attributes
        for e in (await handle.fetch_history()).events
        if e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED
        and e.marker_recorded_event_attributes.marker_name == "core_local_activity"
    ]
    [data] = posting.details["data"].payloads
    assert json.loads(data.data)["attempt"] == 1, "a poison input is not retried"
    failure = posting.failure
    info = failure.application_failure_info
    assert (info.type, info.non_retryable) == ("InvalidData", True)
    assert len(failure.message) < MAX_MESSAGE, failure.message
    assert not failure.HasField("cause"), "no exception chain (with its SQL) in the history"
    # The log has the detail for ops (SQLSTATE, the statement with placeholders), not the data.
    assert "22P05" in caplog.text and "INSERT INTO journals" in caplog.text
    assert "Okafor" not in caplog.text + failure.message + failure.stack_trace


async def test_a_database_that_is_down_is_a_retryable_503(
    settings: Settings, sessions: Sessions
) -> None:
    """The same classification at the API: a lost database is 503 with Retry-After, never a 500
    (and the worker's activities retry it)."""
    down = settings.model_copy(update={"database_url": "postgresql://postgres@127.0.0.1:1/none"})
    staff = await new_staff(sessions, settings, "teller")
    app = create_app(down)
    async with app.router.lifespan_context(app), make_client(app) as client:
        response = await client.get("/v1/members", headers=staff.headers)
    assert response.status_code == 503, response.text
    assert response.json()["error"] == "DatabaseUnavailable"
    assert response.headers["Retry-After"] == "1"
    assert len(response.json()["detail"]) < MAX_MESSAGE

    engine = make_engine(down)
    try:
        with pytest.raises(DBAPIError) as lost:
            async with make_sessionmaker(engine)() as session:
                await session.connection()
    finally:
        await engine.dispose()
    failure = classify(lost.value, attempt=1)
    assert failure.retryable and failure.code == "DatabaseUnavailable"
