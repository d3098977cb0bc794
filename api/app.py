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

from activities.db import make_engine, make_sessionmaker
from api import routes
from api.audit import AuditMiddleware
from api.audit_spool import AuditTrail
from api.auth import RateLimiter
from api.deps import TemporalConnector
from api.errors import install_error_handlers
from api.guard import RequestGuardMiddleware
from api.headers import SecurityHeadersMiddleware, install_docs
from api.idempotency import IdempotencyMiddleware
from schemas.errors import BankflowError
from schemas.settings import Settings, get_settings

log = logging.getLogger(__name__)


def create_app(settings: Settings, *, temporal_client: Client | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings)
        app.state.sessions = make_sessionmaker(engine)
        app.state.audit = AuditTrail(app.state.sessions, settings.audit_spool_dir)
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
            await engine.dispose()

    app = FastAPI(
        title="bankflow",
        version="0.1.0",
        description="Core-banking processes on Temporal and Postgres. Amounts are decimal "
        "strings in major units with a currency code.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.temporal = TemporalConnector(settings, temporal_client)
    app.state.token_limiter = RateLimiter(settings.token_rate_limit_per_minute)
    install_error_handlers(app)
    install_docs(app)
    # Added last = outermost. In order of a request: headers on every answer; the audit, which
    # sees every other layer's answers; the guard (body limit, token checked before the body is
    # read); idempotency, which reads the now bounded body of an authenticated request.
    app.add_middleware(IdempotencyMiddleware)
    app.add_middleware(RequestGuardMiddleware)
    app.add_middleware(AuditMiddleware)
    app.add_middleware(SecurityHeadersMiddleware)
    for router in routes.ROUTERS:
        app.include_router(router)
    return app


app = create_app(get_settings())
