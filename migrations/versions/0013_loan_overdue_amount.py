"""The loan's overdue principal and interest beside its days past due (`loans.overdue_minor`),
and the daily loan job's journals indexed by date.

The daily loan job already ages every loan's arrears and keeps the days past due and bucket on
the loan; it now keeps the overdue amount too, so the date's portfolio-at-risk snapshot sums the
loans it serviced instead of re-reading every overdue installment of the portfolio (8 s of a
million-loan run). Loans serviced before this revision get the amount of their last serviced
date from their installments as they stand, the figure the snapshot computed until now.

The job's totals of a date sum its batch journals' postings (one journal a batch, found by the
partial index on `journals.value_date`) instead of every loan's row of the date joined to the
loans (2 s of a million-loan run).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03 14:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | Sequence[str] | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JOURNAL_INDEX = "ix_journals_loan_servicing_date"
SERVICING = "kind = 'loan_servicing'"


def upgrade() -> None:
    op.add_column(
        "loans", sa.Column("overdue_minor", sa.BigInteger(), server_default="0", nullable=False)
    )
    op.execute(
        """
        UPDATE loans l SET overdue_minor = o.amount
        FROM (SELECT i.loan_id,
                     sum((i.principal_minor - i.principal_paid_minor)
                         + (i.interest_minor - i.interest_waived_minor - i.interest_paid_minor))
                         AS amount
              FROM loan_installments i JOIN loans x ON x.id = i.loan_id
              WHERE x.state = 'active' AND x.serviced_through IS NOT NULL
                AND i.due_on < x.serviced_through
                AND (i.principal_minor - i.principal_paid_minor)
                    + (i.interest_minor - i.interest_waived_minor - i.interest_paid_minor)
                    + (i.fee_minor - i.fee_paid_minor) + (i.penalty_minor - i.penalty_paid_minor)
                    > 0
              GROUP BY i.loan_id) o
        WHERE l.id = o.loan_id
        """
    )
    op.create_index(JOURNAL_INDEX, "journals", ["value_date"], postgresql_where=sa.text(SERVICING))


def downgrade() -> None:
    op.drop_index(JOURNAL_INDEX, table_name="journals")
    op.drop_column("loans", "overdue_minor")
