"""Metrics on the real stack: after money movements, the API's /metrics, the worker's product
metrics and the Temporal SDK's metrics each moved by exactly what happened; a poison activity
shows in the failure counter that the alert rule reads."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass

import pytest
from httpx import AsyncClient
from temporalio import activity
from temporalio.client import Client
from temporalio.common import RetryPolicy
from temporalio.worker import Worker

from activities.direct import DirectPool
from activities.ledger.chart import CASH
from activities.metrics import ApprovalsGauge
from api.app import create_app
from schemas import temporal
from schemas.ledger import JournalRequest, JournalResult
from schemas.settings import Settings
from tests.api.conftest import Staff, make_client
from tests.conftest import CURRENCY, Factory, Sessions
from tests.metrics_kit import Samples, free_port, parse, scrape, total, value, worker_metrics
from tests.telemetry.rules import alert_expression
from tests.workflows.test_money_movement import movement
from worker import INTERACTIVE_WORKFLOWS, build_workers, interceptors
from workflows.money_movement import MoneyMovementWorkflow


@dataclass
class Stack:
    api: AsyncClient
    client: Client
    queue: str
    worker_url: str
    sdk_url: str

    async def scrape_all(self) -> tuple[Samples, Samples, Samples]:
        api = await self.api.get("/metrics")
        assert api.status_code == 200, api.text
        return parse(api.text), await scrape(self.worker_url), await scrape(self.sdk_url)


@pytest.fixture
async def stack(
    settings: Settings,
    temporal_client: Client,
    sessions: Sessions,
    direct: DirectPool,
    chart: dict[str, int],
) -> AsyncIterator[Stack]:
    """The worker as worker.py runs it: a client whose Runtime serves the SDK's metrics, the
    product metrics server, and the API on the same client."""
    queue = f"tq-{uuid.uuid4().hex[:12]}"
    sdk_port = free_port()
    client = await temporal.connect(
        settings,
        target=temporal_client.service_client.config.target_host,
        sdk_metrics=f"127.0.0.1:{sdk_port}",
    )
    app = create_app(
        settings.model_copy(update={"interactive_task_queue": queue}), temporal_client=client
    )
    async with AsyncExitStack() as stack:
        for w in build_workers(
            client, settings, sessions, direct, interactive_queue=queue, batch_queue=f"{queue}-b"
        ):
            await stack.enter_async_context(w)
        url = stack.enter_context(worker_metrics())
        await stack.enter_async_context(app.router.lifespan_context(app))
        api = await stack.enter_async_context(make_client(app))
        yield Stack(api, client, queue, url, f"http://127.0.0.1:{sdk_port}/metrics")


async def eventually(check: Callable[[], Awaitable[bool]], seconds: float = 10) -> None:
    for _ in range(int(seconds * 10)):
        if await check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("condition not met in time")


def delta(after: Samples, before: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


async def test_movements_move_api_worker_and_sdk_metrics(
    stack: Stack, staff: dict[str, Staff], factory: Factory
) -> None:
    account = await factory.savings_account(2_000_00)
    teller, manager = staff["teller"], staff["branch_manager"]
    api0, prod0, _ = await stack.scrape_all()

    key = {"Idempotency-Key": uuid.uuid4().hex}
    body = {"kind": "deposit", "amount": "305.00", "to_account": account.code, "currency": CURRENCY}
    posted = await stack.api.post("/v1/movements", json=body, headers={**teller.headers, **key})
    assert posted.status_code == 201, posted.text
    again = await stack.api.post("/v1/movements", json=body, headers={**teller.headers, **key})
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert posted.headers["X-Request-ID"] != again.headers["X-Request-ID"]

    large = {
        "kind": "withdrawal",
        "amount": "600.00",
        "from_account": account.code,
        "currency": CURRENCY,
    }
    held = await stack.api.post(
        "/v1/movements",
        json=large,
        headers={**teller.headers, "Idempotency-Key": "w1" + key["Idempotency-Key"]},
    )
    assert held.status_code == 202, held.text
    gauge = ApprovalsGauge(stack.client, scope=f"TaskQueue = '{stack.queue}'")

    async def waiting() -> bool:
        await gauge.refresh()
        _, prod, _ = await stack.scrape_all()
        return (
            value(
                prod, "bankflow_approvals_waiting", process="MoneyMovement", role="branch_manager"
            )
            == 1
        )

    await eventually(waiting)
    _, prod, _ = await stack.scrape_all()
    age = value(
        prod,
        "bankflow_approvals_oldest_age_seconds",
        process="MoneyMovement",
        role="branch_manager",
    )
    assert 0 < age < 60

    decided = await stack.api.post(
        f"/v1/movements/{held.json()['movement_id']}/decisions",
        json={"approve": True},
        headers=manager.headers,
    )
    assert decided.status_code == 200, decided.text
    api1, prod1, sdk1 = await stack.scrape_all()

    # the API: three POSTs to the movements route (one replayed), one decision
    route = {"method": "POST", "route": "/v1/movements"}
    assert delta(api1, api0, "bankflow_http_requests_total", **route, status="201") == 2
    assert delta(api1, api0, "bankflow_http_requests_total", **route, status="202") == 1
    assert delta(api1, api0, "bankflow_http_request_duration_seconds_count", **route) == 3
    decisions = {"method": "POST", "route": "/v1/movements/{movement_id}/decisions"}
    assert delta(api1, api0, "bankflow_http_requests_total", **decisions, status="200") == 1
    assert delta(api1, api0, "bankflow_idempotent_replays_total", operation="api_request") == 1

    # the worker: one deposit journal of 305.00, one hold placed then posted as a withdrawal
    assert delta(prod1, prod0, "bankflow_journals_posted_total", kind="deposit") == 1
    assert delta(prod1, prod0, "bankflow_postings_total", kind="deposit") == 1
    amount = "bankflow_posted_amount_minor_total"
    assert delta(prod1, prod0, amount, currency=CURRENCY, kind="deposit") == 305_00
    assert delta(prod1, prod0, "bankflow_journals_posted_total", kind="withdrawal") == 1
    assert delta(prod1, prod0, amount, currency=CURRENCY, kind="withdrawal") == 600_00
    assert delta(prod1, prod0, "bankflow_holds_total", event="placed") == 1
    assert delta(prod1, prod0, "bankflow_holds_total", event="posted") == 1

    async def gauge_cleared() -> bool:
        await gauge.refresh()
        _, prod, _ = await stack.scrape_all()
        return (
            value(
                prod, "bankflow_approvals_waiting", process="MoneyMovement", role="branch_manager"
            )
            == 0
        )

    await eventually(gauge_cleared)

    # the Temporal SDK's own metrics, from the worker's Runtime: both workflows completed
    async def completed() -> bool:
        sdk = await scrape(stack.sdk_url)
        done = total(
            sdk,
            "temporal_workflow_completed_total",
            workflow_type="MoneyMovement",
            task_queue=stack.queue,
        )
        return done == 2

    await eventually(completed)
    # The held withdrawal's hold and posting are activities; the deposit posts as a local one.
    assert total(sdk1, "temporal_activity_execution_latency_count", task_queue=stack.queue) >= 2
    local = "temporal_local_activity_execution_latency_count"
    assert total(sdk1, local, task_queue=stack.queue) >= 1


async def test_a_poison_activity_shows_in_the_failure_metric_the_alert_reads(
    settings: Settings, temporal_client: Client, factory: Factory, sessions: Sessions
) -> None:
    """A fake registered under the real `post_movement` name fails every attempt with a
    retryable error; the counter the ActivityFailingRepeatedly alert reads counts each one."""
    attempts = 0

    @activity.defn(name="post_movement")
    async def poison(req: JournalRequest) -> JournalResult:
        nonlocal attempts
        attempts += 1
        raise RuntimeError("poison input")

    metric, labels = alert_expression("ActivityFailingRepeatedly")
    assert metric == "bankflow_activity_failures_total" and labels == {"retryable": "true"}
    account = await factory.savings_account(0)
    queue = f"tq-{uuid.uuid4().hex[:12]}"
    with worker_metrics() as url:
        before = await scrape(url)
        async with Worker(
            temporal_client,
            task_queue=queue,
            workflows=INTERACTIVE_WORKFLOWS,
            activities=[poison],
            interceptors=interceptors(settings),
        ):
            handle = await temporal_client.start_workflow(
                MoneyMovementWorkflow.run,
                movement(factory.gl(CASH.number), account.id, 10_00, kind="deposit"),
                id=f"movement-poison-{uuid.uuid4().hex[:8]}",
                task_queue=queue,
                retry_policy=RetryPolicy(maximum_attempts=1),
            )

            async def failed_thrice() -> bool:
                return attempts >= 3

            await eventually(failed_thrice, seconds=30)
            await handle.terminate("poison test done")
        after = await scrape(url)
    series = {"activity_type": "post_movement", "error_type": "RuntimeError", "retryable": "true"}
    moved = value(after, metric, **series) - value(before, metric, **series)
    assert moved == attempts >= 3
