"""login lockout: failed logins per username, shared by every API process

The runtime role's privileges are not a revision: migrations/env.py grants them after every
upgrade (activities/migrate.py: grant_runtime), so they follow every table a later migration adds.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 21:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "login_throttle",
        sa.Column("username_key", sa.String(length=64), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "last_failure_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("failures >= 0", name=op.f("ck_login_throttle_failures_not_negative")),
        sa.PrimaryKeyConstraint("username_key", name=op.f("pk_login_throttle")),
    )


def downgrade() -> None:
    op.drop_table("login_throttle")
