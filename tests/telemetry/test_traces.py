"""Traces: one business request, captured by an in-memory exporter, is one tree from the API's
span through the Temporal client, the workflow and its activity down to the activity's SQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from temporalio.client import Client

from activities.db import make_engine, make_sessionmaker
from activities.direct import DirectPool
from api.app import create_app
from schemas import telemetry, temporal
from schemas.settings import Settings
from tests.api.conftest import Staff, make_client
from tests.conftest import CURRENCY, Factory
from worker import build_workers


@pytest.fixture
def exporter(settings: Settings) -> Iterator[InMemorySpanExporter]:
    spans = InMemorySpanExporter()
    assert telemetry.install_tracing(settings, "test", exporter=spans) is not None
    yield spans
    telemetry.shutdown_tracing()


def ancestors(span: ReadableSpan, by_id: dict[int, ReadableSpan]) -> list[str]:
    names = []
    parent = span.parent
    while parent is not None and parent.span_id in by_id:
        up = by_id[parent.span_id]
        names.append(up.name)
        parent = up.parent
    return names


async def test_one_request_is_one_trace_from_api_to_sql(
    exporter: InMemorySpanExporter,
    settings: Settings,
    temporal_client: Client,
    factory: Factory,
    staff: dict[str, Staff],
    direct: DirectPool,
) -> None:
    account = await factory.savings_account()
    queue = f"tq-{uuid.uuid4().hex[:12]}"
    client = await temporal.connect(
        settings, target=temporal_client.service_client.config.target_host
    )
    engine = make_engine(settings, pool_size=2)
    app = create_app(
        settings.model_copy(update={"interactive_task_queue": queue}), temporal_client=client
    )
    workers = build_workers(
        client,
        settings,
        make_sessionmaker(engine),
        direct,
        interactive_queue=queue,
        batch_queue=queue + "b",
    )
    body = {"kind": "deposit", "amount": "12.00", "to_account": account.code, "currency": CURRENCY}
    headers = {**staff["teller"].headers, "Idempotency-Key": uuid.uuid4().hex}
    async with workers[0], workers[1], app.router.lifespan_context(app), make_client(app) as api:
        exporter.clear()
        answer = await api.post("/v1/movements", json=body, headers=headers)
    await engine.dispose()
    assert answer.status_code == 201, answer.text

    spans = exporter.get_finished_spans()
    [root] = [s for s in spans if s.kind == SpanKind.SERVER and s.parent is None]
    assert root.name == "POST /v1/movements"
    tree = [s for s in spans if s.context.trace_id == root.context.trace_id]
    by_id = {s.context.span_id: s for s in tree}
    names = {s.name for s in tree}
    assert "RunWorkflow:MoneyMovement" in names, sorted(names)
    assert "RunActivity:post_movement" in names, sorted(names)
    sql = [s for s in tree if (s.attributes or {}).get("db.system") == "postgresql"]
    in_activity = [s for s in sql if "RunActivity:post_movement" in ancestors(s, by_id)]
    assert in_activity, "the activity's SQL is a child of its activity span"
    # The ledger's one statement, sent past the engine on the DirectPool (activities/direct.py),
    # is a span too, with its placeholders and never its values.
    statements = [str((s.attributes or {}).get("db.statement", "")) for s in in_activity]
    [journal] = [sql for sql in statements if "INSERT INTO journals" in sql]
    assert "FOR NO KEY UPDATE" in journal and "INSERT INTO postings" in journal
    assert "%(amount)s" in journal and "12.00" not in journal and "1200" not in journal
    for span in tree:  # every span reaches the API's root: one tree, not a forest
        assert span is root or ancestors(span, by_id)[-1] == root.name, span.name
    run = next(s for s in tree if s.name == "RunWorkflow:MoneyMovement")
    assert root.name in ancestors(run, by_id)
