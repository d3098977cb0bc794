"""The approvals inbox: what the caller's roles may decide now, across processes."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class ApprovalItem(BaseModel):
    """One process waiting for a decision, read from Temporal's visibility store."""

    process: str = Field(description="workflow type, e.g. LoanApproval, MoneyMovement")
    workflow_id: str
    business_id: str | None
    stage: str | None
    assigned_role: str | None
    amount: str | None = Field(description="major units, when the process carries an amount")
    amount_minor: int | None = Field(exclude=True, default=None)
    currency: str | None
    product: str | None
    branch: str | None
    details: str | None = Field(description="what it waits for, in plain words")
    link: str | None = Field(description="the API resource to read and decide it")
    started_at: datetime | None
