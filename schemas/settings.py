"""One settings class for every process (API, worker, CLI), built once at start-up and passed down."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.kyc_tier import DEFAULT_BASIC_TIER_LIMITS, BasicTierLimit
from schemas.reversals import DEFAULT_TIERS, ReversalTier

INTERACTIVE_TASK_QUEUE = "bankflow-interactive"
BATCH_TASK_QUEUE = "bankflow-batch"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BANKFLOW_", env_file=".env", extra="ignore")

    database_url: str = Field(
        default="postgresql+psycopg://postgres@127.0.0.1:5432/bankflow",
        validation_alias=AliasChoices("BANKFLOW_DATABASE_URL", "DATABASE_URL"),
        description="SQLAlchemy URL; a plain postgresql:// URL is accepted and uses psycopg 3.",
    )
    temporal_address: str = "localhost:7233"
    temporal_namespace: str = "default"
    interactive_task_queue: str = INTERACTIVE_TASK_QUEUE
    batch_task_queue: str = BATCH_TASK_QUEUE

    jwt_secret: SecretStr = SecretStr("dev-only-secret-change-me-in-production-32b")
    jwt_issuer: str = "bankflow"
    jwt_ttl: timedelta = timedelta(hours=8)
    token_rate_limit_per_minute: int = 10

    approval_threshold: Decimal = Field(
        default=Decimal("500"),
        description="Withdrawals and transfers above this amount (major units) need a supervisor.",
    )
    approval_timeout: timedelta = timedelta(hours=24)
    api_wait_timeout: timedelta = timedelta(seconds=30)
    reversal_tiers: list[ReversalTier] = Field(
        default_factory=lambda: list(DEFAULT_TIERS),
        description="Approval tiers for reversals by amount (JSON list of up_to/roles/approvers).",
    )
    reversal_override_roles: list[str] = Field(
        default_factory=lambda: ["finance"],
        description="Roles that may approve a reversal which overdraws a no-overdraft account.",
    )
    reversal_approval_timeout: timedelta = timedelta(hours=72)

    # notifications (activities/notifications.py)
    notification_transport: Literal["outbox", "sendgrid"] = Field(
        default="outbox",
        description="outbox stores messages in Postgres (GET /v1/notifications); sendgrid sends.",
    )
    sendgrid_api_key: SecretStr = SecretStr("")
    sendgrid_api_host: str = "https://api.sendgrid.com"
    sendgrid_timeout: timedelta = timedelta(seconds=10)
    notification_from_email: str = "no-reply@bankflow.example.org"
    notification_from_name: str = "bankflow"

    # KYC review (workflows/kyc_review.py)
    kyc_required_documents: list[list[str]] = Field(
        default_factory=lambda: [
            ["national_id", "passport", "drivers_licence"],
            ["proof_of_address"],
            ["photo"],
        ],
        description="Each inner list is one requirement met by any of its document types.",
    )
    kyc_low_risk_routing: Literal["auto", "reviewer"] = Field(
        default="auto", description="auto-approve low-risk cases, or send them to one reviewer"
    )
    kyc_reminder_after: timedelta = timedelta(hours=24)
    kyc_escalate_after: timedelta = timedelta(hours=48)
    kyc_supervisor_role: str = "branch_manager"
    kyc_member_response_timeout: timedelta = timedelta(days=30)
    kyc_upload_max_bytes: int = 10 * 1024 * 1024
    kyc_watchlist_hit_score: float = Field(default=90, ge=0, le=100)
    kyc_watchlist_similar_score: float = Field(default=80, ge=0, le=100)
    kyc_account_currency: str = "USD"

    # loan approval (workflows/loan_approval.py)
    loan_guarantor_timeout: timedelta = Field(
        default=timedelta(days=7), description="no consent from every guarantor by then ends it"
    )
    loan_reminder_after: timedelta = timedelta(hours=24)
    loan_escalate_after: timedelta = timedelta(hours=72)
    loan_return_timeout: timedelta = Field(
        default=timedelta(days=30), description="a returned application not amended by then ends"
    )
    loan_approval_validity: timedelta = Field(
        default=timedelta(days=30),
        description="how long an approved loan may be withdrawn before disbursement takes over",
    )

    # disbursement (workflows/disbursement.py, activities/payment_rail.py)
    payment_rail_url: str = Field(
        default="http://127.0.0.1:8099", description="base URL of the payment rail (POST /payouts)"
    )
    payout_timeout: timedelta = Field(
        default=timedelta(minutes=10),
        description="a payout the rail has not accepted by then is given up and compensated",
    )
    payout_attempt_timeout: timedelta = Field(
        default=timedelta(seconds=30),
        description="one payout attempt; a lost worker's attempt is retried after this",
    )

    # month-end savings interest (workflows/month_end_interest.py, api/schedules.py)
    institution_timezone: str = Field(
        default="UTC", description="IANA zone of the schedules (month-end at 00:30 on the 1st)"
    )
    finance_email: str = Field(
        default="finance@bankflow.example", description="receives the month-end summary"
    )

    # --- KYC tier limits (activities/movements.py, activities/loans.py) ------------------------
    # Enforced by the MoneyMovement and LoanApproval workflows' activities; see schemas/kyc_tier.
    kyc_basic_tier_limits: dict[str, BasicTierLimit] = Field(
        default_factory=lambda: dict(DEFAULT_BASIC_TIER_LIMITS),
        description="Per currency: what a member who is not KYC-verified may take out a day and "
        'borrow, e.g. {"USD": {"withdrawals_per_day": "1500", "loan_principal": "1000"}}.',
    )

    @property
    def sqlalchemy_url(self) -> str:
        url = self.database_url
        for prefix in ("postgresql://", "postgres://"):
            if url.startswith(prefix):
                return "postgresql+psycopg://" + url[len(prefix) :]
        return url


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment once."""
    return Settings()
