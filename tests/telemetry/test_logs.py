"""Structured logs: one JSON object a line, carrying the workflow id, run id, activity and
attempt in a worker, the request id and staff user id in the API; no personal data."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from httpx import AsyncClient
from temporalio.client import Client

from activities.ledger.chart import CASH
from schemas import telemetry
from schemas.movements import MovementState, Stage
from schemas.settings import Settings
from tests.api.conftest import Staff
from tests.conftest import Factory
from tests.workflows.test_money_movement import movement, start

SURNAME = "Okafor"
POISON_NAME = f"teller\x00{SURNAME}"  # Postgres refuses a NUL in jsonb: the activity logs why


@contextmanager
def json_lines(settings: Settings, component: str) -> Iterator[io.StringIO]:
    """The process's log handler as configure_logging installs it, writing into a buffer."""
    stream = io.StringIO()
    handler = telemetry.log_handler(
        settings.model_copy(update={"log_format": "json"}), component, stream
    )
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def parsed(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line]


async def test_an_activity_log_line_carries_the_workflow_id_as_json(
    settings: Settings, temporal_client: Client, worker: str, factory: Factory
) -> None:
    account = await factory.savings_account()
    inp = movement(factory.gl(CASH.number), account.id, 10_00, kind="deposit")
    inp = inp.model_copy(update={"requested_by": POISON_NAME})
    with json_lines(settings, "worker") as stream:
        handle = await start(temporal_client, worker, inp)
        state: MovementState = await asyncio.wait_for(handle.result(), 60)
    assert state.stage == Stage.DECLINED
    lines = parsed(stream)
    [line] = [x for x in lines if x["logger"] == "activities.errors"]
    assert line["workflow_id"] == handle.id
    assert line["run_id"] == handle.result_run_id
    assert (line["activity"], line["attempt"], line["level"]) == ("post_movement", 1, "ERROR")
    assert line["component"] == "worker" and "time" in line
    assert SURNAME not in stream.getvalue()


async def test_an_api_access_line_carries_request_and_user_ids(
    settings: Settings, client: AsyncClient, staff: dict[str, Staff]
) -> None:
    teller = staff["teller"]
    with json_lines(settings, "api") as stream:
        answer = await client.get("/v1/members/M99999991", headers=teller.headers)
        anonymous = await client.get("/v1/members/M99999991")
    assert (answer.status_code, anonymous.status_code) == (404, 401)
    access = [x for x in parsed(stream) if x["logger"] == "bankflow.access"]
    assert [(x["route"], x["status"]) for x in access] == [
        ("/v1/members/{member_number}", 404),
        ("/v1/members/{member_number}", 401),
    ]
    first, second = access
    assert first["request_id"] == answer.headers["X-Request-ID"]
    assert first["user_id"] == teller.id and "user_id" not in second
    assert second["request_id"] == anonymous.headers["X-Request-ID"] != first["request_id"]
    served = [x for x in parsed(stream) if x["logger"] != "httpx"]  # httpx: the test's client
    assert "M99999991" not in json.dumps(served), "the path's ids stay out of the API's log"


async def test_a_callers_request_id_is_kept_only_when_plain(client: AsyncClient) -> None:
    kept = await client.get("/health", headers={"X-Request-ID": "lb-7f3a.1"})
    assert kept.headers["X-Request-ID"] == "lb-7f3a.1"
    replaced = await client.get("/health", headers={"X-Request-ID": "x" * 65})
    assert len(replaced.headers["X-Request-ID"]) == 32
