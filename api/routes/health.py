"""Liveness and readiness probes; no authentication, no personal data."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from temporalio.service import RPCError

from activities.reads.health import postgres_answers
from api.deps import SessionsDep, TemporalConnector
from schemas.errors import BankflowError

router = APIRouter(tags=["health"])

PROBE_TIMEOUT = timedelta(seconds=2)


class ReadyView(BaseModel):
    status: Literal["ok", "unavailable"]
    checks: dict[str, Literal["ok", "down"]]


@router.get("/health")
async def health() -> dict[str, str]:
    """Liveness: the process answers. Checks nothing else, so a database outage does not get
    every API process restarted."""
    return {"status": "ok"}


async def _temporal(connector: TemporalConnector) -> bool:
    try:
        async with asyncio.timeout(PROBE_TIMEOUT.total_seconds()):
            client = await connector.get()
            return await client.service_client.check_health(timeout=PROBE_TIMEOUT)
    except (BankflowError, RPCError, RuntimeError, TimeoutError):
        return False


@router.get(
    "/ready",
    response_model=ReadyView,
    responses={503: {"description": "a dependency is down", "model": ReadyView}},
)
async def ready(request: Request, sessions: SessionsDep) -> JSONResponse:
    """Readiness: Postgres answers `SELECT 1` and Temporal's health check passes, each within
    two seconds. 200 when both do, else 503 naming what failed."""
    postgres, temporal = await asyncio.gather(
        postgres_answers(sessions, PROBE_TIMEOUT.total_seconds()),
        _temporal(request.app.state.temporal),
    )
    checks = {"postgres": "ok" if postgres else "down", "temporal": "ok" if temporal else "down"}
    ok = postgres and temporal
    return JSONResponse(
        {"status": "ok" if ok else "unavailable", "checks": checks}, status_code=200 if ok else 503
    )
