"""The FastAPI application. `uvicorn api.app:app` serves it; tests call `create_app(settings)`.

Nothing connects at import time: the lifespan opens the database pool and the Temporal client.
If Temporal is down at start-up the API still starts; the client connects on first use and
`/ready` says what is missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from temporalio.client import Client
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from activities.db import make_engine, make_sessionmaker
from activities.direct import DirectPool
from api import routes
from api.audit import AuditMiddleware
from api.audit_spool import AuditTrail
from api.auth import LoginLimiter, TokenVerifier
from api.codec_http import CodecHttpMiddleware
from api.deps import TemporalConnector
from api.errors import install_error_handlers
from api.guard import RequestGuardMiddleware
from api.headers import SecurityHeadersMiddleware, install_docs
from api.idempotency import IdempotencyMiddleware
from api.openapi import document_errors
from api.telemetry import install as install_telemetry
from schemas import telemetry
from schemas.errors import BankflowError
from schemas.settings import Settings, service_settings

log = logging.getLogger(__name__)


def create_app(settings: Settings, *, temporal_client: Client | None = None) -> FastAPI:
    settings.refuse_insecure()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings)
        app.state.sessions = make_sessionmaker(engine)
        app.state.direct = DirectPool(settings.sqlalchemy_url, size=settings.db_pool_size)
        app.state.audit = AuditTrail(app.state.direct, settings.audit_spool_dir)
        # Entries a previous process spooled during an outage, then every few seconds.
        flusher = asyncio.create_task(app.state.audit.keep_flushing())
        if temporal_client is None:
            try:
                await app.state.temporal.get()
            except BankflowError:
                log.warning("starting without Temporal; will connect on first use")
        try:
            yield
        finally:
            flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flusher
            await app.state.direct.close()
            await engine.dispose()

    app = FastAPI(
        title="bankflow",
        version="0.1.0",
        description="Core-banking processes on Temporal and Postgres. Amounts are decimal "
        "strings in major units with a currency code.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        # The API's telemetry is its own (api/telemetry.py: metrics, access log, and spans from
        # the OpenTelemetry instrumentation on this service's tracer provider). FastAPI's native
        # telemetry would only look up the global providers on every request to find none.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    app.state.tokens = TokenVerifier(settings)
    app.state.temporal = TemporalConnector(settings, temporal_client)
    app.state.login_limiter = LoginLimiter(
        settings.login_limit_per_username, settings.login_limit_per_address
    )
    install_error_handlers(app)
    document_errors(app)
    install_docs(app)
    # Added last = outermost. In order of a request: the trusted proxy's client address; headers
    # on every answer; the audit, which sees every other layer's answers; the guard (body limit,
    # token checked before the body is read); idempotency, which reads the now bounded body of
    # an authenticated request.
    app.add_middleware(IdempotencyMiddleware)
    app.add_middleware(RequestGuardMiddleware)
    app.add_middleware(AuditMiddleware)
    app.add_middleware(SecurityHeadersMiddleware)
    # /codec only: the Web UI's origin may read the answers; its cookie counts as the bearer.
    app.add_middleware(CodecHttpMiddleware, origins=settings.codec_cors_origins)
    # Outermost of all, and only for configured proxies: everything inside (the audit log, the
    # login limits) sees the client that proxy connected for, and nobody else can claim one.
    if settings.trusted_proxies:
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.trusted_proxies)
    for router in routes.ROUTERS:
        app.include_router(router)
    install_telemetry(app, serve_metrics=settings.metrics_enabled)
    return app


def __getattr__(name: str) -> FastAPI:
    """`api.app:app` for uvicorn, built from the environment's settings on first access, so that
    importing this module (tests, the CLI) needs no settings. Settings not safe to serve with end
    the process here with one line on stderr and exit code 2, not a traceback."""
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    settings = service_settings("api")
    telemetry.configure_logging(settings, "api")
    telemetry.install_tracing(settings, "api")
    app = create_app(settings)
    globals()["app"] = app  # built once; later lookups find the global
    return app
