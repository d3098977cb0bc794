"""The codec endpoint as Temporal's own clients use it: the `temporal` CLI, pointed at the API
running as `make run` starts it, shows a history decoded for an ops user and ciphertext without
the codec; a teller's token decodes nothing."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import uuid
from datetime import date, timedelta

from temporalio.client import Client

from schemas.movements import MovementInput
from schemas.settings import Settings
from scripts import dev
from tests.api.conftest import new_staff
from tests.conftest import Sessions
from tests.test_service_startup import api_process, environment
from workflows.money_movement import MoneyMovementWorkflow


async def show(address: str, workflow_id: str, *flags: str) -> subprocess.CompletedProcess[str]:
    """`temporal workflow show`, JSON unless `flags` say --detailed; off the event loop."""
    cmd = [dev.venv_tool("temporal"), "workflow", "show", "-w", workflow_id, "--address", address]
    cmd += list(flags) if "--detailed" in flags else ["--output", "json", *flags]
    return await asyncio.to_thread(
        subprocess.run, cmd, capture_output=True, text=True, timeout=60, check=False
    )


def started_input(output: str) -> dict[str, object]:
    events = json.loads(output)["events"]
    attrs = events[0]["workflowExecutionStartedEventAttributes"]
    payload: dict[str, object] = attrs["input"]["payloads"][0]
    return payload


async def test_the_temporal_cli_decodes_through_the_api_for_ops_only(
    temporal_client: Client, settings: Settings, sessions: Sessions
) -> None:
    ops = await new_staff(sessions, settings, "ops")
    teller = await new_staff(sessions, settings, "teller")
    movement = f"CODEC{uuid.uuid4().hex[:8].upper()}"
    inp = MovementInput(
        movement_id=movement,
        kind="deposit",
        debit_account_id=1,
        credit_account_id=2,
        debit_account="1000-USD",
        credit_account="SV00000042",
        amount_minor=123_45,
        currency="USD",
        scale=2,
        value_date=date.today(),
        branch="HQ",
        requested_by_id=ops.id,
        requested_by=ops.username,
        approval_threshold_minor=500_00,
        approval_timeout=timedelta(hours=1),
    )
    # No worker polls this queue: the started event, with its input, is all the history.
    await temporal_client.start_workflow(
        MoneyMovementWorkflow.run,
        inp,
        id=f"movement-{movement}",
        task_queue=f"no-worker-{uuid.uuid4().hex[:6]}",
        execution_timeout=timedelta(minutes=5),
    )
    address = temporal_client.service_client.config.target_host
    env = environment(
        BANKFLOW_JWT_KEYS=os.environ["BANKFLOW_JWT_KEYS"],
        BANKFLOW_DATABASE_URL=settings.database_url,
    )
    with api_process(env) as base:
        codec = ["--codec-endpoint", f"{base}/codec"]
        raw = await show(address, f"movement-{movement}")
        assert raw.returncode == 0, raw.stderr
        sealed = started_input(raw.stdout)
        assert sealed["metadata"]["encoding"] == "YmluYXJ5L2VuY3J5cHRlZA=="  # type: ignore[index]
        assert "SV00000042" not in raw.stdout
        decoded = await show(
            address, f"movement-{movement}", *codec, "--codec-auth", f"Bearer {ops.token}"
        )
        assert decoded.returncode == 0, decoded.stderr
        plain = started_input(decoded.stdout)
        assert plain["metadata"]["encoding"] == "anNvbi9wbGFpbg=="  # type: ignore[index]
        assert json.loads(base64.b64decode(str(plain["data"])))["credit_account"] == "SV00000042"
        # what an operator reads in a shell (README walkthrough)
        detailed = await show(
            address,
            f"movement-{movement}",
            "--detailed",
            *codec,
            "--codec-auth",
            f"Bearer {ops.token}",
        )
        assert "SV00000042" in detailed.stdout, detailed.stdout + detailed.stderr
        refused = await show(
            address, f"movement-{movement}", *codec, "--codec-auth", f"Bearer {teller.token}"
        )
        assert "SV00000042" not in refused.stdout
