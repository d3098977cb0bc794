"""One settings class for every process (API, worker, CLI), built once at start-up and passed down."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from functools import lru_cache

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

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
