"""A Temporal server that dies under a request: the answer is a retryable 503, never a 500.

The chaos suite met it: a repayment whose update-with-start was in flight when the dev server was
SIGKILLed came back as `RPCError(UNKNOWN, "transport error")`, which the API answered with 500
although nothing was known to be done. Here a private dev server is killed the same way while a
movement waits for a worker that never comes.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from httpx import AsyncClient
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from api.app import create_app
from api.errors import engine_unreachable
from schemas import temporal
from schemas.settings import Settings
from scripts.temporal_dev import register_search_attributes, temporal_command, temporal_healthy
from tests.api.conftest import Staff, make_client
from tests.conftest import Factory, temporal_binary


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def temporal_server(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A dev server of this test's own, so killing it disturbs nobody else."""
    binary = temporal_binary()
    port = _free_port()
    cmd = temporal_command(binary, tmp_path / "temporal.db", port=port, ui_port=_free_port())
    proc = subprocess.Popen(
        [*cmd, "--headless", "--log-level", "error"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    address = f"127.0.0.1:{port}"
    for _ in range(240):
        if temporal_healthy(binary, address):
            break
        if proc.poll() is not None:
            raise RuntimeError("the Temporal dev server did not start")
    register_search_attributes(binary, address)
    yield address, proc
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


@pytest.fixture
async def app_client(
    settings: Settings, temporal_server: tuple[str, subprocess.Popen[bytes]], chart: dict[str, int]
) -> AsyncIterator[AsyncClient]:
    address, _ = temporal_server
    client = await Client.connect(address, data_converter=temporal.data_converter(settings))
    # No worker polls this queue: the movement's update waits until the server is killed.
    app = create_app(
        settings.model_copy(
            update={"temporal_address": address, "interactive_task_queue": f"nobody-{uuid.uuid4()}"}
        ),
        temporal_client=client,
    )
    async with app.router.lifespan_context(app), make_client(app) as http:
        yield http


async def test_temporal_killed_under_a_request_is_a_retryable_503(
    app_client: AsyncClient,
    temporal_server: tuple[str, subprocess.Popen[bytes]],
    staff: dict[str, Staff],
    factory: Factory,
) -> None:
    account = await factory.savings_account()
    request = asyncio.create_task(
        app_client.post(
            "/v1/movements",
            headers={**staff["teller"].headers, "Idempotency-Key": str(uuid.uuid4())},
            json={
                "kind": "deposit",
                "amount": "10.00",
                "currency": "USD",
                "to_account": account.code,
            },
        )
    )
    await asyncio.sleep(2)  # the update-with-start is in flight, waiting for a worker
    assert not request.done()
    _, proc = temporal_server
    os.killpg(proc.pid, signal.SIGKILL)
    response = await asyncio.wait_for(request, 60)
    assert response.status_code == 503, response.text
    assert response.json()["error"] == "ProcessUnavailable"
    assert response.headers["Retry-After"] == "1"


def test_a_connection_broken_mid_call_counts_as_unreachable() -> None:
    """What the SDK raised in the chaos run when the dev server was SIGKILLed mid-call; the
    same status with another message is a server-side failure and stays a 500."""
    broken = RPCError("transport error", RPCStatusCode.UNKNOWN, b"")
    assert engine_unreachable(broken)
    assert engine_unreachable(RPCError("tcp connect error", RPCStatusCode.UNAVAILABLE, b""))
    assert not engine_unreachable(RPCError("boom", RPCStatusCode.UNKNOWN, b""))
    assert not engine_unreachable(RPCError("no", RPCStatusCode.INVALID_ARGUMENT, b""))
