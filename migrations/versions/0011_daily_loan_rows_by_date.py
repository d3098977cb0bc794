"""The daily loan rows' unique index led by the business date: (value_date, loan_id, kind)
instead of (loan_id, kind, value_date).

The daily job reads these rows by date: a batch counts the date's rows of its loan range and
the job's totals sum the date's rows. Led by the loan, the index made both read every day's
rows of the loans (a year of daily accruals is 365 entries a loan), and each day's inserts
landed all over it. Led by the date, both are one range scan of one day's entries and a day's
inserts append at its end. It is still the guard of one penalty and one accrual row per loan and
date; the per-loan reads use ix_loan_transactions_loan.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 14:30:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "loan_transactions"
INDEX = "uq_loan_transactions_daily"
DAILY = sa.text("kind IN ('penalty', 'accrual')")


def _recreate(columns: list[str]) -> None:
    op.drop_index(INDEX, table_name=TABLE)
    op.create_index(INDEX, TABLE, columns, unique=True, postgresql_where=DAILY)


def upgrade() -> None:
    _recreate(["value_date", "loan_id", "kind"])


def downgrade() -> None:
    _recreate(["loan_id", "kind", "value_date"])
