"""The daily loan job: workflow input, batch payloads, progress, and the portfolio-at-risk report."""

from __future__ import annotations

from datetime import date
from enum import StrEnum

from pydantic import BaseModel, Field

# Who reads the portfolio-at-risk report: finance, the branch and credit committee who decide
# on loans, and operations who watch the job.
PAR_READER_ROLES = ("finance", "branch_manager", "credit_committee", "ops")
WORKFLOW_PREFIX = "daily-loan-job-"
SCHEDULE_ID = "daily-loan-job"
# PAR name -> days past due a loan must exceed to count: PAR1 is any arrears at all (the
# 1-30 bucket starts at one day), PAR30/60/90 more than 30/60/90 days (the bucket edges).
PAR_THRESHOLDS = {"PAR1": 0, "PAR30": 30, "PAR60": 60, "PAR90": 90}


class Stage(StrEnum):
    PLANNING = "planning"
    SERVICING = "servicing"
    SNAPSHOT = "snapshot"
    COMPLETED = "completed"


class DailyJobInput(BaseModel):
    """`business_date` None means "yesterday at the scheduled time" (the Temporal Schedule).

    The remaining fields carry progress across continue-as-new; callers leave them at defaults.
    """

    business_date: date | None = None
    timezone: str = "UTC"
    # 5,000 loans a batch: a batch holds its loans' locks for about a second (a repayment of one
    # of them waits that long at 01:00), and a million loans are 200 batches instead of 500,
    # whose fixed cost (an activity round trip, the lock scan) was a tenth of the run.
    batch_size: int = Field(default=5000, ge=1, le=15000)
    concurrency: int = Field(default=3, ge=1, le=32)
    batches_per_run: int = Field(default=400, ge=1, le=2000)
    heartbeat_s: int = Field(default=20, ge=2, le=600, description="batch heartbeat timeout")
    # carried state
    after_loan_id: int = 0
    loans_total: int = 0
    loans_done: int = 0
    penalty_minor: dict[str, int] = Field(default_factory=dict)
    accrual_minor: dict[str, int] = Field(default_factory=dict)
    scales: dict[str, int] = Field(default_factory=dict)


class PlanRequest(BaseModel):
    business_date: date


class PlanResult(BaseModel):
    loans_total: int = Field(description="active loans disbursed by the date")
    scales: dict[str, int] = Field(default_factory=dict, description="currency -> decimals")


class RangesRequest(BaseModel):
    after_loan_id: int
    batch_size: int
    limit: int


class LoanRange(BaseModel):
    first_loan_id: int
    last_loan_id: int


class RangesResult(BaseModel):
    ranges: list[LoanRange]
    more: bool


class BatchRequest(BaseModel):
    business_date: date
    workflow_id: str
    first_loan_id: int
    last_loan_id: int
    run_id: str = Field(
        default="", description="the run (its first execution), tagged on the batch's journal"
    )


class BatchResult(BaseModel):
    loans: int = Field(description="active loans in the range")
    serviced_now: int = Field(description="loans this call moved to the business date")
    journal_id: str | None
    penalty_minor: dict[str, int] = Field(description="penalties charged now, per currency")
    accrual_minor: dict[str, int] = Field(description="interest accrued now, per currency")


class SnapshotRequest(BaseModel):
    business_date: date
    workflow_id: str = ""
    run_id: str = Field(default="", description="the run whose postings to sum apart")


class DailyJobSummary(BaseModel):
    business_date: date
    loans: int
    penalty_minor: dict[str, int] = Field(
        description="penalties posted for the date, by every run of it, per currency"
    )
    accrual_minor: dict[str, int] = Field(description="interest accrued for the date, ditto")
    run_penalty_minor: dict[str, int] = Field(
        default_factory=dict, description="what the run that returned this summary posted"
    )
    run_accrual_minor: dict[str, int] = Field(default_factory=dict)
    par_rows: int = Field(description="par_snapshots rows written for the date")
    scales: dict[str, int] = Field(default_factory=dict, description="currency -> decimals")


class DailyJobProgress(BaseModel):
    business_date: date | None
    stage: Stage
    loans_total: int
    loans_done: int
    penalty_minor: dict[str, int]
    accrual_minor: dict[str, int]
    scales: dict[str, int] = Field(default_factory=dict)
    summary: DailyJobSummary | None = None


class ParBucket(BaseModel):
    bucket: str = Field(description="current, 1-30, 31-60, 61-90 or over_90 days past due")
    loans: int
    outstanding_principal: str = Field(description="major units")
    overdue: str = Field(description="principal and interest overdue, major units")


class ParCurrency(BaseModel):
    currency: str
    loans: int
    outstanding_principal: str
    buckets: list[ParBucket]
    par: dict[str, str] = Field(
        description="PAR1 (any arrears), PAR30, PAR60, PAR90 (more than 30, 60, 90 days past "
        "due): their share of the outstanding principal, a decimal fraction with 4 places"
    )


class ParReport(BaseModel):
    business_date: date
    currencies: list[ParCurrency]
