"""The audit trail: what the API records of each command and personal-data read, and what
compliance reads back from `GET /v1/audit`."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, Field


class AuditRecord(BaseModel):
    """One audit entry as the API writes it (to Postgres, or to the local spool meanwhile)."""

    entry_id: uuid.UUID = Field(description="chosen by the API: the entry is written once")
    at: datetime
    actor_user_id: int | None
    actor_username: str | None
    action: str = Field(description="HTTP method and route template")
    resource: str = Field(description="the concrete path, with the query string for reads")
    client_address: str | None
    user_agent: str | None
    idempotency_key: str | None
    member_numbers: list[str] | None = Field(description="members whose data the answer showed")
    outcome_status: int
    outcome: str = Field(description="'ok' or the error code")


class AuditView(BaseModel):
    id: int
    at: datetime
    actor_user_id: int | None
    actor_username: str | None
    action: str
    resource: str
    client_address: str | None
    idempotency_key: str | None
    member_numbers: list[str]
    outcome_status: int
    outcome: str


class AuditPage(BaseModel):
    items: list[AuditView]
    next_cursor: int | None = Field(description="pass as `before` for the next (older) page")
