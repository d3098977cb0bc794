"""interest_postings keyed by (period, account_id): one index serves month-end's lookups by
period (its totals, a batch's done count, the previous month's carry) and by account, instead
of a primary key on (account_id, period) beside a second index on period, which every
month-end row paid for twice.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 10:45:00

"""

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "interest_postings"


def upgrade() -> None:
    op.drop_index("ix_interest_postings_period", table_name=TABLE)
    op.drop_constraint(op.f("pk_interest_postings"), TABLE, type_="primary")
    op.create_primary_key(op.f("pk_interest_postings"), TABLE, ["period", "account_id"])


def downgrade() -> None:
    op.drop_constraint(op.f("pk_interest_postings"), TABLE, type_="primary")
    op.create_primary_key(op.f("pk_interest_postings"), TABLE, ["account_id", "period"])
    op.create_index("ix_interest_postings_period", TABLE, ["period"])
