"""Month-end savings interest: workflow input, batch payloads, progress and the stored summary."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

from pydantic import BaseModel, Field, field_validator

from domain.periods import check_period

READER_ROLES = ("finance", "ops")
WORKFLOW_PREFIX = "month-end-"
SCHEDULE_ID = "month-end-interest"


class Stage(StrEnum):
    PLANNING = "planning"
    POSTING = "posting"
    SUMMARISING = "summarising"
    NOTIFYING = "notifying"
    COMPLETED = "completed"
    ALREADY_DONE = "already_done"


class MonthEndInput(BaseModel):
    """`period` is YYYY-MM; None means "the month before the scheduled time" (Schedules).

    The remaining fields carry progress across continue-as-new; callers leave them at defaults.
    """

    period: str | None = None
    timezone: str = "UTC"
    notify: list[str] = Field(default_factory=list, description="finance e-mail addresses")
    batch_size: int = Field(default=5000, ge=1, le=15000)
    concurrency: int = Field(default=3, ge=1, le=32)
    batches_per_run: int = Field(default=400, ge=1, le=2000)
    heartbeat_s: int = Field(default=20, ge=2, le=600, description="batch heartbeat timeout")
    # carried state
    after_account_id: int = 0
    accounts_total: int = 0
    accounts_done: int = 0
    interest_minor: dict[str, int] = Field(default_factory=dict)
    scales: dict[str, int] = Field(default_factory=dict)
    started_at: datetime | None = None

    @field_validator("period")
    @classmethod
    def _period(cls, value: str | None) -> str | None:
        return None if value is None else check_period(value)


class PlanRequest(BaseModel):
    period: str
    workflow_id: str
    started_at: datetime


class PlanResult(BaseModel):
    accounts_total: int
    scales: dict[str, int] = Field(default_factory=dict, description="currency -> decimals")
    completed: MonthEndSummary | None = None


class RangesRequest(BaseModel):
    period: str
    after_account_id: int
    batch_size: int
    limit: int


class AccountRange(BaseModel):
    first_account_id: int
    last_account_id: int


class RangesResult(BaseModel):
    ranges: list[AccountRange]
    more: bool


class BatchRequest(BaseModel):
    period: str
    workflow_id: str
    first_account_id: int
    last_account_id: int
    run_id: str = Field(
        default="", description="the run (its first execution), tagged on the batch's journal"
    )


class BatchResult(BaseModel):
    accounts: int = Field(description="eligible accounts in the range, posted now or before")
    posted_now: int
    journal_id: str | None
    interest_minor: dict[str, int] = Field(description="gross interest posted now, per currency")
    tax_minor: dict[str, int]


class FinishRequest(BaseModel):
    period: str
    workflow_id: str
    started_at: datetime
    run_id: str = Field(default="", description="the run whose postings to sum apart")


class CurrencyTotals(BaseModel):
    currency: str
    accounts: int
    interest: str = Field(description="gross interest posted, major units")
    tax: str = Field(description="withholding tax, major units")
    net: str
    interest_minor: int
    tax_minor: int


class MonthEndSummary(BaseModel):
    period: str
    status: str
    workflow_id: str
    value_date: date
    accounts: int
    totals: list[CurrencyTotals]
    started_at: datetime
    finished_at: datetime | None
    duration_s: float | None
    this_run: list[CurrencyTotals] | None = Field(
        default=None,
        description="what the run that returned this summary posted (empty: nothing, the "
        "period was done); absent from the stored report",
    )


class MonthEndProgress(BaseModel):
    period: str | None
    stage: Stage
    accounts_total: int
    accounts_done: int
    interest_minor: dict[str, int]
    scales: dict[str, int] = Field(default_factory=dict)
    summary: MonthEndSummary | None = None


PlanResult.model_rebuild()
