"""Logs and traces for every process (API, worker, CLI): how they are formatted and exported.

Logs are JSON lines (python-json-logger, a formatter for the standard `logging` module: every
module here, uvicorn and the Temporal SDK already log through it, so one formatter makes every
line structured without touching a call site). Each line carries the context it was written in:
the API request id and the staff user's id, or the workflow id, run id, activity type and
attempt. Never a name, an e-mail or a number a member gave us: the fields are ids and types.

Traces are OpenTelemetry's. They are off unless BANKFLOW_OTLP_ENDPOINT is set (or a test installs
an exporter): then the API's FastAPI spans, Temporal's client, workflow and activity spans
(temporalio.contrib.opentelemetry) and SQLAlchemy's statement spans form one tree per request.
The provider is this module's, handed to each instrumentation explicitly rather than set as
OpenTelemetry's global (which can be set only once per process), so it can be shut down and
flushed at exit and a test can install its own exporter.
"""

from __future__ import annotations

import contextvars
import logging
import re
import sys
from contextlib import AbstractContextManager, nullcontext
from typing import Any, TextIO

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.trace import SpanKind
from pythonjsonlogger.json import JsonFormatter
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity, workflow

from schemas.settings import Settings

REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "bankflow_request_id", default=None
)
USER_ID: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "bankflow_user_id", default=None
)
# A caller's X-Request-ID is kept only if it is short and plain; otherwise a new one is made.
REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,64}")
JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(message)s"
CONSOLE_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"

_provider: TracerProvider | None = None


class ContextFilter(logging.Filter):
    """Adds the request and Temporal context a line was written in (ids only)."""

    def filter(self, record: logging.LogRecord) -> bool:
        request_id = REQUEST_ID.get()
        if request_id is not None:
            record.request_id = request_id
        user_id = USER_ID.get()
        if user_id is not None:
            record.user_id = user_id
        if activity.in_activity():
            info = activity.info()
            record.workflow_id = info.workflow_id
            record.run_id = info.workflow_run_id
            record.activity = info.activity_type
            record.attempt = info.attempt
        elif workflow.in_workflow():
            winfo = workflow.info()
            record.workflow_id = winfo.workflow_id
            record.run_id = winfo.run_id
            record.workflow_type = winfo.workflow_type
        # The SDK's own loggers append a dict of the same context (and the workflow's input
        # would be tempting to add): our fields above replace it.
        for extra in ("temporal_workflow", "temporal_activity"):
            record.__dict__.pop(extra, None)
        return True


def log_handler(settings: Settings, component: str, stream: TextIO) -> logging.Handler:
    """JSON lines (console when BANKFLOW_ENV=dev or BANKFLOW_LOG_FORMAT=console) to `stream`."""
    handler = logging.StreamHandler(stream)
    handler.addFilter(ContextFilter())
    if settings.effective_log_format == "json":
        handler.setFormatter(
            JsonFormatter(
                JSON_FIELDS,
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
                static_fields={"component": component},
            )
        )
    else:
        handler.setFormatter(logging.Formatter(CONSOLE_FORMAT))
    return handler


def configure_logging(settings: Settings, component: str) -> None:
    """Root logging for a process, on stderr."""
    handler = log_handler(settings, component, sys.stderr)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
    # uvicorn configures its loggers with handlers of its own before it imports the app: send
    # them through ours so the access log is JSON too.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True


def install_tracing(
    settings: Settings, service: str, *, exporter: SpanExporter | None = None
) -> TracerProvider | None:
    """Set the process's tracer provider: OTLP/HTTP to BANKFLOW_OTLP_ENDPOINT, or `exporter`
    (tests). Neither: tracing stays off and nothing is instrumented."""
    global _provider
    if _provider is not None:
        if exporter is not None:
            _provider.add_span_processor(SimpleSpanProcessor(exporter))
        return _provider
    if exporter is None and not settings.otlp_endpoint:
        return None
    provider = TracerProvider(resource=Resource.create({"service.name": f"bankflow-{service}"}))
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    if settings.otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.otlp_endpoint))
        )
    _provider = provider
    return provider


def shutdown_tracing() -> None:
    """Flush the spans still queued and stop tracing (at process exit, or a test's end)."""
    global _provider
    if _provider is not None:
        _provider.shutdown()
        _provider = None


def tracing_on() -> bool:
    return _provider is not None


def temporal_interceptors() -> list[Any]:
    """The Temporal client interceptors (a worker inherits them from its client)."""
    if not tracing_on():
        return []
    from temporalio.contrib.opentelemetry import TracingInterceptor

    assert _provider is not None
    return [TracingInterceptor(_provider.get_tracer("bankflow.temporal"))]


def instrument_engine(engine: AsyncEngine) -> None:
    """SQL statement spans (the statement with its placeholders, never the parameters)."""
    if _provider is None:
        return
    # The instrumentation's per-engine tracer, which is what SQLAlchemyInstrumentor installs for
    # `engine=`: the instrumentor itself would also patch create_engine process-wide, instruments
    # only once per process, and refuses SQLAlchemy 2.1 by its version pin (the engine events it
    # uses are unchanged in 2.1; tests/telemetry/test_traces.py proves the spans).
    from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
    from opentelemetry.metrics import NoOpMeter

    usage = NoOpMeter("bankflow").create_up_down_counter("db.client.connections.usage")
    tracer = _provider.get_tracer("opentelemetry.instrumentation.sqlalchemy")
    EngineTracer(tracer, engine.sync_engine, usage)  # type: ignore[no-untyped-call]


def sql_span(statement: str) -> AbstractContextManager[Any]:
    """A span for SQL sent past the engine (activities/direct.py's pipeline), shaped like the
    engine's statement spans: the statement with its placeholders, never the parameters."""
    if _provider is None:
        return nullcontext()
    tracer = _provider.get_tracer("opentelemetry.instrumentation.sqlalchemy")
    return tracer.start_as_current_span(
        statement.split(None, 1)[0],
        kind=SpanKind.CLIENT,
        attributes={"db.system": "postgresql", "db.statement": statement},
    )


def instrument_app(app: Any) -> None:
    if tracing_on():
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        FastAPIInstrumentor.instrument_app(app, tracer_provider=_provider, excluded_urls="metrics")
