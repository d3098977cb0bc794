"""One settings class for every process (API, worker, CLI), built once at start-up and passed down."""

from __future__ import annotations

import ipaddress
import os
import sys
from datetime import timedelta
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal, NoReturn, Self
from urllib.parse import urlsplit

import limits
from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from schemas.keyring import DEV_KEY_PREFIX, Key, KeyRing
from schemas.kyc_tier import DEFAULT_BASIC_TIER_LIMITS, BasicTierLimit
from schemas.reversals import DEFAULT_TIERS, ReversalTier

INTERACTIVE_TASK_QUEUE = "bankflow-interactive"
BATCH_TASK_QUEUE = "bankflow-batch"
# Every key-ring setting, with how an operator names it. No ring has a default outside
# BANKFLOW_ENV=dev; `make run` generates each one under .data/ (scripts/dev.py).
KEY_RINGS: dict[str, str] = {
    "jwt_keys": "BANKFLOW_JWT_KEYS (or BANKFLOW_JWT_SECRET)",
    "payload_keys": "BANKFLOW_PAYLOAD_KEYS",
}
# The key id BANKFLOW_JWT_SECRET's single key gets; rotating away from it means writing
# BANKFLOW_JWT_KEYS=<new kid>:<new secret>,default:<the old secret>.
SHORTHAND_KID = "default"
EXIT_REFUSED = 2


class InsecureSettingsError(Exception):
    """The settings are not safe to serve with outside BANKFLOW_ENV=dev; the message says why."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BANKFLOW_", env_file=".env", extra="ignore")

    env: Literal["dev", "production"] = Field(
        default="production",
        description="dev allows missing or weak keys (built-in, published ones); never deploy it",
    )
    database_url: str = Field(
        default="postgresql+psycopg://postgres@127.0.0.1:5432/bankflow",
        validation_alias=AliasChoices("BANKFLOW_DATABASE_URL", "DATABASE_URL"),
        description="the runtime role's SQLAlchemy URL (API, worker, CLI); postgresql:// uses "
        "psycopg 3",
    )
    migration_database_url: str | None = Field(
        default=None,
        description="the owning role's URL, used by `bankflow db upgrade` only; without it "
        "migrations run on database_url",
    )
    db_pool_size: int = Field(
        default=20,
        ge=1,
        le=200,
        description="connections each API or worker process keeps open (and as many more in a "
        "burst); below the concurrency it serves, every burst opens and closes connections, "
        "and a Postgres backend costs a fork",
    )
    temporal_address: str = "localhost:7233"
    temporal_namespace: str = "default"
    interactive_task_queue: str = INTERACTIVE_TASK_QUEUE
    batch_task_queue: str = BATCH_TASK_QUEUE

    jwt_keys: Annotated[KeyRing, NoDecode] = Field(
        default_factory=KeyRing,
        description="token signing keys, kid:secret[,kid:secret...] newest first: the newest "
        "signs, every one verifies",
    )
    jwt_secret: SecretStr | None = Field(
        default=None, description=f"shorthand for a ring of one key, kid {SHORTHAND_KID!r}"
    )
    jwt_issuer: str = "bankflow"
    payload_keys: Annotated[KeyRing, NoDecode] = Field(
        default_factory=KeyRing,
        description="Temporal payload encryption keys, kid:secret[,kid:secret...] newest first: "
        "the newest encrypts, every one decrypts (schemas/payload_codec.py)",
    )
    jwt_ttl: timedelta = timedelta(hours=8)

    # the Web UI's remote codec (api/routes/codec.py)
    codec_cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["http://127.0.0.1:8233", "http://localhost:8233"],
        description="comma-separated origins of the Temporal Web UI that may call /codec "
        "(with credentials); no other origin may read its answers",
    )

    # the client address and the login limits (api/routes/auth.py)
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="comma-separated addresses or networks whose X-Forwarded-For is believed; "
        "empty: the socket peer is the client",
    )
    login_limit_per_username: str = Field(
        default="10/minute", description="attempts per username across all addresses"
    )
    login_limit_per_address: str = Field(
        default="30/minute", description="attempts per client address across all usernames"
    )
    login_lockout_after: int = Field(
        default=5, ge=1, description="consecutive failed logins that lock a username"
    )
    login_lockout_base: timedelta = Field(
        default=timedelta(minutes=1), description="the first lockout; each further one doubles"
    )
    login_lockout_max: timedelta = timedelta(hours=1)

    approval_threshold: Decimal = Field(
        default=Decimal("500"),
        ge=0,
        allow_inf_nan=False,
        max_digits=30,
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

    # month-end savings interest (workflows/month_end_interest.py, cli/schedules.py)
    institution_timezone: str = Field(
        default="UTC", description="IANA zone of the schedules (month-end at 00:30 on the 1st)"
    )
    finance_email: str = Field(
        default="finance@bankflow.example", description="receives the month-end summary"
    )

    # ---- request pipeline: body limits, idempotency claims, audit spool ----------------------
    # (api/guard.py, api/idempotency.py, api/audit.py)
    request_max_bytes: int = Field(
        default=1024 * 1024,
        gt=0,
        description="largest JSON or form body; uploads are bounded by kyc_upload_max_bytes",
    )
    idempotency_lease: timedelta = Field(
        default=timedelta(seconds=10),
        gt=timedelta(0),
        description="a running request renews its Idempotency-Key claim this often x3; a claim "
        "not renewed for this long (its API process died) is taken over by a retry",
    )
    idempotency_wait: timedelta = Field(
        default=timedelta(seconds=10),
        ge=timedelta(0),
        description="how long a retry waits for the answer of the request still running under "
        "its key before answering 409 IdempotencyKeyInProgress",
    )
    audit_spool_dir: Path = Field(
        default=Path(".data/audit-spool"),
        description="audit entries that Postgres could not take wait here, durably, until it can",
    )

    # --- KYC tier limits (activities/movements.py, activities/loans.py) ------------------------
    # Enforced by the MoneyMovement and LoanApproval workflows' activities; see schemas/kyc_tier.
    kyc_basic_tier_limits: dict[str, BasicTierLimit] = Field(
        default_factory=lambda: dict(DEFAULT_BASIC_TIER_LIMITS),
        description="Per currency: what a member who is not KYC-verified may take out a day and "
        'borrow, e.g. {"USD": {"withdrawals_per_day": "1500", "loan_principal": "1000"}}.',
    )

    # --- telemetry (activities/metrics.py, schemas/telemetry.py, schemas/temporal.py) -------
    metrics_enabled: bool = Field(
        default=True, description="serve Prometheus metrics (API /metrics, worker ports below)"
    )
    metrics_host: str = Field(
        default="127.0.0.1", description="address the worker's metrics servers bind to"
    )
    worker_metrics_port: int = Field(
        default=9464, ge=0, le=65535, description="the worker's product metrics (prometheus-client)"
    )
    worker_sdk_metrics_port: int = Field(
        default=9465, ge=0, le=65535, description="the worker's Temporal SDK metrics"
    )
    log_format: Literal["json", "console"] | None = Field(
        default=None, description="log line format; default json, console when BANKFLOW_ENV=dev"
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    otlp_endpoint: str | None = Field(
        default=None,
        description="OTLP/HTTP traces endpoint (http://collector:4318/v1/traces); unset: no "
        "traces are exported",
    )

    @property
    def effective_log_format(self) -> Literal["json", "console"]:
        if self.log_format is not None:
            return self.log_format
        return "console" if self.env == "dev" else "json"

    @field_validator("trusted_proxies", "codec_cors_origins", mode="before")
    @classmethod
    def _split_proxies(cls, value: Any) -> Any:
        if isinstance(value, str):  # from the environment: comma-separated
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies_are_addresses(cls, value: list[str]) -> list[str]:
        # Addresses and networks only: a host name or "*" would let anyone claim any address.
        try:
            return [str(ipaddress.ip_network(entry, strict=False)) for entry in value]
        except ValueError as exc:
            raise ValueError(f"trusted proxies are IP addresses or networks: {exc}") from None

    @field_validator("codec_cors_origins")
    @classmethod
    def _origins_are_origins(cls, value: list[str]) -> list[str]:
        # Credentials are allowed on /codec: a wildcard or a path would let any page read
        # decrypted payloads, so each entry is exactly scheme://host[:port].
        for origin in value:
            parts = urlsplit(origin)
            if parts.scheme not in ("http", "https") or not parts.hostname or "*" in origin:
                raise ValueError(f"codec CORS origins are scheme://host[:port], not {origin!r}")
            if origin != f"{parts.scheme}://{parts.netloc}":
                raise ValueError(f"a codec CORS origin has no path or query: {origin!r}")
        return value

    @field_validator("login_limit_per_username", "login_limit_per_address")
    @classmethod
    def _limits_parse(cls, value: str) -> str:
        try:
            limits.parse_many(value)
        except ValueError as exc:
            raise ValueError(
                f"a limit is written like 10/minute or 30/minute;500/day: {exc}"
            ) from None
        return value

    @model_validator(mode="after")
    def _key_rings(self) -> Self:
        if self.jwt_secret is not None:
            if self.jwt_keys:
                raise ValueError("set BANKFLOW_JWT_KEYS or BANKFLOW_JWT_SECRET, not both")
            secret = self.jwt_secret.get_secret_value().encode()
            self.jwt_keys = KeyRing([Key(SHORTHAND_KID, secret)])
            self.jwt_secret = None
        if self.env == "dev":
            for name in KEY_RINGS:
                if not getattr(self, name):
                    dev_key = Key("dev", f"{DEV_KEY_PREFIX}{name}-never-use-in-production".encode())
                    setattr(self, name, KeyRing([dev_key]))
        return self

    def refuse_insecure(self) -> None:
        """InsecureSettingsError unless every key ring is set and strong (or BANKFLOW_ENV=dev)."""
        if self.env == "dev":
            return
        problems = []
        for name, label in KEY_RINGS.items():
            ring: KeyRing = getattr(self, name)
            if not ring:
                problems.append(f"{label} is not set")
            problems += [f"BANKFLOW_{name.upper()}: {weak}" for weak in ring.weaknesses()]
        if problems:
            raise InsecureSettingsError(
                "; ".join(problems) + " (generate a key: python -c 'import secrets; "
                "print(secrets.token_urlsafe(48))'; or set BANKFLOW_ENV=dev on a developer machine)"
            )

    @property
    def sqlalchemy_url(self) -> str:
        return _sqlalchemy(self.database_url)

    @property
    def migration_sqlalchemy_url(self) -> str:
        return _sqlalchemy(self.migration_database_url or self.database_url)

    @property
    def runtime_role(self) -> str | None:
        """The role API and worker connect as, when migrations run as another (the owner)."""
        runtime = urlsplit(self.database_url).username
        owner = urlsplit(self.migration_database_url or self.database_url).username
        return runtime if runtime and runtime != owner else None


def _sqlalchemy(url: str) -> str:
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment once; also from one file per
    setting in BANKFLOW_SECRETS_DIR when set (Docker secrets: /run/secrets/bankflow_jwt_keys)."""
    return Settings(_secrets_dir=os.environ.get("BANKFLOW_SECRETS_DIR") or None)


def service_settings(component: str) -> Settings:
    """The settings a long-running service (API, worker) starts with, or one line on stderr and
    exit code 2 when they are invalid or not safe to serve with: no traceback to read through,
    and a supervisor can tell a refusal from a crash."""
    try:
        settings = get_settings()
        settings.refuse_insecure()
    except ValidationError as exc:
        _refuse(component, describe_invalid(exc))
    except InsecureSettingsError as exc:
        _refuse(component, str(exc))
    return settings


def describe_invalid(exc: ValidationError) -> str:
    """All the errors in one line, each field with its reason, and never the input value
    (pydantic's own message has it): a bad secret must not reach a terminal or a log."""
    return "; ".join(
        f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in exc.errors()
    )


def _refuse(component: str, why: str) -> NoReturn:
    print(f"bankflow {component}: refusing to start: {why}", file=sys.stderr, flush=True)
    raise SystemExit(EXIT_REFUSED)
